"""The failover kit (``trio_tarantool.testing``): its own tests, and the pool proved through it.

* Schedules: the replay text round-trips, bad steps are refused with their
  field named, the strategy stays within its bounds and shrinks to the
  simplest schedule.
* Dogfood: the real ``open_pool`` under drawn fault schedules (2.6 and 3.8
  with elections), through a small but honest app (unique writes, a
  non-idempotent Lua call, reads in RW and RO), must pass every checker: at
  most once (the pool's B1-B3/O2 rules seen from an app), no acknowledged
  write lost, modes served by the right instances (R1 on the ground truth),
  liveness after healing (L2). And the planned switch-over property of
  ``test_pool_failover.py`` (rule 3: RW writes wait for the new master,
  none fails), re-expressed as a schedule of switches.
* Checker self-tests: each checker fails on a broken app or history (an app
  that retries a non-idempotent update blindly; a pool strategy that ignores
  the mode; a row lost from the final data; an app that stops after its
  first error), each with its control passing.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from typing import Any

import pytest
import trio
from hypothesis import find, given, settings
from hypothesis import strategies as st

import trio_tarantool as tt
from trio_tarantool import Mode, testing
from trio_tarantool.testing import Fault, History, Schedule, fault_schedules, run_schedule

# --- a small, careful app ------------------------------------------------------------------


def schema(rs: Any) -> None:
    """``kv`` (id, value) everywhere, and ``bump(id)``: a Lua-like function that writes."""
    rs.create_space("kv", [("id", "unsigned"), ("v", "string")],
                    indexes=[("primary", [("id", "unsigned")], True)])

    def bump(ctx: Any, key: int) -> list[Any]:
        space = ctx.instance.db.space_by_name("kv").id
        ctx.instance.replace(space, [key, "bumped"])  # ER_READONLY on a replica, after running
        return [key]

    rs.register_function("bump", bump)


async def careful_app(addrs: list[dict[str, Any]], recorder: testing.Recorder) -> None:
    """Writes unique rows, bumps, updates and reads; retries only what surely did not run."""
    async with recorder.pool(addrs, socket_timeout=0.5, refresh_delay=0.2) as pool:

        async def retry_unexecuted(fn: Any, *args: Any, **kwargs: Any) -> bool:
            """Send until it succeeds or fails saying it may have run (then give up)."""
            while True:
                try:
                    await fn(*args, **kwargs)
                    return True
                except tt.DatabaseError as exc:
                    if exc.may_have_executed:
                        return False
                    await trio.sleep(0.1)

        async def writer() -> None:
            for key in itertools.count(1, 3):
                if await retry_unexecuted(pool.insert, "kv", [key, f"w{key}"]):
                    await retry_unexecuted(pool.update, "kv", key, [["=", 1, f"u{key}"]])
                await retry_unexecuted(pool.call, "bump", key + 1, mode=Mode.RW)
                await trio.sleep(0.15)

        async def reader() -> None:
            for key in itertools.count(1, 3):
                for mode in (Mode.RO, Mode.RW, Mode.PREFER_RO):
                    try:
                        await pool.select("kv", key, mode=mode)
                    except tt.Error:
                        await trio.sleep(0.1)
                await trio.sleep(0.15)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            nursery.start_soon(reader)


def check_all(history: History) -> None:
    testing.check_at_most_once(history)
    testing.check_no_lost_acknowledged_writes(history)
    testing.check_reads_served_by_mode(history)
    testing.check_liveness_after_healing(history)


# --- schedules ---------------------------------------------------------------------------------


def test_loading_the_plugin_imports_neither_hypothesis_nor_the_simulator() -> None:
    """The kit's names are imported on first use: the opt-in plugin stays light."""
    code = ("import sys, trio_tarantool.testing as t; "
            "assert 'hypothesis' not in sys.modules and 'trio_tarantool.sim' not in sys.modules, 1; "
            "s = t.Schedule.parse('+1 crash(0)'); "
            "assert 'hypothesis' not in sys.modules, 2; "
            "t.fault_schedules(); assert 'hypothesis' in sys.modules, 3; "
            "assert t.run_schedule.__module__ == 'trio_tarantool.testing', 4")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_schedule_round_trips_through_its_replay_text() -> None:
    schedule = Schedule((Fault(0.5, "crash", 0), Fault(0.0, "failover"), Fault(1.0, "delay", 2, 0.6),
                         Fault(0.2, "heal"), Fault(2.0, "promote", 1)))
    text = str(schedule)
    assert text == "+0.5 crash(0); +0.0 failover; +1.0 delay(2, 0.6); +0.2 heal; +2.0 promote(1)"
    assert Schedule.parse(text) == schedule
    assert eval(repr(schedule), {"Schedule": Schedule}) == schedule
    assert Schedule.parse("") == Schedule() and schedule.duration == pytest.approx(3.7)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Fault(0, "explode", 0), "Fault.kind: 'explode'"),
    (lambda: Fault(-1, "crash", 0), "Fault.after: -1"),
    (lambda: Fault(0, "crash"), "needs a target instance index"),
    (lambda: Fault(0, "heal", 1), "needs no target"),
    (lambda: Fault(0, "delay", 1), "value= is for 'delay'"),
    (lambda: Schedule.parse("crash 0"), "step 0 'crash 0'"),
    (lambda: fault_schedules(kinds=["promote"]), "kind 'promote' needs election=True"),
    (lambda: fault_schedules(n=0), "n=0"),
])
def test_bad_steps_and_options_are_refused_naming_what(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_run_schedule_refuses_a_step_its_world_cannot_play() -> None:
    with pytest.raises(ValueError, match=r"targets instance 3, but n=3"):
        run_schedule(Schedule.parse("+0 crash(3)"), careful_app)
    with pytest.raises(ValueError, match=r"needs election=True"):
        run_schedule(Schedule.parse("+0 election"), careful_app)
    with pytest.raises(ValueError, match=r"election=True needs a 3.x version"):
        run_schedule(Schedule(), careful_app, election=True)


@settings(max_examples=50, deadline=None)
@given(schedule=fault_schedules(n=2, max_steps=4))
def test_drawn_schedules_stay_within_their_bounds(schedule: Schedule) -> None:
    assert len(schedule) <= 4
    for step in schedule.steps:
        assert step.kind not in ("promote", "election")
        assert step.target is None or 0 <= step.target < 2
        assert step.after in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0)
    assert Schedule.parse(str(schedule)) == schedule


