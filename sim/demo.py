"""The demos: a real :class:`trio_tarantool.ConnectionPool` on a simulated replicaset.

Two runs of the same idea, both in virtual time (trio's MockClock), both
needing no Tarantool:

``python -m trio_tarantool.sim.demo`` -- the timeline (:func:`main`)
    Three simulated instances, the pool on them, and one client task per
    request mode. A partition cuts a replica off, then the master crashes and
    a replica is promoted, then the old master comes back and a planned
    switchover moves the master role again. Each virtual second prints one
    timeline row (per instance: true role, the pool's view, requests served
    per second; per mode: successes and errors), and at the end an SVG plot of
    the run is written. ``--rate`` virtual seconds pass per real second, so the
    timeline can be watched; ``--fast`` runs as fast as the CPU allows.

``python -m trio_tarantool.sim`` -- an hour of chaos, checked (:func:`chaos_main`)
    ``chaos()`` drives the replicaset through failovers, crashes, partitions
    and pauses while writer tasks insert unique rows through the pool
    (``Mode.RW``) and a reader selects (``Mode.PREFER_RO``). Afterwards the
    world is healed and the outcome of every request is checked against what
    the instances really did: a write that succeeded is stored on the final
    master; a write that failed with ``may_have_executed`` False is stored
    nowhere; every executed INSERT ran on an instance that was writable then.
    It also measures how long after each failover the first write succeeded
    again. The exit status is 1 if anything was violated.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import trio
import trio.testing

import trio_tarantool as tt
from trio_tarantool import Mode, Status

from . import open_replicaset
from ._replicaset import Replicaset
from ._world import seed_trio_scheduler

# --- the timeline -----------------------------------------------------------------

MODES = (Mode.ANY, Mode.RW, Mode.RO, Mode.PREFER_RW, Mode.PREFER_RO)
#: Request interval of each mode's client (virtual seconds): 50 requests/s each.
INTERVAL = 0.02
REQUEST_TIMEOUT = 0.5
COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e")
ERROR_COLOR = "#d62728"


@dataclass
class Second:
    """What happened during one virtual second."""

    t: int
    roles: list[str]
    views: list[str]
    served: list[int]
    ok: dict[str, int]
    err: dict[str, int]


@dataclass
class Timeline:
    """The whole run, second by second, and the fault events with their times."""

    names: list[str]
    seconds: list[Second] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)


def _scenario(rs: Replicaset) -> list[tuple[float, str, Callable[[], object]]]:
    return [
        (8.0, "partition tt3", lambda: rs.partition(2)),
        (16.0, "heal tt3", rs.heal),
        (22.0, "crash master tt1, failover", lambda: rs.start_failover(crash_old=True)),
        (34.0, "restart tt1 (as replica)", lambda: rs.restart(0)),
        (42.0, "planned switch", lambda: _planned_switch(rs)),
    ]


def _planned_switch(rs: Replicaset) -> None:
    """Move the master role to the first live replica (old master set ro, then it rw)."""
    target = next(i for i, role in enumerate(rs.roles()) if role == "ro")
    rs.start_failover(target)


def _view(stat: tt.InstanceStatistics) -> str:
    if stat.status != Status.HEALTHY:
        return "unhealthy"
    return "ro" if stat.read_only else "rw"


async def _client(pool: tt.ConnectionPool, mode: Mode, counts: dict[str, list[int]],
                  nursery: trio.Nursery) -> None:
    """Fire one request every INTERVAL, without waiting for the previous one."""
    key = 0
    while True:
        key += 1
        nursery.start_soon(_one_request, pool, mode, key, counts)
        await trio.sleep(INTERVAL)


async def _one_request(pool: tt.ConnectionPool, mode: Mode, key: int, counts: dict[str, list[int]]) -> None:
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            if mode == Mode.RW:
                await pool.replace("demo", [key % 1000, f"v{key}"], mode=mode)
            else:
                await pool.select("demo", key % 1000, mode=mode)
        counts[mode.name][0] += 1
    except (tt.Error, trio.TooSlowError):
        counts[mode.name][1] += 1


def view_matches(role: str, view: str) -> bool:
    """Whether the pool's view of an instance agrees with its true role."""
    return role == view or (role in ("down", "paused") and view == "unhealthy")


