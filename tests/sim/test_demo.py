"""The pool-under-chaos demo: the real ConnectionPool keeps its promises."""

from __future__ import annotations

import dataclasses

import trio
import trio.testing

from trio_tarantool import sim
from trio_tarantool.sim._demo import DemoReport, main, run_demo


def _run(seed: int, duration: float) -> DemoReport:
    sim.seed_trio_scheduler(seed)
    return trio.run(lambda: run_demo(seed, duration, mean_interval=30.0),
                    clock=trio.testing.MockClock(autojump_threshold=0))


def test_pool_under_chaos_has_no_violations_and_is_repeatable() -> None:
    first = _run(3, 600.0)
    assert first.faults >= 5 and first.writes_ok > 1000
    assert first.writes_failed > 0  # the chaos really hurt
    assert first.violations == []
    assert first.recovery_latencies  # failovers happened and writes resumed after them
    second = _run(3, 600.0)
    assert dataclasses.asdict(first) == dataclasses.asdict(second)


def test_command_line(capsys: object) -> None:
    assert main(["--seed", "2", "--hours", "0.02", "--mean-interval", "10"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "violations: 0" in out and "simulated h" in out
