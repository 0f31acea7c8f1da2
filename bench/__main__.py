"""Throughput benchmark: trio_tarantool side by side with its peers.

``bench/run`` (or ``python -m bench`` from the repo root, inside bench/.venv) starts a
local Tarantool (``wal_mode='none'``) and a 3-instance replicaset, then runs every
workload x shape x client in interleaved rounds: within a round each case runs every
client once, one fresh subprocess per run, and the client order rotates between
rounds so no client always goes first. Results: raw JSON in bench/out/, tables in
docs/benchmarks.md (the "results" section) and grouped bars in docs/bench.svg.

``--smoke`` runs tiny N for one round, writes only to bench/out/, and exits non-zero
if any client run failed or trio_tarantool gave a wrong answer or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine, report, servers
from bench.workload import POOL_WORKLOADS, WORKLOADS, find_open_pool

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
DOC = REPO / "docs" / "benchmarks.md"
SVG = REPO / "docs" / "bench.svg"
SHAPES = (1, 100, 1000)
POOL_CASES = (("select", "ANY"), ("select", "PREFER_RO"), ("replace", "RW"))


@dataclass(frozen=True)
class Run:
    """One subprocess measurement to perform."""

    client: str
    workload: str
    tasks: int
    n: int
    mode: str = ""
    threads: int = 0
    instance: int | None = None
    """Index into the cluster's addresses of the one instance this run talks to
    (``None``: the worker gets them all). The one-connection row of a pool case
    sets 0, the master."""

    def argv(self, addrs: list[str], cap: float) -> list[str]:
        """Command line of the worker for this run."""
        if self.instance is not None:
            addrs = [addrs[self.instance]]
        cmd = [
            sys.executable,
            "-m",
            "bench.worker",
            "--client",
            self.client,
            "--workload",
            self.workload,
            "--tasks",
            str(self.tasks),
            "--n",
            str(self.n),
            "--cap",
            str(cap),
        ]
        if self.mode:
            cmd += ["--mode", self.mode]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        for a in addrs:
            cmd += ["--addr", a]
        return cmd


def available_clients() -> tuple[list[str], bool, list[str]]:
    """Which clients can run here: (single-connection clients, trio pool?, notes)."""
    notes: list[str] = []
    clients: list[str] = []
    ours_pool = False
    try:
        import trio_tarantool

        if hasattr(trio_tarantool, "connect"):
            clients.append("trio_tarantool")
        else:
            notes.append("trio_tarantool.connect does not exist yet: trio_tarantool skipped")
        clients.append("floor")
        opener, why = find_open_pool()
        ours_pool = opener is not None and hasattr(trio_tarantool, "Mode")
        if not ours_pool:
            notes.append(f"{why}: trio_tarantool pool cases skipped")
        elif why:
            notes.append(why)
    except ImportError as exc:
        notes.append(f"trio_tarantool does not import ({exc}): skipped")
    have = {m: importlib.util.find_spec(m) is not None for m in ("asynctnt", "uvloop", "tarantool")}
    if have["asynctnt"]:
        clients.append("asynctnt")
        if have["uvloop"]:
            clients.append("asynctnt+uvloop")
        else:
            notes.append("uvloop not installed: asynctnt+uvloop skipped")
    else:
        notes.append("asynctnt not installed: skipped")
    if have["tarantool"]:
        clients.append("tarantool-python")
    else:
        notes.append("tarantool (tarantool-python) not installed: skipped")
    return clients, ours_pool, notes


def plan_single(
    clients: list[str], workloads: list[str], shapes: list[int], n_seq: int, n_conc: int
) -> list[list[Run]]:
    """Cases of the single-connection benchmark; each case lists one run per client."""
    cases = []
    for w in workloads:
        for t in shapes:
            runs = [
                Run(c, w, t, n_seq if t == 1 else n_conc)
                for c in clients
                if report.runs_case(c, w, t)
            ]
            if runs:
                cases.append(runs)
    return cases


def plan_pool(clients: list[str], ours_pool: bool, n_pool: int) -> list[list[Run]]:
    """Cases of the pool benchmark: ours with 100 tasks, beside one trio_tarantool
    Connection with 100 tasks on the same replicaset (the baseline of issue 11's
    pool targets), vs the reference with 1 and 8 threads.

    The one connection always talks to the master (``instances[0]``): the writes
    (replace, RW) must go there, and the reads (select, ANY / PREFER_RO) are served
    there just as well (every instance holds the same rows), so every case compares
    the pool against the same one connection. Its run carries the case's mode only
    as a label. It runs only beside our pool (``trio_tarantool`` and
    ``trio_tarantool-pool`` both selected): it is the pool's baseline.
    """
    cases = []
    for w, m in POOL_CASES:
        assert w in POOL_WORKLOADS
        runs = []
        if ours_pool:
            runs.append(Run(report.OURS_POOL, w, 100, n_pool, mode=m))
            if report.OURS in clients:
                runs.append(Run(report.OURS, w, 100, n_pool, mode=m, instance=0))
        if "tarantool-python" in clients:
            runs += [
                Run("tarantool-python-pool", w, 1, n_pool, mode=m, threads=th) for th in (1, 8)
            ]
        if runs:
            cases.append(runs)
    return cases


def execute(run: Run, addrs: list[str], cap: float, rnd: int) -> dict[str, Any]:
    """Run one worker subprocess and return its JSON (or a failure record)."""
    try:
        proc = subprocess.run(
            run.argv(addrs, cap),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=cap + 45,
            preexec_fn=servers.client_preexec,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            result: dict[str, Any] = json.loads(lines[-1])
            result["round"] = rnd
            return result
        why = f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
    except subprocess.TimeoutExpired:
        why = f"timed out after {cap + 45:.0f} s"
    return {
        "client": run.client,
        "workload": run.workload,
        "tasks": run.tasks,
        "mode": run.mode,
        "threads": run.threads,
        "requested": run.n,
        "failed": True,
        "why": why,
        "round": rnd,
    }


def run_rounds(
    cases: list[list[Run]], addrs: list[str], rounds: int, cap: float, label: str
) -> list[dict[str, Any]]:
    """Interleave: every round runs every case with every client, rotating client order."""
    results = []
    for rnd in range(rounds):
        for case in cases:
            k = rnd % len(case)
            for run in case[k:] + case[:k]:
                r = execute(run, addrs, cap, rnd)
                results.append(r)
                shape = report.shape_label(run.tasks) if not run.threads else f"{run.threads} thr"
                tag = f"{run.mode} " if run.mode else ""
                if r.get("failed"):
                    print(
                        f"[{label} r{rnd + 1}] {run.workload} {tag}{shape} {run.client}: FAILED {r['why']}",
                        flush=True,
                    )
                else:
                    extra = "".join(
                        f" {key}={r[key]}" for key in ("wrong", "errors", "hung") if r[key]
                    )
                    print(
                        f"[{label} r{rnd + 1}] {run.workload} {tag}{shape} {run.client}: "
                        f"{r['rps']:,.0f} req/s{extra}",
                        flush=True,
                    )
    return results


def versions() -> dict[str, str]:
    """Versions of everything measured, for the report header."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("trio-tarantool", "trio", "asynctnt", "uvloop", "tarantool"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        tv = subprocess.run(
            [servers.tarantool_binary(), "--version"], capture_output=True, text=True
        )
        out["tarantool server"] = tv.stdout.splitlines()[0].split()[1]
    except (OSError, IndexError, RuntimeError):
        pass
    return out