def format_row(timeline: Timeline, sec: Second) -> str:
    """One timeline line: per instance true role/pool's view (``*``: they differ)."""
    cells = []
    for name, role, view, served in zip(timeline.names, sec.roles, sec.views, sec.served, strict=True):
        mark = " " if view_matches(role, view) else "*"
        cells.append(f"{name} {role:>6}/{view:<9}{mark}{served:>4}/s")
    modes = " ".join(f"{m}:{sec.ok[m]:>3}" + (f"!{sec.err[m]}" if sec.err[m] else "") for m in sec.ok)
    return f"t={sec.t:>3}s | " + " | ".join(cells) + " || " + modes


async def run_timeline(duration: float, seed: int, out: Callable[[str], None]) -> Timeline:
    """Run the scenario in the current ``trio.run``; ``out`` gets each line as it happens."""
    async with open_replicaset(3, seed=seed, failover_window=(0.5, 1.5)) as rs:
        rs.create_space("demo", [("id", "unsigned"), ("v", "string")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        timeline = Timeline([inst.name for inst in rs.instances])
        async with tt.open_pool(rs.addrs, refresh_delay=1, socket_timeout=REQUEST_TIMEOUT) as pool:
            counts = {m.name: [0, 0] for m in MODES}
            out("time | per instance: true role / pool's view (* = differs), requests served per second"
                " || per mode: successes per second (!errors)")
            async with trio.open_nursery() as nursery:
                for mode in MODES:
                    nursery.start_soon(_client, pool, mode, counts, nursery)
                start = trio.current_time()
                pending = _scenario(rs)
                last_served = [0] * len(rs.instances)
                for t in range(1, int(duration) + 1):
                    while pending and pending[0][0] <= t - 1:
                        at, label, action = pending.pop(0)
                        action()
                        timeline.events.append((at, label))
                        out(f"          >>> {label}")
                    await trio.sleep_until(start + t)
                    served = [inst.requests["SELECT"] + inst.requests["REPLACE"] for inst in rs.instances]
                    sec = Second(
                        t, rs.roles(), [_view(s) for s in pool.statistics()],
                        [a - b for a, b in zip(served, last_served, strict=True)],
                        {m: c[0] for m, c in counts.items()}, {m: c[1] for m, c in counts.items()},
                    )
                    last_served = served
                    for c in counts.values():
                        c[0] = c[1] = 0
                    timeline.seconds.append(sec)
                    out(format_row(timeline, sec))
                nursery.cancel_scope.cancel()
        return timeline


# --- the plot ---------------------------------------------------------------------

#: Canvas and plot geometry of :func:`write_svg` (pixels). The event labels
#: sit in their own band above the plots, so they never cross a curve.
WIDTH, LEFT, RIGHT = 960, 70, 820
TITLE_H, EVENT_ROW_H, TOP_PLOT_H, GAP, ERR_PLOT_H, BOTTOM = 44, 15, 240, 22, 90, 50
#: Estimated width of one character of the 11 px sans-serif labels.
CHAR_W = 6.3


def nice_ticks(peak: float, target: int = 5) -> list[float]:
    """Round tick values 0, step, 2*step ... covering ``peak`` (step 1, 2 or 5 x 10^k)."""
    if peak <= 0:
        return [0.0, 1.0]
    raw = peak / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    count = math.ceil(peak / step - 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]


def _event_rows(events: list[tuple[float, str]], x: Callable[[float], float]) -> list[int]:
    """A row for each event label, the first where it does not overlap the one before."""
    row_ends: list[float] = []
    rows = []
    for at, label in events:
        start = x(at) + 3
        row = next((i for i, end in enumerate(row_ends) if start > end + 8), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = start + CHAR_W * len(label)
        rows.append(row)
    return rows


def _fmt(v: float) -> str:
    return f"{v:g}"


def write_svg(timeline: Timeline, path: Path) -> None:
    """Plot requests served per second per instance, failed requests per second, fault events.

    Elements carry a ``class`` (``curve``, ``event-label``, ``x-tick``,
    ``y-tick``, ``err-tick``, ``axis-title``) so tests can check the layout.
    """
    n = max(len(timeline.seconds), 1)

    def x(t: float) -> float:
        return LEFT + (RIGHT - LEFT) * t / n

    rows = _event_rows(timeline.events, x)
    band_h = EVENT_ROW_H * (max(rows, default=-1) + 1)
    top = TITLE_H + band_h + 8
    top_bottom = top + TOP_PLOT_H
    err_top = top_bottom + GAP
    err_bottom = err_top + ERR_PLOT_H
    height = err_bottom + BOTTOM

    y_ticks = nice_ticks(max([1, *(v for s in timeline.seconds for v in s.served)]))
    err_ticks = nice_ticks(max([1, *(sum(s.err.values()) for s in timeline.seconds)]), target=2)

    def y(v: float) -> float:
        return top_bottom - TOP_PLOT_H * v / y_ticks[-1]

    def y_err(v: float) -> float:
        return err_bottom - ERR_PLOT_H * v / err_ticks[-1]

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="15" font-weight="bold">A trio_tarantool pool on a '
        f'simulated 3-instance replicaset (virtual time)</text>',
        f'<text x="{LEFT}" y="36" fill="#444">Requests served per second by each instance (top) and '
        f'failed requests per second, all modes (bottom); dashed: injected faults</text>',
    ]
    # Horizontal grid and y ticks of both plots.
    for v in y_ticks:
        parts.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{RIGHT}" y2="{y(v):.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text class="y-tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for v in err_ticks:
        parts.append(f'<line x1="{LEFT}" y1="{y_err(v):.1f}" x2="{RIGHT}" y2="{y_err(v):.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text class="err-tick" x="{LEFT - 6}" y="{y_err(v) + 4:.1f}" '
                     f'text-anchor="end">{_fmt(v)}</text>')
    # Fault events: a dashed line through both plots, the label in the band above.
    for (at, label), row in zip(timeline.events, rows, strict=True):
        label_y = TITLE_H + EVENT_ROW_H * (row + 1) - 3
        parts.append(f'<line x1="{x(at):.1f}" y1="{label_y - 9}" x2="{x(at):.1f}" y2="{err_bottom}" '
                     f'stroke="#888" stroke-dasharray="4,3"/>')
        parts.append(f'<text class="event-label" x="{x(at) + 3:.1f}" y="{label_y}" fill="#333">'
                     f'{escape(label)}</text>')
    # x ticks (labels under the bottom plot, marks on both).
    for t in nice_ticks(n, target=10):
        if t > n:
            break
        for base in (top_bottom, err_bottom):
            parts.append(f'<line x1="{x(t):.1f}" y1="{base}" x2="{x(t):.1f}" y2="{base + 4}" stroke="black"/>')
        parts.append(f'<text class="x-tick" x="{x(t):.1f}" y="{err_bottom + 16}" '
                     f'text-anchor="middle">{_fmt(t)}</text>')
    # The curves and the error bars.
    for i, name in enumerate(timeline.names):
        points = " ".join(f"{x(s.t):.1f},{y(s.served[i]):.1f}" for s in timeline.seconds)
        color = COLORS[i % len(COLORS)]
        parts.append(f'<polyline class="curve" points="{points}" fill="none" stroke="{color}" '
                     f'stroke-width="2"/>')
        parts.append(f'<line x1="{RIGHT + 14}" y1="{top + 18 * i + 6}" x2="{RIGHT + 34}" '
                     f'y2="{top + 18 * i + 6}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{RIGHT + 40}" y="{top + 18 * i + 10}">{escape(name)}</text>')
    bar_w = max((RIGHT - LEFT) / n - 1, 1)
    for s in timeline.seconds:
        total = sum(s.err.values())
        if total:
            parts.append(f'<rect x="{x(s.t - 1):.1f}" y="{y_err(total):.1f}" width="{bar_w:.1f}" '
                         f'height="{err_bottom - y_err(total):.1f}" fill="{ERROR_COLOR}"/>')
    parts.append(f'<rect x="{RIGHT + 14}" y="{err_top + 1}" width="20" height="10" fill="{ERROR_COLOR}"/>')
    parts.append(f'<text x="{RIGHT + 40}" y="{err_top + 10}">failed requests</text>')
    # Axes and their titles.
    for y0, y1 in ((top, top_bottom), (err_top, err_bottom)):
        parts.append(f'<line x1="{LEFT}" y1="{y0}" x2="{LEFT}" y2="{y1}" stroke="black"/>')
        parts.append(f'<line x1="{LEFT}" y1="{y1}" x2="{RIGHT}" y2="{y1}" stroke="black"/>')
    for title, mid in (("requests served / s", (top + top_bottom) / 2), ("failed / s", (err_top + err_bottom) / 2)):
        parts.append(f'<text class="axis-title" x="18" y="{mid:.1f}" text-anchor="middle" '
                     f'transform="rotate(-90 18 {mid:.1f})">{title}</text>')
    parts.append(f'<text class="axis-title" x="{(LEFT + RIGHT) / 2}" y="{err_bottom + 36}" '
                 f'text-anchor="middle">virtual time (s)</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m trio_tarantool.sim.demo``: the timeline, then the plot."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_tarantool.sim.demo",
        description="A trio_tarantool pool on a simulated replicaset under faults: a live timeline and a plot.",
    )
    parser.add_argument("--duration", type=float, default=50.0, help="virtual seconds (default 50)")
    parser.add_argument("--rate", type=float, default=4.0, help="virtual seconds per real second")
    parser.add_argument("--fast", action="store_true", help="no pacing: as fast as possible")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--svg", type=Path, default=Path("demo.svg"), help="plot file (default demo.svg)")
    args = parser.parse_args(argv)
    clock = trio.testing.MockClock(autojump_threshold=0) if args.fast else trio.testing.MockClock(rate=args.rate)

    def out(line: str) -> None:
        print(line, flush=True)

    seed_trio_scheduler(args.seed)
    timeline = trio.run(run_timeline, args.duration, args.seed, out, clock=clock)
    write_svg(timeline, args.svg)
    failed = sum(sum(s.err.values()) for s in timeline.seconds)
    total = failed + sum(sum(s.ok.values()) for s in timeline.seconds)
    print(f"\n{total} requests, {failed} failed ({100 * failed / max(total, 1):.2f}%); "
          f"plot written to {args.svg}")
    return 0


# --- the chaos run ----------------------------------------------------------------


@dataclass
class ChaosReport:
    """What happened, and whether the pool kept its promises."""

    seed: int
    simulated_seconds: float
    faults: int = 0
    writes_ok: int = 0
    writes_failed: int = 0
    writes_failed_not_executed: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: The first message seen for each exception type.
    error_samples: dict[str, str] = field(default_factory=dict)
    recovery_latencies: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    trace_lines: int = 0
    wall_seconds: float = 0.0

    def summary(self) -> str:
        lat = self.recovery_latencies
        lat_text = (
            f"mean {statistics.fmean(lat):.3f} s, max {max(lat):.3f} s over {len(lat)} failovers"
            if lat else "no failovers"
        )
        lines = [
            f"seed {self.seed}: {self.simulated_seconds / 3600:.2f} simulated h "
            f"in {self.wall_seconds:.1f} s wall "
            f"({self.simulated_seconds / max(self.wall_seconds, 1e-9):.0f}x real time)",
            f"faults injected: {self.faults}; trace lines: {self.trace_lines}",
            f"writes: {self.writes_ok} ok, {self.writes_failed} failed "
            f"({self.writes_failed_not_executed} surely not executed)",
            f"reads: {self.reads_ok} ok, {self.reads_failed} failed",
            f"errors: {dict(sorted(self.errors.items()))}",
            *(f"  e.g. {k}: {v}" for k, v in sorted(self.error_samples.items())),
            f"first successful write after a failover: {lat_text}",
            f"violations: {len(self.violations)}",
        ]
        lines += [f"  - {v}" for v in self.violations[:20]]
        return "\n".join(lines)


async def run_chaos(seed: int = 0, duration: float = 3600.0, *, mean_interval: float = 60.0,
                    refresh_delay: float = 1.0, socket_timeout: float = 1.0) -> ChaosReport:
    """Run the chaos scenario inside the current ``trio.run`` (use a MockClock)."""
    report = ChaosReport(seed, duration)
    outcomes: dict[int, tuple[str, bool]] = {}  # row id -> (outcome, may_have_executed)
    failover_ends: list[float] = []
    write_times: list[float] = []
    async with open_replicaset(n=3, seed=seed, lag=0.02, lag_jitter=0.02,
                               users={"app": "secret"}, trace_requests=False) as rs:
        rs.create_space("events", [("id", "unsigned"), ("writer", "unsigned"), ("at", "number")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        for i in range(len(rs)):
            rs.link(i).set(delay=0.0005, jitter=0.0002)
        async with tt.open_pool(rs.addrs, user="app", password="secret", refresh_delay=refresh_delay,
                                socket_timeout=socket_timeout, connection_timeout=socket_timeout) as pool:
            next_id = [0]

            def note(exc: BaseException) -> None:
                name = type(exc).__name__
                report.errors[name] = report.errors.get(name, 0) + 1
                report.error_samples.setdefault(name, str(exc)[:200])

            async def writer(w: int) -> None:
                while True:
                    await trio.sleep(0.2)
                    next_id[0] += 1
                    row_id = next_id[0]
                    try:
                        await pool.insert("events", [row_id, w, trio.current_time()], mode=tt.Mode.RW)
                    except tt.Error as exc:
                        note(exc)
                        may = bool(getattr(exc, "may_have_executed", True))
                        outcomes[row_id] = ("failed", may)
                        report.writes_failed += 1
                        report.writes_failed_not_executed += not may
                    else:
                        outcomes[row_id] = ("ok", True)
                        report.writes_ok += 1
                        write_times.append(trio.current_time())

            async def reader() -> None:
                while True:
                    await trio.sleep(0.2)
                    try:
                        await pool.select("events", [], limit=1, mode=tt.Mode.PREFER_RO)
                        report.reads_ok += 1
                    except tt.Error as exc:
                        note(exc)
                        report.reads_failed += 1

            async with trio.open_nursery() as nursery:
                for w in range(2):
                    nursery.start_soon(writer, w)
                nursery.start_soon(reader)
                report.faults = await rs.chaos(duration, mean_interval=mean_interval)
                await rs.advance(2 * refresh_delay + 2 * socket_timeout)
                nursery.cancel_scope.cancel()
        await rs.advance(1.0)  # replication settles
        for line in rs.trace:
            if " rs failover end new=" in line:
                failover_ends.append(float(line.split()[0]))
        _check(rs, outcomes, report)
        report.trace_lines = len(rs.trace)
    for end in failover_ends:
        after = [t for t in write_times if t >= end]
        if after:
            report.recovery_latencies.append(after[0] - end)
    return report


def _check(rs: Replicaset, outcomes: dict[int, tuple[str, bool]], report: ChaosReport) -> None:
    master = rs.master
    stored = [
        {t[0] for t in inst.db.space(512).primary._tuples} for inst in rs.instances
    ]
    if master is None:
        report.violations.append("no master after healing")
        return
    for row_id, (outcome, may) in sorted(outcomes.items()):
        if outcome == "ok" and row_id not in stored[master]:
            report.violations.append(f"acknowledged write {row_id} lost")
        if outcome == "failed" and not may and any(row_id in s for s in stored):
            report.violations.append(f"write {row_id} reported not executed but stored")
    for inst in rs.instances:
        for rec in inst.request_log:
            if rec.name == "INSERT" and rec.outcome == "ok" and rec.read_only:
                report.violations.append(f"INSERT executed on read-only {inst.name} at {rec.time:.6f}")
    if len({frozenset(s) for s in stored}) != 1:
        report.violations.append("instances did not converge")


def chaos_main(argv: list[str] | None = None) -> int:
    """``python -m trio_tarantool.sim``: the chaos run and its report (exit 1 on a violation)."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_tarantool.sim",
        description="A real ConnectionPool under seeded chaos, checked against ground truth.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--mean-interval", type=float, default=60.0,
                        help="mean virtual seconds between injected faults")
    args = parser.parse_args(argv)
    seed_trio_scheduler(args.seed)
    wall0 = time.perf_counter()  # only to report speed; the simulation never reads it
    report = trio.run(
        lambda: run_chaos(args.seed, args.hours * 3600, mean_interval=args.mean_interval),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    report.wall_seconds = time.perf_counter() - wall0
    print(report.summary())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
