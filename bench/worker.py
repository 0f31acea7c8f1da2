"""One measured run of one client, in its own process; prints one JSON line.

Run by the orchestrator (``bench/__main__.py``) as
``python -m bench.worker --client C --workload W --tasks T --n N --addr H:P ...``.
Each client gets a fresh interpreter so event loops, threads and allocator state
never mix between clients. Only the client's own library is imported.

Timing covers the N requests only: connecting, schema loading and a warm-up pass
happen before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.servers import PASSWORD, USER
from bench.workload import (
    FUNCTION,
    SPACE,
    SQL,
    WRITE_SPACE,
    Deadline,
    Meter,
    Tally,
    find_open_pool,
    key_of,
    parse_addrs,
    replace_tuple,
    task_indices,
)

CLIENTS: tuple[str, ...] = (
    "trio_tarantool",
    "floor",
    "asynctnt",
    "asynctnt+uvloop",
    "tarantool-python",
)
POOL_CLIENTS: tuple[str, ...] = ("trio_tarantool-pool", "tarantool-python-pool")

AsyncOp = Callable[[int], Awaitable[Any]]


def _warmup_count(n: int) -> int:
    return max(10, min(2000, n // 10))


# ---------------------------------------------------------------- trio_tarantool


def _trio_op(conn: Any, workload: str, mode: Any = None) -> AsyncOp:
    """Bind ``workload`` to a trio_tarantool Connection (or pool, with ``mode``)."""
    kw = {} if mode is None else {"mode": mode}
    if workload == "ping":
        return lambda i: conn.ping(notime=True, **kw)
    if workload == "select":
        return lambda i: conn.select(SPACE, key_of(i), **kw)
    if workload == "call":
        return lambda i: conn.call(FUNCTION, key_of(i), **kw)
    if workload == "replace":
        return lambda i: conn.replace(WRITE_SPACE, replace_tuple(i), **kw)
    if workload == "sql":
        return lambda i: conn.execute(SQL, [key_of(i)], **kw)
    raise ValueError(workload)


async def _trio_measure(op: AsyncOp, tally: Tally, n: int, tasks: int, cap: float) -> None:
    """Warm up, then run N requests split over ``tasks`` trio tasks sharing ``op``."""
    import trio

    await _trio_warmup(op, tally.workload, n)
    deadline = Deadline(cap)
    workload = tally.workload

    async def one_task(t: int) -> None:
        for i in task_indices(t, tasks, n):
            if deadline.passed():
                return
            try:
                rows = await op(i)
            except Exception as exc:
                tally.fail(exc)
            else:
                tally.record(workload, i, rows)

    with Meter(tally):
        if tasks == 1:
            await one_task(0)
        else:
            async with trio.open_nursery() as nursery:
                for t in range(tasks):
                    nursery.start_soon(one_task, t)


async def _trio_warmup(op: AsyncOp, workload: str, n: int) -> None:
    """Issue warm-up requests until enough succeed (a pool may still be discovering
    roles right after it opens) or 15 s pass."""
    import trio

    want = _warmup_count(n)
    done = 0
    with trio.move_on_after(15):
        i = 0
        while done < want:
            try:
                await op(i)
                done += 1
            except Exception:
                await trio.sleep(0.05)
            i += 1


def run_trio(args: argparse.Namespace, tally: Tally) -> None:
    """trio_tarantool: one connection (to the first ``--addr``) shared by N trio tasks
    in a nursery; also the one-connection row of the pool cases (``--mode`` then
    only labels the case)."""
    import trio

    import trio_tarantool

    (host, port), *_ = parse_addrs(args.addr)

    async def main() -> None:
        async with trio_tarantool.connect(host, port, user=USER, password=PASSWORD) as conn:
            await _trio_measure(_trio_op(conn, args.workload), tally, args.n, args.tasks, args.cap)

    trio.run(main)


def run_trio_pool(args: argparse.Namespace, tally: Tally) -> None:
    """trio_tarantool.open_pool over the replicaset, ``args.tasks`` trio tasks."""
    import trio

    import trio_tarantool

    addrs = [{"host": h, "port": p} for h, p in parse_addrs(args.addr)]
    mode = trio_tarantool.Mode[args.mode]
    open_pool, _ = find_open_pool()

    async def main() -> None:
        async with open_pool(addrs, user=USER, password=PASSWORD) as pool:
            op = _trio_op(pool, args.workload, mode)
            await _trio_measure(op, tally, args.n, args.tasks, args.cap)

    trio.run(main)


# ---------------------------------------------------------------- the floor (bench/floor.py)


def _floor_op(client: Any, workload: str, space_id: int, write_id: int) -> AsyncOp:
    """Bind ``workload`` to the floor client (spaces by id: it has no schema)."""
    if workload == "ping":
        return lambda i: client.ping()
    if workload == "select":
        return lambda i: client.select(space_id, [key_of(i)])
    if workload == "call":
        return lambda i: client.call(FUNCTION, [key_of(i)])
    if workload == "replace":
        return lambda i: client.replace(write_id, replace_tuple(i))
    raise ValueError(f"the floor client does not do {workload!r}")


def run_floor(args: argparse.Namespace, tally: Tally) -> None:
    """bench/floor.py: the bare trio IPROTO loop, N trio tasks in a nursery.

    Space ids are looked up once, before the clock starts, by a select on
    ``_vspace`` by name (the floor has no schema of its own).
    """
    import trio

    from bench import floor

    (host, port), *_ = parse_addrs(args.addr)

    async def main() -> None:
        async with floor.connect(host, port, USER, PASSWORD) as client:
            ids = [await client.space_id(name) for name in (SPACE, WRITE_SPACE)]
            op = _floor_op(client, args.workload, *ids)
            await _trio_measure(op, tally, args.n, args.tasks, args.cap)

    trio.run(main)


# ---------------------------------------------------------------- asynctnt


def _asynctnt_op(conn: Any, workload: str) -> AsyncOp:
    """Bind ``workload`` to an asynctnt Connection."""
    if workload == "ping":
        return lambda i: conn.ping()
    if workload == "select":
        return lambda i: conn.select(SPACE, [key_of(i)])
    if workload == "call":
        return lambda i: conn.call(FUNCTION, [key_of(i)])
    if workload == "replace":
        return lambda i: conn.replace(WRITE_SPACE, replace_tuple(i))
    if workload == "sql":
        return lambda i: conn.execute(SQL, [key_of(i)])
    raise ValueError(workload)


def run_asynctnt(args: argparse.Namespace, tally: Tally, *, use_uvloop: bool) -> None:
    """asynctnt on asyncio (or uvloop): one connection shared by N asyncio tasks."""
    import asyncio

    import asynctnt

    (host, port), *_ = parse_addrs(args.addr)
    n, tasks, workload = args.n, args.tasks, args.workload

    async def main() -> None:
        conn = asynctnt.Connection(host=host, port=port, username=USER, password=PASSWORD)
        await conn.connect()
        try:
            op = _asynctnt_op(conn, workload)
            for i in range(_warmup_count(n)):
                await op(i)
            deadline = Deadline(args.cap)

            async def one_task(t: int) -> None:
                for i in task_indices(t, tasks, n):
                    if deadline.passed():
                        return
                    try:
                        rows = await op(i)
                    except Exception as exc:
                        tally.fail(exc)
                    else:
                        tally.record(workload, i, rows)

            with Meter(tally):
                if tasks == 1:
                    await one_task(0)
                else:
                    await asyncio.gather(*(one_task(t) for t in range(tasks)))
        finally:
            await conn.disconnect()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


# ---------------------------------------------------------------- tarantool-python


def _sync_op(conn: Any, workload: str, mode: Any = None) -> Callable[[int], Any]:
    """Bind ``workload`` to a tarantool-python Connection (or ConnectionPool)."""
    kw = {} if mode is None else {"mode": mode}
    if workload == "ping":
        return lambda i: conn.ping(notime=True, **kw)
    if workload == "select":
        return lambda i: conn.select(SPACE, key_of(i), **kw)
    if workload == "call":
        return lambda i: conn.call(FUNCTION, key_of(i), **kw)
    if workload == "replace":
        return lambda i: conn.replace(WRITE_SPACE, replace_tuple(i), **kw)
    if workload == "sql":
        return lambda i: conn.execute(SQL, [key_of(i)], **kw)
    raise ValueError(workload)


def _ping_rows(workload: str, reply: Any) -> Any:
    return reply if workload == "ping" else reply.data


def run_sync(args: argparse.Namespace, tally: Tally) -> None:
    """tarantool-python's blocking Connection, one request at a time."""
    import tarantool

    if args.tasks != 1:
        raise SystemExit("tarantool-python Connection is synchronous: --tasks must be 1")
    (host, port), *_ = parse_addrs(args.addr)
    conn = tarantool.Connection(host, port, user=USER, password=PASSWORD)
    try:
        op = _sync_op(conn, args.workload)
        for i in range(_warmup_count(args.n)):
            op(i)
        deadline = Deadline(args.cap)
        with Meter(tally):
            for i in range(args.n):
                if deadline.passed():
                    break
                try:
                    reply = op(i)
                except Exception as exc:
                    tally.fail(exc)
                else:
                    tally.record(args.workload, i, _ping_rows(args.workload, reply))
    finally:
        conn.close()


