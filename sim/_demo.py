"""The demo: a real ConnectionPool under seeded chaos, checked against ground truth.

``python -m sim --seed 7 --hours 1`` runs, in virtual time, a replicaset of
three simulated instances through failovers, crashes, partitions and pauses
while writer tasks insert unique rows through the pool (``Mode.RW``) and a
reader selects (``Mode.PREFER_RO``). Afterwards the world is healed and the
outcome of every request is checked against what the instances really did:

* a write that succeeded is stored on the final master (nothing acknowledged
  is lost);
* a write that failed with ``may_have_executed`` False is stored nowhere
  (the pool never re-sent or ran a request it reports as not executed);
* every executed INSERT ran on an instance that was writable at that moment.

It also measures how long after each failover the pool's first write
succeeded again (the pool's failover detection latency).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from ._world import seed_trio_scheduler


@dataclass
class DemoReport:
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


async def run_demo(seed: int = 0, duration: float = 3600.0, *, mean_interval: float = 60.0,
                   refresh_delay: float = 1.0, socket_timeout: float = 1.0) -> DemoReport:
    """Run the scenario inside the current ``trio.run`` (use a MockClock)."""
    import trio_tarantool as tt

    from . import open_replicaset

    report = DemoReport(seed, duration)
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


def _check(rs: Any, outcomes: dict[int, tuple[str, bool]], report: DemoReport) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--mean-interval", type=float, default=60.0,
                        help="mean virtual seconds between injected faults")
    args = parser.parse_args(argv)
    seed_trio_scheduler(args.seed)
    wall0 = time.perf_counter()  # only to report speed; the simulation never reads it
    report = trio.run(
        lambda: run_demo(args.seed, args.hours * 3600, mean_interval=args.mean_interval),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    report.wall_seconds = time.perf_counter() - wall0
    print(report.summary())
    return 1 if report.violations else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
