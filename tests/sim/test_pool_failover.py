"""Hypothesis proofs of the real ConnectionPool's failover and routing on the simulator.

Each example is one scenario (:mod:`tests.sim._pool_harness`): a pool
configuration and up to 40 steps (requests in every mode and kind: select,
replace, and Lua calls/evals whose body has a side effect before its write,
plain or ``idempotent=True``; crashes, restarts, partitions, pauses, planned
switch-overs, failovers, time steps at the pool's own boundaries:
``refresh_delay``, ``socket_timeout`` and ``probe_timeout`` plus or minus
1 ms; and in about one scenario in five a ``close()`` or ``async with`` exit
at a drawn step, under in-flight requests), run in one ``sim.run`` with
``trio_tarantool.open_pool`` on a 3-instance simulated replicaset. The
invariants (listed in the harness docstring: routing, one outcome, at most
once for DML and for Lua bodies, nothing written after close, time bounds,
health) are checked after every step; then everything is healed and the
pool must converge on the truth (unless it was closed).

A failure prints the minimal scenario, the trace (virtual time | true roles |
the pool's view | event) and a replay command (``python -m tests.sim.soak
--replay '<json>'``); Hypothesis also prints its ``@reproduce_failure`` blob
(the "ci" and "dev" profiles set ``print_blob``).

Cost: ``POOL_SIM_EXAMPLES`` (environment) sets the number of examples of
the main property (the storm and switch-over properties run a quarter as
many each); otherwise 4x the profile's ``max_examples`` (ci: 240, dev: 400,
long: 8000). CI keeps the suite within its time budget; the big runs are the
soak's: ``python -m tests.sim.soak --examples 8000 --seed 1`` (docs/sim.md).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_tarantool as tt
from tests.sim._pool_harness import KINDS, POOL_IDEMPOTENT, PoolConfig, ScenarioResult, run_scenario
from tests.sim._pool_strategies import configs, scenario_steps
from trio_tarantool._strategy import RoundRobinStrategy

#: Examples of the main property; the other two run a quarter as many each.
_PROFILE = settings.default
EXAMPLES = int(os.environ.get("POOL_SIM_EXAMPLES") or 4 * (_PROFILE.max_examples if _PROFILE else 100))


def _ok(result: ScenarioResult) -> None:
    assert not result.violations, "\n" + result.report()


@pytest.mark.timeout(900)  # a failure is shrunk, then printed with its replay line
@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), steps=scenario_steps())
def test_pool_keeps_its_invariants_under_any_fault_sequence(config: PoolConfig, steps: list[tuple[object, ...]]) -> None:
    _ok(run_scenario(config, steps))


_STORM_KINDS = ("replace", "select", "call", "eval", "echo", "call_idem")


@pytest.mark.timeout(900)  # a failure is shrunk, then printed with its replay line
@settings(max_examples=max(1, EXAMPLES // 4), deadline=None)
@given(config=configs(), steps=scenario_steps(max_size=25),
       mode=st.sampled_from(["RW", "PREFER_RW", "PREFER_RO", "RO", "ANY"]))
def test_pool_keeps_its_invariants_under_a_request_storm(config: PoolConfig, steps: list[tuple[object, ...]],
                                                         mode: str) -> None:
    """The same, with a burst of concurrent requests of one mode between every two steps,
    so that round robin, retries and the one-outcome rule see real concurrency."""
    stormy: list[tuple[object, ...]] = []
    for i, step in enumerate(steps):
        stormy.append(step)
        stormy.append(("burst", mode, _STORM_KINDS[i % len(_STORM_KINDS)], 4))
    _ok(run_scenario(config, stormy))


@pytest.mark.timeout(900)  # a failure is shrunk, then printed with its replay line
@settings(max_examples=max(1, EXAMPLES // 4), deadline=None)
@given(config=configs(), target=st.integers(0, 2), before=st.integers(0, 6), after=st.integers(1, 6),
       gap=st.sampled_from(["0", "tiny", "small", "refresh-", "probe+"]))
def test_a_planned_switch_over_delays_rw_writes_but_fails_none(
        config: PoolConfig, target: int, before: int, after: int, gap: str) -> None:
    """Rule 3: with retries on, a planned switch-over (demote the master, promote
    another, no outage) makes RW writes wait for the new master, never fail."""
    config = dataclasses.replace(config, retry_not_executed=True, start_fault=None, loading_time=0.0,
                                 close_in_flight=False)
    _check_switch_over(config, _switch_steps(target, before, after, gap, "RW"))


def _switch_steps(target: int, before: int, after: int, gap: str, mode: str) -> list[tuple[object, ...]]:
    steps: list[tuple[object, ...]] = []
    for i in range(before + after):
        if i == before:
            steps.append(("switch", target))
        steps.append(("burst", mode, "replace", 3))
        steps.append(("advance", gap))
    return steps


def _check_switch_over(config: PoolConfig, steps: list[tuple[object, ...]]) -> None:
    result = run_scenario(config, steps)
    _ok(result)
    failed = [(mode, outcome) for mode, kind, outcome in result.records if outcome != "ok"]
    assert not failed, "\n" + "\n".join(map(str, failed)) + "\n" + result.report()


def test_a_planned_switch_over_does_not_fail_prefer_rw_or_any_writes() -> None:
    """Regression (found by this suite, fixed in 597c8d2): a PREFER_RW or ANY write
    refused as read-only by the demoted master used to be retried at once on a
    replica (which refused it too) instead of waiting for the new master."""
    for mode in ("PREFER_RW", "ANY"):
        _check_switch_over(PoolConfig(seed=0), _switch_steps(target=1, before=0, after=1, gap="0", mode=mode))


def test_close_fails_a_request_waiting_for_a_refresh_at_once() -> None:
    """Regression (found by this suite, fixed in 597c8d2): an RW request waiting in
    the refresh loop after losing the master's connection outlived close() by the
    whole request deadline (1.05 s) and then claimed it may have executed."""
    result = run_scenario(PoolConfig(seed=0, close_in_flight=True),
                          [("crash", 0), ("req", "RW", "replace"), ("advance", "small")])
    _ok(result)
    assert result.records[0][2].startswith("ConnectionClosedError(False)"), result.records[0]


def test_a_lua_call_refused_as_read_only_is_never_run_again() -> None:
    """Issue 8 item 3: a CALL/EVAL refused with ER_READONLY may have run part of its body
    (here: a counter bump before the write), so the pool must not re-send it; its error
    says it may have executed. Before the retry policy, ANY/PREFER_RO calls landing on a
    replica were retried and ran their body twice (B1, B2)."""
    steps: list[tuple[object, ...]] = [("burst", m, k, 6) for m in ("ANY", "PREFER_RO", "RO")
                                       for k in ("call", "eval")]
    result = run_scenario(PoolConfig(seed=7), steps)
    _ok(result)
    refused = [o for _, _, o in result.records if o != "ok"]
    assert refused and all(o.startswith("ServerError(True): (ER_READONLY)") for o in refused), refused


def test_an_idempotent_call_is_retried_on_the_master() -> None:
    """``idempotent=True`` lets the pool re-send a CALL/EVAL refused as read-only
    (ANY goes to the master, as a refused DML does); its body may then run twice,
    but the request succeeds once and ran to completion once (B1, B2)."""
    assert POOL_IDEMPOTENT, "ConnectionPool.call/eval take no idempotent= keyword (issue 8 item 3)"
    result = run_scenario(PoolConfig(seed=7), [("burst", "ANY", k, 6) for k in ("call_idem", "eval_idem")])
    _ok(result)
    assert all(o == "ok" for _, _, o in result.records), result.records
    assert any("body of" in line and "runs (ro=True)" in line for line in result.trace)


@pytest.mark.parametrize("how", ["close", "exit"])
def test_nothing_is_written_after_the_pool_closes(how: str) -> None:
    """C1/C2 at a chosen moment: requests written (executing on a slow link), dispatched and
    just issued when ``close()`` returns (or the ``async with`` exits); afterwards no
    request is written, each pending one ends at once, later ones fail at once."""
    steps: list[tuple[object, ...]] = [("burst", "ANY", "call", 3), ("advance", "tiny"), ("close", how),
                                       ("req", "RW", "replace"), ("advance", "refresh+"), ("advance", "refresh+")]
    result = run_scenario(PoolConfig(seed=3, link_delay=0.01), steps)
    _ok(result)
    outcomes = [o for _, _, o in result.records]
    assert any(o.startswith("ConnectionClosedError(True)") for o in outcomes), outcomes  # written ones
    assert any(o.startswith("ConnectionClosedError(False)") for o in outcomes), outcomes


# --- the harness itself: it must see what it claims to see ----------------------------------


def test_a_plain_scenario_routes_by_mode_and_spreads_evenly() -> None:
    """No faults: every mode lands where it must, round robin is exact, nothing fails."""
    steps: list[tuple[object, ...]] = [("burst", m, k, 6) for m in ("ANY", "RW", "RO", "PREFER_RW", "PREFER_RO")
                                       for k in KINDS]
    result = run_scenario(PoolConfig(seed=5), steps)
    _ok(result)
    # Only writes that may land on a replica fail, refused with ER_READONLY (the RO ones
    # always). A refused DML surely did not run; a refused Lua body may have run.
    for mode, kind, outcome in result.records:
        refused = f"ServerError({kind != 'replace'}): (ER_READONLY)"
        if kind in ("select", "echo") or mode in ("RW", "PREFER_RW"):
            assert outcome == "ok", (mode, kind, outcome)
        elif kind.endswith("_idem") and mode == "ANY":  # retried on the master, as a DML is
            assert outcome == "ok", (mode, kind, outcome)
        elif kind.endswith("_idem"):  # RO/PREFER_RO: the policy may retry on another replica
            assert outcome.startswith("ServerError(True): (ER_READONLY)"), (mode, kind, outcome)
        elif mode in ("RO", "PREFER_RO"):
            assert outcome.startswith(refused), (mode, kind, outcome)
        else:
            assert outcome == "ok" or outcome.startswith(refused), (mode, kind, outcome)
    picks = [line for line in result.trace if " pick #" in line]
    assert picks and all("PoolTopologyError" not in p for p in picks)
    assert all(p.endswith("-> tt1") for p in picks if " RW " in p or " PREFER_RW " in p)
    assert not any(p.endswith("-> tt1") for p in picks if " RO " in p or " PREFER_RO " in p)


def test_the_checker_catches_a_strategy_that_breaks_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately broken strategy (RW to any healthy instance) is reported, with a trace."""
    original = RoundRobinStrategy.getnext

    def broken(self: RoundRobinStrategy[tt.PoolUnit], mode: tt.Mode) -> tt.PoolUnit:
        unit: tt.PoolUnit = original(self, tt.Mode.ANY if mode == tt.Mode.RW else mode)
        return unit

    monkeypatch.setattr(RoundRobinStrategy, "getnext", broken)
    result = run_scenario(PoolConfig(seed=1), [("burst", "RW", "call", 3)])
    assert any("RW call sent to tt2" in v for v in result.violations), result.violations
    report = result.report()
    assert "VIOLATION" in report and "--replay '" in report and "| rw ro ro |" in report


