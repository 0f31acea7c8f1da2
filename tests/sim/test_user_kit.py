"""How an application tests itself with the simulator (the ``tarantool_sim`` fixture).

This file is written as a user would write it: a small app (a visit counter
on a replicaset) and tests that crash its master or cut a replica off, in
virtual time, through the pytest plugin that ships with trio-tarantool.
"""

from __future__ import annotations

import pytest
import trio

import trio_tarantool as tt
from trio_tarantool import Mode

# --- the application under test -------------------------------------------------


async def record_visit(pool: tt.ConnectionPool, page: str, visit_id: int) -> None:
    """Store one visit; retry while no master is reachable (safe: replace is idempotent)."""
    while True:
        try:
            await pool.replace("visits", [visit_id, page], mode=Mode.RW)
            return
        except (tt.PoolTopologyError, tt.NetworkError):
            await trio.sleep(0.1)


async def count_visits(pool: tt.ConnectionPool, page: str) -> int:
    return len(await pool.select("visits", page, index="page", mode=Mode.PREFER_RO))


def _schema(rs: object) -> None:
    rs.create_space(  # type: ignore[attr-defined]
        "visits", [("id", "unsigned"), ("page", "string")],
        indexes=[("primary", [("id", "unsigned")], True), ("page", [("page", "string")], False)],
    )


# --- the tests -----------------------------------------------------------------------


async def test_visits_survive_a_master_crash(tarantool_sim) -> None:  # type: ignore[no-untyped-def]
    rs = tarantool_sim
    _schema(rs)
    async with tt.open_pool(rs.addrs, refresh_delay=0.5, socket_timeout=1) as pool:
        for i in range(10):
            await record_visit(pool, "/home", i)
        rs.crash(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rs.failover)
            for i in range(10, 20):
                await record_visit(pool, "/home", i)
        await rs.advance(1)  # let replication catch up
        assert await count_visits(pool, "/home") == 20
        assert rs.roles()[0] == "down" and rs.roles().count("rw") == 1


@pytest.mark.tarantool_sim(n=2, seed=3)
async def test_reads_go_on_while_the_replica_is_cut_off(tarantool_sim) -> None:  # type: ignore[no-untyped-def]
    rs = tarantool_sim
    assert len(rs.addrs) == 2
    _schema(rs)
    async with tt.open_pool(rs.addrs, refresh_delay=0.5, socket_timeout=0.5) as pool:
        await record_visit(pool, "/about", 1)
        await rs.advance(0.1)
        rs.partition(1)
        await rs.advance(1.5)  # the pool notices within its probe timeout
        # PREFER_RO falls back to the master while the only replica is unreachable.
        assert await count_visits(pool, "/about") == 1
        rs.heal()
        await rs.advance(1.5)
        assert [s.read_only for s in pool.statistics()] == [False, True]
