"""Play one fault schedule against an app on a simulated replicaset, in virtual time.

:func:`run_schedule` is one ``trio.run`` (through ``sim.run``: a MockClock
that jumps when everything sleeps, and trio's scheduler seeded): it opens the
replicaset, starts ``app(addrs, recorder)``, plays the schedule beside it,
then heals everything (partitions and link faults lifted, crashed instances
restarted, paused ones resumed, exactly one master) and lets the app run for
a liveness window before cancelling it. The returned :class:`History` holds
what the app asked and was told, and what each instance really did.

The same schedule, app, seed and options give the same history: that is
what makes the replay line of a failure worth printing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._history import History, Recorder
from ._schedule import ELECTION_KINDS, Fault, Schedule

if TYPE_CHECKING:
    from trio_tarantool.sim import Replicaset

__all__ = ["App", "run_schedule"]

#: What :func:`run_schedule` runs: ``async def app(addrs, recorder)``.
App = Callable[[list[dict[str, Any]], Recorder], Awaitable[Any]]


def run_schedule(
    schedule: Schedule,
    app: Callable[[list[dict[str, Any]], Recorder], Awaitable[Any]],
    *,
    seed: int = 0,
    n: int = 3,
    version: str | tuple[int, int] = "2.6.0",
    election: bool = False,
    setup: Callable[[Replicaset], Any] | None = None,
    lag: float = 0.0,
    failover_window: tuple[float, float] = (0.05, 1.0),
    loading_time: float = 0.0,
    hold: float = 1.0,
    liveness: float | None = None,
) -> History:
    """Run ``app`` on an ``n``-instance simulated replicaset while ``schedule`` plays.

    Args:
        schedule: The faults to play (from :func:`fault_schedules`, or
            ``Schedule.parse(replay_text)``).
        app: ``async def app(addrs, recorder)``: use ``recorder.pool(addrs,
            ...)`` (or ``recorder.connect``/``recorder.wrap``) so its requests
            are recorded. It may return early; it is cancelled at the end of
            the liveness window. An exception from it fails the run with an
            AssertionError carrying the replay line.
        seed: The world's seed (failover windows and winners, salts) and
            trio's scheduler seed.
        n, version, election, lag, failover_window, loading_time: The
            replicaset (see :func:`trio_tarantool.sim.open_replicaset`);
            ``election=True`` needs a 3.x ``version``.
        setup: Called with the :class:`~trio_tarantool.sim.Replicaset` before
            the app starts (create spaces, register functions).
        hold: Virtual seconds the faults stand after the last step, before
            everything is healed (so that a fault at the end still matters).
        liveness: Virtual seconds the app runs after the world is healed
            (default: long enough for :func:`check_liveness_after_healing`'s
            default bound, twice over, plus one second).

    Returns:
        The :class:`History` of the run.
    """
    from trio_tarantool import sim

    if not isinstance(schedule, Schedule):
        raise TypeError(f"run_schedule: schedule must be a Schedule, got {type(schedule).__name__}")
    major = int(str(version[0] if isinstance(version, tuple) else version).split(".", 1)[0])
    if not hold >= 0 or (liveness is not None and not liveness >= 0):
        raise ValueError(f"run_schedule: hold={hold!r} and liveness={liveness!r} must be seconds >= 0")
    if election and major < 3:
        raise ValueError(f"run_schedule: election=True needs a 3.x version, got version={version!r}")
    for number, step in enumerate(schedule.steps):
        if step.target is not None and step.target >= n:
            raise ValueError(f"run_schedule: schedule step {number} ({step}) targets instance "
                             f"{step.target}, but n={n}")
        if step.kind in ELECTION_KINDS and not election:
            raise ValueError(f"run_schedule: schedule step {number} ({step}) needs election=True")
    version_text = ".".join(str(p) for p in version) if isinstance(version, tuple) else version
    replay = (f"run_schedule(Schedule.parse({str(schedule)!r}), {getattr(app, '__qualname__', app)!s}, "
              f"seed={seed}, n={n}, version={version_text!r}, election={election}"
              + (f", setup={getattr(setup, '__qualname__', setup)!s}" if setup is not None else "")
              + (f", lag={lag}" if lag else "")
              + (f", failover_window={failover_window}" if failover_window != (0.05, 1.0) else "")
              + (f", loading_time={loading_time}" if loading_time else "")
              + (f", hold={hold}" if hold != 1.0 else "")
              + (f", liveness={liveness}" if liveness is not None else "") + ")")
    out: list[History] = []
    app_errors: list[BaseException] = []

    async def main() -> None:
        async with sim.open_replicaset(
            n, seed=seed, version=version, election=election, lag=lag,
            failover_window=failover_window, loading_time=loading_time, trace_requests=False,
        ) as rs:
            if setup is not None:
                setup(rs)
            recorder = Recorder(rs)
            for i, inst in enumerate(rs.instances):
                recorder.watch_instance(i, inst)
            play = _Play(rs)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(play.monitor)
                app_scope = trio.CancelScope()
                schedule_scope = trio.CancelScope()
                app_done = trio.Event()

                async def run_app() -> None:
                    try:
                        with app_scope:
                            await app(rs.addrs, recorder)
                    except Exception as exc:
                        app_errors.append(exc)
                        schedule_scope.cancel()
                    finally:
                        app_done.set()

                nursery.start_soon(run_app)
                with schedule_scope:
                    for step in schedule.steps:
                        await trio.sleep(step.after)
                        play.apply(step, nursery)
                    await trio.sleep(hold)
                    await play.heal()
                    recorder.set_healed()
                    healed_at = trio.current_time()
                    play.note()
                    window = liveness
                    if window is None:
                        window = 2 * default_within(recorder.view_lag, recorder.request_bound) + 1.0
                    with trio.move_on_after(window):
                        await app_done.wait()
                app_scope.cancel()
                await app_done.wait()
                ended_at = trio.current_time()
                if not app_errors:
                    # Replication catches up; bytes written before the cancel arrive.
                    await trio.sleep(lag + rs.config.lag_jitter + 0.1)
                requests = recorder.build()
                spaces = sorted({r.space for r in requests if r.space is not None and r.is_write})
                out.append(History(
                    schedule=schedule, seed=seed, n=n, version=version_text, election=election,
                    requests=requests, faults=play.faults, roles=play.roles,
                    healed_at=healed_at if not app_errors else ended_at, ended_at=ended_at,
                    final=recorder.final_rows(spaces),
                    view_lag=recorder.view_lag + 0.05 if recorder.view_lag else 0.0,
                    request_bound=recorder.request_bound, trace=list(rs.trace), replay=replay,
                ))
                nursery.cancel_scope.cancel()

    sim.run(main, seed=seed)
    if app_errors:
        exc = app_errors[0]
        raise AssertionError(f"the app raised {type(exc).__name__}: {exc}\nreplay: {replay}") from exc
    return out[0]


def default_within(view_lag: float, request_bound: float) -> float:
    """How long after healing an app's requests may still fail (see the liveness check)."""
    if view_lag <= 0:
        return 1.0 + request_bound
    return view_lag + 0.05 + request_bound


