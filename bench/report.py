"""Turn raw runs into the markdown tables of docs/benchmarks.md and docs/bench.svg.

Absolute req/s on a 2-core machine shared by client and server are noisy; what is
meaningful is the ratio between clients measured interleaved in the same rounds, so
the tables lead with medians, show min-max, and give trio_tarantool / peer ratios.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

OURS = "trio_tarantool"
OURS_POOL = "trio_tarantool-pool"
FLOOR = "floor"
#: Single-connection clients in table order.
SINGLE_CLIENTS: tuple[str, ...] = (
    "trio_tarantool",
    "floor",
    "asynctnt",
    "asynctnt+uvloop",
    "tarantool-python",
)
CLIENT_LABELS: dict[str, str] = {
    "trio_tarantool": "trio_tarantool (trio)",
    "floor": "floor (bare trio loop)",
    "asynctnt": "asynctnt (asyncio)",
    "asynctnt+uvloop": "asynctnt (uvloop)",
    "tarantool-python": "tarantool-python (sync)",
    "trio_tarantool-pool": "trio_tarantool pool",
    "tarantool-python-pool": "tarantool-python pool",
}
COLORS: dict[str, str] = {
    "trio_tarantool": "#2b6cb0",
    "floor": "#38a169",
    "asynctnt": "#dd6b20",
    "asynctnt+uvloop": "#d69e2e",
    "tarantool-python": "#718096",
    "trio_tarantool-pool": "#2b6cb0",
    "tarantool-python-pool/1": "#718096",
    "tarantool-python-pool/8": "#a0aec0",
}


def runs_case(client: str, workload: str, tasks: int) -> bool:
    """Whether ``client`` takes part in a single-connection case: tarantool-python's
    blocking Connection only runs sequentially, the floor client has no SQL."""
    if client == "tarantool-python":
        return tasks == 1
    if client == FLOOR:
        return workload != "sql"
    return True


def shape_label(tasks: int) -> str:
    """Human name of a concurrency shape."""
    return "sequential" if tasks == 1 else f"{tasks} tasks"


@dataclass(frozen=True)
class Stat:
    """Summary of one (case, client) cell over the rounds."""

    median: float
    low: float
    high: float
    rounds: int
    ok: int
    wrong: int
    errors: int
    hung: int
    failed: int
    cpu_us: float = 0.0
    """Median over rounds of the client's CPU (user + system) per reply, in µs;
    0 when the runs did not measure it (raw files from before it existed)."""

    @property
    def cpu(self) -> str:
        """``18.2 µs`` CPU per request, or "" when not measured."""
        return f"{self.cpu_us:.1f} µs" if self.cpu_us > 0 else ""

    @property
    def fmt(self) -> str:
        """``median [min-max]`` in req/s, or why there is no number."""
        if self.rounds == 0:
            return "failed" if self.failed else "n/a"
        if self.rounds == 1:
            return f"{self.median:,.0f}"
        return f"{self.median:,.0f} [{self.low:,.0f}-{self.high:,.0f}]"


def summarize(runs: Iterable[dict[str, Any]]) -> Stat:
    """Median/min/max req/s and summed outcome counters over rounds of one cell."""
    good: list[float] = []
    cpu: list[float] = []
    ok = wrong = errors = hung = failed = 0
    for r in runs:
        if r.get("failed"):
            failed += 1
            continue
        good.append(float(r["rps"]))
        if r.get("cpu_us"):
            cpu.append(float(r["cpu_us"]))
        ok += r["ok"]
        wrong += r["wrong"]
        errors += r["errors"]
        hung += r["hung"]
    if not good:
        return Stat(0.0, 0.0, 0.0, 0, ok, wrong, errors, hung, failed)
    return Stat(
        statistics.median(good),
        min(good),
        max(good),
        len(good),
        ok,
        wrong,
        errors,
        hung,
        failed,
        statistics.median(cpu) if cpu else 0.0,
    )


def cell_key(r: dict[str, Any]) -> tuple[str, str, int, str, int]:
    """(workload, client, tasks, mode, threads): the identity of one table cell."""
    return (
        r["workload"],
        r["client"],
        int(r["tasks"]),
        r.get("mode", ""),
        int(r.get("threads", 0)),
    )


def group(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int, str, int], Stat]:
    """Summaries for every cell present in ``runs``."""
    cells: dict[tuple[str, str, int, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault(cell_key(r), []).append(r)
    return {k: summarize(v) for k, v in cells.items()}


def _ratio(a: Stat | None, b: Stat | None) -> str:
    if a is None or b is None or a.rounds == 0 or b.rounds == 0 or b.median == 0:
        return "-"
    return f"{a.median / b.median:.2f}x"


def _cpu_ratio(a: Stat | None, b: Stat | None) -> str:
    """CPU per request of ``a`` over ``b`` (> 1: ``a`` spends more), or "-"."""
    if a is None or b is None or a.cpu_us <= 0 or b.cpu_us <= 0:
        return "-"
    return f"{a.cpu_us / b.cpu_us:.2f}x"


def single_table(
    runs: Sequence[dict[str, Any]],
    workloads: Sequence[str],
    shapes: Sequence[int],
    clients: Sequence[str],
) -> str:
    """Markdown table: one row per workload x shape, a column per client (median
    req/s [min-max]; client CPU per request), then the req/s ratios ours / peer and
    the CPU ratio ours / floor."""
    stats = group(runs)
    peers = [c for c in clients if c != OURS]
    with_floor = OURS in clients and FLOOR in clients
    head = ["workload", "shape", *(CLIENT_LABELS.get(c, c) for c in clients)]
    head += [f"ours / {CLIENT_LABELS.get(p, p)}" for p in peers] if OURS in clients else []
    head += ["CPU/request ours / floor"] if with_floor else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workloads:
        for t in shapes:
            row = [w, shape_label(t)]
            for c in clients:
                s = stats.get((w, c, t, "", 0))
                if s is None:
                    row.append("-")
                else:
                    cpu = f"; {s.cpu}" if s.cpu and s.rounds else ""
                    row.append(s.fmt + cpu + _flags(s))
            if OURS in clients:
                ours = stats.get((w, OURS, t, "", 0))
                for p in peers:
                    row.append(_ratio(ours, stats.get((w, p, t, "", 0))))
                if with_floor:
                    row.append(_cpu_ratio(ours, stats.get((w, FLOOR, t, "", 0))))
            if any(x not in ("-",) for x in row[2:]):
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _flags(s: Stat) -> str:
    bits = []
    if s.wrong:
        bits.append(f"{s.wrong} wrong")
    if s.errors:
        bits.append(f"{s.errors} errors")
    if s.hung:
        bits.append(f"{s.hung} hung")
    if s.failed:
        bits.append(f"{s.failed} failed runs")
    return f" ({', '.join(bits)})" if bits else ""


def _geomean_ratio(
    stats: dict[tuple[str, str, int, str, int], Stat],
    workloads: Sequence[str],
    t: int,
    peer: str,
    pick: str,
) -> tuple[float, int] | None:
    logs = []
    for w in workloads:
        a, b = stats.get((w, OURS, t, "", 0)), stats.get((w, peer, t, "", 0))
        if a and b and a.rounds and b.rounds:
            x, y = getattr(a, pick), getattr(b, pick)
            if x > 0 and y > 0:
                logs.append(math.log(x / y))
    if not logs:
        return None
    return math.exp(sum(logs) / len(logs)), len(logs)


def ratio_summary(
    runs: Sequence[dict[str, Any]],
    workloads: Sequence[str],
    shapes: Sequence[int],
    clients: Sequence[str],
) -> str:
    """Markdown table: per shape, the geometric mean over workloads of ours/peer.

    The geometric mean is the right average of ratios (a 2x win and a 2x loss
    cancel out). Each cell gives it twice: from the medians, and from each client's
    best round, which is the least disturbed by other load on a shared machine
    (interference only ever slows a run down).
    """
    if OURS not in clients:
        return ""
    stats = group(runs)
    peers = [c for c in clients if c != OURS]
    head = ["shape", *(f"ours / {CLIENT_LABELS.get(p, p)}: median; best" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in shapes:
        row = [shape_label(t)]
        for p in peers:
            med = _geomean_ratio(stats, workloads, t, p, "median")
            best = _geomean_ratio(stats, workloads, t, p, "high")
            if med is None or best is None:
                row.append("-")
            else:
                row.append(f"{med[0]:.2f}x; {best[0]:.2f}x ({med[1]} workloads)")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cpu_summary(
    runs: Sequence[dict[str, Any]],
    workloads: Sequence[str],
    shapes: Sequence[int],
    clients: Sequence[str],
) -> str:
    """Markdown table: per shape, the geometric mean over workloads of trio_tarantool's
    CPU per request over each peer's (the floor first), with the workloads counted."""
    if OURS not in clients:
        return ""
    stats = group(runs)
    peers = [c for c in clients if c != OURS]
    head = ["shape", *(f"CPU/request ours / {CLIENT_LABELS.get(p, p)}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    found = False
    for t in shapes:
        row = [shape_label(t)]
        for p in peers:
            logs = []
            for w in workloads:
                a, b = stats.get((w, OURS, t, "", 0)), stats.get((w, p, t, "", 0))
                if a and b and a.cpu_us > 0 and b.cpu_us > 0:
                    logs.append(math.log(a.cpu_us / b.cpu_us))
            if logs:
                found = True
                row.append(f"{math.exp(sum(logs) / len(logs)):.2f}x ({len(logs)} workloads)")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) if found else ""


#: Row names in the pool table (the single-connection labels otherwise).
POOL_ROW_LABELS: dict[str, str] = {OURS: "trio_tarantool one connection"}
#: Issue 11's targets for the pool against one connection (same requests, same tasks).
POOL_RPS_TARGET = 0.9
POOL_CPU_TARGET = 1.1


def _pool_cases(stats: dict[tuple[str, str, int, str, int], Stat]) -> list[tuple[str, str]]:
    """(workload, mode) of the pool cases present, selects first."""
    return sorted({(k[0], k[3]) for k in stats}, key=lambda x: (x[0] != "select", x[1]))


def _pool_cell(
    stats: dict[tuple[str, str, int, str, int], Stat], w: str, m: str, client: str
) -> Stat | None:
    """The cell of ``client`` in pool case (w, m) (trio_tarantool runs have no threads)."""
    return next((s for k, s in stats.items() if k[0] == w and k[3] == m and k[1] == client), None)


def pool_table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown table for the 3-instance pool cases, with wrong-answer counts.

    Per case: our pool, then one trio_tarantool connection to the master (when it
    ran), then tarantool-python's pool by threads. The last column is our pool's
    median req/s over the row's.
    """
    stats = group(runs)
    cases = _pool_cases(stats)
    order = {OURS_POOL: 0, OURS: 1}
    head = [
        "workload",
        "mode",
        "client",
        "concurrency",
        "req/s median [min-max]",
        "CPU/request",
        "wrong answers",
        "errors",
        "hung",
        "ours / this",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w, m in cases:
        ours = _pool_cell(stats, w, m, OURS_POOL)
        cells = sorted((k, s) for k, s in stats.items() if k[0] == w and k[3] == m)
        cells.sort(key=lambda ks: (order.get(ks[0][1], 2), ks[0][4]))
        for k, s in cells:
            conc = (
                f"{k[2]} trio tasks"
                if k[1] in (OURS_POOL, OURS)
                else f"{k[4]} thread{'s' if k[4] > 1 else ''}"
            )
            total = s.ok + s.wrong + s.errors
            wrong = f"{s.wrong} / {total}" if total else "-"
            ratio = "" if k[1] == OURS_POOL else _ratio(ours, s)
            label = POOL_ROW_LABELS.get(k[1]) or CLIENT_LABELS.get(k[1], k[1])
            lines.append(
                f"| {w} | {m} | {label} | {conc} | {s.fmt} | {s.cpu or '-'} | {wrong} | "
                f"{s.errors} | {s.hung} | {ratio} |"
            )
    return "\n".join(lines)


def pool_vs_connection(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown table: per pool case, our pool over one trio_tarantool connection
    (median req/s, median CPU per request) and whether issue 11's targets are met;
    "" when no case has both (raw files from before the one-connection row)."""
    stats = group(runs)
    head = [
        "workload",
        "mode",
        "req/s pool / one connection",
        "CPU/request pool / one connection",
        f"issue 11 (req/s >= {POOL_RPS_TARGET}x, CPU <= {POOL_CPU_TARGET}x)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    found = False
    for w, m in _pool_cases(stats):
        pool, one = _pool_cell(stats, w, m, OURS_POOL), _pool_cell(stats, w, m, OURS)
        if pool is None or one is None:
            continue
        found = True
        rps, cpu = _ratio(pool, one), _cpu_ratio(pool, one)
        lines.append(f"| {w} | {m} | {rps} | {cpu} | {_pool_verdict(pool, one)} |")
    return "\n".join(lines) if found else ""


def _pool_verdict(pool: Stat, one: Stat) -> str:
    """ "met", "missed: req/s, CPU" (what is missed) or "-" (nothing to compare)."""
    missed, known = [], False
    if pool.rounds and one.rounds and one.median > 0:
        known = True
        if pool.median / one.median < POOL_RPS_TARGET:
            missed.append("req/s")
    if pool.cpu_us > 0 and one.cpu_us > 0:
        known = True
        if pool.cpu_us / one.cpu_us > POOL_CPU_TARGET:
            missed.append("CPU")
    if not known:
        return "-"
    return f"missed: {', '.join(missed)}" if missed else "met"


# ---------------------------------------------------------------- docs/benchmarks.md sections


def replace_section(path: Path, name: str, body: str) -> None:
    """Rewrite the text between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    The file must already hold the markers (docs/benchmarks.md ships with them);
    everything outside them is prose that the harness never touches.
    """
    text = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {start} ... {end} section")
    path.write_text(pattern.sub(lambda _m: f"{start}\n{body.strip()}\n{end}", text))


# ---------------------------------------------------------------- SVG


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = float(10 ** (len(str(int(v))) - 1))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return 10 * mag


def _panel(
    title: str,
    groups: list[tuple[str, list[tuple[str, Stat | None]]]],
    colors: dict[str, str],
    labels: dict[str, str],
    y0: int,
    width: int,
) -> tuple[list[str], int]:
    """One grouped-bar panel; returns SVG elements and the panel height."""
    height, top, left, bottom = 330, 40, 70, 95
    plot_h = height - top - bottom
    vmax = _nice_max(
        max([s.high for _, bars in groups for _, s in bars if s and s.rounds] or [1.0])
    )
    n_bars = max(len(b) for _, b in groups) if groups else 1
    gw = (width - left - 20) / max(1, len(groups))
    bw = min(22.0, (gw - 10) / n_bars)
    out = [f'<text x="{left}" y="{y0 + 22}" class="title">{escape(title)}</text>']
    for k in range(6):  # grid and y ticks
        v = vmax * k / 5
        y = y0 + top + plot_h - plot_h * k / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v / 1000:,.0f}k</text>'
        )
    out.append(
        f'<text x="12" y="{y0 + top + plot_h / 2:.0f}" class="tick" '
        f'transform="rotate(-90 12 {y0 + top + plot_h / 2:.0f})" text-anchor="middle">req/s</text>'
    )
    for gi, (gname, bars) in enumerate(groups):
        gx = left + gi * gw + (gw - bw * len(bars)) / 2
        for bi, (series, s) in enumerate(bars):
            x = gx + bi * bw
            if s is None or s.rounds == 0:
                continue
            h = plot_h * s.median / vmax
            y = y0 + top + plot_h - h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                f'fill="{colors[series]}"><title>{escape(labels[series])} {escape(gname)}: '
                f"{s.median:,.0f} req/s (min {s.low:,.0f}, max {s.high:,.0f})</title></rect>"
            )
            cx = x + (bw - 2) / 2
            ylo = y0 + top + plot_h - plot_h * s.low / vmax
            yhi = y0 + top + plot_h - plot_h * s.high / vmax
            out.append(
                f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" class="whisker"/>'
            )
            replies = s.ok + s.wrong
            if s.wrong and replies:
                out.append(
                    f'<text x="{cx:.1f}" y="{min(y, yhi) - 4:.1f}" class="warn" text-anchor="middle">'
                    f"{100 * s.wrong / replies:.0f}% wrong</text>"
                )
        lx = left + gi * gw + gw / 2
        ly = y0 + top + plot_h + 12
        out.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" class="label" text-anchor="end" '
            f'transform="rotate(-35 {lx:.1f} {ly:.1f})">{escape(gname)}</text>'
        )
    lx = left
    for series in dict.fromkeys(s for _, bars in groups for s, _ in bars):
        out.append(
            f'<rect x="{lx}" y="{y0 + height - 18}" width="12" height="12" fill="{colors[series]}"/>'
        )
        out.append(
            f'<text x="{lx + 16}" y="{y0 + height - 8}" class="label">{escape(labels[series])}</text>'
        )
        lx += 30 + 7 * len(labels[series])
    return out, height


