"""Balancing strategies side by side, with one replica slowed down.

``bench/run balance`` (or ``python -m bench.balance``) measures RO reads through
``open_pool`` with each strategy: round robin, least-outstanding,
latency-aware, a circuit breaker (around round robin), hedged reads
(``hedge_after="p50"``, round robin) and all three together. Two worlds:

* **simulator** (virtual time, deterministic): 3 instances, every link 0.5 ms
  one way; replica 2's link 20 ms (*slow*), or its reads answered after 1 s
  server-side while its probes stay fast (*stuck*, ``socket_timeout=0.25``);
* **real** Tarantool (``$BENCH_SERVER``, bench/servers.py's replicaset of
  3): the chunk each read runs sleeps ``balance_delay`` seconds in a fiber,
  20 ms on replica 2 (*slow*) or 1 s (*stuck*, ``socket_timeout=0.25``).

Each run: ``--tasks`` tasks x ``--reads`` reads, each read checked (it must
return the answering instance's address). Reported per strategy: p50, p99
and max latency of the successful reads (ms), errors, and the share of reads
the slow replica answered. ``--write`` fills the block between the
``balancing`` markers of docs/benchmarks.md; ``--sim-only`` skips the real
servers.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import trio_tarantool as tt

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- balancing:begin -->"
END = "<!-- balancing:end -->"
SLOW_S, STUCK_S, TIMEOUT = 0.02, 1.0, 0.25
#: The read every request runs: sleeps ``balance_delay`` (0 if unset), answers its address.
CHUNK = ("local d = rawget(_G, 'balance_delay') or 0 "
         "if d > 0 then require('fiber').sleep(d) end return box.cfg.listen")

#: name -> (strategy_class, hedge_after)
STRATEGIES: dict[str, tuple[Any, Any]] = {
    "round robin": (tt.RoundRobinStrategy, None),
    "least outstanding": (tt.LeastOutstandingStrategy, None),
    "latency aware": (functools.partial(tt.LatencyAwareStrategy, seed=1), None),
    "breaker (round robin)": (functools.partial(tt.CircuitBreaker, failures=3, backoff=2.0), None),
    "hedged p50 (round robin)": (tt.RoundRobinStrategy, "p50"),
    "latency aware + breaker + hedged p50": (
        functools.partial(tt.CircuitBreaker, inner=functools.partial(tt.LatencyAwareStrategy, seed=1),
                          failures=3, backoff=2.0), "p50"),
}


@dataclass
class Result:
    """One strategy's run."""

    latencies: list[float]
    errors: int
    slow_share: float

    def row(self, name: str) -> str:
        ordered = sorted(self.latencies)

        def pct(q: float) -> str:
            if not ordered:
                return "-"
            return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.1f}"

        return (f"| {name} | {pct(0.5)} | {pct(0.99)} | {pct(1.0)} | {self.errors} | "
                f"{100 * self.slow_share:.0f}% |")


async def load(pool: tt.ConnectionPool, tasks: int, reads: int, slow_listen: str,
               read: Callable[[], Awaitable[str]]) -> Result:
    """``tasks`` x ``reads`` reads; latency by the trio clock (virtual in the simulator)."""
    latencies: list[float] = []
    errors = 0
    slow = 0

    async def worker() -> None:
        nonlocal errors, slow
        for _ in range(reads):
            start = trio.current_time()
            try:
                where = await read()
            except tt.Error:
                errors += 1
                continue
            latencies.append(trio.current_time() - start)
            slow += where == slow_listen

    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)
    return Result(latencies, errors, slow / max(1, len(latencies)))