def test_schedules_shrink_to_the_simplest_failure() -> None:
    """Fewer steps, no wait, instance 0, the first kinds: what a failing example prints."""
    found = find(fault_schedules(election=True), lambda s: any(f.kind == "failover" for f in s.steps),
                 settings=settings(database=None, max_examples=500))
    assert str(found) == "+0.0 failover"
    found = find(fault_schedules(), lambda s: len({f.target for f in s.steps if f.kind == "crash"}) >= 2,
                 settings=settings(database=None, max_examples=500))
    assert str(found) == "+0.0 crash(0); +0.0 crash(1)"


# --- dogfood: the pool through the kit ------------------------------------------------------


@pytest.mark.timeout(300)
@settings(max_examples=40, deadline=None)
@given(schedule=fault_schedules(), seed=st.integers(0, 2**16))
def test_the_pool_survives_any_fault_schedule(schedule: Schedule, seed: int) -> None:
    check_all(run_schedule(schedule, careful_app, seed=seed, setup=schema, liveness=4.0))


@pytest.mark.timeout(300)
@settings(max_examples=12, deadline=None)
@given(schedule=fault_schedules(election=True, max_steps=5), seed=st.integers(0, 2**16))
def test_the_pool_survives_any_election_schedule(schedule: Schedule, seed: int) -> None:
    check_all(run_schedule(schedule, careful_app, seed=seed, setup=schema, version=(3, 8),
                           election=True, liveness=4.0))