def smoke_failures(results: list[dict[str, Any]]) -> list[str]:
    """Why a smoke run must fail: a run that crashed or timed out, a client that
    completed nothing, or any wrong answer, error or hang of trio_tarantool."""
    bad = []
    for r in results:
        name = f"{r['client']} {r['workload']} tasks={r['tasks']} {r.get('mode', '')}".strip()
        if r.get("failed"):
            bad.append(f"{name}: {r['why']}")
        elif r["client"].startswith("trio_tarantool") and (r["wrong"] or r["errors"] or r["hung"]):
            bad.append(
                f"{name}: wrong={r['wrong']} errors={r['errors']} hung={r['hung']} "
                f"{r.get('error_samples', []) + r.get('wrong_samples', [])}"
            )
        elif r["ok"] + r["wrong"] == 0 and (
            r["client"].startswith("trio_tarantool") or not r["hung"]
        ):
            # A peer whose requests hang is a finding about the peer (reported in the
            # tables), not a broken harness; one that completes nothing otherwise is.
            bad.append(f"{name}: no request completed {r.get('error_samples', [])}")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["balance"]:  # bench/run balance: strategies with a slowed replica (bench/balance.py)
        from bench import balance

        return balance.main(argv[1:])
    if argv[:1] == ["sharded"]:  # bench/run sharded: crud on a vshard cluster (bench/sharded.py)
        from bench import sharded

        return sharded.main(argv[1:])
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="tiny N, 1 round, < 60 s; no docs written")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--n-seq", type=int, default=20_000, help="requests per sequential run")
    p.add_argument("--n-conc", type=int, default=100_000, help="requests per 100/1000-task run")
    p.add_argument("--n-pool", type=int, default=20_000, help="requests per pool run")
    p.add_argument(
        "--cap", type=float, default=20.0, help="max seconds per run (rate from what completed)"
    )
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list (default: all)")
    p.add_argument(
        "--shapes", default=",".join(map(str, SHAPES)), help="tasks per run, 1 = sequential"
    )
    p.add_argument(
        "--clients",
        default="",
        help="comma list to restrict clients: trio_tarantool, asynctnt, asynctnt+uvloop, "
        "tarantool-python, floor, trio_tarantool-pool (trio_tarantool together with "
        "trio_tarantool-pool also adds the one-connection row to the pool cases)",
    )
    p.add_argument("--no-pool", action="store_true", help="skip the replicaset/pool cases")
    p.add_argument("--no-single", action="store_true", help="skip the single-connection cases")
    p.add_argument("--no-write", action="store_true", help="do not touch docs/")
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="pin servers to the last CPU and clients to the others (default: off; on this "
        "2-CPU VM pinning made sequential runs ~2.5x slower, cross-core wake-ups, "
        "without reducing the spread)",
    )
    p.add_argument(
        "--client-cpu",
        type=float,
        metavar="FRACTION",
        help="hold every measured client to this fraction of one CPU (a cgroup CPU quota; "
        "root): a client-bound run, as on a slower machine, where req/s follows CPU per "
        "request",
    )
    p.add_argument(
        "--report",
        metavar="RAW.json",
        help="only re-render docs/benchmarks.md and docs/bench.svg from a raw result file",
    )
    args = p.parse_args(argv)
    if args.report:
        return rerender(Path(args.report), write=not args.no_write)
    if args.smoke:
        args.rounds, args.n_seq, args.n_conc, args.n_pool, args.cap = 1, 200, 2000, 300, 10.0
        args.no_write = True

    clients, ours_pool, notes = available_clients()
    if args.clients:
        wanted = args.clients.split(",")
        clients = [c for c in clients if c in wanted]
        ours_pool = ours_pool and "trio_tarantool-pool" in wanted
    if args.pin and servers.pin_cpus():
        notes.append(
            f"servers pinned to CPU {sorted(servers.SERVER_CPUS or ())}, "
            f"clients to CPU {sorted(servers.CLIENT_CPUS or ())}"
        )
    with contextlib.ExitStack() as stack:
        if args.client_cpu is not None:
            notes.append(stack.enter_context(servers.limit_client_cpu(args.client_cpu)))
        return _measure(args, clients, ours_pool, notes)


