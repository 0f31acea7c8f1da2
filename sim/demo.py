"""``python -m sim.demo``: a simulated replicaset under traffic, with faults.

Three simulated instances, a real :class:`trio_tarantool.ConnectionPool` on
them, and one client task per request mode. Half-way through a partition cuts
a replica off, then the master crashes and a replica is promoted, then the old
master comes back and a planned switchover moves the master role again. Each
virtual second prints one timeline row (per instance: true role, the pool's
view, requests served per second; per mode: successes and errors), and at the
end an SVG plot of the run is written.

Time is virtual (trio's MockClock): ``--rate`` virtual seconds pass per real
second, so the timeline can be watched; ``--fast`` runs as fast as the CPU
allows (used by the test suite). No Tarantool is needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio.testing

import trio_tarantool as tt
from trio_tarantool import Mode, Status

from . import open_replicaset
from ._replicaset import Replicaset

MODES = (Mode.ANY, Mode.RW, Mode.RO, Mode.PREFER_RW, Mode.PREFER_RO)
#: Request interval of each mode's client (virtual seconds): 50 requests/s each.
INTERVAL = 0.02
REQUEST_TIMEOUT = 0.5
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


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
class Run:
    """The whole timeline, the fault events and their times."""

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


def _format_row(run: Run, sec: Second) -> str:
    cells = []
    for name, role, view, served in zip(run.names, sec.roles, sec.views, sec.served, strict=True):
        mark = " " if role == view or (role in ("down", "paused") and view == "unhealthy") else "*"
        cells.append(f"{name} {role:>6}/{view:<9}{mark}{served:>4}/s")
    modes = " ".join(f"{m}:{sec.ok[m]:>3}" + (f"!{sec.err[m]}" if sec.err[m] else "") for m in sec.ok)
    return f"t={sec.t:>3}s | " + " | ".join(cells) + " || " + modes


async def run_demo(duration: float, seed: int, out: Callable[[str], None]) -> Run:
    """Run the scenario; ``out`` receives each timeline line as it happens."""
    async with open_replicaset(3, seed=seed, failover_window=(0.5, 1.5)) as rs:
        rs.create_space("demo", [("id", "unsigned"), ("v", "string")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        run = Run([inst.name for inst in rs.instances])
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
                        run.events.append((at, label))
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
                    run.seconds.append(sec)
                    out(_format_row(run, sec))
                nursery.cancel_scope.cancel()
        return run


def write_svg(run: Run, path: Path) -> None:
    """Requests served per second per instance, errors per second, fault events."""
    width, height, left, top, plot_h, err_h = 900, 420, 60, 30, 230, 80
    right = width - 150
    n = max(len(run.seconds), 1)
    peak = max([1, *(v for s in run.seconds for v in s.served)])
    peak_err = max([1, *(sum(s.err.values()) for s in run.seconds)])

    def x(t: float) -> float:
        return left + (right - left) * t / n

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">Simulated replicaset: requests served per instance '
        f'(top) and failed requests (bottom), per virtual second</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{right}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 5}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for at, label in run.events:
        parts.append(f'<line x1="{x(at):.1f}" y1="{top}" x2="{x(at):.1f}" y2="{top + plot_h + err_h + 20}" '
                     f'stroke="#999" stroke-dasharray="4,3"/>')
        parts.append(f'<text x="{x(at) + 3:.1f}" y="{top + plot_h + 12}" fill="#555" '
                     f'transform="rotate(-90 {x(at) + 3:.1f} {top + plot_h + 12})">{label}</text>')
    for i, name in enumerate(run.names):
        points = " ".join(f"{x(s.t):.1f},{y(s.served[i]):.1f}" for s in run.seconds)
        color = COLORS[i % len(COLORS)]
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{right + 10}" y="{top + 15 * i + 10}" fill="{color}">{name}</text>')
    base = top + plot_h + err_h + 20
    bar_w = max((right - left) / n - 1, 1)
    for s in run.seconds:
        total = sum(s.err.values())
        if total:
            h = err_h * total / peak_err
            parts.append(f'<rect x="{x(s.t - 1):.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="#d62728"/>')
    parts.append(f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="black"/>')
    parts.append(f'<text x="{left - 5}" y="{base - err_h + 4}" text-anchor="end">{peak_err}</text>')
    parts.append(f'<text x="{right + 10}" y="{base - 10}" fill="#d62728">errors</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{height - 8}" text-anchor="middle">virtual seconds</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=50.0, help="virtual seconds (default 50)")
    parser.add_argument("--rate", type=float, default=4.0, help="virtual seconds per real second")
    parser.add_argument("--fast", action="store_true", help="no pacing: as fast as possible")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--svg", type=Path, default=Path("demo.svg"), help="plot file (default demo.svg)")
    args = parser.parse_args(argv)
    clock = trio.testing.MockClock(autojump_threshold=0) if args.fast else trio.testing.MockClock(rate=args.rate)

    def out(line: str) -> None:
        print(line, flush=True)

    run = trio.run(run_demo, args.duration, args.seed, out, clock=clock)
    write_svg(run, args.svg)
    failed = sum(sum(s.err.values()) for s in run.seconds)
    total = failed + sum(sum(s.ok.values()) for s in run.seconds)
    print(f"\n{total} requests, {failed} failed ({100 * failed / max(total, 1):.2f}%); plot written to {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
