"""close() of a pool while an instance's connection is reconnecting.

A contract test at the pool's level (the mechanism is tested per state in
test_connection_lifecycle.py): a request pending at close() fails with
ConnectionClosedError saying it was not sent (never a bare RuntimeError from a
closed nursery), nothing reaches the server after close, no socket is left.
"""

from __future__ import annotations

import os

import trio

import trio_tarantool as tt
from tests.hostile import Peer, hostile_server
from trio_tarantool._iproto import _constants as C

HANG = 10


async def answer(peer: Peer, header: dict[int, object], body: dict[int, object]) -> None:
    rtype, sync = header.get(C.REQUEST_TYPE), header[C.SYNC]
    assert isinstance(sync, int)
    if rtype == C.ID:
        await peer.error(sync, 48, "Unknown request type 73")
    elif rtype == C.EVAL:
        await peer.reply(sync, {C.DATA: [False, "running"]})
    elif rtype in (C.CALL, C.CALL_16):
        await peer.reply(sync, {C.DATA: [{"ro": False, "status": "running"}]})
    else:
        await peer.reply(sync, {C.DATA: []})


async def test_pool_close_during_a_reconnect_fails_the_request_cleanly() -> None:
    first = True
    drop = trio.Event()
    held = trio.Event()
    release = trio.Event()

    async def handler(peer: Peer) -> None:
        nonlocal first
        if first:
            first = False
            await peer.greet()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    while True:
                        await answer(peer, *await peer.read_request())

                nursery.start_soon(serve)
                await drop.wait()
                nursery.cancel_scope.cancel()
            return  # the server hangs up this first socket
        held.set()  # later connections: no greeting until released
        await release.wait()
        await peer.greet()
        try:
            while True:
                await answer(peer, *await peer.read_request())
        except EOFError:
            pass

    fds_before = len(os.listdir("/proc/self/fd"))
    errors: list[BaseException] = []
    async with hostile_server(handler) as server:
        with trio.fail_after(HANG):
            async with tt.open_pool([{"host": "127.0.0.1", "port": server.port}],
                                    refresh_delay=0.05) as pool:
                await pool.ping(mode=tt.Mode.ANY)
                drop.set()

                async def request() -> None:
                    try:
                        await pool.replace(512, [1, "after close?"])
                    except BaseException as exc:
                        errors.append(exc)

                await held.wait()  # the pool is reconnecting: the server holds the greeting
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(request)
                    await trio.testing.wait_all_tasks_blocked(0.05)
                    pool.close()
                release.set()
            assert pool.is_closed()
    assert [type(e) for e in errors] == [tt.ConnectionClosedError], errors
    assert errors[0].may_have_executed is False  # type: ignore[attr-defined]
    assert server.requests_of(C.REPLACE) == []
    assert len(os.listdir("/proc/self/fd")) <= fds_before
