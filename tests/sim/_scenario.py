"""A pool-like client workload over the simulator, used by determinism tests.

Per instance, one task keeps a real ``trio_tarantool`` connection and polls
``box.info`` every ``poll`` seconds (reconnecting after any network error);
one writer inserts into whichever instance the pollers last saw as writable.
Their observations go into the world's trace, next to the world's own events.
"""

from __future__ import annotations

from typing import Any

import trio

import trio_tarantool as tt
from trio_tarantool import sim


async def scenario(seed: int, duration: float, *, poll: float = 1.0, mean_interval: float = 60.0,
                   trace_requests: bool = True) -> tuple[list[str], dict[str, Any]]:
    """Run chaos plus the workload; return (trace, statistics)."""
    stats: dict[str, Any] = {"polls": 0, "poll_errors": 0, "writes": 0, "write_errors": 0}
    async with sim.open_replicaset(n=3, seed=seed, lag=0.05, lag_jitter=0.05,
                                   trace_requests=trace_requests) as rs:
        rs.create_space("log", [("id", "unsigned"), ("at", "number")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        for i in range(3):
            rs.link(i).set(delay=0.001, jitter=0.0005)
        seen_rw: dict[int, bool] = {}

        async def poller(i: int) -> None:
            inst = rs[i]
            while True:
                try:
                    async with tt.connect(inst.host, inst.port, connection_timeout=0.5,
                                          socket_timeout=0.5, reconnect_max_attempts=0) as c:
                        while True:
                            info = (await c.call("box.info"))[0]
                            stats["polls"] += 1
                            rw = not info["ro"]
                            if seen_rw.get(i) != rw:
                                rs.world.record("client", f"sees {inst.name} {'rw' if rw else 'ro'}")
                            seen_rw[i] = rw
                            await trio.sleep(poll)
                except (tt.NetworkError, tt.DatabaseError) as exc:
                    stats["poll_errors"] += 1
                    if seen_rw.pop(i, None) is not None:
                        rs.world.record("client", f"lost {inst.name}: {type(exc).__name__}")
                    await trio.sleep(poll)

        async def writer() -> None:
            n = 0
            while True:
                await trio.sleep(0.3)
                target = next((i for i in sorted(seen_rw) if seen_rw[i]), None)
                if target is None:
                    continue
                n += 1
                try:
                    async with tt.connect(rs[target].host, 3301, connection_timeout=0.5,
                                          socket_timeout=0.5, reconnect_max_attempts=0) as c:
                        await c.insert("log", [n, trio.current_time()])
                    stats["writes"] += 1
                except (tt.NetworkError, tt.DatabaseError) as exc:
                    stats["write_errors"] += 1
                    rs.world.record("client", f"write {n} to {rs[target].name} failed: {exc!r}"[:160])

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(poller, i)
            async with trio.open_nursery() as writers:
                writers.start_soon(writer)
                stats["faults"] = await rs.chaos(duration, mean_interval=mean_interval)
                writers.cancel_scope.cancel()
            await rs.advance(3)  # let replication settle and the client see the healed world
            nursery.cancel_scope.cancel()
        stats["roles"] = rs.roles()
        stats["rows"] = [len(inst.db.space(512)) for inst in rs.instances]
        trace = list(rs.trace)
    return trace, stats
