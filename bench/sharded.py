"""crud throughput on a real vshard cluster: our pool vs tarantool-python's pool.

``bench/run sharded`` (or ``python -m bench.sharded`` inside bench/.venv) starts
the test suite's sharded cluster (``tests/real/_cluster.py``: 2 replicasets x
master + replica, 2 routers with crud 1.7.5 / vshard 0.1.42; server kind
``$BENCH_SERVER``), fills ``customers`` with ``--rows`` tuples, then measures
``crud_get`` and ``crud_replace`` through a pool of the two routers (mode ANY):

* ``trio_tarantool`` ``open_pool`` with 1 task and with 100 tasks;
* tarantool-python's ``ConnectionPool`` with 1 thread and with 8 threads.

Each measurement is a fresh subprocess (``--worker``), the cases are
interleaved over ``--rounds`` rounds (client order rotating), and the median
rate is reported with the client's CPU per request (``getrusage`` around the
measured loop). Every reply is checked (a get returns the row of its key, a
replace the tuple it sent); a wrong answer counts as an error.
Prints a Markdown table; ``--write`` puts it into docs/benchmarks.md between
the ``sharded`` markers.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- sharded:begin -->"
END = "<!-- sharded:end -->"
USER = "test"
PASSWORD = "test-password"
SPACE = "customers"
WORKLOADS = ("get", "replace")
#: (client, concurrency): tasks for ours, threads for tarantool-python's pool.
CASES = (
    ("trio_tarantool-pool", 1),
    ("trio_tarantool-pool", 100),
    ("tarantool-python-pool", 1),
    ("tarantool-python-pool", 8),
)


def _key(i: int, rows: int) -> int:
    return i % rows + 1


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Result:
    """One measurement: requests done, errors, wall and CPU seconds."""

    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    sample: str = ""

    def fail(self, what: object) -> None:
        self.errors += 1
        if not self.sample:
            self.sample = str(what)[:200]


def _check(workload: str, key: int, rows: Any) -> bool:
    return bool(rows) and rows[0][0] == key and (workload == "get" or rows[0][2] == "v")


# ------------------------------------------------------------------ workers
def run_trio(addrs: list[dict[str, Any]], workload: str, tasks: int, n: int, rows: int) -> Result:
    """Our pool of the routers, ``tasks`` trio tasks sharing ``n`` requests."""
    import trio

    import trio_tarantool

    result = Result()

    async def main() -> None:
        async with trio_tarantool.open_pool(addrs, user=USER, password=PASSWORD) as pool:
            async def op(i: int) -> None:
                key = _key(i, rows)
                try:
                    if workload == "get":
                        res = await pool.crud_get(SPACE, key)
                    else:
                        res = await pool.crud_replace(SPACE, [key, None, "v", i])
                except trio_tarantool.Error as exc:
                    result.fail(exc)
                    return
                if _check(workload, key, res.rows):
                    result.done += 1
                else:
                    result.fail(f"wrong answer for {key}: {res.rows!r}")

            for i in range(min(n, 200)):  # warm-up: connections, schema, router caches
                await op(i)
            result.done = result.errors = 0

            async def task(t: int) -> None:
                for i in range(t, n, tasks):
                    await op(i)

            cpu, began = _cpu(), time.perf_counter()
            async with trio.open_nursery() as nursery:
                for t in range(tasks):
                    nursery.start_soon(task, t)
            result.seconds, result.cpu = time.perf_counter() - began, _cpu() - cpu

    trio.run(main)
    return result


def run_reference(addrs: list[dict[str, Any]], workload: str, threads: int, n: int, rows: int) -> Result:
    """tarantool-python's ConnectionPool of the routers, ``threads`` threads."""
    import tarantool

    result = Result()
    lock = threading.Lock()
    pool = tarantool.ConnectionPool(addrs, user=USER, password=PASSWORD)

    def op(i: int) -> None:
        key = _key(i, rows)
        try:
            if workload == "get":
                res = pool.crud_get(SPACE, key, mode=tarantool.Mode.ANY)
            else:
                res = pool.crud_replace(SPACE, [key, None, "v", i], mode=tarantool.Mode.ANY)
        except Exception as exc:  # the reference raises several unrelated types
            with lock:
                result.fail(exc)
            return
        ok = _check(workload, key, res.rows)
        with lock:
            if ok:
                result.done += 1
            else:
                result.fail(f"wrong answer for {key}: {res.rows!r}")

    for i in range(min(n, 200)):
        op(i)
    result.done = result.errors = 0

    def worker(t: int) -> None:
        for i in range(t, n, threads):
            op(i)

    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    cpu, began = _cpu(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    result.seconds, result.cpu = time.perf_counter() - began, _cpu() - cpu
    pool.close()
    return result


def worker_main(args: argparse.Namespace) -> None:
    """``--worker``: one measurement, printed as a JSON line."""
    addrs = [{"host": a.rsplit(":", 1)[0], "port": int(a.rsplit(":", 1)[1])} for a in args.addr]
    run = run_trio if args.client == "trio_tarantool-pool" else run_reference
    result = run(addrs, args.workload, args.concurrency, args.n, args.rows)
    print(json.dumps(result.__dict__))


# ------------------------------------------------------------------ harness
def _fill(addrs: list[dict[str, Any]], rows: int) -> None:
    import trio

    import trio_tarantool

    async def main() -> None:
        async with trio_tarantool.open_pool(addrs, user=USER, password=PASSWORD) as pool:
            for start in range(1, rows + 1, 1000):
                batch = [[k, None, "v", 0] for k in range(start, min(start + 1000, rows + 1))]
                await pool.crud_replace_many(SPACE, batch)

    trio.run(main)


def _label(client: str, concurrency: int) -> str:
    unit = "task" if client.startswith("trio") else "thread"
    return f"{client}, {concurrency} {unit}{'s' if concurrency > 1 else ''}"


def measure(args: argparse.Namespace) -> str:
    """Start the cluster, run every case, return the Markdown table."""
    from bench.servers import server_binary
    from tests.real._cluster import start_cluster
    from tests.real._servers import ServerManager

    binary = server_binary()
    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    with ServerManager(binary) as manager:
        cluster = start_cluster(manager)
        started = cluster.start_seconds
        addr_args = [f"{r.host}:{r.port}" for r in cluster.routers]
        _fill(cluster.router_addrs, args.rows)
        cases = [(w, c, k) for w in WORKLOADS for c, k in CASES]
        for round_no in range(args.rounds):
            shift = round_no % len(cases)
            for workload, client, conc in cases[shift:] + cases[:shift]:
                cmd = [sys.executable, "-m", "bench.sharded", "--worker", "--client", client,
                       "--workload", workload, "--concurrency", str(conc), "--n", str(args.n),
                       "--rows", str(args.rows)]
                for a in addr_args:
                    cmd += ["--addr", a]
                out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    raise SystemExit(f"{client} {workload} failed:\n{out.stderr[-2000:]}")
                sample = json.loads(out.stdout.strip().splitlines()[-1])
                samples.setdefault((workload, client, conc), []).append(sample)
                print(f"round {round_no + 1} {workload:8} {_label(client, conc):34} "
                      f"{sample['done'] / sample['seconds']:8.0f} req/s  errors {sample['errors']}",
                      file=sys.stderr)
    version = ".".join(map(str, binary.version))
    lines = [
        f"Tarantool {version}; cluster start-up {started:.1f} s; {args.rows} rows; "
        f"{args.n} requests per run; median of {args.rounds} rounds; mode ANY over both routers.",
        "",
        "| workload | client | req/s | client CPU µs/req | errors |",
        "|---|---|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        for client, conc in CASES:
            runs = samples[(workload, client, conc)]
            rate = statistics.median(s["done"] / s["seconds"] for s in runs)
            cpu = statistics.median(s["cpu"] / max(1, s["done"]) * 1e6 for s in runs)
            errors = sum(s["errors"] for s in runs)
            lines.append(f"| crud_{workload} | {_label(client, conc)} | {rate:,.0f} | {cpu:,.0f} | {errors} |")
    notes = sorted({f"{_label(c, k)}, crud_{w}: {s['sample']}"
                    for (w, c, k), runs in samples.items() for s in runs if s["sample"]})
    if notes:
        lines += ["", "First error of each erring case:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_doc(table: str) -> None:
    """Replace the text between the sharded markers of docs/benchmarks.md."""
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    """Entry point (``bench/run sharded``); returns the exit code."""
    p = argparse.ArgumentParser(prog="bench/run sharded", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--addr", action="append", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=5000, help="requests per run (default 5000)")
    p.add_argument("--rows", type=int, default=10_000, help="tuples filled in (default 10000)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--smoke", action="store_true", help="tiny N, 1 round, nothing written")
    p.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    if args.smoke:
        args.n, args.rows, args.rounds, args.write = 300, 1000, 1, False
    table = measure(args)
    print(table)
    if args.write:
        write_doc(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
