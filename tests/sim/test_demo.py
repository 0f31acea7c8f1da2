"""The README demo runs its whole scenario and writes its plot."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from sim.demo import main, run_demo, write_svg


def test_demo_scenario_and_plot(tmp_path: Path) -> None:
    lines: list[str] = []
    run = trio.run(run_demo, 50.0, 1, lines.append, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [label for _, label in run.events] == [
        "partition tt3", "heal tt3", "crash master tt1, failover", "restart tt1 (as replica)", "planned switch",
    ]
    assert len(run.seconds) == 50
    by_t = {s.t: s for s in run.seconds}
    # Before any fault: tt1 is the master, everyone healthy, nothing fails, all serve.
    assert by_t[5].roles == by_t[5].views == ["rw", "ro", "ro"]
    assert not any(by_t[5].err.values()) and all(by_t[5].served)
    # During the partition the pool stops using tt3 and requests flow again.
    assert by_t[12].views[2] == "unhealthy" and by_t[12].served[2] == 0
    assert not any(by_t[12].err.values())
    # After the crash tt1 is down and a replica took over; writes succeed again.
    assert by_t[28].roles[0] == "down" and "rw" in by_t[28].roles
    assert by_t[28].views == [v if v != "down" else "unhealthy" for v in by_t[28].roles]
    assert by_t[28].err["RW"] == 0 and by_t[28].ok["RW"] >= 45
    # At the end the pool's view equals the truth and nothing fails.
    assert by_t[50].views == by_t[50].roles and not any(by_t[50].err.values())
    failed = sum(sum(s.err.values()) for s in run.seconds)
    assert failed < 0.02 * sum(sum(s.ok.values()) for s in run.seconds)
    assert any("partition tt3" in line for line in lines)
    svg = tmp_path / "demo.svg"
    write_svg(run, svg)
    text = svg.read_text()
    assert text.startswith("<svg") and text.count("<polyline") == 3 and "planned switch" in text


def test_demo_command_line(tmp_path: Path, capsys: object) -> None:
    assert main(["--fast", "--duration", "5", "--svg", str(tmp_path / "d.svg")]) == 0
    assert (tmp_path / "d.svg").exists()
