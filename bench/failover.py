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
from tests.real._servers import TEST_PASSWORD, TEST_USER, ServerManager

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


#: What the children write to, and as whom (``--elections`` switches to the tests' replicaset).
SPACE = "bench_w"
CREDENTIALS = {"user": USER, "password": PASSWORD}
#: Options of trio_tarantool's pool in the child (``--polling``: no box.status events).
TRIO_OPTIONS: dict[str, Any] = {}


def child_trio(addrs: list[dict[str, Any]], duration: float) -> list[dict[str, Any]]:
    """Write through trio_tarantool's pool; outcome from the exception's own claim."""
    import trio

    import trio_tarantool

    records: list[dict[str, Any]] = []

    async def main() -> None:
        open_pool, _ = find_open_pool()
        try:
            cm = open_pool(addrs, **CREDENTIALS, refresh_delay=REFRESH_DELAY, **TRIO_OPTIONS)
        except TypeError:  # no refresh_delay knob: run with the pool's default
            cm = open_pool(addrs, **CREDENTIALS)
        async with cm as pool:
            with trio.fail_after(15):
                while True:
                    try:
                        await pool.replace(SPACE, [0, "warm"], mode=trio_tarantool.Mode.RW)
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
                            SPACE, [write_key(i), write_val(i)], mode=trio_tarantool.Mode.RW
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

    pool = tarantool.ConnectionPool(addrs, **CREDENTIALS, refresh_delay=REFRESH_DELAY)
    deadline = time.monotonic() + 15
    while True:
        try:
            pool.replace(SPACE, (0, "warm"), mode=tarantool.Mode.RW)
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
                pool.replace(SPACE, (write_key(i), write_val(i)), mode=tarantool.Mode.RW)
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


def child_watcher(addrs: list[dict[str, Any]], duration: float) -> list[list[Any]]:
    """Independent box.status watchers (one plain connection per instance, not a pool):
    ``[port, is_ro, time.monotonic()]`` for every event, for ``duration`` seconds."""
    import trio

    import trio_tarantool

    marks: list[list[Any]] = []

    async def watch(addr: dict[str, Any], ready: trio.Event) -> None:
        async with trio_tarantool.connect(addr["host"], addr["port"], **CREDENTIALS) as conn, \
                conn.watch("box.status") as values:
            async for value in values:
                marks.append([addr["port"], value["is_ro"], time.monotonic()])
                ready.set()

    async def main() -> None:
        with trio.move_on_after(duration):
            async with trio.open_nursery() as nursery:
                for addr in addrs:
                    ready = trio.Event()
                    nursery.start_soon(watch, addr, ready)
                    await ready.wait()
                print("ready", flush=True)

    trio.run(main)
    return marks


def child_main(args: argparse.Namespace) -> None:
    """Child entry: run the writer, print the records as one JSON line, exit."""
    addrs = [{"host": "127.0.0.1", "port": int(p)} for p in args.ports.split(",")]
    if args.elections:
        global SPACE, CREDENTIALS
        SPACE, CREDENTIALS = "sync_w", {"user": TEST_USER, "password": TEST_PASSWORD}
    if args.child == "status-watcher":
        marks = child_watcher(addrs, args.duration)
        sys.stdout.write(json.dumps(marks) + "\n")
        sys.stdout.flush()
        os._exit(0)
    if args.child == "trio_tarantool-polling":
        TRIO_OPTIONS["status_events"] = False
    fn = child_python if args.child == "tarantool-python" else child_trio
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


# ---------------------------------------------------------------- elections (3.x)

ELECTION_CLIENTS = ("trio_tarantool", "trio_tarantool-polling", "tarantool-python")
ELECTION_LABELS = {
    "trio_tarantool": "trio_tarantool pool (box.status events)",
    "trio_tarantool-polling": "trio_tarantool pool (status_events=False, polling)",
    "tarantool-python": "tarantool-python pool (polling)",
}


@dataclass
class Election:
    """One election run: the server's own timing (independent watchers) and the writer's."""

    client: str
    scenario: str
    writes: int
    failed: int
    may_executed: int
    no_leader: float
    longest_stall: float
    first_write: float | None
    samples: list[str]


