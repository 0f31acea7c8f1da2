"""Hypothesis proofs of the real ConnectionPool's failover and routing on the simulator.

Each example is one scenario (:mod:`tests.sim._pool_harness`): a pool
configuration and up to 40 steps (requests in every mode and kind, crashes,
restarts, partitions, pauses, planned switch-overs, failovers, and time steps
at the pool's own boundaries: ``refresh_delay``, ``socket_timeout`` and
``probe_timeout`` plus or minus 1 ms), run in one ``sim.run`` with
``trio_tarantool.open_pool`` on a 3-instance simulated replicaset. The
invariants (listed in the harness docstring) are checked after every step,
then everything is healed and the pool must converge on the truth.

A failure prints the minimal scenario, the trace (virtual time | true roles |
the pool's view | event) and a replay command (``python -m tests.sim.soak
--replay '<json>'``); Hypothesis also prints its ``@reproduce_failure`` blob
(the "ci" and "dev" profiles set ``print_blob``).

Cost: ``POOL_SIM_EXAMPLES`` (environment) sets the number of examples of
the main property (the storm and switch-over properties run a third as
many); otherwise 8x the profile's ``max_examples`` (ci: 480, dev: 800,
long: 16000). More: ``python -m tests.sim.soak --examples 5000 --seed 1``.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_tarantool as tt
from tests.sim._pool_harness import PoolConfig, ScenarioResult, run_scenario
from tests.sim._pool_strategies import configs, scenario_steps
from trio_tarantool._strategy import RoundRobinStrategy

#: Examples of the main property; the other two run a third as many each.
_PROFILE = settings.default
EXAMPLES = int(os.environ.get("POOL_SIM_EXAMPLES") or 8 * (_PROFILE.max_examples if _PROFILE else 100))


def _ok(result: ScenarioResult) -> None:
    assert not result.violations, "\n" + result.report()


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), steps=scenario_steps())
def test_pool_keeps_its_invariants_under_any_fault_sequence(config: PoolConfig, steps: list[tuple[object, ...]]) -> None:
    _ok(run_scenario(config, steps))


@settings(max_examples=max(1, EXAMPLES // 3), deadline=None)
@given(config=configs(), steps=scenario_steps(max_size=25),
       mode=st.sampled_from(["RW", "PREFER_RW", "PREFER_RO", "RO", "ANY"]))
def test_pool_keeps_its_invariants_under_a_request_storm(config: PoolConfig, steps: list[tuple[object, ...]],
                                                         mode: str) -> None:
    """The same, with a burst of concurrent requests of one mode between every two steps,
    so that round robin, retries and the one-outcome rule see real concurrency."""
    stormy: list[tuple[object, ...]] = []
    for i, step in enumerate(steps):
        stormy.append(step)
        stormy.append(("burst", mode, ("replace", "select", "call")[i % 3], 4))
    _ok(run_scenario(config, stormy))


@settings(max_examples=max(1, EXAMPLES // 3), deadline=None)
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


# --- the harness itself: it must see what it claims to see ----------------------------------


def test_a_plain_scenario_routes_by_mode_and_spreads_evenly() -> None:
    """No faults: every mode lands where it must, round robin is exact, nothing fails."""
    steps: list[tuple[object, ...]] = [("burst", m, k, 6) for m in ("ANY", "RW", "RO", "PREFER_RW", "PREFER_RO")
                                       for k in ("select", "replace", "call")]
    result = run_scenario(PoolConfig(seed=5), steps)
    _ok(result)
    # Only writes that may land on a replica fail, refused with ER_READONLY (the RO ones always).
    for mode, kind, outcome in result.records:
        if kind != "replace" or mode in ("RW", "PREFER_RW"):
            assert outcome == "ok", (mode, kind, outcome)
        elif mode in ("RO", "PREFER_RO"):
            assert outcome.startswith("DatabaseError(False): (ER_READONLY)"), (mode, kind, outcome)
        else:
            assert outcome == "ok" or outcome.startswith("DatabaseError(False): (ER_READONLY)")
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
    """U1/L2 fire for a pool whose health tracking is broken (states never turn UNHEALTHY)."""
    from trio_tarantool._pool import ConnectionPool
    from trio_tarantool._strategy import InstanceState, Status

    original = ConnectionPool._set_state

    def sticky(self: ConnectionPool, unit: tt.PoolUnit, state: InstanceState) -> None:
        if state.status == Status.UNHEALTHY and unit.state.status == Status.HEALTHY:
            return
        original(self, unit, state)

    monkeypatch.setattr(ConnectionPool, "_set_state", sticky)
    result = run_scenario(PoolConfig(seed=2), [("pause", 1), ("advance", "window+"), ("advance", "small"),
                                               ("req", "ANY", "call")])
    assert any(v.split(": ", 1)[1].startswith("U1: tt2 is paused") for v in result.violations), result.violations
