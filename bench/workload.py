"""What every client does, defined once so all clients do exactly the same work.

Request number ``i`` (0-based, out of a fixed total N) always asks for the same key,
whatever the client or the number of tasks; task ``t`` of ``T`` takes requests
``t, t+T, t+2T, ...``. Every reply is checked against the key it asked for, so a
client that hands one caller's reply to another is caught ("wrong answers").
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.servers import ROWS, expected_value

WORKLOADS: tuple[str, ...] = ("ping", "select", "call", "replace", "sql")
POOL_WORKLOADS: tuple[str, ...] = ("select", "replace")
SPACE = "bench"
WRITE_SPACE = "bench_w"
FUNCTION = "bench_get"
SQL = 'SELECT "id", "val" FROM "bench" WHERE "id" = ?'


def key_of(i: int) -> int:
    """Key asked for by request ``i`` (distinct for any ROWS consecutive requests)."""
    return i % ROWS + 1


def replace_tuple(i: int) -> list[Any]:
    """Tuple written by replace request ``i``: its reply must echo exactly this."""
    return [key_of(i), f"r{i}"]


def check(workload: str, i: int, rows: Any) -> bool:
    """True if ``rows`` (a reply's sequence of tuples) answers request ``i``."""
    if workload == "ping":
        return True
    try:
        if len(rows) != 1:
            return False
        got = list(rows[0])
    except TypeError:
        return False
    if workload == "replace":
        return got == replace_tuple(i)
    return got == [key_of(i), expected_value(key_of(i))]


def task_indices(task: int, tasks: int, n: int) -> range:
    """Requests handled by ``task`` out of ``tasks`` when N=n requests are split."""
    return range(task, n, tasks)


@dataclass
class Tally:
    """Outcome counters of one measured run; serialised as the worker's JSON line."""

    client: str
    workload: str
    tasks: int
    requested: int
    mode: str = ""
    threads: int = 0
    ok: int = 0
    wrong: int = 0
    errors: int = 0
    hung: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    wrong_samples: list[str] = field(default_factory=list)

    def record(self, workload: str, i: int, rows: Any) -> None:
        """Count one reply, checking it against request ``i``."""
        if check(workload, i, rows):
            self.ok += 1
        else:
            self.wrong += 1
            if len(self.wrong_samples) < 3:
                self.wrong_samples.append(f"request {i} (key {key_of(i)}) got {_short(rows)}")

    def fail(self, exc: BaseException) -> None:
        """Count one request that raised."""
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with the derived rate (replies per second) and the
        client's CPU per reply in microseconds (``cpu_us``; 0 with no reply)."""
        d = asdict(self)
        replies = self.ok + self.wrong
        d["rps"] = replies / self.elapsed if self.elapsed > 0 else 0.0
        d["cpu_us"] = 1e6 * self.cpu / replies if replies else 0.0
        return d


def cpu_seconds() -> float:
    """User + system CPU time this process (all its threads) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """``with Meter(tally):`` around the measured loop sets ``tally.elapsed`` (wall
    seconds) and ``tally.cpu`` (user + system CPU seconds of the client process).

    CPU per request is what a client costs independently of how fast the server
    or the other process on a shared core is; it includes everything the client
    process does meanwhile (event loop, parsing, syscalls), nothing before the
    ``with`` (imports, connecting, warm-up).
    """

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Meter:
        self.cpu = cpu_seconds()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tally.elapsed = time.perf_counter() - self.wall
        self.tally.cpu = cpu_seconds() - self.cpu


def _short(rows: Any) -> str:
    try:
        return repr([list(r) for r in rows])[:120]
    except TypeError:
        return repr(rows)[:120]


class Deadline:
    """Wall-clock cap on a measured run, so a slow or stuck client cannot stall the
    whole benchmark; the rate is computed from the requests actually completed."""

    def __init__(self, seconds: float) -> None:
        self.at = time.perf_counter() + seconds

    def passed(self) -> bool:
        """True once the cap is reached."""
        return time.perf_counter() > self.at


def parse_addrs(specs: Sequence[str]) -> list[tuple[str, int]]:
    """``['127.0.0.1:3301', ...]`` -> ``[('127.0.0.1', 3301), ...]``."""
    out = []
    for s in specs:
        host, _, port = s.rpartition(":")
        out.append((host, int(port)))
    return out


def find_open_pool() -> tuple[Any, str]:
    """``(open_pool, note)``: trio_tarantool's pool opener, or ``(None, why)``.

    Prefers the public ``trio_tarantool.open_pool``; while the pool is not exported
    yet, falls back to the private module (with a note saying so).
    """
    try:
        import trio_tarantool
    except ImportError as exc:
        return None, f"trio_tarantool does not import ({exc})"
    fn = getattr(trio_tarantool, "open_pool", None)
    if fn is not None:
        return fn, ""
    try:
        from trio_tarantool._pool import open_pool
    except ImportError:
        return None, "trio_tarantool.open_pool does not import yet"
    return (
        open_pool,
        "trio_tarantool.open_pool is not exported yet: used trio_tarantool._pool.open_pool",
    )
