"""Watchers and graceful shutdown against real servers (2.6 refuses; 3.x proves)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.real._servers import TarantoolBinary, TarantoolInstance, connect_to

pytestmark = pytest.mark.timeout(60)

HANG = 10


async def test_watch_is_refused_before_sending_without_watchers(
        conn: Any, server_kind: TarantoolBinary) -> None:
    if server_kind.version >= (2, 10, 0):
        assert 3 in conn.features  # watchers: proven below
        return
    sent = conn.statistics().requests_sent
    with pytest.raises(tt.NotSupportedError, match="watch"):
        async with conn.watch("k"):
            pass
    with pytest.raises(tt.NotSupportedError):
        await conn.watch_once("k")
    assert conn.statistics().requests_sent == sent


@pytest.mark.min_server_version(2, 10)
async def test_watch_yields_the_current_value_then_each_change(
        clean_tarantool: TarantoolInstance, conn: Any) -> None:
    clean_tarantool.admin("box.broadcast('test.key', {n = 0})")
    seen: list[Any] = []
    with trio.fail_after(HANG):
        async with conn.watch("test.key") as values:
            async for value in values:
                seen.append(value)
                if value["n"] == 3:
                    break
                clean_tarantool.admin(f"box.broadcast('test.key', {{n = {value['n'] + 1}}})")
    assert seen == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.min_server_version(2, 10)
async def test_watch_box_status_and_watch_once(clean_tarantool: TarantoolInstance, conn: Any,
                                               server_kind: TarantoolBinary) -> None:
    with trio.fail_after(HANG):
        async with conn.watch("box.status") as values:
            status = await values.__anext__()
    assert status["is_ro"] is False and status["status"] == "running"
    if server_kind.version >= (3, 0, 0):
        clean_tarantool.admin("box.broadcast('test.once', 'v1')")
        assert await conn.watch_once("test.once") == "v1"
        assert await conn.watch_once("test.never") is None


@pytest.mark.min_server_version(2, 10)
async def test_watch_survives_a_reconnect_and_never_loses_the_latest_value(
        clean_tarantool: TarantoolInstance, conn: Any) -> None:
    clean_tarantool.admin("box.broadcast('test.re', 'before')")
    with trio.fail_after(HANG):
        async with conn.watch("test.re") as values:
            assert await values.__anext__() == "before"
            conn.reset("test: a lost socket")
            # Changed while no socket was up: the re-subscription brings it.
            clean_tarantool.admin("box.broadcast('test.re', 'while away')")
            await conn.ping()  # reconnects (and subscribes again)
            assert await values.__anext__() == "while away"
            assert conn.statistics().connects == 2


@pytest.mark.min_server_version(2, 10)
async def test_watch_ends_when_the_connection_closes(clean_tarantool: TarantoolInstance) -> None:
    with trio.fail_after(HANG):
        async with connect_to(clean_tarantool) as c:
            async with c.watch("box.status") as values:
                await values.__anext__()
                c.close()
                with pytest.raises(StopAsyncIteration):
                    await values.__anext__()


@pytest.mark.min_server_version(2, 10)
async def test_graceful_shutdown_lets_requests_in_flight_finish(tarantool_factory: Any) -> None:
    """SIGTERM: the server broadcasts box.shutdown; the client sends nothing new
    there, the requests in flight get their replies, then the socket is closed."""
    inst = tarantool_factory()
    inst.admin("function slow(x) require('fiber').sleep(0.5) return x end")
    results: list[Any] = []
    with trio.fail_after(HANG):
        async with connect_to(inst) as c:
            async def slow(x: int) -> None:
                results.append((await c.call("slow", x)).data)

            async with trio.open_nursery() as nursery:
                for x in range(5):
                    nursery.start_soon(slow, x)
                await trio.testing.wait_all_tasks_blocked(0.05)
                assert c.in_flight == 5
                inst.stop(grace=10)  # SIGTERM: graceful
            assert sorted(results) == [[0], [1], [2], [3], [4]]
            with pytest.raises(tt.NetworkError) as info:
                await c.ping()
            assert info.value.may_have_executed is False  # nothing sent to a stopped server