def _measure(args: argparse.Namespace, clients: list[str], ours_pool: bool, notes: list[str]) -> int:
    """Run the planned cases, write the raw results and the report."""
    for n in notes:
        print(f"note: {n}", flush=True)
    workloads = [w for w in args.workloads.split(",") if w]
    shapes = [int(s) for s in args.shapes.split(",") if s]
    started = time.time()
    single_results: list[dict[str, Any]] = []
    pool_results: list[dict[str, Any]] = []
    if not args.no_single:
        cases = plan_single(clients, workloads, shapes, args.n_seq, args.n_conc)
        with servers.single() as cluster:
            addrs = [f"127.0.0.1:{i.port}" for i in cluster.instances]
            single_results = run_rounds(cases, addrs, args.rounds, args.cap, "single")
    if not args.no_pool:
        cases = plan_pool(clients, ours_pool, args.n_pool)
        with servers.replicaset() as cluster:
            addrs = [f"127.0.0.1:{i.port}" for i in cluster.instances]
            pool_results = run_rounds(cases, addrs, args.rounds, args.cap, "pool")

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "machine": machine.describe(0 if args.smoke else 3),
        "versions": versions(),
        "rounds": args.rounds,
        "n_seq": args.n_seq,
        "n_conc": args.n_conc,
        "n_pool": args.n_pool,
        "cap": args.cap,
        "notes": notes,
        "seconds": round(time.time() - started),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    raw = {"meta": meta, "single": single_results, "pool": pool_results}
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = "smoke" if args.smoke else "throughput"
    (OUT / f"{name}-{stamp}.json").write_text(json.dumps(raw, indent=1))
    all_clients: list[str] = [c for c in report.SINGLE_CLIENTS if c in clients]
    md = results_markdown(meta, single_results, pool_results, workloads, shapes, all_clients)
    (OUT / f"{name}-{stamp}.md").write_text(md)
    svg = report.render_svg(single_results, pool_results, workloads, shapes, all_clients)
    (OUT / f"{name}-{stamp}.svg").write_text(svg)
    print(md)
    if not args.no_write:
        report.replace_section(DOC, "results", md)
        SVG.write_text(svg)
        print(f"wrote {DOC.relative_to(REPO)} and {SVG.relative_to(REPO)}")
    if args.smoke:
        bad = smoke_failures(single_results + pool_results)
        if not clients:
            bad.append("no client could run")
        for b in bad:
            print(f"SMOKE FAILURE: {b}", file=sys.stderr)
        n_ok = len(single_results) + len(pool_results) - len(bad)
        print(f"smoke: {n_ok} passed, {len(bad)} failed")
        return 1 if bad else 0
    return 0


