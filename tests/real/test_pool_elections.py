"""Elections on a real 3.x replicaset (raft, ``election_mode='candidate'``, synchronous space).

A write (``replace`` into the synchronous space ``sync_w``, mode RW) every
10 ms and 100 tasks of PREFER_RO reads run through the pool while the leader
changes; independent watcher connections (not the pool's) record when each
instance's ``box.status`` says it became read-only or writable. The
assertions are functional (no failed writes, writes land on the new leader);
the time bounds are generous, the measurements are in ``bench/failover.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.real._servers import AdminError, Replicaset, TarantoolInstance, connect_to
from trio_tarantool import Mode, open_pool

pytestmark = [pytest.mark.timeout(120), pytest.mark.min_server_version(3, 0)]

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
PERIOD = 0.010


@dataclass
class Run:
    """What a run saw: write times, failures, and box.status transitions per instance."""

    oks: list[float] = field(default_factory=list)
    failures: list[tt.Error] = field(default_factory=list)
    #: (instance name, is_ro) -> trio times at which box.status said so
    marks: dict[tuple[str, bool], list[float]] = field(default_factory=dict)

    def first(self, inst: TarantoolInstance, is_ro: bool, after: float) -> float:
        return min(t for t in self.marks.get((inst.name, is_ro), []) if t > after)

    def stall_around(self, start: float, end: float) -> float:
        """The longest gap between two successful writes that overlaps [start, end]."""
        gaps = [b - a for a, b in zip(self.oks, self.oks[1:], strict=False) if b >= start and a <= end]
        return max(gaps, default=0.0)


async def _watch_status(inst: TarantoolInstance, run: Run, ready: trio.Event) -> None:
    async with connect_to(inst) as conn, conn.watch("box.status") as values:
        async for value in values:
            run.marks.setdefault((inst.name, value["is_ro"]), []).append(trio.current_time())
            ready.set()


async def _traffic(rs: Replicaset, event: Any, run: Run) -> tuple[float, str]:
    """Writes and reads through a pool; ``event()`` (sync, in a thread) after 0.5 s.

    Returns when the event happened and which instance served RW at the end.
    """
    async with trio.open_nursery() as watchers:
        for inst in rs.instances:
            ready = trio.Event()
            watchers.start_soon(_watch_status, inst, run, ready)
            await ready.wait()
        async with open_pool(rs.addrs, probe_timeout=5, **USER) as pool:
            stop = trio.Event()
            written = trio.Event()
            target = [1 << 62]  # writes to see; set after the event

            async def writer() -> None:
                i = 0
                while not stop.is_set():
                    try:
                        await pool.replace("sync_w", [i, "w"])
                        run.oks.append(trio.current_time())
                        written.set()
                        if len(run.oks) >= target[0]:
                            stop.set()
                    except tt.Error as exc:
                        run.failures.append(exc)
                    i += 1
                    await trio.sleep(PERIOD)

            async def reader() -> None:
                while not stop.is_set():
                    await pool.select("sync_w", 1, mode=Mode.PREFER_RO)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                for _ in range(100):
                    nursery.start_soon(reader)
                await written.wait()
                await trio.sleep(0.5)  # traffic before the event (load, not synchronisation)
                at = trio.current_time()
                await trio.to_thread.run_sync(event)
                target[0] = len(run.oks) + 100  # 100 writes after the event
                await stop.wait()
            served = (await pool.call("whoami", mode=Mode.RW)).data[0][2]
        watchers.cancel_scope.cancel()
    return at, str(served)


def _promote(inst: TarantoolInstance) -> None:
    """``box.ctl.promote()`` on ``inst``, again if a term change raced it.

    On a loaded machine (the whole suite at once) an election timeout can open
    a term while the promotion is under way, and Tarantool refuses it ("The term
    is outdated", or "... was promoted first" when another member won that
    term); the planned switch-over is then simply asked again.
    """
    for attempt in range(5):
        try:
            inst.admin("box.ctl.promote()")
            return
        except AdminError as exc:
            raced = "term is outdated" in str(exc) or "promoted first" in str(exc)
            if not raced or attempt == 4:
                raise
            time.sleep(0.2)


async def test_planned_promote_fails_no_write(replicaset_factory: Any) -> None:
    rs: Replicaset = replicaset_factory(3, election=True)
    old = rs.leader()
    new = rs.replicas[0]
    run = Run()
    with trio.fail_after(60):
        at, served = await _traffic(rs, lambda: _promote(new), run)
    assert run.failures == []
    assert served == new.listen and rs.leader() is new
    old_ro, new_rw = run.first(old, True, at), run.first(new, False, at)
    no_leader = max(0.0, new_rw - old_ro)
    stall = run.stall_around(old_ro, new_rw)
    print(f"no-leader {no_leader * 1000:.1f} ms, longest write stall around it {stall * 1000:.1f} ms")
    assert stall <= no_leader + 1.0  # generous: the bench measures the 20 ms target


async def test_leader_sigkill_writes_resume_on_the_new_leader(replicaset_factory: Any) -> None:
    rs: Replicaset = replicaset_factory(3, election=True)
    old = rs.leader()
    run = Run()
    with trio.fail_after(60):
        at, served = await _traffic(rs, old.kill, run)
    new = rs.leader()
    assert served == new.listen and new is not old
    # A write in flight when the leader died may have run; none is reported as not run wrongly.
    assert all(isinstance(f, tt.NetworkError) and f.may_have_executed for f in run.failures), run.failures
    writable = run.first(new, False, at)
    first_write = min(t for t in run.oks if t > writable)
    print(f"new leader writable {(writable - at) * 1000:.0f} ms after the kill; "
          f"first write {(first_write - writable) * 1000:.1f} ms later; {len(run.failures)} failed")
    assert first_write - writable <= 1.0  # generous: the bench measures the 50 ms target