async def rw_writer(addrs: list[dict[str, Any]], recorder: testing.Recorder) -> None:
    """Three RW writes every 50 ms; each failure is left for the test to see."""
    async with recorder.pool(addrs, socket_timeout=0.5, refresh_delay=0.2) as pool:
        for key in itertools.count(1, 3):
            async with trio.open_nursery() as nursery:
                for k in range(key, key + 3):
                    nursery.start_soon(_try_replace, pool, k)
            await trio.sleep(0.05)


async def _try_replace(pool: Any, key: int) -> None:
    try:
        await pool.replace("kv", [key, "x"], mode=Mode.RW)
    except tt.Error:
        pass


@pytest.mark.timeout(300)
@settings(max_examples=5, deadline=None)
@given(schedule=fault_schedules(kinds=["switch"], max_steps=4, gaps=[0.0, 0.05, 0.5]),
       seed=st.integers(0, 2**16))
def test_planned_switch_overs_delay_rw_writes_but_fail_none(schedule: Schedule, seed: int) -> None:
    """Rule 3 (test_pool_failover's switch-over property) through the kit: with retries
    on, planned switch-overs make RW writes wait for the new master, never fail."""
    history = run_schedule(schedule, rw_writer, seed=seed, setup=schema, liveness=3.0)
    check_all(history)
    failed = [r for r in history.requests if not r.ok and not r.cancelled]
    assert not failed, "\n" + history.report(failed)


# --- the checkers catch what they are for --------------------------------------------------

#: Every request written to instance 0 arrives 2 s later: socket_timeout (0.5 s)
#: fires first, yet the request runs when it arrives.
SLOW_MASTER = Schedule.parse("+0.4 delay(0, 2.0)")


def _bumping_app(blind: bool) -> Any:
    """Bumps counter n = 1, 2, ... (a call that writes); on an error it retries bump(n)
    blindly, or (the control) only when the error says it surely did not run."""
    async def app(addrs: list[dict[str, Any]], recorder: testing.Recorder) -> None:
        async with recorder.pool(addrs, socket_timeout=0.5, refresh_delay=0.2) as pool:
            for n in itertools.count(1):
                while True:
                    try:
                        await pool.call("bump", n, mode=Mode.RW)
                        break
                    except tt.DatabaseError as exc:
                        if not blind and exc.may_have_executed:
                            break  # it may have run: running it again could count it twice
                        await trio.sleep(0.05)
                await trio.sleep(0.3)
    return app


def test_check_at_most_once_catches_an_app_that_retries_blindly() -> None:
    history = run_schedule(SLOW_MASTER, _bumping_app(blind=True), seed=1, setup=schema, liveness=2.0)
    with pytest.raises(AssertionError, match=r"took effect \d+ times") as info:
        testing.check_at_most_once(history)
    assert "replay: run_schedule(Schedule.parse('+0.4 delay(0, 2.0)')" in str(info.value)
    # Control: the same app, not retrying what may have run, passes.
    testing.check_at_most_once(run_schedule(SLOW_MASTER, _bumping_app(blind=False), seed=1,
                                            setup=schema, liveness=2.0))


def test_check_at_most_once_catches_a_false_not_executed() -> None:
    history = run_schedule(Schedule(), careful_app, seed=2, setup=schema, liveness=1.0)
    testing.check_at_most_once(history)  # control
    ran = next(r for r in history.requests if r.method == "insert" and r.executions)
    ran.error = tt.NetworkError("made up for the test", may_have_executed=False)
    with pytest.raises(AssertionError, match=rf"#{ran.id} insert failed with may_have_executed=False"):
        testing.check_at_most_once(history)


class IgnoresMode(tt.RoundRobinStrategy[Any]):
    """A broken balancer: every request goes round robin over all healthy instances."""

    def getnext(self, mode: Mode) -> Any:
        return super().getnext(Mode.ANY)


def _reader(strategy: Any) -> Any:
    async def app(addrs: list[dict[str, Any]], recorder: testing.Recorder) -> None:
        async with recorder.pool(addrs, refresh_delay=0.2, strategy_class=strategy) as pool:
            for key in itertools.count():
                await pool.select("kv", key, mode=Mode.RO)
                await pool.select("kv", key, mode=Mode.RW)
                await trio.sleep(0.1)
    return app