def rerender(raw_path: Path, *, write: bool) -> int:
    """Rebuild the results section and the SVG from a raw JSON file of an earlier run."""
    raw = json.loads(raw_path.read_text())
    meta, single, pool = raw["meta"], raw["single"], raw["pool"]
    workloads = list(dict.fromkeys(r["workload"] for r in single)) or list(WORKLOADS)
    shapes = sorted({int(r["tasks"]) for r in single}) or list(SHAPES)
    present = {r["client"] for r in single}
    clients = [c for c in report.SINGLE_CLIENTS if c in present]
    md = results_markdown(meta, single, pool, workloads, shapes, clients)
    svg = report.render_svg(single, pool, workloads, shapes, clients)
    print(md)
    if write:
        report.replace_section(DOC, "results", md)
        SVG.write_text(svg)
        print(f"wrote {DOC.relative_to(REPO)} and {SVG.relative_to(REPO)}")
    return 0


def results_markdown(
    meta: dict[str, Any],
    single: list[dict[str, Any]],
    pool: list[dict[str, Any]],
    workloads: list[str],
    shapes: list[int],
    clients: list[str],
) -> str:
    """The results section of docs/benchmarks.md."""
    v = meta["versions"]
    lines = [
        f"Measured {meta['date']} on {meta['cpus']} CPUs; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ".",
        *([machine.header(meta["machine"])] if "machine" in meta else []),
        f"{meta['rounds']} interleaved rounds; N = {meta['n_seq']:,} requests per sequential run, "
        f"{meta['n_conc']:,} per 100/1000-task run, {meta['n_pool']:,} per pool run "
        f"(each run capped at {meta['cap']:.0f} s). Cells: median req/s [min-max]; median "
        "client CPU (user + system of the client process) per request; "
        "req/s ratios compare medians (> 1 means trio_tarantool is faster), the CPU ratio "
        "trio_tarantool / floor is the cost of the library's layers (1 = none).",
        "",
    ]
    for n in meta["notes"]:
        lines.append(f"> note: {n}")
    if meta["notes"]:
        lines.append("")
    summary = report.ratio_summary(single, workloads, shapes, clients)
    if summary:
        lines += [
            "**Summary**: geometric mean over the workloads of the ratio trio_tarantool / peer "
            "on one connection, from the medians and from each client's best round (the "
            "least disturbed by other load on this shared 2-CPU machine):",
            "",
            summary,
            "",
        ]
    cpu = report.cpu_summary(single, workloads, shapes, clients)
    if cpu:
        lines += [
            "**Client CPU per request**: trio_tarantool's over each other client's, geometric "
            "mean over the workloads both ran (< 1: trio_tarantool spends less). "
            "Machine-independent, unlike req/s; the issue-11 target is <= 1.25x the floor "
            "at 100 tasks:",
            "",
            cpu,
            "",
        ]
    if single:
        lines += [
            "#### One connection, single instance (`wal_mode='none'`)",
            "",
            report.single_table(single, workloads, shapes, clients),
            "",
        ]
    if pool:
        # Raw files from before the one-connection row render without it (and its ratios).
        baseline = any(r["client"] == report.OURS for r in pool)
        lines += [
            "#### Pool of 3 (1 master + 2 replicas, `wal_mode='write'`)",
            "",
            "Every request asks for a distinct key; a reply for another key is a wrong answer. "
            + (
                "*trio_tarantool one connection* is one `trio_tarantool.connect` to the master "
                "(for every case: writes must go there, reads are served there too) shared by "
                "100 trio tasks, run in the same rounds as the pools: the pool's baseline. "
                if baseline
                else ""
            )
            + "*ours / this*: trio_tarantool pool's median req/s over the row's.",
            "",
            report.pool_table(pool),
            "",
        ]
        versus = report.pool_vs_connection(pool)
        if versus:
            lines += [
                "**Pool / one connection** on this replicaset, from the medians; issue 11's "
                "targets: req/s >= 0.9x, client CPU per request <= 1.1x:",
                "",
                versus,
                "",
            ]
    lines.append("![req/s per workload and client](bench.svg)")
    return "\n".join(lines)


if __name__ == "__main__":
    servers.install_signal_handlers()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