# -- simulator -------------------------------------------------------------------------------------
def run_sim(scenario: str, name: str, tasks: int, reads: int) -> Result:
    from trio_tarantool import sim

    strategy, hedge = STRATEGIES[name]

    async def main() -> Result:
        async with sim.open_replicaset(3, seed=1) as rs:
            delay = {"slow": SLOW_S, "stuck": STUCK_S}[scenario]
            for i in range(3):
                rs.link(i).set(delay=0.0005)

            def where(ctx: Any) -> Any:
                listen = f"{ctx.instance.name}:3301"
                if ctx.instance is rs[2] and scenario == "stuck":
                    async def later() -> list[Any]:
                        await trio.sleep(delay)
                        return [listen]
                    return later()
                return [listen]

            rs.register_function("where", where)
            timeout = TIMEOUT if scenario == "stuck" else None
            async with tt.open_pool(rs.addrs, strategy_class=strategy, hedge_after=hedge,
                                    socket_timeout=timeout) as pool:
                if scenario == "slow":
                    rs.link(2).set(delay=delay)
                slow_listen = f"{rs[2].name}:3301"

                async def read() -> str:
                    return str((await pool.call("where", mode=tt.Mode.RO, idempotent=True)).data[0])

                return await load(pool, tasks, reads, slow_listen, read)

    result: Result = sim.run(main, seed=1)
    return result


# -- real servers ----------------------------------------------------------------------------------
def run_real(scenario: str, name: str, tasks: int, reads: int, cluster: Any) -> Result:
    from bench.servers import PASSWORD, USER

    strategy, hedge = STRATEGIES[name]
    slow_inst = cluster.instances[2]
    for inst in cluster.instances:
        inst.admin(f"rawset(_G, 'balance_delay', {0 if inst is not slow_inst else (SLOW_S if scenario == 'slow' else STUCK_S)})")
    timeout = TIMEOUT if scenario == "stuck" else None

    async def main() -> Result:
        async with tt.open_pool(cluster.addrs, user=USER, password=PASSWORD, strategy_class=strategy,
                                hedge_after=hedge, socket_timeout=timeout) as pool:

            async def read() -> str:
                return str((await pool.eval(CHUNK, mode=tt.Mode.RO, idempotent=True)).data[0])

            result = await load(pool, tasks, reads, slow_inst.listen, read)
            await trio.sleep(STUCK_S if scenario == "stuck" else 0)  # let stuck fibers end
            return result

    return trio.run(main)


def table(title: str, rows: list[str]) -> str:
    return "\n".join([
        f"**{title}**", "",
        "| strategy | p50 ms | p99 ms | max ms | errors | answered by the slow replica |",
        "|---|---:|---:|---:|---:|---:|", *rows, "",
    ])


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block to fill")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run balance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--reads", type=int, default=50)
    p.add_argument("--sim-only", action="store_true", help="skip the real servers")
    p.add_argument("--write", action="store_true", help="fill docs/benchmarks.md's balancing block")
    args = p.parse_args(argv)
    out: list[str] = []
    n = args.tasks * args.reads
    for scenario in ("slow", "stuck"):
        rows = [run_sim(scenario, name, args.tasks, args.reads).row(name) for name in STRATEGIES]
        what = (f"replica 2's link {SLOW_S * 1000:.0f} ms one way (others 0.5 ms)" if scenario == "slow"
                else f"replica 2 answers reads after {STUCK_S:.0f} s, probes at once; socket_timeout={TIMEOUT}")
        out.append(table(f"Simulator, {scenario}: {what}; {args.tasks} tasks x {args.reads} RO reads = {n}",
                         rows))
        print(out[-1], flush=True)
    if not args.sim_only:
        from bench import servers

        with servers.replicaset() as cluster:
            version = cluster.instances[0].admin_eval("return box.info.version")[0]
            for scenario in ("slow", "stuck"):
                rows = [run_real(scenario, name, args.tasks, args.reads, cluster).row(name)
                        for name in STRATEGIES]
                what = (f"replica 2's reads sleep {SLOW_S * 1000:.0f} ms server-side" if scenario == "slow"
                        else f"replica 2's reads sleep {STUCK_S:.0f} s server-side; socket_timeout={TIMEOUT}")
                out.append(table(f"Tarantool {version}, {scenario}: {what}; {args.tasks} tasks x "
                                 f"{args.reads} RO reads = {n}", rows))
                print(out[-1], flush=True)
    if args.write:
        write_doc("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