def run_sync_pool(args: argparse.Namespace, tally: Tally) -> None:
    """tarantool-python's ConnectionPool shared by ``args.threads`` threads.

    The reference pool has no per-request timeout and is known to hang, so worker
    threads are daemons: after the cap (plus a grace period) every thread still
    blocked is counted as one hung request and the process exits without waiting.
    """
    import tarantool

    addrs = [{"host": h, "port": p} for h, p in parse_addrs(args.addr)]
    mode = tarantool.Mode[args.mode]
    pool = tarantool.ConnectionPool(addrs, user=USER, password=PASSWORD)
    op = _sync_op(pool, args.workload, mode)
    threads = max(1, args.threads)
    warm_deadline = time.perf_counter() + 15

    def warm_up() -> None:
        warmed = 0
        i = 0
        while warmed < _warmup_count(args.n) and time.perf_counter() < warm_deadline:
            try:
                op(i)
                warmed += 1
            except Exception:
                time.sleep(0.05)
            i += 1

    warmer = threading.Thread(target=warm_up, daemon=True)
    warmer.start()
    warmer.join(timeout=20)
    if warmer.is_alive():  # a warm-up request blocked: report it, measure nothing
        tally.hung = 1
        tally.error_samples.append("a warm-up request blocked for 20 s")
        _emit(tally)
        os._exit(0)
    lock = threading.Lock()
    deadline = Deadline(args.cap)

    def one_thread(t: int) -> None:
        for i in task_indices(t, threads, args.n):
            if deadline.passed():
                return
            try:
                reply = op(i)
            except Exception as exc:
                with lock:
                    tally.fail(exc)
            else:
                with lock:
                    tally.record(args.workload, i, _ping_rows(args.workload, reply))

    workers = [threading.Thread(target=one_thread, args=(t,), daemon=True) for t in range(threads)]
    with Meter(tally):
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=max(0.0, deadline.at - time.perf_counter()) + 10.0)
    tally.hung = sum(w.is_alive() for w in workers)
    if tally.hung:
        _emit(tally)
        os._exit(0)  # the pool's close() may block on a hung worker thread
    pool.close()


