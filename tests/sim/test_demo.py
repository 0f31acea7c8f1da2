"""The demos (``trio_tarantool.sim.demo``): the timeline the README runs, its plot, the chaos run."""

from __future__ import annotations

import dataclasses
import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_tarantool import sim
from trio_tarantool.sim.demo import (
    CHAR_W,
    ChaosReport,
    Timeline,
    chaos_main,
    main,
    nice_ticks,
    run_chaos,
    run_timeline,
    view_matches,
    write_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
EVENTS = [
    (8.0, "partition tt3"),
    (16.0, "heal tt3"),
    (22.0, "crash master tt1, failover"),
    (34.0, "restart tt1 (as replica)"),
    (42.0, "planned switch"),
]

# --- the timeline -----------------------------------------------------------------


def _timeline(seed: int = 1, duration: float = 50.0) -> tuple[Timeline, list[str]]:
    sim.seed_trio_scheduler(seed)
    lines: list[str] = []
    timeline = trio.run(run_timeline, duration, seed, lines.append,
                        clock=trio.testing.MockClock(autojump_threshold=0))
    return timeline, lines


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return _timeline()[0]


def test_timeline_follows_the_scenario_and_the_pool_keeps_up(timeline: Timeline) -> None:
    assert timeline.names == ["tt1", "tt2", "tt3"]
    assert [s.t for s in timeline.seconds] == list(range(1, 51))
    assert timeline.events == EVENTS
    by_t = {s.t: s for s in timeline.seconds}
    # Partitioned tt3 serves nothing and the pool sees it unhealthy, until the heal.
    for t in range(10, 17):
        assert by_t[t].served[2] == 0 and by_t[t].views[2] == "unhealthy", t
    # The master crashed: tt1 is down until its restart, one replica took over.
    for t in range(24, 35):
        assert by_t[t].roles[0] == "down" and by_t[t].roles[1:].count("rw") == 1, t
    # The planned switch moved the master role back to a live instance: one master.
    assert by_t[50].roles.count("rw") == 1 and by_t[50].roles[0] != "down"
    # The pool's view catches up with the truth within 3 s of every fault (the
    # partitioned tt3 is up, but unreachable: unhealthy is the right view).
    settling = {t for at, _ in EVENTS for t in range(int(at) + 1, int(at) + 4)}
    for s in timeline.seconds:
        if s.t not in settling:
            truth = ["unhealthy" if i == 2 and 8 < s.t <= 16 else r for i, r in enumerate(s.roles)]
            assert all(map(view_matches, truth, s.views)), (s.t, s.roles, s.views)
            assert sum(s.err.values()) == 0, (s.t, s.err)
    # Every mode's client kept getting answers: 50 requests/s each, few failures.
    ok = sum(sum(s.ok.values()) for s in timeline.seconds)
    failed = sum(sum(s.err.values()) for s in timeline.seconds)
    assert ok + failed >= 5 * 50 * 49 and failed < 0.02 * (ok + failed)


def test_timeline_is_printed_and_repeatable(timeline: Timeline) -> None:
    again, lines = _timeline()
    assert dataclasses.asdict(again) == dataclasses.asdict(timeline)
    assert len(lines) == 1 + 50 + len(EVENTS)  # header, one row a second, one line an event
    assert lines[1].startswith("t=  1s | tt1     rw/rw")
    assert sum(">>> " in line for line in lines) == len(EVENTS)


# --- the plot ---------------------------------------------------------------------


def _texts(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}text") if e.get("class") == cls]


def test_nice_ticks_are_round_and_cover_the_peak() -> None:
    assert nice_ticks(128) == [0, 50, 100, 150]
    assert nice_ticks(34, target=2) == [0, 20, 40]
    assert nice_ticks(50, target=10) == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert nice_ticks(1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0) == [0.0, 1.0]


def test_plot_has_ticks_axis_titles_and_labels_clear_of_the_curves(
    timeline: Timeline, tmp_path: Path
) -> None:
    path = tmp_path / "demo.svg"
    write_svg(timeline, path)
    root = ET.parse(path).getroot()
    assert [e.text for e in _texts(root, "x-tick")] == [str(t) for t in range(0, 51, 5)]
    y_ticks = [float(e.text or "") for e in _texts(root, "y-tick")]
    peak = max(v for s in timeline.seconds for v in s.served)
    assert y_ticks[0] == 0 and len(y_ticks) >= 3 and y_ticks[-2] < peak <= y_ticks[-1]
    assert len(_texts(root, "err-tick")) >= 2
    assert {e.text for e in _texts(root, "axis-title")} == {
        "requests served / s", "failed / s", "virtual time (s)",
    }
    # Every event label sits above every curve point (its own band) ...
    labels = _texts(root, "event-label")
    assert [e.text for e in labels] == [label for _, label in EVENTS]
    curves = [e for e in root.iter(f"{SVG}polyline") if e.get("class") == "curve"]
    assert len(curves) == 3
    highest_point = min(float(p.split(",")[1]) for c in curves for p in (c.get("points") or "").split())
    lowest_label = max(float(e.get("y") or 0) for e in labels)
    assert lowest_label + 4 < highest_point
    # ... and no two labels on the same row overlap.
    rows: dict[float, list[tuple[float, float]]] = {}
    for e in labels:
        x = float(e.get("x") or 0)
        rows.setdefault(float(e.get("y") or 0), []).append((x, x + CHAR_W * len(e.text or "")))
    for spans in rows.values():
        spans.sort()
        assert all(a_end < b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans)), spans


def test_command_line_prints_the_timeline_and_writes_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plot.svg"
    assert main(["--fast", "--duration", "12", "--seed", "3", "--svg", str(path)]) == 0
    out = capsys.readouterr().out
    assert "t= 12s |" in out and ">>> partition tt3" in out and f"plot written to {path}" in out
    root = ET.parse(path).getroot()
    assert [e.text for e in _texts(root, "x-tick")][-1] == "12"


# --- the chaos run ----------------------------------------------------------------


def _chaos(seed: int, duration: float, mean_interval: float = 30.0) -> ChaosReport:
    sim.seed_trio_scheduler(seed)
    return trio.run(lambda: run_chaos(seed, duration, mean_interval=mean_interval),
                    clock=trio.testing.MockClock(autojump_threshold=0))


def test_pool_under_chaos_has_no_violations_and_is_repeatable() -> None:
    # 200 virtual seconds with a fault every 10 s on average: the faults of 600 s at 30 s, a third of the cost.
    first = _chaos(3, 200.0, 10.0)
    assert first.faults >= 5 and first.writes_ok > 1000
    assert first.writes_failed > 0  # the chaos really hurt
    assert first.violations == []
    assert first.recovery_latencies  # failovers happened and writes resumed after them
    second = _chaos(3, 200.0, 10.0)
    assert dataclasses.asdict(first) == dataclasses.asdict(second)


def test_chaos_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert chaos_main(["--seed", "2", "--hours", "0.02", "--mean-interval", "10"]) == 0
    out = capsys.readouterr().out
    assert "violations: 0" in out and "simulated h" in out