class _Play:
    """The schedule's side of a run: applies steps, heals, keeps the role timeline."""

    def __init__(self, rs: Replicaset) -> None:
        self.rs = rs
        self.faults: list[tuple[float, str]] = []
        self.roles: list[tuple[float, tuple[str, ...]]] = []
        #: Elections and failovers running in the background (set when they end).
        self.background: list[trio.Event] = []
        self.max_delay = 0.0
        self.note()

    def note(self) -> None:
        """Append the current roles to the timeline if they changed."""
        roles = tuple("down" if not inst.up else ("ro" if inst.ro else "rw") + ("/paused" if inst.paused else "")
                      for inst in self.rs.instances)
        if not self.roles or self.roles[-1][1] != roles:
            self.roles.append((trio.current_time(), roles))

    async def monitor(self) -> None:
        while True:
            self.note()
            await self.rs.world.wait_changed()

    def _busy(self) -> bool:
        return any(not ended.is_set() for ended in self.background)

    def apply(self, step: Fault, nursery: trio.Nursery) -> None:
        """Play one step now (a no-op, noted as such, when it cannot apply)."""
        what = str(step).split(" ", 1)[1]
        if step.target is None:
            skipped = self._apply_global(step.kind, nursery)
        else:
            skipped = self._apply_to(step, step.target, nursery)
        self.faults.append((trio.current_time(), what if skipped is None else f"{what}: no-op ({skipped})"))
        self.note()

    def _apply_global(self, kind: str, nursery: trio.Nursery) -> str | None:
        rs = self.rs
        if kind == "heal":
            rs.heal()
            return None
        if self._busy():
            return "a failover or election is in progress"
        crash = kind == "failover"  # "election": a new term without a crash
        self._background(nursery, lambda: rs.failover(crash_old=crash))
        return None

    def _apply_to(self, step: Fault, i: int, nursery: trio.Nursery) -> str | None:
        rs, kind = self.rs, step.kind
        inst = rs.instances[i]
        if kind == "crash":
            if not inst.up:
                return "already down"
            rs.crash(i)
        elif kind == "restart":
            if inst.up:
                return "not down"
            rs.restart(i)
        elif kind == "pause":
            if not inst.up or inst.paused:
                return "down or paused"
            rs.pause(i)
        elif kind == "resume":
            if not inst.paused:
                return "not paused"
            rs.resume(i)
        elif kind == "partition":
            if i in rs.partitioned:
                return "already cut off"
            rs.partition(i)
        elif kind == "delay":
            delay = float(step.value or 0.0)
            rs.link(i).set(delay=delay)
            self.max_delay = max(self.max_delay, delay)
        elif self._busy():
            return "a failover or election is in progress"
        elif rs.election:  # switch or promote: box.ctl.promote() on i
            self._background(nursery, lambda: rs.promote(i))
        else:  # switch: demote every other instance, then make i writable
            if not inst.up or inst.paused:
                return "the target is down or paused"
            for j in range(len(rs)):
                if j != i:
                    rs.set_ro(j, True)
            rs.set_ro(i, False)
        return None

    def _background(self, nursery: trio.Nursery, elect: Callable[[], Awaitable[int | None]]) -> None:
        ended = trio.Event()
        self.background.append(ended)

        async def run() -> None:
            try:
                await elect()
            finally:
                ended.set()
                self.note()

        nursery.start_soon(run)

    async def heal(self) -> None:
        """Lift every fault and leave exactly one master (or leader), all instances running."""
        rs = self.rs
        for ended in self.background:
            await ended.wait()
        rs.heal()
        for i, inst in enumerate(rs.instances):
            if not inst.up:
                rs.restart(i)
            if inst.paused:
                rs.resume(i)
            if inst.status == "orphan":
                rs.set_status(i, "running")
        if rs.election:
            if rs.master is None:
                await rs.promote(0)
        else:
            masters = [i for i, inst in enumerate(rs.instances) if not inst.read_only]
            if len(masters) != 1:
                keep = rs.master if rs.master is not None else (masters[0] if masters else 0)
                for i in range(len(rs)):
                    rs.set_ro(i, i != keep)
            elif rs.master != masters[0]:
                rs.set_ro(masters[0], False)
        loading = [inst.started_at + inst.config.loading_time
                   for inst in rs.instances if inst.status == "loading"]
        # Bytes sent over a slow link before the heal keep its delay.
        await trio.sleep_until(max([trio.current_time() + 2 * self.max_delay, *loading]))
        self.faults.append((trio.current_time(), "healed: every fault lifted, one master"))
        self.note()