def _child(role: str, ports: str, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.failover", "--child", role, "--elections", "--ports", ports,
         "--duration", str(duration)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_election(client: str, scenario: str, args: argparse.Namespace) -> Election:
    """A fresh 3.x election replicaset (tests/real/_servers.py), independent status
    watchers, a writing child, then box.ctl.promote() on a follower or SIGKILL of the leader."""
    from tests.real._servers import find_binary

    with ServerManager(find_binary("3.8")) as manager:
        rs = manager.start_replicaset(3, election=True)
        leader = rs.leader()
        new = next(i for i in rs.instances if i is not leader)
        ports = ",".join(str(i.port) for i in rs.instances)
        duration = args.before + args.after + 3
        watcher = _child("status-watcher", ports, duration + 5)
        writer = _child(client, ports, duration)
        try:
            for proc in (watcher, writer):
                assert proc.stdout is not None and proc.stderr is not None
                line = proc.stdout.readline()
                if line.strip() != "ready":
                    raise RuntimeError(f"child did not start: {line}{proc.stderr.read()[-1500:]}")
            time.sleep(args.before)
            at = time.monotonic()
            if scenario == "promote":
                new.admin("box.ctl.promote()")
            else:
                leader.kill()
            out, err = writer.communicate(timeout=duration + WRITE_TIMEOUT + 30)
            wout, _werr = watcher.communicate(timeout=duration + 30)
        finally:
            for proc in (watcher, writer):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if writer.returncode != 0 or not out.strip():
            raise RuntimeError(f"{client} child failed ({writer.returncode}): {err[-1500:]}")
        records = json.loads(out.strip().splitlines()[-1])
        marks = json.loads(wout.strip().splitlines()[-1])
    writable = min(t for port, ro, t in marks if ro is False and t > at)
    if scenario == "promote":
        lost = min(t for port, ro, t in marks if port == leader.port and ro is True and t > at)
    else:
        lost = at  # the kill
    oks = sorted(r["te"] for r in records if r["outcome"] == "ok")
    stall = max((b - a for a, b in itertools.pairwise(oks)), default=0.0)
    after = [te for te in oks if te >= writable]
    failed = [r for r in records if r["outcome"] != "ok"]
    return Election(
        client=client, scenario=scenario, writes=len(records), failed=len(failed),
        may_executed=sum(r["outcome"] in ("may", "hung") for r in failed),
        no_leader=max(0.0, writable - lost), longest_stall=stall,
        first_write=(after[0] - writable) if after else None,
        samples=list(dict.fromkeys(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", r["detail"])
                                   for r in failed))[:3],
    )


def election_markdown(results: list[Election], notes: list[str]) -> str:
    """The elections section of docs/benchmarks.md."""
    names = {"promote": "(c) box.ctl.promote() on a follower", "kill": "(d) leader SIGKILL"}
    lines = [
        "Tarantool 3.8, 3 nodes, `election_mode='candidate'`, `replication_synchro_quorum=2`, "
        "`election_timeout=0.3`; one `replace` into a synchronous space (mode RW) every "
        f"{PERIOD * 1000:.0f} ms, refresh_delay={REFRESH_DELAY:g} s for every pool. *No leader* "
        "is the server's own time between the old leader turning read-only (or its kill) and "
        "the new one turning writable, seen by independent watcher connections on "
        "`box.status`; *first write* is the first successful write after that moment. One row "
        "per run.",
        "",
    ]
    lines += [f"> note: {n}" for n in notes]
    head = ["scenario", "pool", "writes", "failed (may have executed)", "no leader (server)",
            "longest write stall", "new leader writable → first write"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in results:
        first = "never" if o.first_write is None else f"{o.first_write * 1000:,.1f} ms"
        lines.append(
            f"| {names[o.scenario]} | {ELECTION_LABELS[o.client]} | {o.writes} | "
            f"{o.failed} ({o.may_executed}) | {o.no_leader * 1000:,.1f} ms | "
            f"{o.longest_stall * 1000:,.1f} ms | {first} |"
        )
    errors = [f"- {names[o.scenario]}, {ELECTION_LABELS[o.client]}: " + " · ".join(f"`{m}`" for m in o.samples)
              for o in results if o.samples]
    if errors:
        lines += ["", "Errors seen:", "", *errors]
    return "\n".join(lines)


def elections_main(args: argparse.Namespace) -> int:
    """``--elections``: every client through both election scenarios on the 3.x replicaset."""
    notes: list[str] = []
    clients = list(ELECTION_CLIENTS)
    try:
        import tarantool  # noqa: F401
    except ImportError:
        clients.remove("tarantool-python")
        notes.append("tarantool-python is not installed: its runs are skipped")
    results: list[Election] = []
    failures = 0
    for _ in range(args.rounds):
        for scenario in ("promote", "kill"):
            for client in clients:
                try:
                    o = run_election(client, scenario, args)
                except Exception as exc:
                    failures += 1
                    print(f"{scenario} {client}: FAILED {exc}", flush=True)
                    continue
                results.append(o)
                print(f"{scenario} {client}: failed={o.failed} no_leader={o.no_leader * 1000:.1f}ms "
                      f"stall={o.longest_stall * 1000:.1f}ms first_write="
                      f"{'never' if o.first_write is None else f'{o.first_write * 1000:.1f}ms'}", flush=True)
    md = election_markdown(results, notes)
    print(md)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "elections.md").write_text(md)
    if not args.no_write and results:
        report.replace_section(DOC, "elections", md)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 1 if failures else 0


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
        "--child",
        choices=("trio_tarantool", "trio_tarantool-polling", "tarantool-python", "status-watcher"),
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--elections", action="store_true",
        help="the 3.x election scenarios (box.ctl.promote, leader SIGKILL) instead",
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
    if args.elections:
        return elections_main(args)
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
