"""Tests of the learning strategies (``trio_tarantool._balance``): no I/O, no trio.

Each strategy must route by mode exactly as round robin does (same candidates,
same refusals and messages); they differ only in which candidate they pick.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from trio_tarantool._balance import (
    BreakerState,
    CircuitBreaker,
    HedgePolicy,
    LatencyAwareStrategy,
    LeastOutstandingStrategy,
    pick_avoiding,
)
from trio_tarantool._errors import ConfigurationError, PoolTopologyError
from trio_tarantool._strategy import (
    InstanceState,
    Mode,
    RoundRobinStrategy,
    Status,
    StrategyInterface,
)


@dataclass
class Unit:
    """A stand-in for PoolUnit: a name, a mutable state, requests in flight."""

    name: str
    state: InstanceState = field(default_factory=InstanceState)
    in_flight: int = 0


def healthy(read_only: bool | None) -> InstanceState:
    return InstanceState(Status.HEALTHY, read_only)


def replicaset(n_ro: int = 2) -> list[Unit]:
    return [Unit("m", healthy(False))] + [Unit(f"r{k}", healthy(True)) for k in range(n_ro)]


Factory = Callable[[Sequence[Unit]], StrategyInterface[Unit]]

FACTORIES: dict[str, Factory] = {
    "least_outstanding": LeastOutstandingStrategy,
    "latency_aware": LatencyAwareStrategy,
    "latency_aware_seed7": functools.partial(LatencyAwareStrategy, seed=7),
    "breaker_round_robin": functools.partial(CircuitBreaker, failures=2, backoff=1.0),
    "breaker_least_outstanding": functools.partial(CircuitBreaker, inner=LeastOutstandingStrategy,
                                                   failures=1, backoff=0.5),
    "breaker_latency_aware": functools.partial(CircuitBreaker, inner=LatencyAwareStrategy, failures=3),
}


class FittingMachine(RuleBasedStateMachine):
    """Health/role/load changes and feedback interleaved with requests in every mode.

    A round robin strategy over the same units is the oracle of what fits: the
    strategy under test must refuse exactly when it does (with its message)
    and otherwise return a unit of the list round robin would rotate over.
    """

    def __init__(self) -> None:
        super().__init__()
        self.units: list[Unit] = []
        self.now = 0.0
        self.strategy: StrategyInterface[Unit] | None = None
        self.oracle: RoundRobinStrategy[Unit] = RoundRobinStrategy(self.units)

    @initialize(n=st.integers(min_value=1, max_value=5), name=st.sampled_from(sorted(FACTORIES)))
    def create(self, n: int, name: str) -> None:
        self.units.extend(Unit(f"i{k}") for k in range(n))
        self.strategy = FACTORIES[name](self.units)

    def _changed(self) -> None:
        assert self.strategy is not None
        self.strategy.update()
        self.oracle.update()

    @rule(data=st.data())
    def set_state(self, data: st.DataObject) -> None:
        unit = data.draw(st.sampled_from(self.units))
        status = data.draw(st.sampled_from(Status))
        read_only = data.draw(st.sampled_from([True, False, None]))
        unit.state = InstanceState(status, read_only)
        self._changed()

    @rule(data=st.data(), load=st.integers(min_value=0, max_value=5))
    def set_load(self, data: st.DataObject, load: int) -> None:
        data.draw(st.sampled_from(self.units)).in_flight = load

    @rule(data=st.data(), rtt=st.floats(min_value=0, max_value=2), ok=st.sampled_from([True, False, None]),
          step=st.sampled_from([0.0, 0.001, 0.5, 1.0, 5.0]))
    def feedback(self, data: st.DataObject, rtt: float, ok: bool | None, step: float) -> None:
        self.now += step
        on_result = getattr(self.strategy, "on_result", None)
        if on_result is not None:
            on_result(data.draw(st.sampled_from(self.units)), rtt, ok, self.now)

    @rule(mode=st.sampled_from(Mode), count=st.integers(min_value=1, max_value=8))
    def request(self, mode: Mode, count: int) -> None:
        assert self.strategy is not None
        for _ in range(count):
            try:
                allowed = {u.name for u in self._oracle_list(mode)}
            except PoolTopologyError as refused:
                with pytest.raises(PoolTopologyError) as info:
                    self.strategy.getnext(mode)
                assert str(info.value) == str(refused)
                return
            chosen = self.strategy.getnext(mode)
            assert chosen.name in allowed, (mode, chosen, allowed)
            state = chosen.state
            assert state.status == Status.HEALTHY
            if mode == Mode.RW:
                assert state.read_only is False, "RW to an instance not known rw"
            elif mode == Mode.RO:
                assert state.read_only is not False, "RO to a known rw instance"

    def _oracle_list(self, mode: Mode) -> list[Unit]:
        """The units round robin would rotate over for ``mode`` (raises as it does)."""
        self.oracle.build()
        self.oracle.getnext(mode)  # raises PoolTopologyError exactly when nothing fits
        lists = self.oracle._lists
        if mode == Mode.ANY:
            return lists["any"]
        if mode in (Mode.RW, Mode.RO):
            return lists[mode.name.lower()]
        first, second = ("rw", "ro") if mode == Mode.PREFER_RW else ("ro", "rw")
        return lists[first] or lists[second]


FittingMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestFittingMachine = FittingMachine.TestCase


# -- least outstanding ---------------------------------------------------------------------------
@given(loads=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=6),
       mode=st.sampled_from([Mode.ANY, Mode.RO, Mode.PREFER_RO]), rounds=st.integers(1, 20))
def test_least_outstanding_picks_a_minimum(loads: list[int], mode: Mode, rounds: int) -> None:
    units = [Unit(f"i{k}", healthy(True), load) for k, load in enumerate(loads)]
    strategy = LeastOutstandingStrategy(units)
    for _ in range(rounds):
        chosen = strategy.getnext(mode)
        assert chosen.in_flight == min(u.in_flight for u in units)
        chosen.in_flight += 1  # the pool counts it in flight


def test_least_outstanding_is_round_robin_when_idle() -> None:
    units = replicaset(3)
    assert [LeastOutstandingStrategy(units).getnext(Mode.ANY).name for _ in range(1)] == ["m"]
    lo, rr = LeastOutstandingStrategy(units), RoundRobinStrategy(units)
    for mode in [Mode.ANY] * 5 + [Mode.RO] * 4 + [Mode.PREFER_RO] * 3 + [Mode.RW] * 2:
        assert lo.getnext(mode).name == rr.getnext(mode).name


def test_least_outstanding_ties_rotate() -> None:
    units = replicaset(3)
    units[1].in_flight = 5  # r0 busy: the others share the load in turn
    strategy = LeastOutstandingStrategy(units)
    assert [strategy.getnext(Mode.RO).name for _ in range(4)] == ["r1", "r2", "r1", "r2"]


# -- latency aware -------------------------------------------------------------------------------
def _run_latency(seed: int, rtts: dict[str, float], requests: int) -> list[str]:
    units = replicaset(3)
    strategy = LatencyAwareStrategy(units, seed=seed)
    now, chosen = 0.0, []
    for _ in range(requests):
        unit = strategy.getnext(Mode.RO)
        now += 0.001
        strategy.on_result(unit, rtts[unit.name], True, now)
        chosen.append(unit.name)
    return chosen


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_latency_aware_is_deterministic_given_a_seed(seed: int) -> None:
    rtts = {"m": 0.001, "r0": 0.001, "r1": 0.050, "r2": 0.002}
    assert _run_latency(seed, rtts, 60) == _run_latency(seed, rtts, 60)


def test_latency_aware_seeds_differ() -> None:
    rtts = {"m": 0.001, "r0": 0.001, "r1": 0.001, "r2": 0.001}
    assert len({tuple(_run_latency(seed, rtts, 30)) for seed in range(5)}) > 1


@given(seed=st.integers(min_value=0, max_value=1000))
def test_latency_aware_avoids_the_slow_instance(seed: int) -> None:
    rtts = {"m": 0.001, "r0": 0.001, "r1": 0.100, "r2": 0.001}
    counts = Counter(_run_latency(seed, rtts, 300))
    # Measured once (never measured costs 0), then it loses every comparison
    # until its estimate fades (half_life=10 s; the run lasts 0.3 s).
    assert counts["r1"] <= 2, counts
    assert counts["r0"] > 50 and counts["r2"] > 50, counts


def test_latency_aware_tries_a_faded_instance_again() -> None:
    units = replicaset(2)
    strategy = LatencyAwareStrategy(units, half_life=1.0)
    strategy.on_result(units[1], 0.100, True, 0.0)
    strategy.on_result(units[2], 0.001, True, 0.0)
    assert strategy.getnext(Mode.RO) is units[2]
    assert strategy.estimate(units[1]) == pytest.approx(0.100)
    strategy.on_result(units[2], 0.001, True, 10.0)  # 10 half-lives later
    assert strategy.estimate(units[1]) < 0.001
    assert strategy.getnext(Mode.RO) is units[1]


def test_latency_aware_failures_and_abandoned_attempts() -> None:
    units = replicaset(1)
    strategy = LatencyAwareStrategy(units, failure_rtt=0.5, alpha=1.0)
    strategy.on_result(units[1], 0.001, False, 0.0)  # a quick RST still counts as slow
    assert strategy.estimate(units[1]) == pytest.approx(0.5)
    strategy.on_result(units[1], 0.01, None, 0.0)  # abandoned early: nothing learned
    assert strategy.estimate(units[1]) == pytest.approx(0.5)
    strategy.on_result(units[1], 2.0, None, 0.0)  # abandoned after 2 s: at least that slow
    assert strategy.estimate(units[1]) == pytest.approx(2.0)


def test_latency_aware_counts_load() -> None:
    units = replicaset(2)
    strategy = LatencyAwareStrategy(units)
    strategy.on_result(units[1], 0.001, True, 0.0)
    strategy.on_result(units[2], 0.002, True, 0.0)
    units[1].in_flight = 3  # 0.001 x 4 > 0.002 x 1
    assert {strategy.getnext(Mode.RO).name for _ in range(10)} == {"r1"}


# -- circuit breaker -----------------------------------------------------------------------------
@dataclass
class BreakerModel:
    """The breaker of one instance, written out as a table."""

    failures_to_open: int
    base: float
    cap: float
    state: str = "closed"
    failures: int = 0
    until: float = 0.0
    backoff: float = 0.0
    trial: bool = False

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.until:
            self.state, self.trial = "half-open", False

    def result(self, ok: bool | None, now: float) -> None:
        self.tick(now)
        if self.state == "open":
            return
        if self.state == "half-open":
            if ok is None:
                self.trial = False
            elif ok:
                self.state, self.failures, self.backoff = "closed", 0, self.base
            else:
                self.state, self.backoff = "open", min(self.backoff * 2, self.cap)
                self.until = now + self.backoff
            return
        if ok:
            self.failures, self.backoff = 0, self.base
        elif ok is False:
            self.failures += 1
            if self.failures >= self.failures_to_open:
                self.state, self.failures, self.until = "open", 0, now + self.backoff

    def routable(self) -> bool:
        return self.state == "closed" or (self.state == "half-open" and not self.trial)


@settings(max_examples=300, deadline=None)
@given(failures=st.integers(1, 4), events=st.lists(st.tuples(
    st.sampled_from(["ok", "fail", "abandon", "request"]), st.sampled_from([0.0, 0.2, 1.0, 3.0])),
    max_size=60))
def test_breaker_state_machine(failures: int, events: list[tuple[str, float]]) -> None:
    units = [Unit("a", healthy(True)), Unit("b", healthy(True))]
    breaker = CircuitBreaker(units, failures=failures, backoff=1.0, max_backoff=4.0)
    model = BreakerModel(failures, 1.0, 4.0, backoff=1.0)
    now = 0.0
    for event, step in events:
        now += step
        if event == "request":
            # "b" reports a success first, so the breaker sees the time pass.
            breaker.on_result(units[1], 0.001, True, now)
            model.tick(now)
            routable = model.routable()
            seen = {breaker.getnext(Mode.RO).name for _ in range(2)}
            assert ("a" in seen) == routable, (model, seen)
            if routable and model.state == "half-open":
                model.trial = True  # the trial went out
        else:
            breaker.on_result(units[0], 0.001, {"ok": True, "fail": False, "abandon": None}[event], now)
            model.result({"ok": True, "fail": False, "abandon": None}[event], now)
        assert breaker.state_of(units[0]).value == model.state


def test_breaker_opens_then_half_open_trial_closes_it() -> None:
    units = replicaset(2)
    breaker = CircuitBreaker(units, failures=2, backoff=1.0)
    r0, r1 = units[1], units[2]
    breaker.on_result(r0, 1.0, False, 0.0)
    assert breaker.state_of(r0) == BreakerState.CLOSED
    breaker.on_result(r0, 1.0, False, 0.0)
    assert breaker.state_of(r0) == BreakerState.OPEN
    assert {breaker.getnext(Mode.RO).name for _ in range(6)} == {"r1"}
    breaker.on_result(r1, 0.001, True, 1.0)  # time passes: the backoff is over
    assert breaker.state_of(r0) == BreakerState.HALF_OPEN
    picks = [breaker.getnext(Mode.RO).name for _ in range(6)]
    assert picks.count("r0") == 1  # exactly one trial
    breaker.on_result(r0, 0.001, True, 1.1)
    assert breaker.state_of(r0) == BreakerState.CLOSED
    assert picks and {breaker.getnext(Mode.RO).name for _ in range(6)} == {"r0", "r1"}


def test_breaker_failed_trial_doubles_the_backoff() -> None:
    units = replicaset(2)
    breaker = CircuitBreaker(units, failures=1, backoff=1.0, max_backoff=3.0)
    r0, r1 = units[1], units[2]
    breaker.on_result(r0, 1.0, False, 0.0)
    for now, backoff in [(1.0, 2.0), (3.0, 3.0), (6.0, 3.0)]:
        breaker.on_result(r1, 0.001, True, now)
        assert breaker.state_of(r0) == BreakerState.HALF_OPEN
        breaker.on_result(r0, 1.0, False, now)  # the trial fails
        breaker.on_result(r1, 0.001, True, now + backoff - 0.01)
        assert breaker.state_of(r0) == BreakerState.OPEN, now


def test_breaker_never_refuses_what_the_inner_strategy_can_route() -> None:
    units = [Unit("a", healthy(True))]
    breaker = CircuitBreaker(units, failures=1)
    breaker.on_result(units[0], 1.0, False, 0.0)
    assert breaker.state_of(units[0]) == BreakerState.OPEN
    assert breaker.getnext(Mode.RO) is units[0]
    with pytest.raises(PoolTopologyError, match="rw instance"):
        breaker.getnext(Mode.RW)


def test_breaker_forwards_feedback_to_the_inner_strategy() -> None:
    units = replicaset(2)
    breaker = CircuitBreaker(units, inner=LatencyAwareStrategy)
    breaker.on_result(units[1], 0.25, True, 0.0)
    assert isinstance(breaker.inner, LatencyAwareStrategy)
    assert breaker.inner.estimate(units[1]) == pytest.approx(0.25)


# -- avoiding (hedged reads need "another instance") ---------------------------------------------
@pytest.mark.parametrize("name", ["round_robin", *sorted(FACTORIES)])
def test_pick_avoiding_finds_another_fitting_instance(name: str) -> None:
    units = replicaset(2)
    factory: Factory = RoundRobinStrategy if name == "round_robin" else FACTORIES[name]
    strategy = factory(units)
    for mode in (Mode.ANY, Mode.RO, Mode.PREFER_RO):
        first = strategy.getnext(mode)
        other = pick_avoiding(strategy, mode, [first])
        assert other is not None and other is not first
        assert mode != Mode.RO or other.state.read_only
    only_rw = pick_avoiding(strategy, Mode.RW, [units[0]])
    assert only_rw is None  # one rw instance: nothing else fits


# -- configuration -------------------------------------------------------------------------------
@pytest.mark.parametrize(("factory", "message"), [
    (lambda u: LatencyAwareStrategy(u, alpha=0), "alpha must be > 0"),
    (lambda u: LatencyAwareStrategy(u, alpha=1.5), "alpha must be > 0.0 and <= 1.0"),
    (lambda u: LatencyAwareStrategy(u, half_life=-1), "half_life must be > 0"),
    (lambda u: LatencyAwareStrategy(u, seed="x"),  # type: ignore[arg-type]
     "seed must be an int"),
    (lambda u: CircuitBreaker(u, failures=0), "failures must be an int >= 1"),
    (lambda u: CircuitBreaker(u, backoff=float("nan")), "backoff must be a number"),
    (lambda u: CircuitBreaker(u, backoff=2.0, max_backoff=1.0), "max_backoff must be >= 2.0"),
    (lambda u: CircuitBreaker(u, inner=42),  # type: ignore[arg-type]
     "inner must be a strategy class"),
])
def test_bad_options_name_the_argument(factory: Callable[[list[Unit]], Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        factory(replicaset())


# -- hedge delay ---------------------------------------------------------------------------------
def test_hedge_policy_fixed_delay() -> None:
    policy = HedgePolicy(0.05)
    assert policy.delay() == 0.05
    policy.record(10.0)
    assert policy.delay() == 0.05


@given(samples=st.lists(st.floats(min_value=0, max_value=10), min_size=20, max_size=300),
       percentile=st.sampled_from([50, 90, 95, 99, 99.9]))
def test_hedge_policy_percentile_is_a_recent_sample_at_that_rank(samples: list[float], percentile: float) -> None:
    policy = HedgePolicy(f"p{percentile}", window=64, min_samples=20)
    for k, rtt in enumerate(samples):
        policy.record(rtt)
        delay = policy.delay()
        if k + 1 < 20:
            assert delay is None  # not enough samples yet: no hedging
        else:
            assert delay is not None and delay in samples[max(0, k + 1 - 64 - 4):k + 1]
    window = sorted(samples[-64:])
    last = policy.delay()
    assert last is not None
    # Recomputed every window // 16 = 4 samples: the value is at most 3 samples stale,
    # so it lies between the window's neighbouring ranks.
    rank = max(1, -(-percentile * len(window) // 100))
    assert window[max(0, int(rank) - 1 - 4)] <= last <= window[min(len(window) - 1, int(rank) - 1 + 4)]


@pytest.mark.parametrize("bad", ["p0", "p100", "x95", "p", "fast", -0.1, float("nan"), True])
def test_hedge_policy_refuses_bad_values(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="hedge_after"):
        HedgePolicy(bad)