def render_svg(
    single_runs: Sequence[dict[str, Any]],
    pool_runs: Sequence[dict[str, Any]],
    workloads: Sequence[str],
    shapes: Sequence[int],
    clients: Sequence[str],
) -> str:
    """Grouped bars of median req/s (whiskers: min-max) per workload per client."""
    width = 1200
    parts: list[str] = []
    y = 0
    stats = group(single_runs)
    # Sequential runs are latency bound and ~10x slower than concurrent ones: they get
    # their own panel (own scale) so their differences stay visible.
    for title, wanted in (
        ("One connection, sequential: one task awaits each reply", [t for t in shapes if t == 1]),
        ("One connection, many tasks sharing it", [t for t in shapes if t != 1]),
    ):
        groups = []
        for w in workloads:
            for t in wanted:
                bars = [(c, stats.get((w, c, t, "", 0))) for c in clients if runs_case(c, w, t)]
                if any(s is not None for _, s in bars):
                    label = w if len(wanted) == 1 else f"{w} · {shape_label(t)}"
                    groups.append((label, bars))
        if groups:
            elems, h = _panel(
                f"{title} (median req/s; whiskers: min-max over rounds)",
                groups,
                COLORS,
                CLIENT_LABELS,
                y,
                width,
            )
            parts += elems
            y += h
    pstats = group(pool_runs)
    if pstats:
        labels = {
            "trio_tarantool-pool": "trio_tarantool pool (100 tasks)",
            "trio_tarantool": "trio_tarantool one connection (100 tasks)",
            "tarantool-python-pool/1": "tarantool-python pool (1 thread)",
            "tarantool-python-pool/8": "tarantool-python pool (8 threads)",
        }
        pcolors = dict(COLORS, trio_tarantool="#90cdf4")  # lighter than the pool's blue
        pgroups = []
        for w, m in _pool_cases(pstats):
            pbars: list[tuple[str, Stat | None]] = []
            for k, s in sorted(pstats.items()):
                if k[0] == w and k[3] == m:
                    series = k[1] if k[1] in (OURS_POOL, OURS) else f"{k[1]}/{k[4]}"
                    if series in labels:
                        pbars.append((series, s))
            pbars.sort(key=lambda b: list(labels).index(b[0]))
            pgroups.append((f"{w} {m}", pbars))
        elems, h = _panel(
            "Pool of 3 (master + 2 replicas): replies per second, wrong answers included",
            pgroups,
            pcolors,
            labels,
            y,
            width,
        )
        parts += elems
        y += h
    style = (
        "<style>.title{font:bold 15px sans-serif}.tick{font:11px sans-serif;fill:#444}"
        ".label{font:11px sans-serif;fill:#222}.warn{font:bold 10px sans-serif;fill:#c53030}.grid{stroke:#ddd}.whisker{stroke:#000;stroke-width:1.2}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}">'
        f'{style}<rect width="100%" height="100%" fill="white"/>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )
