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
from trio_tarantool._request import BUILDERS

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
                lambda: conn.execute(True),
                lambda: conn.execute(b"SELECT 1"),  # type: ignore[arg-type]
                lambda: conn.execute("SELECT ?", "ab"),
                lambda: conn.execute("SELECT ?", {1: 2}),
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


# -- the pool's direct path --------------------------------------------------------------
async def _warm(pool: Any) -> None:
    """Connect every instance and load the names (the first requests may wait)."""
    for _ in range(6):
        await pool.replace("hot", [1, "a"])
        await pool.select("hot", 1)


async def test_pool_on_ready_instances_builds_no_pool_task_and_picks_once(
        autojump_clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 11): a pool request cost twice a connection's CPU (a
    keyword dict, the full builder, a PoolTask, an abort closure). On a ready
    instance it now calls that connection's method directly: no PoolTask, no
    builder, one strategy pick per request, every counter as before."""
    import trio_tarantool._pool as pool_module

    async with sim.open_replicaset(n=3) as rs:
        _space(rs)
        rs.register_function("echo", lambda ctx, x: [x])
        rs.register_eval("return ...", lambda ctx, x: [x])
        async with tt.open_pool(rs.addrs) as pool:
            assert isinstance(pool, ConnectionPool)
            await _warm(pool)
            built: list[Any] = []
            picks: list[Any] = []

            class CountingTask(pool_module.PoolTask):
                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    built.append(args)
                    super().__init__(*args, **kwargs)

            class CountingBuilders(dict[str, Any]):
                def __getitem__(self, name: str) -> Any:
                    built.append(name)
                    return super().__getitem__(name)

            getnext = pool.strategy.getnext

            def counting_getnext(mode: tt.Mode) -> Any:
                unit = getnext(mode)
                picks.append(unit)
                return unit

            monkeypatch.setattr(pool_module, "PoolTask", CountingTask)
            monkeypatch.setattr(pool_module, "BUILDERS", CountingBuilders(BUILDERS))
            monkeypatch.setattr(pool.strategy, "getnext", counting_getnext)
            before = pool.statistics()

            async def one(i: int) -> None:
                await pool.replace("hot", [i, f"n{i}"])
                assert (await pool.select("hot", i, mode=tt.Mode.RW)).data == [[i, f"n{i}"]]
                assert (await pool.call("echo", i, mode=tt.Mode.ANY)).data == [i]
                assert await pool.ping(notime=True, mode=tt.Mode.ANY) == "Success"
                # (issue 11's last step: update, upsert, delete and eval go direct too)
                assert (await pool.update("hot", i, [("=", 1, f"u{i}")])).data == [[i, f"u{i}"]]
                assert (await pool.eval("return ...", i, mode=tt.Mode.ANY)).data == [i]
                assert (await pool.delete("hot", i)).data == [[i, f"u{i}"]]
                await pool.upsert("hot", [i, f"p{i}"], [("=", 1, f"q{i}")])
                assert (await pool.select("hot", i, mode=tt.Mode.RW)).data == [[i, f"p{i}"]]

            async with trio.open_nursery() as nursery:
                for i in range(2, 42):
                    nursery.start_soon(one, i)
            after = pool.statistics()
            assert built == []
            assert len(picks) == 40 * 9
            assert after.requests - before.requests == 40 * 9
            assert sum(u.requests for u in after) - sum(u.requests for u in before) == 40 * 9
            assert [u.in_flight for u in after] == [0, 0, 0]
            # The round robin saw every request: ANY spreads over the three.
            assert {u.key for u in picks} == {u.addr for u in after}
            # What must wait still takes the full path (and is seen taking it).
            await pool.select("hot", 1, on_push=lambda *_: None)
            assert built and built[0] == "select"


async def test_pool_direct_failure_is_retried_as_the_first_attempt(autojump_clock: Any) -> None:
    """A write refused on an instance the pool still thinks writable
    (ER_READONLY, surely not executed) goes on exactly as before the direct
    path: retried once on the new master, counted as one request, one retry
    and one failover, and executed once."""
    async with sim.open_replicaset(n=2) as rs:
        _space(rs)
        async with tt.open_pool(rs.addrs, refresh_delay=60, status_events=False) as pool:
            assert isinstance(pool, ConnectionPool)
            await _warm(pool)
            before = pool.statistics()
            rs.set_ro(0, True)
            rs.set_ro(1, False)  # the pool has not probed since
            result = await pool.replace("hot", [7, "seven"])
            assert result.data == [[7, "seven"]]
            after = pool.statistics()
            assert after.requests - before.requests == 1
            assert after.retries - before.retries == 1
            assert after.failovers - before.failovers == 1
            assert after[0].requests - before[0].requests == 1
            assert after[1].requests - before[1].requests == 1
            assert [u.in_flight for u in after] == [0, 0]
            assert (await pool.select("hot", 7, mode=tt.Mode.RW)).data == [[7, "seven"]]
            # The same for a request of the shared direct path (_routed): a delete.
            rs.set_ro(1, True)
            rs.set_ro(0, False)
            before = pool.statistics()
            assert (await pool.delete("hot", 7)).data == [[7, "seven"]]
            after = pool.statistics()
            assert after.requests - before.requests == 1
            assert after.retries - before.retries == 1
            assert after[1].requests - before[1].requests == 1
            assert after[0].requests - before[0].requests == 1
            assert [u.in_flight for u in after] == [0, 0]
            assert (await pool.select("hot", 7, mode=tt.Mode.RW)).data == []


async def test_pool_direct_path_refuses_bad_arguments_uncounted(autojump_clock: Any) -> None:
    """A bad argument is refused before anything is sent, with the builder's
    message, and counted nowhere, direct path or not."""
    async with sim.open_replicaset(n=1) as rs:
        _space(rs)
        async with tt.open_pool(rs.addrs) as pool:
            await _warm(pool)
            before = pool.statistics()
            bads: list[Callable[[], Awaitable[Any]]] = [
                lambda: pool.select("hot", {1: 2}),
                lambda: pool.select("hot", 1, limit=-1),
                lambda: pool.replace("hot", "ab"),
                lambda: pool.insert("hot", {1, 2}),  # type: ignore[arg-type]
                lambda: pool.call("", mode=tt.Mode.ANY),
                lambda: pool.call("f", mode=tt.Mode.ANY, idempotent="yes"),  # type: ignore[arg-type]
                lambda: pool.update("hot", 1, "=1x"),
                lambda: pool.update("hot", {1}, [("=", 1, "x")]),
                lambda: pool.upsert("hot", "ab", [("=", 1, "x")]),
                lambda: pool.delete("hot", 1, index=1.5),  # type: ignore[arg-type]
                lambda: pool.eval(b"return 1", mode=tt.Mode.ANY),  # type: ignore[arg-type]
                lambda: pool.eval("return 1", mode=tt.Mode.ANY, idempotent=1),  # type: ignore[arg-type]
                lambda: pool.execute(["SELECT 1"], mode=tt.Mode.ANY),  # type: ignore[arg-type]
                lambda: pool.execute("SELECT 1", "x", mode=tt.Mode.ANY),
                lambda: pool.execute("SELECT 1"),
                lambda: pool.select("hot", 1, mode="ANY"),  # type: ignore[arg-type]
                lambda: pool.ping(),
            ]
            for bad in bads:
                with pytest.raises(tt.ConfigurationError):
                    await bad()
            after = pool.statistics()
            assert after.requests == before.requests
            assert after[0].requests == before[0].requests
            assert after[0].in_flight == 0


async def test_pool_direct_request_cancelled_or_closed_in_flight(autojump_clock: Any) -> None:
    """A caller cancelled while parked on the direct path leaves nothing in
    flight; close() under a parked direct request fails it saying it may have
    executed, and no task outlives the pool."""
    async with sim.open_replicaset(n=1) as rs:
        _space(rs)
        async with tt.open_pool(rs.addrs, socket_timeout=30) as pool:
            await _warm(pool)
            rs.pause(0)
            with trio.move_on_after(1):
                await pool.select("hot", 1)
            assert pool.statistics()[0].in_flight == 0
            rs.resume(0)
            assert (await pool.select("hot", 1)).data == [[1, "a"]]
            rs.pause(0)
            failures: list[BaseException] = []

            async def parked() -> None:
                try:
                    await pool.select("hot", 1)
                except tt.NetworkError as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(parked)
                await trio.testing.wait_all_tasks_blocked()
                assert pool.statistics()[0].in_flight == 1
                pool.close()
            assert len(failures) == 1
            assert isinstance(failures[0], tt.ConnectionClosedError)
            assert failures[0].may_have_executed is True
            assert "closed while the request was in flight" in str(failures[0])


async def test_hot_path_timeout_is_the_one_deadline_and_says_written(autojump_clock: Any) -> None:
    """A request parked on the hot path (connection, and pool direct path) times
    out at ``socket_timeout`` from its start, not later, says it may have executed
    (it was written), leaves nothing in flight, and the socket goes on."""
    async with sim.open_replicaset(n=1) as rs:
        _space(rs)
        # (No probe in the window: the pool's request meets the pause, not a pool
        # that already knows the instance is down.)
        async with tt.connect("tt1.sim", 3301, socket_timeout=2) as conn, \
                tt.open_pool(rs.addrs, socket_timeout=2, refresh_delay=60, probe_timeout=60) as pool:
            await conn.replace("hot", [1, "a"])  # the names are loaded: hot path from here
            await _warm(pool)
            rs.pause(0)
            requests: list[Callable[[], Awaitable[Any]]] = [
                lambda: conn.select("hot", 1), lambda: pool.select("hot", 1)]
            for request in requests:
                start = trio.current_time()
                with pytest.raises(tt.TarantoolTimeoutError) as info:
                    await request()
                assert trio.current_time() - start == pytest.approx(2, abs=0.05)
                assert info.value.may_have_executed is True
            assert conn.in_flight == 0
            assert pool.statistics()[0].in_flight == 0
            rs.resume(0)
            assert (await conn.select("hot", 1)).data == [[1, "a"]]
            assert (await pool.select("hot", 1)).data == [[1, "a"]]
