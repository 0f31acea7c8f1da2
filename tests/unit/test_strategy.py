"""Tests of the pool's routing core (``trio_tarantool._strategy``): no I/O, no trio."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from trio_tarantool._errors import PoolTolopogyError, PoolTopologyError
from trio_tarantool._strategy import InstanceState, Mode, RoundRobinStrategy, Status


@dataclass
class Unit:
    """A stand-in for the pool's PoolUnit: a name and a mutable state."""

    name: str
    state: InstanceState = field(default_factory=InstanceState)


def healthy(read_only: bool | None) -> InstanceState:
    return InstanceState(Status.HEALTHY, read_only)


def names(strategy: RoundRobinStrategy[Unit], mode: Mode, n: int) -> list[str]:
    return [strategy.getnext(mode).name for _ in range(n)]


def test_enum_values_match_the_reference() -> None:
    assert [(m.name, m.value) for m in Mode] == [
        ("ANY", 1), ("RW", 2), ("RO", 3), ("PREFER_RW", 4), ("PREFER_RO", 5),
    ]
    assert [(s.name, s.value) for s in Status] == [("HEALTHY", 1), ("UNHEALTHY", 2)]
    assert InstanceState() == InstanceState(Status.UNHEALTHY, None)


def test_round_robin_in_address_order() -> None:
    units = [Unit("a", healthy(False)), Unit("b", healthy(True)), Unit("c", healthy(True))]
    s = RoundRobinStrategy(units)
    assert names(s, Mode.ANY, 6) == ["a", "b", "c", "a", "b", "c"]
    assert names(s, Mode.RW, 3) == ["a", "a", "a"]
    assert names(s, Mode.RO, 4) == ["b", "c", "b", "c"]
    assert names(s, Mode.PREFER_RO, 2) == ["b", "c"]
    assert names(s, Mode.PREFER_RW, 2) == ["a", "a"]


def test_unhealthy_instances_are_skipped_after_update() -> None:
    units = [Unit("a", healthy(False)), Unit("b", healthy(True)), Unit("c", healthy(True))]
    s = RoundRobinStrategy(units)
    assert set(names(s, Mode.ANY, 3)) == {"a", "b", "c"}
    units[1].state = InstanceState(Status.UNHEALTHY, True)
    # Without update() the strategy keeps its lists: update is the contract.
    s.update()
    assert set(names(s, Mode.ANY, 10)) == {"a", "c"}
    assert set(names(s, Mode.RO, 10)) == {"c"}


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (Mode.ANY, "Can't find healthy instance in pool"),
        (Mode.RW, "Can't find healthy rw instance in pool"),
        (Mode.RO, "Can't find healthy ro instance in pool"),
        (Mode.PREFER_RW, "Can't find healthy instance in pool"),
        (Mode.PREFER_RO, "Can't find healthy instance in pool"),
    ],
)
def test_empty_pool_messages(mode: Mode, message: str) -> None:
    s = RoundRobinStrategy([Unit("a"), Unit("b", InstanceState(Status.UNHEALTHY, False))])
    with pytest.raises(PoolTopologyError) as info:
        s.getnext(mode)
    assert str(info.value) == message
    assert isinstance(info.value, PoolTolopogyError)


def test_missing_role_only() -> None:
    rw_only = RoundRobinStrategy([Unit("a", healthy(False))])
    with pytest.raises(PoolTopologyError, match="ro instance"):
        rw_only.getnext(Mode.RO)
    assert rw_only.getnext(Mode.PREFER_RO).name == "a"
    ro_only = RoundRobinStrategy([Unit("a", healthy(True))])
    with pytest.raises(PoolTopologyError, match="rw instance"):
        ro_only.getnext(Mode.RW)
    assert ro_only.getnext(Mode.PREFER_RW).name == "a"


def test_non_mode_is_rejected() -> None:
    s = RoundRobinStrategy([Unit("a", healthy(False))])
    with pytest.raises(ValueError, match="Mode"):
        s.getnext(42)  # type: ignore[arg-type]


