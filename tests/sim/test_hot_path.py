"""The hot path (issue 11) keeps the request path's promises, on the simulator.

The connection's box methods build, send and park without a Request, a
closure or a hop; the pool queues a request on a ready connection from the
caller's own task. These tests pin what that must not change (names, the
deadline, cancellation, the pool's instance tasks), and what it must.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_tarantool as tt
from trio_tarantool import sim
from trio_tarantool._pool import ConnectionPool

FORMAT: list[tuple[str, str] | tuple[str, str, bool]] = [("id", "unsigned"), ("name", "string")]
INDEXES = [("primary", [("id", "unsigned")], True), ("byname", [("name", "string")], False)]


def _space(rs: sim.Replicaset) -> None:
    rs.create_space("hot", FORMAT, indexes=INDEXES)


async def test_pool_request_on_a_ready_instance_takes_no_hop(autojump_clock: Any) -> None:
    """Regression (issue 11): every pool request went through its instance
    task's channel (a task switch and a PoolTask hand-off each). Once the
    connection is ready, requests are queued on it by the caller itself; the
    channel only carries requests that must wait."""
    async with sim.open_replicaset(n=1) as rs:
        _space(rs)
        async with tt.open_pool(rs.addrs) as pool:
            assert isinstance(pool, ConnectionPool)
            hops: list[Any] = []
            submit = pool._submit

            def counting_submit(unit: Any, ptask: Any) -> None:
                hops.append(ptask)
                submit(unit, ptask)

            pool._submit = counting_submit  # type: ignore[method-assign]
            await pool.replace("hot", [1, "a"])  # may connect / load names: may hop
            hops.clear()

            async def one(i: int) -> None:
                await pool.replace("hot", [i, f"n{i}"])
                assert (await pool.select("hot", i, mode=tt.Mode.RW)).data == [[i, f"n{i}"]]

            async with trio.open_nursery() as nursery:
                for i in range(2, 50):
                    nursery.start_soon(one, i)
            assert hops == []
            assert pool.statistics()[0].in_flight == 0


async def test_hot_path_resolves_names_and_refuses_bad_arguments_unsent(autojump_clock: Any) -> None:
    """The same answers and errors whether a request takes the hot path or not."""
    async with sim.open_replicaset(n=1) as rs:
        _space(rs)
        async with tt.connect("tt1.sim", 3301) as conn:
            await conn.replace("hot", (1, "a"))  # loads the names
            assert conn.schema is not None
            sent = conn.statistics().requests_sent
            bads: list[Callable[[], Awaitable[Any]]] = [
                lambda: conn.select("hot", {1: 2}),
                lambda: conn.select("hot", 1, limit=-1),
                lambda: conn.select("hot", 1, offset=True),
                lambda: conn.select("hot", 2**64),
                lambda: conn.select(3.5, 1),  # type: ignore[arg-type]
                lambda: conn.replace("hot", "ab"),
                lambda: conn.insert("hot", {1, 2}),  # type: ignore[arg-type]
                lambda: conn.call(""),
                lambda: conn.call(b"f"),  # type: ignore[arg-type]
            ]
            for bad in bads:
                with pytest.raises(tt.ConfigurationError):
                    await bad()
            assert conn.statistics().requests_sent == sent
            assert (await conn.select("hot", "a", index="byname")).data == [[1, "a"]]
            assert (await conn.select("hot", [1])).rows(as_dict=True) == [{"id": 1, "name": "a"}]
            assert (await conn.select("hot", (), limit=1)).data == [[1, "a"]]
            with pytest.raises(tt.SchemaError):
                await conn.select("cold", 1)
            with pytest.raises(tt.SchemaError):
                await conn.select("hot", 1, index="nope")


async def test_hot_path_cancellation_forgets_exactly_that_request(autojump_clock: Any) -> None:
    """A cancelled caller parked on the hot path is forgotten (its late reply
    dropped); the others on the same connection get their own replies."""
    async with sim.open_replicaset(n=1) as rs:
        _space(rs)
        async with tt.connect("tt1.sim", 3301, socket_timeout=5) as conn:
            for i in range(10):
                await conn.replace("hot", [i, f"v{i}"])
            rs.pause(0)  # replies stop coming
            results: dict[int, Any] = {}

            async def one(i: int) -> None:
                results[i] = (await conn.select("hot", i)).data

            async with trio.open_nursery() as nursery:
                scopes = []
                for i in range(10):
                    scope = trio.CancelScope()
                    scopes.append(scope)

                    async def run(i: int = i, scope: trio.CancelScope = scope) -> None:
                        with scope:
                            await one(i)

                    nursery.start_soon(run)
                await trio.testing.wait_all_tasks_blocked()
                assert conn.in_flight == 10
                for i in range(0, 10, 2):
                    scopes[i].cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert conn.in_flight == 5
                rs.resume(0)
            assert results == {i: [[i, f"v{i}"]] for i in range(1, 10, 2)}
            assert conn.in_flight == 0