def test_the_checker_catches_a_lost_outcome_and_a_double_execution() -> None:
    """The execution oracle counts what instances really ran (a write executed twice is caught)."""
    from tests.sim import _pool_harness as h

    run = h.ScenarioRun(PoolConfig(), [])
    req = h.Req(1000, tt.Mode.RW, "replace", 0.0)
    run.requests[1000] = req
    req.picks.append(h.Pick(0.0, tt.Mode.RW, 0, (), 1000))
    req.executions += [h.Execution(0, 0.0, True, False, "ok"), h.Execution(1, 0.1, True, False, "ok")]
    req.end, req.error = 0.1, None

    async def check() -> None:
        run.check(final=True)

    import trio

    trio.run(check)
    text = "\n".join(run.violations)
    assert "executed 2 times" in text
    assert "reached tt2, never chosen for it" in text
    assert "succeeded but executed 2 times" in text


def test_the_checker_catches_a_pool_that_never_sees_an_instance_die(monkeypatch: pytest.MonkeyPatch) -> None:
    """U1/L2 fire for a pool whose health tracking is broken (states never turn UNHEALTHY).

    The break is made on ``PoolUnit.state`` itself (whatever code of the pool sets it).
    """
    from trio_tarantool._strategy import InstanceState, Status

    def get(unit: tt.PoolUnit) -> InstanceState:
        state: InstanceState = unit.__dict__["_sticky_state"]
        return state

    def put(unit: tt.PoolUnit, state: InstanceState) -> None:
        old = unit.__dict__.get("_sticky_state")
        if old is not None and state.status == Status.UNHEALTHY and old.status == Status.HEALTHY:
            return
        unit.__dict__["_sticky_state"] = state

    monkeypatch.setattr(tt.PoolUnit, "state", property(get, put), raising=False)
    result = run_scenario(PoolConfig(seed=2), [("pause", 1), ("advance", "window+"), ("advance", "small"),
                                               ("req", "ANY", "call")])
    assert any(v.split(": ", 1)[1].startswith("U1: tt2 is paused") for v in result.violations), result.violations