def test_rotation_position_survives_rebuild() -> None:
    units = [Unit(n, healthy(True)) for n in "abc"]
    s = RoundRobinStrategy(units)
    assert s.getnext(Mode.RO).name == "a"
    s.update()
    assert s.getnext(Mode.RO).name == "b"


class StrategyMachine(RuleBasedStateMachine):
    """Random health/role changes interleaved with requests in every mode.

    The model is the list of states itself; invariants compare the strategy's
    choices with what the states allow.
    """

    def __init__(self) -> None:
        super().__init__()
        self.units: list[Unit] = []
        self.strategy: RoundRobinStrategy[Unit] = RoundRobinStrategy(self.units)
        # Choices per mode since the last state change ("stable view").
        self.since_change: dict[Mode, Counter[str]] = {m: Counter() for m in Mode}

    @initialize(n=st.integers(min_value=1, max_value=6))
    def create(self, n: int) -> None:
        self.units.extend(Unit(f"i{k}") for k in range(n))
        self.strategy.update()

    def _changed(self) -> None:
        self.strategy.update()
        for counter in self.since_change.values():
            counter.clear()

    @rule(data=st.data())
    def set_state(self, data: st.DataObject) -> None:
        unit = data.draw(st.sampled_from(self.units))
        status = data.draw(st.sampled_from(Status))
        read_only = data.draw(st.sampled_from([True, False, None]))
        if status == Status.HEALTHY and read_only is None:
            read_only = True
        unit.state = InstanceState(status, read_only)
        self._changed()

    @rule()
    def all_down(self) -> None:
        for unit in self.units:
            unit.state = InstanceState()
        self._changed()

    def _healthy(self, read_only: bool | None = None) -> list[str]:
        return [
            u.name for u in self.units
            if u.state.status == Status.HEALTHY
            and (read_only is None or (u.state.read_only is not False) == read_only)
        ]

    @rule(mode=st.sampled_from(Mode), count=st.integers(min_value=1, max_value=12))
    def request(self, mode: Mode, count: int) -> None:
        rw, ro, every = self._healthy(False), self._healthy(True), self._healthy()
        for _ in range(count):
            try:
                chosen = self.strategy.getnext(mode)
            except PoolTopologyError:
                allowed = {
                    Mode.ANY: every, Mode.RW: rw, Mode.RO: ro,
                    Mode.PREFER_RW: rw + ro, Mode.PREFER_RO: rw + ro,
                }[mode]
                assert not allowed, f"{mode.name} refused although {allowed} fit"
                return
            state = chosen.state
            assert state.status == Status.HEALTHY
            if mode == Mode.RW:
                assert state.read_only is False
            elif mode == Mode.RO:
                assert state.read_only is not False
            elif mode == Mode.PREFER_RW and state.read_only is not False:
                assert not rw, "PREFER_RW fell back to ro while an rw instance is healthy"
            elif mode == Mode.PREFER_RO and state.read_only is False:
                assert not ro, "PREFER_RO fell back to rw while an ro instance is healthy"
            self.since_change[mode][chosen.name] += 1

    @invariant()
    def spread_within_one(self) -> None:
        rw, ro, every = self._healthy(False), self._healthy(True), self._healthy()
        target = {
            Mode.ANY: every, Mode.RW: rw, Mode.RO: ro,
            Mode.PREFER_RW: rw or ro, Mode.PREFER_RO: ro or rw,
        }
        # PREFER_* share the rotation of the list they use with RW/RO, so check the
        # per-list totals rather than per-mode ones.
        lists = {
            "any": (every, [Mode.ANY]),
            "rw": (rw, [Mode.RW] + [m for m in (Mode.PREFER_RW, Mode.PREFER_RO) if target[m] is rw and rw]),
            "ro": (ro, [Mode.RO] + [m for m in (Mode.PREFER_RW, Mode.PREFER_RO) if target[m] is ro and ro]),
        }
        for members, modes in lists.values():
            if not members:
                continue
            total: Counter[str] = Counter()
            for m in modes:
                total.update(self.since_change[m])
            assert set(total) <= set(members)
            counts = [total[name] for name in members]
            assert max(counts) - min(counts) <= 1, (members, counts)


StrategyMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestStrategyMachine = StrategyMachine.TestCase

