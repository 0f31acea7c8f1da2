"""Memory: does a long run grow, and what does one request cost?

Two measurements per client, each in a fresh child process against a local
``wal_mode='none'`` Tarantool:

* **RSS**: N requests (default 1,000,000) with 1000 in flight (1000 tasks sharing one
  connection). RSS is sampled from /proc/self/status after connecting, after the
  first 5 % (warm: buffers and caches have reached their working size) and at every
  quarter; *growth* is final RSS minus warm RSS. A client that leaks per request
  shows growth proportional to N.
* **tracemalloc** (Python-level allocations only, so C extensions such as asynctnt's
  Cython core are under-counted; compare trio_tarantool with itself over time):
  - transient bytes per request: peak traced memory above the baseline while one
    task issues requests one at a time;
  - bytes per in-flight request: the same peak with 1000 tasks, divided by 1000;
  - retained bytes per request: traced memory after ``gc.collect()`` following M more
    requests, minus before, divided by M (≈ 0 when nothing leaks); the top
    allocation sites of that difference are listed.

Run: ``bench/run memory [--requests N] [--trace-requests M] [--no-write]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import report, servers
from bench.servers import PASSWORD, USER
from bench.workload import SPACE, check, key_of

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
OUT = REPO / "bench" / "out"
IN_FLIGHT = 1000


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# ---------------------------------------------------------------- children


def _short_path(path: str) -> str:
    """Trim a source path to the part after site-packages/, the repo or lib/pythonX.Y."""
    for marker in (
        "site-packages/",
        f"{REPO}/",
        f"/lib/python{sys.version_info[0]}.{sys.version_info[1]}/",
    ):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


Op = Callable[[int], Awaitable[Any]]
Runner = Callable[[Op, int, int, int], Awaitable[int]]


async def _phases(op: Op, run: Runner, phase: str, n: int) -> dict[str, Any]:
    """Client-independent part: ``run(op, start, count, tasks)`` issues requests
    ``start .. start+count-1`` over ``tasks`` tasks and returns the wrong-answer count."""
    out: dict[str, Any] = {"wrong": 0}
    if phase == "rss":
        out["rss_connected"] = rss_bytes()
        warm = max(IN_FLIGHT, n // 20)
        t0 = time.perf_counter()
        out["wrong"] += await run(op, 0, warm, IN_FLIGHT)
        out["rss_warm"] = rss_bytes()
        samples = []
        done = warm
        for q in range(1, 5):
            upto = warm + (n - warm) * q // 4
            out["wrong"] += await run(op, done, upto - done, IN_FLIGHT)
            done = upto
            samples.append([done, rss_bytes()])
        out["elapsed"] = time.perf_counter() - t0
        out["samples"] = samples
        out["requests"] = done
        out["rss_final"] = samples[-1][1]
        return out
    # tracemalloc phase
    out["wrong"] += await run(op, 0, max(2 * IN_FLIGHT, n // 5), IN_FLIGHT)  # warm
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    out["wrong"] += await run(op, 0, n, 1)
    out["transient_seq"] = tracemalloc.get_traced_memory()[1] - base
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    out["wrong"] += await run(op, 0, n, IN_FLIGHT)
    out["per_in_flight"] = (tracemalloc.get_traced_memory()[1] - base) / IN_FLIGHT
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    before = tracemalloc.get_traced_memory()[0]
    out["wrong"] += await run(op, n, n, IN_FLIGHT)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    snap2 = tracemalloc.take_snapshot()
    out["retained_per_request"] = (after - before) / n
    out["trace_requests"] = n
    own = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
        tracemalloc.Filter(False, "<frozen *>"),
    ]
    diff = snap2.filter_traces(own).compare_to(snap1.filter_traces(own), "lineno")
    out["top"] = [
        f"{_short_path(s.traceback[0].filename)}:{s.traceback[0].lineno} "
        f"+{s.size_diff} B in {s.count_diff} blocks"
        for s in diff
        if s.size_diff > 0
    ][:5]
    return out


def child_trio(port: int, phase: str, n: int) -> dict[str, Any]:
    """trio_tarantool: one connection, trio tasks in a nursery."""
    import trio

    import trio_tarantool

    async def run(op: Op, start: int, count: int, tasks: int) -> int:
        wrong = 0

        async def one(t: int) -> None:
            nonlocal wrong
            for i in range(start + t, start + count, tasks):
                if not check("select", i, await op(i)):
                    wrong += 1

        async with trio.open_nursery() as nursery:
            for t in range(min(tasks, count)):
                nursery.start_soon(one, t)
        return wrong

    async def main() -> dict[str, Any]:
        async with trio_tarantool.connect("127.0.0.1", port, user=USER, password=PASSWORD) as conn:
            return await _phases(lambda i: conn.select(SPACE, key_of(i)), run, phase, n)

    return trio.run(main)


def child_asynctnt(port: int, phase: str, n: int) -> dict[str, Any]:
    """asynctnt on asyncio, for comparison."""
    import asyncio

    import asynctnt

    async def run(op: Op, start: int, count: int, tasks: int) -> int:
        wrong = 0

        async def one(t: int) -> None:
            nonlocal wrong
            for i in range(start + t, start + count, tasks):
                if not check("select", i, await op(i)):
                    wrong += 1

        await asyncio.gather(*(one(t) for t in range(min(tasks, count))))
        return wrong

    async def main() -> dict[str, Any]:
        conn = asynctnt.Connection(host="127.0.0.1", port=port, username=USER, password=PASSWORD)
        await conn.connect()
        try:
            return await _phases(lambda i: conn.select(SPACE, [key_of(i)]), run, phase, n)
        finally:
            await conn.disconnect()

    return asyncio.run(main())


def child_main(args: argparse.Namespace) -> None:
    """Child entry: one phase for one client, JSON on stdout."""
    if args.phase == "trace":
        tracemalloc.start()
    fn = child_trio if args.child == "trio_tarantool" else child_asynctnt
    result = fn(args.port, args.phase, args.n)
    result.update(client=args.child, phase=args.phase)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- parent


def _mb(b: float) -> str:
    return f"{b / 2**20:,.1f} MiB"


def markdown(results: dict[str, dict[str, dict[str, Any]]], notes: list[str]) -> str:
    """The memory section of docs/benchmarks.md."""
    lines = [f"> note: {n}" for n in notes]
    lines += [
        "| client | requests (1000 in flight) | req/s (one run) | RSS connected | RSS warm (5 %) | RSS final "
        "| growth after warm-up | wrong answers |",
        "|" + "---|" * 8,
    ]
    for client, ph in results.items():
        r = ph.get("rss")
        if not r:
            continue
        growth = r["rss_final"] - r["rss_warm"]
        lines.append(
            f"| {report.CLIENT_LABELS[client]} | {r['requests']:,} | {r['requests'] / r['elapsed']:,.0f} "
            f"| {_mb(r['rss_connected'])} | {_mb(r['rss_warm'])} | {_mb(r['rss_final'])} "
            f"| {growth / 2**20:+,.1f} MiB ({growth / r['requests']:.2f} B/request) | {r['wrong']} |"
        )
    lines += [
        "",
        "RSS by progress: "
        + "; ".join(
            f"{report.CLIENT_LABELS[c]}: "
            + ", ".join(f"{n // 1000:,}k → {_mb(b)}" for n, b in ph["rss"]["samples"])
            for c, ph in results.items()
            if ph.get("rss")
        ),
    ]
    lines += [
        "",
        "| client (tracemalloc, Python allocations) | peak extra bytes, 1 request in flight "
        "| bytes per in-flight request (1000 in flight) | retained bytes per request |",
        "|---|---|---|---|",
    ]
    for client, ph in results.items():
        t = ph.get("trace")
        if not t:
            continue
        lines.append(
            f"| {report.CLIENT_LABELS[client]} | {t['transient_seq']:,} | {t['per_in_flight']:,.0f} "
            f"| {t['retained_per_request']:.2f} (over {t['trace_requests']:,} requests) |"
        )
    for client, ph in results.items():
        t = ph.get("trace")
        if t and t["top"]:
            lines += [
                "",
                f"Largest retained growth, {report.CLIENT_LABELS[client]}: "
                + "; ".join(f"`{x}`" for x in t["top"][:3]),
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parent entry: start a server, run both phases for each client, report."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--child", choices=("trio_tarantool", "asynctnt"), help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=("rss", "trace"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=1_000_000, help="requests of the RSS run")
    p.add_argument(
        "--trace-requests", type=int, default=20_000, help="requests per tracemalloc step"
    )
    p.add_argument("--clients", default="trio_tarantool,asynctnt", help="comma list")
    p.add_argument("--no-write", action="store_true", help="do not touch docs/")
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    import importlib.util

    notes: list[str] = []
    clients = []
    for c in args.clients.split(","):
        mod = "trio_tarantool" if c == "trio_tarantool" else "asynctnt"
        if importlib.util.find_spec(mod) is None:
            notes.append(f"{c} is not installed: skipped")
        else:
            clients.append(c)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    failures = 0
    with servers.single() as cluster:
        port = cluster.instances[0].port
        for c in clients:
            for phase, n in (("rss", args.requests), ("trace", args.trace_requests)):
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.memory",
                    "--child",
                    c,
                    "--phase",
                    phase,
                    "--port",
                    str(port),
                    "--n",
                    str(n),
                ]
                proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    failures += 1
                    print(f"{c} {phase}: FAILED\n{proc.stderr[-1500:]}", flush=True)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.setdefault(c, {})[phase] = r
                print(f"{c} {phase}: {json.dumps(r)[:400]}", flush=True)
    md = markdown(results, notes)
    print(md)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "memory.md").write_text(md)
    if not args.no_write and results:
        report.replace_section(DOC, "memory", md)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 1 if failures else 0


if __name__ == "__main__":
    servers.install_signal_handlers()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
