"""Failover timing: what a writing application sees while the master changes.

For each scenario and pool, a fresh 3-instance replicaset is started and a child
process writes through the pool (mode RW) every 10 ms, one write at a time, logging
each write's start, end and outcome with ``time.monotonic()`` (system-wide on Linux,
so the parent's event times are on the same clock). The parent triggers the event:

(a) planned switch: the master is set read-only, then replica 1 is made writable;
(b) crash: the master gets SIGKILL, and ``--promote-after`` seconds later (an
    orchestrator's detection time) replica 1 is made writable.

Reported per run: failed writes, the longest stall (largest gap between two
consecutive successful writes), the time from promotion to the first successful
write, and failed writes split into "surely not executed" and "may have executed".
trio_tarantool's exceptions say which (``.may_have_executed``); the reference pool's
do not, so for it only server refusals (ER_READONLY/ER_LOADING) and "no RW instance"
count as surely not executed and everything else as "may have executed (unknown)".
Afterwards the parent reads space ``bench_w`` from the new master through the admin
console and checks each claim: a write reported as surely not executed must be
absent; an acknowledged one should be present (unless asynchronous replication lost
it in the crash, which is counted separately).

Run: ``bench/run failover [--rounds R] [--no-write]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report, servers
from bench.servers import PASSWORD, USER
from bench.workload import find_open_pool

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
OUT = REPO / "bench" / "out"
PERIOD = 0.010
WRITE_TIMEOUT = 2.0
REFRESH_DELAY = 1.0
NOT_EXECUTED_CODES = {7, 116}  # ER_READONLY, ER_LOADING


def write_key(i: int) -> int:
    """Key of write ``i`` (distinct per run: runs write fewer than ROWS times)."""
    return i + 1


def write_val(i: int) -> str:
    """Value of write ``i``: the verification looks for exactly this."""
    return f"f{i}"


# ---------------------------------------------------------------- children


def _record(i: int, ts: float, te: float, outcome: str, detail: str = "") -> dict[str, Any]:
    return {"i": i, "ts": ts, "te": te, "outcome": outcome, "detail": detail[:200]}


def child_trio(addrs: list[dict[str, Any]], duration: float) -> list[dict[str, Any]]:
    """Write through trio_tarantool's pool; outcome from the exception's own claim."""
    import trio

    import trio_tarantool

    records: list[dict[str, Any]] = []

    async def main() -> None:
        open_pool, _ = find_open_pool()
        try:
            cm = open_pool(addrs, user=USER, password=PASSWORD, refresh_delay=REFRESH_DELAY)
        except TypeError:  # no refresh_delay knob: run with the pool's default
            cm = open_pool(addrs, user=USER, password=PASSWORD)
        async with cm as pool:
            with trio.fail_after(15):
                while True:
                    try:
                        await pool.replace("bench_w", [0, "warm"], mode=trio_tarantool.Mode.RW)
                        break
                    except trio_tarantool.Error:
                        await trio.sleep(0.05)
            print("ready", flush=True)
            end = time.monotonic() + duration
            nxt = time.monotonic()
            i = 0
            while time.monotonic() < end:
                ts = time.monotonic()
                outcome, detail = "ok", ""
                with trio.move_on_after(WRITE_TIMEOUT) as cs:
                    try:
                        await pool.replace(
                            "bench_w", [write_key(i), write_val(i)], mode=trio_tarantool.Mode.RW
                        )
                    except trio_tarantool.Error as exc:
                        mhe = getattr(exc, "may_have_executed", None)
                        if mhe is None:  # PoolTopologyError: nothing was sent
                            mhe = not isinstance(exc, trio_tarantool.PoolTopologyError)
                        outcome = "may" if mhe else "not"
                        detail = f"{type(exc).__name__}: {exc}"
                if cs.cancelled_caught:
                    outcome, detail = "may", f"timeout after {WRITE_TIMEOUT} s"
                records.append(_record(i, ts, time.monotonic(), outcome, detail))
                i += 1
                nxt = max(nxt + PERIOD, time.monotonic())
                await trio.sleep(max(0.0, nxt - time.monotonic()))

    trio.run(main)
    return records


def child_python(addrs: list[dict[str, Any]], duration: float) -> list[dict[str, Any]]:
    """Write through tarantool-python's ConnectionPool from one thread.

    The reference pool has no request timeout, so the writer is a daemon thread; a
    write still blocked when the run ends is recorded as "hung".
    """
    import tarantool

    pool = tarantool.ConnectionPool(
        addrs, user=USER, password=PASSWORD, refresh_delay=REFRESH_DELAY
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            pool.replace("bench_w", (0, "warm"), mode=tarantool.Mode.RW)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    print("ready", flush=True)
    records: list[dict[str, Any]] = []
    current: list[tuple[int, float]] = []
    end = time.monotonic() + duration

    def writer() -> None:
        nxt = time.monotonic()
        i = 0
        while time.monotonic() < end:
            ts = time.monotonic()
            current[:] = [(i, ts)]
            outcome, detail = "ok", ""
            try:
                pool.replace("bench_w", (write_key(i), write_val(i)), mode=tarantool.Mode.RW)
            except Exception as exc:
                outcome = "not" if _python_refused(exc) else "may"
                detail = f"{type(exc).__name__}: {exc}"
            current.clear()
            records.append(_record(i, ts, time.monotonic(), outcome, detail))
            i += 1
            nxt = max(nxt + PERIOD, time.monotonic())
            time.sleep(max(0.0, nxt - time.monotonic()))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    t.join(timeout=duration + WRITE_TIMEOUT + 3)
    for i, ts in list(current):
        records.append(_record(i, ts, time.monotonic(), "hung", "still blocked at the end"))
    return records


def _python_refused(exc: Exception) -> bool:
    """Whether a reference-pool exception proves the write was not executed: the pool
    found no RW instance (nothing sent), or the server refused it (read-only/loading).
    The pool's topology error subclasses DatabaseError, so it is matched by name first."""
    if type(exc).__name__ in ("PoolTopologyError", "PoolTolopogyError"):
        return True
    import tarantool

    if isinstance(exc, tarantool.error.DatabaseError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in NOT_EXECUTED_CODES
    return False


def child_main(args: argparse.Namespace) -> None:
    """Child entry: run the writer, print the records as one JSON line, exit."""
    addrs = [{"host": "127.0.0.1", "port": int(p)} for p in args.ports.split(",")]
    fn = child_trio if args.child == "trio_tarantool" else child_python
    records = fn(addrs, args.duration)
    sys.stdout.write(json.dumps(records) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait on a reference-pool thread that may be stuck


# ---------------------------------------------------------------- parent


@dataclass
class Outcome:
    """Metrics of one scenario run for one pool."""

    client: str
    scenario: str
    writes: int
    ok: int
    not_executed: int
    may_executed: int
    hung: int
    longest_stall: float
    recovery: float | None
    lied: int
    may_found: int
    acked_lost: int
    samples: list[str]


def _bench_w_rows(inst: servers.TarantoolInstance) -> dict[int, str]:
    text = inst.admin("return box.space.bench_w:select()", timeout=20)
    return {int(k): v for k, v in re.findall(r"\[(\d+), '?([^'\]\n]+?)'?\]", text)}


def analyse(
    client: str,
    scenario: str,
    records: list[dict[str, Any]],
    promoted_at: float,
    rows: dict[int, str],
) -> Outcome:
    """Reduce a child's write log plus the final table contents to metrics."""
    oks = sorted(r["te"] for r in records if r["outcome"] == "ok")
    stall = max((b - a for a, b in itertools.pairwise(oks)), default=0.0)
    after = [te for te in oks if te >= promoted_at]
    recovery = (after[0] - promoted_at) if after else None
    present = {i: rows.get(write_key(r["i"])) == write_val(r["i"]) for i, r in enumerate(records)}
    by = {
        k: [n for n, r in enumerate(records) if r["outcome"] == k]
        for k in ("ok", "not", "may", "hung")
    }
    samples = list(
        dict.fromkeys(
            re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", r["detail"])
            for r in records
            if r["outcome"] != "ok"
        )
    )[:4]
    return Outcome(
        client=client,
        scenario=scenario,
        writes=len(records),
        ok=len(by["ok"]),
        not_executed=len(by["not"]),
        may_executed=len(by["may"]),
        hung=len(by["hung"]),
        longest_stall=stall,
        recovery=recovery,
        lied=sum(present[n] for n in by["not"]),
        may_found=sum(present[n] for n in by["may"] + by["hung"]),
        acked_lost=sum(not present[n] for n in by["ok"]),
        samples=samples,
    )


def run_one(client: str, scenario: str, args: argparse.Namespace) -> Outcome:
    """Fresh replicaset, a writing child, the event, then the verification read."""
    with servers.replicaset() as cluster:
        master, new = cluster.instances[0], cluster.instances[1]
        ports = ",".join(str(i.port) for i in cluster.instances)
        duration = args.before + args.promote_after + args.after
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.failover",
                "--child",
                client,
                "--ports",
                ports,
                "--duration",
                str(duration),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(
                    f"{client} child did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(args.before)
            if scenario == "planned":
                servers.demote(master)
                time.sleep(0.05)  # let the replica apply the last rows before it takes writes
                promoted_at = time.monotonic()
                servers.promote(new)
            else:
                master.kill()  # SIGKILL
                time.sleep(args.promote_after)
                promoted_at = time.monotonic()
                servers.promote(new)
            out, err = proc.communicate(timeout=duration + WRITE_TIMEOUT + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"{client} child failed ({proc.returncode}): {err[-1500:]}")
        records = json.loads(out.strip().splitlines()[-1])
        rows = _bench_w_rows(new)
    return analyse(client, scenario, records, promoted_at, rows)


def markdown(results: list[Outcome], args: argparse.Namespace, notes: list[str]) -> str:
    """The failover section of docs/benchmarks.md."""
    head = [
        "scenario",
        "pool",
        "writes",
        "failed: surely not executed",
        "failed: may have executed",
        "hung",
        "longest stall",
        "promotion → first write",
        "claims checked",
    ]
    lines = [
        f"One write (replace, mode RW) every {PERIOD * 1000:.0f} ms; both pools with "
        f"refresh_delay={REFRESH_DELAY:g} s; trio_tarantool writes are cancelled after "
        f"{WRITE_TIMEOUT:g} s (the reference pool has no request timeout). (b) promotes "
        f"replica 1 {args.promote_after:g} s after the SIGKILL. One row per run.",
        "",
    ]
    lines += [f"> note: {n}" for n in notes]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {"planned": "(a) planned switch", "kill": "(b) master SIGKILL"}
    for o in results:
        rec = "never" if o.recovery is None else f"{o.recovery * 1000:,.0f} ms"
        checks = []
        checks.append("0 lies" if o.lied == 0 else f"**{o.lied} 'not executed' were executed**")
        if o.may_executed + o.hung:
            checks.append(f"{o.may_found}/{o.may_executed + o.hung} 'may' did execute")
        if o.acked_lost:
            checks.append(f"{o.acked_lost} acknowledged writes lost by async replication")
        lines.append(
            f"| {names[o.scenario]} | {report.CLIENT_LABELS[o.client + '-pool']} | {o.writes} | "
            f"{o.not_executed} | {o.may_executed} | {o.hung} | {o.longest_stall * 1000:,.0f} ms | "
            f"{rec} | {'; '.join(checks)} |"
        )
    seen: dict[tuple[str, str], list[str]] = {}
    for o in results:
        bucket = seen.setdefault((o.scenario, o.client), [])
        bucket += [m for m in o.samples if m not in bucket]
    details = [
        f"- {names[sc]}, {cl}: " + " · ".join(f"`{m}`" for m in msgs[:4])
        for (sc, cl), msgs in seen.items()
        if msgs
    ]
    if details:
        lines += ["", "Errors seen (distinct messages, all rounds):", "", *details]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parent entry: run the scenarios for each available pool, write the report."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--child", choices=("trio_tarantool", "tarantool-python"), help=argparse.SUPPRESS
    )
    p.add_argument("--ports", help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=1, help="runs per scenario and pool")
    p.add_argument("--before", type=float, default=1.0, help="seconds of writes before the event")
    p.add_argument("--after", type=float, default=4.0, help="seconds of writes after promotion")
    p.add_argument(
        "--promote-after", type=float, default=0.5, help="(b) seconds from kill to promotion"
    )
    p.add_argument("--no-write", action="store_true", help="do not touch docs/")
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    notes: list[str] = []
    clients = []
    opener, why = find_open_pool()
    if opener is not None:
        clients.append("trio_tarantool")
        if why:
            notes.append(why)
    else:
        notes.append(f"{why}: its runs are skipped")
    try:
        import tarantool  # noqa: F401

        clients.append("tarantool-python")
    except ImportError:
        notes.append("tarantool-python is not installed: its runs are skipped")
    for n in notes:
        print(f"note: {n}", flush=True)
    results: list[Outcome] = []
    failures = 0
    for _ in range(args.rounds):
        for scenario in ("planned", "kill"):
            for client in clients:
                try:
                    o = run_one(client, scenario, args)
                except Exception as exc:
                    failures += 1
                    print(f"{scenario} {client}: FAILED {exc}", flush=True)
                    continue
                results.append(o)
                print(
                    f"{scenario} {client}: ok={o.ok} not={o.not_executed} may={o.may_executed} "
                    f"hung={o.hung} stall={o.longest_stall * 1000:.0f}ms "
                    f"recovery={'never' if o.recovery is None else f'{o.recovery * 1000:.0f}ms'} "
                    f"lied={o.lied} may_found={o.may_found} acked_lost={o.acked_lost}",
                    flush=True,
                )
    md = markdown(results, args, notes)
    print(md)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "failover.md").write_text(md)
    if not args.no_write and results:
        report.replace_section(DOC, "failover", md)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 1 if failures else 0


if __name__ == "__main__":
    servers.install_signal_handlers()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
