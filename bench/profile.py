"""Where trio_tarantool's CPU goes per request, layer by layer, next to the floor.

``bench/run profile`` starts one Tarantool (``wal_mode='none'``), then for
trio_tarantool, the floor client (``bench/floor.py``) and trio_tarantool's pool
over that one instance (``open_pool``, mode ANY: every request takes the same
socket as the single connection, so the difference is what routing costs), each
in a fresh process: 100 tasks x select, in three passes after a warm-up:

1. **plain**: N requests, client CPU (user + system) per request, no profiler;
2. **cProfile** with a CPU timer (``time.process_time``: waiting in epoll costs
   nothing): every function's own time, grouped into layers (see
   :func:`layer_of`); a built-in's time goes to the layer of its callers, except
   msgpack (framing / decoding) and the socket calls. The profiler inflates
   small Python functions, so each layer's µs/request is its *share* of the
   profile times the plain pass's CPU per request: an estimate, to be read
   across layers and clients, not to the tenth of a µs;
3. **allocations**: blocks allocated per request (every malloc/calloc in the
   object and mem domains, counted by ``bench/alloccount.c``, built here with
   ``cc``; free-listed objects are not counted) and, with tracemalloc, the bytes
   still held after the pass (nothing should be).

Results go to bench/out/profile-*.json|md and, unless ``--no-write``, to the
"profile" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import importlib.util
import json
import pstats
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import machine, report, servers
from bench.workload import SPACE, Tally, key_of

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
DOC = REPO / "docs" / "benchmarks.md"
CLIENTS = ("trio_tarantool", "floor", "trio_tarantool-pool")

LAYERS: tuple[str, ...] = (
    "request building",
    "names -> ids (schema cache)",
    "pool routing",
    "framing / encoding",
    "dispatch: submit, park, finish",
    "reader / writer tasks",
    "decoding",
    "Response construction",
    "socket syscalls + epoll",
    "trio scheduler",
    "benchmark loop",
    "other",
)
_DISPATCH = {
    "ping", "select", "call", "replace", "insert", "perform", "submit_nowait", "_enqueue",
    "__init__", "finish", "_result", "_park", "_forget", "kick", "_wake", "abort", "request",
}  # fmt: skip
_POOL_FILES = ("/_pool.py", "/_strategy.py", "/_balance.py", "/_health.py", "/_membership.py")
_IO_LOOPS = {"_reader", "_writer", "_write_all", "_write_directly", "_flush", "reader", "writer_loop"}


def layer_of(filename: str, func: str) -> str | None:
    """The layer of a Python function (by file and name); None for a built-in,
    whose time goes to its callers' layers unless :func:`builtin_layer` names one."""
    f = filename.replace("\\", "/")
    if filename == "~":
        return builtin_layer(func)
    if "/site-packages/" in f or f.startswith("<attrs generated"):
        if "/trio/" in f or "/outcome/" in f or "/sniffio/" in f or "trio." in f or "outcome." in f:
            return "trio scheduler"
        return "other"
    if "/trio_tarantool/" in f:
        if f.endswith("/_request.py"):
            return "request building"
        if f.endswith("/_iproto/_requests.py"):
            return "framing / encoding" if func in ("frame", "frame_plain", "_assemble") else "request building"
        if f.endswith("/_iproto/_decoder.py"):
            return "decoding"
        if f.endswith("/_response.py"):
            return "Response construction"
        if f.endswith("/_schema.py"):
            return "names -> ids (schema cache)"
        if f.endswith(_POOL_FILES):
            return "pool routing"
        if f.endswith("/_connection.py"):
            return (
                "reader / writer tasks" if func in _IO_LOOPS else "dispatch: submit, park, finish"
            )
        return "other"
    if f.endswith("/bench/floor.py"):
        if func in ("ping", "select", "call", "replace"):
            return "request building"
        if func in _IO_LOOPS:
            return "reader / writer tasks"
        return "dispatch: submit, park, finish"
    if f.startswith(f"{REPO}/bench/"):
        return "benchmark loop"
    return None  # the standard library (enum, typing...): its callers' layer


