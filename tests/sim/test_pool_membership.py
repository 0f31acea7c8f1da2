"""Pool membership on the simulator: add() and remove() under traffic, drawn by hypothesis.

A 5-instance simulated replicaset; the pool starts with instances 0-2 and a
drawn plan adds the others and removes any (even the last), with drawn
remove() timeouts, while 10 tasks send calls in every mode. Each call carries
its own number; the server-side handler records which instance ran it, and
may hold it for a drawn time (so requests are in flight on the instance being
removed). A recording strategy logs every routing decision, and the test logs
each remove() call in the same log, at the moment it is made (no checkpoint in
between). Checked after every example:

* no request is routed to an instance after remove() was called for it;
* every request ends with exactly one outcome, a library error or its own
  answer, and ``may_have_executed`` is true to what the server saw: an answer
  means it ran exactly once, ``may_have_executed=False`` means it never ran;
* when remove() returns, the instance's task and connection are gone, and the
  pool lists exactly the instances in it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_tarantool as tt
from trio_tarantool import sim

#: Instances of the replicaset; the pool starts with the first INITIAL of them.
SIZE, INITIAL = 5, 3
MODES = (tt.Mode.ANY, tt.Mode.RO, tt.Mode.RW, tt.Mode.PREFER_RO, tt.Mode.PREFER_RW)
#: How long the server holds a call (drawn per call from these).
HOLDS = (0.0, 0.0, 0.05, 0.4, 3.0)


class RecordingStrategy(tt.RoundRobinStrategy[tt.PoolUnit]):
    """Round robin that logs every instance it returns."""

    def __init__(self, pool: Sequence[tt.PoolUnit], *, log: list[tuple[str, str]]) -> None:
        super().__init__(pool)
        self.log = log

    def getnext(self, mode: tt.Mode) -> tt.PoolUnit:
        unit = super().getnext(mode)
        self.log.append(("route", unit.key))
        return unit


#: One step of a plan: ("add" | "remove", pick, remove timeout or None) or ("wait", seconds).
steps = st.one_of(
    st.tuples(st.just("add"), st.integers(0, SIZE - 1), st.none()),
    st.tuples(st.just("remove"), st.integers(0, SIZE - 1),
              st.sampled_from([None, 0.0, 0.1, 1.0])),
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.01, 0.2, 1.0]), st.none()),
)


def key_of(inst: Any) -> str:
    return f"{inst.host}:{inst.port}"


@settings(max_examples=max(10, settings().max_examples // 3), deadline=None)
@given(plan=st.lists(steps, min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_membership_changes_under_traffic_keep_routing_and_outcomes_right(
        plan: list[tuple[Any, ...]], seed: int) -> None:
    draws = random.Random(seed)  # each call's mode and hold: a function of the seed
    log: list[tuple[str, str]] = []
    ran: dict[int, list[str]] = {}
    outcomes: dict[int, list[Any]] = {}

    async def body() -> None:
        async with sim.open_replicaset(SIZE, seed=seed) as rs:

            def tag(ctx: sim.CallContext, n: int, hold: float) -> Any:
                ran.setdefault(n, []).append(key_of(ctx.instance))
                if hold <= 0:
                    return [n]

                async def later() -> list[int]:
                    await trio.sleep(hold)
                    return [n]
                return later()

            rs.register_function("tag", tag)
            present = [key_of(rs[i]) for i in range(INITIAL)]
            never_added = [i for i in range(INITIAL, SIZE)]
            strategy = functools.partial(RecordingStrategy, log=log)
            async with tt.open_pool(rs.addrs[:INITIAL], strategy_class=strategy, refresh_delay=0.5,
                                    socket_timeout=2.0) as pool:
                stop = trio.Event()
                numbers = iter(range(10**9))

                async def worker() -> None:
                    while not stop.is_set():
                        n = next(numbers)
                        mode = draws.choice(MODES)
                        hold = draws.choice(HOLDS)
                        try:
                            result: Any = (await pool.call("tag", n, hold, mode=mode)).data
                        except tt.Error as exc:
                            result = exc
                            await trio.sleep(0.05)  # e.g. no instance fits: do not spin
                        outcomes.setdefault(n, []).append(result)

                async with trio.open_nursery() as nursery:
                    for _ in range(10):
                        nursery.start_soon(worker)
                    for op, pick, timeout in plan:
                        if op == "wait":
                            await trio.sleep(pick)
                        elif op == "add" and never_added:
                            i = never_added.pop(pick % len(never_added))
                            await pool.add(rs.addrs[i])
                            present.append(key_of(rs[i]))
                        elif op == "remove" and present:
                            key = present.pop(pick % len(present))
                            unit = pool.pool[key]
                            log.append(("remove", key))  # the same instant as the call below
                            await pool.remove(key, timeout=timeout)
                            assert unit.task is None and unit.ended.is_set() and unit.conn.is_closed()
                            assert unit.in_flight == 0 or timeout is not None
                        assert [s.addr for s in pool.statistics()] == present
                        assert [f"{a['host']}:{a['port']}" for a in pool.addrs] == present
                    await trio.sleep(0.5)
                    stop.set()

    sim.run(body, seed=seed)

    removed: set[str] = set()
    for what, key in log:
        if what == "remove":
            removed.add(key)
        else:
            assert key not in removed, f"a request was routed to {key} after remove() was called"
    for n, results in outcomes.items():
        assert len(results) == 1, (n, results)
        (result,) = results
        runs = ran.get(n, [])
        if isinstance(result, tt.Error):
            if isinstance(result, tt.NetworkError) and not result.may_have_executed:
                assert runs == [], (n, result, runs)
            assert len(runs) <= 1, (n, result, runs)
        else:
            assert result == [n], (n, result)
            assert len(runs) == 1, (n, runs)
    assert set(ran) <= set(outcomes)  # nothing ran that was not asked for