def test_check_reads_served_by_mode_catches_a_reader_that_ignores_the_mode() -> None:
    history = run_schedule(Schedule(), _reader(IgnoresMode), seed=3, setup=schema, liveness=1.0)
    with pytest.raises(AssertionError, match=r"in mode (RO ran on tt1|RW ran on tt[23])"):
        testing.check_reads_served_by_mode(history)
    control = run_schedule(Schedule(), _reader(tt.RoundRobinStrategy), seed=3, setup=schema, liveness=1.0)
    testing.check_reads_served_by_mode(control)


def test_check_no_lost_acknowledged_writes_catches_a_lost_row() -> None:
    history = run_schedule(Schedule.parse("+0.5 failover"), careful_app, seed=4, setup=schema, liveness=2.0)
    testing.check_no_lost_acknowledged_writes(history)  # control
    acked = next(r for r in history.requests if r.method == "insert" and r.ok)
    assert acked.key is not None
    final = {space: dict(rows) for space, rows in history.final.items()}
    del final["kv"][acked.key]
    broken = dataclasses.replace(history, final=final)
    with pytest.raises(AssertionError, match=rf"kv key \({acked.key[0]},\): the final row is \(none\)"):
        testing.check_no_lost_acknowledged_writes(broken)
    # A write acknowledged that no instance ran (a pool inventing success) is caught too.
    acked.executions.clear()
    with pytest.raises(AssertionError, match=rf"#{acked.id} insert was acknowledged but no instance"):
        testing.check_no_lost_acknowledged_writes(history)


def _quitter(give_up: bool) -> Any:
    """Writes every 100 ms; with ``give_up`` it stops at its first error."""
    async def app(addrs: list[dict[str, Any]], recorder: testing.Recorder) -> None:
        async with recorder.pool(addrs, socket_timeout=0.5, refresh_delay=0.2) as pool:
            for key in itertools.count():
                try:
                    await pool.replace("kv", [key, "q"])
                except tt.Error:
                    if give_up:
                        return
                await trio.sleep(0.1)
    return app


def test_check_liveness_catches_an_app_that_stops_working() -> None:
    schedule = Schedule.parse("+0.3 crash(0); +1.0 failover")
    history = run_schedule(schedule, _quitter(give_up=True), seed=5, setup=schema, liveness=3.0)
    with pytest.raises(AssertionError, match=r"no request started .* after healing .* and succeeded"):
        testing.check_liveness_after_healing(history)
    control = run_schedule(schedule, _quitter(give_up=False), seed=5, setup=schema, liveness=3.0)
    testing.check_liveness_after_healing(control)


def test_an_app_that_raises_fails_the_run_with_its_replay_line() -> None:
    async def app(addrs: list[dict[str, Any]], recorder: testing.Recorder) -> None:
        async with recorder.pool(addrs, socket_timeout=0.5) as pool:
            await trio.sleep(1)
            await pool.replace("kv", [1, "x"])  # the master is down: PoolTopologyError

    with pytest.raises(AssertionError, match=r"the app raised .*\nreplay: run_schedule\("
                                             r"Schedule.parse\('\+0.5 crash\(0\)'\)"):
        run_schedule(Schedule.parse("+0.5 crash(0)"), app, seed=0, setup=schema)


def test_the_same_schedule_and_seed_give_the_same_history() -> None:
    schedule = Schedule.parse("+0.3 pause(1); +0.5 failover; +0.2 partition(2); +1.0 resume(1)")

    def summary(h: History) -> list[tuple[Any, ...]]:
        return [(r.method, r.mode, r.args, r.start, r.end, r.outcome,
                 [(e.name, e.time, e.executed) for e in r.executions]) for r in h.requests]

    first = run_schedule(schedule, careful_app, seed=6, setup=schema, liveness=1.0)
    second = run_schedule(schedule, careful_app, seed=6, setup=schema, liveness=1.0)
    assert summary(first) == summary(second) and first.final == second.final
    assert len(first.requests) > 20 and first.faults == second.faults