def builtin_layer(func: str) -> str | None:
    """Layer of a built-in that has one of its own, whoever calls it."""
    if "msgpack" in func:
        return "decoding" if "Unpacker" in func else "framing / encoding"
    if "posix.read" in func or "posix.write" in func or "epoll" in func:
        return "socket syscalls + epoll"
    return None


def layer_times(
    stats: pstats.Stats,
) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]], int]:
    """(seconds per layer, top functions per layer, total calls) from a profile."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    layers = dict.fromkeys(LAYERS, 0.0)
    funcs: dict[str, dict[str, float]] = {name: {} for name in LAYERS}
    calls = 0

    def own(key: Any, depth: int = 0) -> list[tuple[str, float]]:
        """[(layer, share)] of a function: its own layer, or its callers' (built-ins)."""
        filename, _, func = key
        name = layer_of(filename, func)
        if name is not None:
            return [(name, 1.0)]
        callers = raw[key][4]
        total = sum(v[2] for v in callers.values())
        if depth > 3 or not callers or total <= 0:
            return [("other", 1.0)]
        out: list[tuple[str, float]] = []
        for caller, v in callers.items():
            out += [(n, s * v[2] / total) for n, s in own(caller, depth + 1)]
        return out

    for key, (_cc, nc, tt, _ct, _callers) in raw.items():
        filename, line, func = key
        if "_lsprof" in func:
            continue  # the profiler's own disable()
        calls += nc
        label = func if filename == "~" else f"{Path(filename).name}:{line}({func})"
        for name, share in own(key):
            layers[name] += tt * share
            funcs[name][label] = funcs[name].get(label, 0.0) + tt * share
    top = {n: sorted(f.items(), key=lambda kv: -kv[1])[:4] for n, f in funcs.items()}
    return layers, top, calls


# ---------------------------------------------------------------- the child process