def test_the_checker_catches_a_lua_body_run_twice_or_denied() -> None:
    """B1-B3 read the body runs: twice for a plain call, and a run behind a "not executed" error."""
    from tests.sim import _pool_harness as h

    run = h.ScenarioRun(PoolConfig(), [])
    twice = h.Req(1000, tt.Mode.ANY, "call", 0.0)
    denied = h.Req(1001, tt.Mode.RO, "eval", 0.0)
    for req in (twice, denied):
        run.requests[req.id] = req
    twice.picks += [h.Pick(0.0, tt.Mode.ANY, 1, (), 1000), h.Pick(0.0, tt.Mode.RW, 0, (), 1000)]
    twice.body_runs += [h.BodyRun(1, 0.0, "error 7"), h.BodyRun(0, 0.0, "ok")]
    twice.executions += [h.Execution(1, 0.0, True, True, "error 7"), h.Execution(0, 0.0, True, False, "ok")]
    twice.end = 0.0
    denied.picks.append(h.Pick(0.0, tt.Mode.RO, 2, (), 1001))
    denied.body_runs.append(h.BodyRun(2, 0.0, "error 7"))
    denied.executions.append(h.Execution(2, 0.0, True, True, "error 7"))
    denied.end, denied.error = 0.0, tt.DatabaseError(7, "read-only")  # says may_have_executed=False

    async def check() -> None:
        run.check(final=True)

    import trio

    trio.run(check)
    text = "\n".join(run.violations)
    assert "B1: the body of #1000 ANY call (not sent as idempotent) ran 2 times" in text
    assert "B2: #1000 ANY call succeeded but its body ran 2 times" in text
    assert "B3: #1001 RO eval failed saying it was not executed" in text


def test_the_checker_catches_a_pool_that_writes_after_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """C1/C2 fire for a pool whose close() forgets to stop anything (its probes keep writing)."""
    from trio_tarantool._pool import ConnectionPool

    original = ConnectionPool.close
    calls: list[int] = []

    def forgetful(self: ConnectionPool) -> None:
        calls.append(1)
        if len(calls) > 1:  # the async with exit closes for real, so the scenario ends
            original(self)

    monkeypatch.setattr(ConnectionPool, "close", forgetful)
    result = run_scenario(PoolConfig(seed=4), [("close", "close"), ("advance", "refresh+"),
                                               ("advance", "refresh+")])
    assert any(v.split(": ", 1)[1].startswith("C2: ") for v in result.violations), result.violations
    assert any("C1: a request after close() ended with" in v for v in result.violations), result.violations