# ---------------------------------------------------------------- entry point


def _emit(tally: Tally) -> None:
    sys.stdout.write(json.dumps(tally.to_json()) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run one measurement, print its JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--client", required=True, choices=CLIENTS + POOL_CLIENTS)
    p.add_argument("--workload", required=True)
    p.add_argument("--tasks", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--mode",
        default="",
        help="the pool's mode (default ANY); for a one-connection client only a label: "
        "the pool case it runs beside (it talks to the one --addr it is given)",
    )
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--cap", type=float, default=30.0, help="seconds before stopping early")
    p.add_argument("--addr", action="append", required=True, help="host:port (repeatable)")
    args = p.parse_args(argv)
    if args.client in POOL_CLIENTS and not args.mode:
        args.mode = "ANY"
    tally = Tally(
        client=args.client,
        workload=args.workload,
        tasks=args.tasks,
        requested=args.n,
        mode=args.mode,
        threads=args.threads if args.client == "tarantool-python-pool" else 0,
    )
    if args.client == "trio_tarantool":
        run_trio(args, tally)
    elif args.client == "floor":
        run_floor(args, tally)
    elif args.client == "asynctnt":
        run_asynctnt(args, tally, use_uvloop=False)
    elif args.client == "asynctnt+uvloop":
        run_asynctnt(args, tally, use_uvloop=True)
    elif args.client == "tarantool-python":
        run_sync(args, tally)
    elif args.client == "trio_tarantool-pool":
        run_trio_pool(args, tally)
    elif args.client == "tarantool-python-pool":
        run_sync_pool(args, tally)
    _emit(tally)


if __name__ == "__main__":
    main()