def _alloc_counter() -> ModuleType | None:
    """bench/alloccount.c built with cc into a temporary directory (None if impossible)."""
    src = Path(__file__).with_name("alloccount.c")
    out = Path(tempfile.mkdtemp(prefix="alloccount-")) / (
        "alloccount" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    )
    include = sysconfig.get_paths()["include"]
    try:
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-O2", f"-I{include}", str(src), "-o", str(out)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_file_location("alloccount", out)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _passes(op: Callable[[int], Awaitable[Any]], n: int, tasks: int) -> dict[str, Any]:
    import trio

    from bench.worker import _trio_measure

    result: dict[str, Any] = {}
    tally = Tally(client="", workload="select", tasks=tasks, requested=n)
    await _trio_measure(op, tally, n, tasks, 600.0)
    result["plain"] = tally.to_json()

    async def run(count: int) -> None:
        async def one(t: int) -> None:
            for i in range(t, count, tasks):
                await op(i)

        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(one, t)

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    await run(n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    layers, top, calls = layer_times(stats)
    result["profile"] = {"layers": layers, "top": top, "calls": calls, "n": n}

    counter = _alloc_counter()
    if counter is not None:
        await run(n // 10)  # the same steady state, right before counting
        counter.start()
        await run(n)
        counter.stop()
        obj, mem = counter.counts()
        result["allocs"] = {"obj": obj / n, "mem": mem / n}
    tracemalloc.start()
    await run(n // 10)
    before = tracemalloc.take_snapshot()
    await run(n)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = after.compare_to(before, "filename")
    result["retained_bytes_per_request"] = sum(d.size_diff for d in diff) / n
    return result


def msgpack_costs(rounds: int = 100_000) -> dict[str, float]:
    """CPU µs of msgpack's own work for one select: pack its header and body, and
    feed + unpack a one-tuple reply (length, header, body)."""
    import msgpack

    pack = msgpack.Packer(use_bin_type=True).pack
    body = {0x10: 512, 0x11: 0, 0x12: 0xFFFFFFFF, 0x13: 0, 0x14: 0, 0x20: [42]}
    header = {0: 1, 1: 12345}
    reply = msgpack.packb({0: 0, 1: 12345, 5: 80}) + msgpack.packb({0x30: [[42, "value-00000042"]]})
    packet = b"\xce" + len(reply).to_bytes(4, "big") + reply
    start = time.process_time()
    for _ in range(rounds):
        pack(header)
        pack(body)
    packed = time.process_time() - start
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    start = time.process_time()
    for _ in range(rounds):
        unpacker.feed(packet)
        unpacker.unpack()
        unpacker.unpack()
        unpacker.unpack()
    unpacked = time.process_time() - start
    return {"pack": 1e6 * packed / rounds, "unpack": 1e6 * unpacked / rounds}


def child(client: str, port: int, n: int, tasks: int) -> dict[str, Any]:
    """One client's three passes (run in its own process)."""
    import trio

    async def main() -> dict[str, Any]:
        if client == "floor":
            from bench import floor

            async with floor.connect("127.0.0.1", port, servers.USER, servers.PASSWORD) as c:
                space = await c.space_id(SPACE)
                return await _passes(lambda i: c.select(space, [key_of(i)]), n, tasks)
        import trio_tarantool

        if client == "trio_tarantool-pool":
            async with trio_tarantool.open_pool(
                [{"host": "127.0.0.1", "port": port}], user=servers.USER,
                password=servers.PASSWORD,
            ) as pool:  # fmt: skip
                mode = trio_tarantool.Mode.ANY
                return await _passes(lambda i: pool.select(SPACE, key_of(i), mode=mode), n, tasks)
        async with trio_tarantool.connect(
            "127.0.0.1", port, user=servers.USER, password=servers.PASSWORD
        ) as conn:
            return await _passes(lambda i: conn.select(SPACE, key_of(i)), n, tasks)

    return trio.run(main)


# ---------------------------------------------------------------- the report


def _diffs(vals: list[float], floor: Any, pool: bool, fmt: str) -> str:
    """The table's difference cells (ours - floor, pool - ours) after ``vals``."""
    cells = [fmt.format(vals[0] - vals[1])] if floor else []
    cells += [fmt.format(vals[-1] - vals[0])] if pool else []
    return "".join(f" | {c}" for c in cells) + " |"


def render(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The "profile" section of docs/benchmarks.md."""
    ours, floor = results.get("trio_tarantool"), results.get("floor")
    pool = ours is not None and "trio_tarantool-pool" in results
    lines = [
        f"Measured {meta['date']}; {machine.header(meta['machine'])} "
        f"{meta['tasks']} tasks x select on one connection (the pool: mode ANY over that one instance), N = {meta['n']:,} per pass, "
        "Tarantool `wal_mode='none'`.",
        "",
    ]

    def per_request(r: dict[str, Any]) -> dict[str, float]:
        prof = r["profile"]
        total = sum(prof["layers"].values()) or 1.0
        cpu = float(r["plain"]["cpu_us"])
        return {k: cpu * v / total for k, v in prof["layers"].items()}

    cols = [c for c in CLIENTS if c in results]
    est = {c: per_request(results[c]) for c in cols}
    head = ["layer", *(f"{report.CLIENT_LABELS[c]} µs/request" for c in cols)]
    if ours and floor:
        head.append("ours - floor")
    if pool:
        head.append("pool - one connection")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in LAYERS:
        vals = [est[c].get(name, 0.0) for c in cols]
        if all(v < 0.05 for v in vals):
            continue
        row = [name, *(f"{v:.2f}" for v in vals)]
        if ours and floor:
            row.append(f"{vals[0] - vals[1]:+.2f}")
        if pool:
            row.append(f"{vals[-1] - vals[0]:+.2f}")
        lines.append("| " + " | ".join(row) + " |")
    total = [float(results[c]["plain"]["cpu_us"]) for c in cols]
    row = ["**total (measured without profiler)**", *(f"**{v:.2f}**" for v in total)]
    if ours and floor:
        row.append(f"**{total[0] - total[1]:+.2f}** ({total[0] / total[1]:.2f}x)")
    if pool:
        row.append(f"**{total[-1] - total[0]:+.2f}** ({total[-1] / total[0]:.2f}x)")
    lines.append("| " + " | ".join(row) + " |")
    calls = [results[c]["profile"]["calls"] / results[c]["profile"]["n"] for c in cols]
    lines.append("| function calls / request (cProfile) | " + " | ".join(f"{v:.0f}" for v in calls)
                 + _diffs(calls, ours and floor, pool, "{:+.0f}"))  # fmt: skip
    if all("allocs" in results[c] for c in cols):
        al = [results[c]["allocs"]["obj"] + results[c]["allocs"]["mem"] for c in cols]
        lines.append("| allocated blocks / request | " + " | ".join(f"{v:.1f}" for v in al)
                     + _diffs(al, ours and floor, pool, "{:+.1f}"))  # fmt: skip
    ret = [results[c]["retained_bytes_per_request"] for c in cols]
    lines.append("| retained bytes / request (tracemalloc) | " + " | ".join(f"{v:.2f}" for v in ret)
                 + " |" + " |" * (bool(ours and floor) + pool))  # fmt: skip
    packs = [results[c].get("msgpack_us") for c in cols]
    if packs[0]:
        lines += [
            "",
            f"cProfile does not see msgpack's Cython methods: their time counts in the Python "
            f"function that calls them. Measured apart on this machine, packing one select "
            f"(header + body) costs {packs[0]['pack']:.2f} µs and unpacking its reply "
            f"{packs[0]['unpack']:.2f} µs; both clients do that work, trio_tarantool inside "
            "`Encoder.frame` and `Decoder._next_packet`, the floor inside `request` (so its "
            "framing shows under dispatch) and `reader` (its decoding under the reader task).",
        ]
    lines += ["", "Top functions per layer (own time, µs/request, estimated as above):", ""]
    for c in cols:
        r = results[c]
        prof = r["profile"]
        total_s = sum(prof["layers"].values()) or 1.0
        scale = float(r["plain"]["cpu_us"]) / total_s
        lines.append(f"- **{report.CLIENT_LABELS[c]}**")
        for name in LAYERS:
            top = [(f, s * scale) for f, s in prof["top"][name] if s * scale >= 0.05]
            if top:
                lines.append(f"  - {name}: " + "; ".join(f"`{f}` {us:.2f}" for f, us in top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bench/run profile``."""
    p = argparse.ArgumentParser(prog="bench/run profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--n", type=int, default=50_000, help="requests per pass (default 50,000)")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--no-write", action="store_true", help="do not touch docs/")
    p.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = child(args.child, args.port, args.n, args.tasks)
        result["msgpack_us"] = msgpack_costs()
        print(json.dumps(result))
        return 0
    results: dict[str, dict[str, Any]] = {}
    with servers.single() as cluster:
        port = cluster.instances[0].port
        for c in CLIENTS:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.profile", "--child", c, "--port", str(port),
                 "--n", str(args.n), "--tasks", str(args.tasks)],
                cwd=REPO, capture_output=True, text=True, preexec_fn=servers.client_preexec,
            )  # fmt: skip
            if proc.returncode != 0:
                print(f"{c}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            results[c] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{c}: {results[c]['plain']['cpu_us']:.2f} µs/request", flush=True)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(3),
        "n": args.n,
        "tasks": args.tasks,
    }
    md = render(meta, results)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (OUT / f"profile-{stamp}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1)
    )
    (OUT / f"profile-{stamp}.md").write_text(md)
    print(md)
    if not args.no_write:
        report.replace_section(DOC, "profile", md)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    servers.install_signal_handlers()
    sys.exit(main())
