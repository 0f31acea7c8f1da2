"""close() in every state of a connection, and one deadline per request.

Each test drives the real client against ``tests/hostile.py``'s server, held at
one point of the connection's life by a gate, then closes (or times out) there
and checks the promises: close() wins (nothing sent after it, every waiter fails
with ConnectionClosedError saying truthfully whether it was written, the state
is closing/closed, no socket or task is left), and a request's deadline covers
reconnecting, sending and the reply.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.hostile import Peer, greeting, hostile_server
from trio_tarantool._iproto import _constants as C
from trio_tarantool._lifecycle import ConnectionState

#: How long any single step may take before the test counts as hung.
HANG = 10


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Held:
    """Where the hostile server holds the client, and a gate to let it go on."""

    def __init__(self) -> None:
        self.reached = trio.Event()
        self.release = trio.Event()
        self.peer_gone = trio.Event()

    async def hold(self) -> None:
        self.reached.set()
        await self.release.wait()


async def serve_normally(peer: Peer) -> None:
    """Answer the handshake, then every request with an empty OK (schema: one space)."""
    while True:
        header, body = await peer.read_request()
        rtype, sync = header.get(C.REQUEST_TYPE), header[C.SYNC]
        if rtype == C.ID:
            await peer.error(sync, 48, "Unknown request type 73")
        elif rtype == C.SELECT and body.get(C.SPACE_ID) == C.VSPACE_ID:
            await peer.reply(sync, {C.DATA: [[512, 1, "things", "memtx", 0, {}, []]]})
        elif rtype == C.SELECT and body.get(C.SPACE_ID) == C.VINDEX_ID:
            await peer.reply(sync, {C.DATA: [[512, 0, "primary", "tree", {}, [[0, "unsigned"]]]]})
        else:
            await peer.reply(sync, {C.DATA: []})


def holding_at(stage: str, held: Held) -> Callable[[Peer], Awaitable[None]]:
    """A handler that serves the first connection normally (so ``connect()``
    succeeds), drops it when told, and holds every later connection at ``stage``."""
    first = [True]

    async def handler(peer: Peer) -> None:
        if first[0]:
            first[0] = False
            await peer.greet()
            with trio.move_on_after(HANG):
                await serve_until_dropped(peer, held)
            return  # the server closes this socket
        try:
            if stage == "greeting":
                await held.hold()
            await peer.greet()
            if stage == "auth":
                await peer.read_request()  # ID
                await peer.read_request()  # AUTH
                await held.hold()
                return
            await serve_normally_with_hold(peer, held, stage)
        finally:
            await peer.drain()
            held.peer_gone.set()

    return handler


async def serve_until_dropped(peer: Peer, held: Held) -> None:
    """Serve the first connection until the test sets ``held.drop``."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_normally, peer)
        await DROP[id(held)].wait()
        nursery.cancel_scope.cancel()


DROP: dict[int, trio.Event] = {}


async def serve_normally_with_hold(peer: Peer, held: Held, stage: str) -> None:
    """Answer the handshake; hold at the schema load or at the first request."""
    while True:
        header, body = await peer.read_request()
        rtype, sync = header.get(C.REQUEST_TYPE), header[C.SYNC]
        if rtype == C.ID:
            await peer.error(sync, 48, "Unknown request type 73")
        elif rtype == C.AUTH:
            await peer.reply(sync)
        elif stage == "schema load" and body.get(C.SPACE_ID) == C.VSPACE_ID:
            await held.hold()
        elif stage == "in flight":
            await held.hold()
        else:
            await peer.reply(sync, {C.DATA: []})


STAGES = ["greeting", "auth", "schema load", "in flight"]


@pytest.mark.parametrize("stage", STAGES)
async def test_close_wins_in_every_state_of_a_reconnect(stage: str) -> None:
    """Task A's request needs a reconnect; task B closes while A is at ``stage``.

    The defect this guards against: the handshake completed after close(),
    installed a new socket, sent and executed A's request, and left the
    connection both closed and connected.
    """
    held = Held()
    DROP[id(held)] = drop = trio.Event()
    fds_before = open_fds()
    outcome: list[BaseException] = []
    async with hostile_server(holding_at(stage, held)) as server:
        with trio.fail_after(HANG):
            async with tt.connect("127.0.0.1", server.port, user="u", password="p",
                                  reconnect_delay=0) as conn:
                await conn.ping()
                drop.set()  # the server drops the first socket: the next request reconnects
                await conn.wait_disconnected()

                async def task_a() -> None:
                    try:
                        if stage == "schema load":
                            await conn.select("things", 1)
                        else:
                            await conn.replace(512, [1, "after close?"])
                    except BaseException as exc:
                        outcome.append(exc)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(task_a)
                    await held.reached.wait()
                    assert conn.state is (ConnectionState.READY if stage in ("schema load", "in flight")
                                          else ConnectionState.CONNECTING)
                    requests_at_close = len(server.requests)
                    conn.close()
                    assert conn.is_closed()
                    assert not conn.is_connected()
                    held.release.set()  # the server now goes on as if nothing happened
                assert conn.state in (ConnectionState.CLOSING, ConnectionState.CLOSED)
            # `async with connect()` has exited: every task of the connection is gone.
            assert conn.state is ConnectionState.CLOSED
            await held.peer_gone.wait()  # the client's socket is closed, not leaked
    # Nothing written after close(): the server got no request after that moment.
    assert len(server.requests) == requests_at_close
    replaced = [body[C.TUPLE] for body in server.requests_of(C.REPLACE)]
    assert replaced == ([[1, "after close?"]] if stage == "in flight" else [])
    [exc] = outcome
    assert isinstance(exc, tt.ConnectionClosedError), repr(exc)
    # Only the request that reached the socket may have executed.
    assert exc.may_have_executed is (stage == "in flight")
    assert open_fds() <= fds_before


async def test_close_in_the_pause_between_attempts() -> None:
    """The connector sleeps reconnect_delay between failed attempts; close() cuts it short."""
    attempts = 0
    second_failed = trio.Event()

    async def handler(peer: Peer) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            second_failed.set()
        if attempts == 1:
            await peer.greet()
            await serve_normally(peer)
        # Every later connection is accepted and dropped without a greeting.

    async with hostile_server(handler) as server:
        with trio.fail_after(HANG):
            async with tt.connect("127.0.0.1", server.port, reconnect_delay=60,
                                  reconnect_max_attempts=3) as conn:
                await conn.ping()
                # Lose the socket: shutting our half for writing makes the
                # server see EOF and hang up.
                assert conn._link is not None
                stream = conn._link.stream
                assert isinstance(stream, trio.SocketStream)
                await stream.send_eof()
                await conn.wait_disconnected()
                errors: list[BaseException] = []

                async def request() -> None:
                    try:
                        await conn.ping()
                    except BaseException as exc:
                        errors.append(exc)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(request)
                    await second_failed.wait()  # the first reconnect attempt failed: now in the pause
                    await trio.testing.wait_all_tasks_blocked(0.05)
                    assert conn.state is ConnectionState.CONNECTING
                    conn.close()
            assert conn.state is ConnectionState.CLOSED  # type: ignore[comparison-overlap]
    [exc] = errors
    assert isinstance(exc, tt.ConnectionClosedError)
    assert exc.may_have_executed is False
    assert attempts == 2  # no attempt after close()


async def test_aclose_waits_until_tasks_and_socket_are_gone() -> None:
    gone = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.greet()
        try:
            await serve_normally(peer)
        finally:
            gone.set()

    async with hostile_server(handler) as server:
        with trio.fail_after(HANG):
            async with tt.connect("127.0.0.1", server.port) as conn:
                await conn.ping()
                await conn.aclose()
                assert conn.state is ConnectionState.CLOSED
                await gone.wait()
                with pytest.raises(tt.ConnectionClosedError) as info:
                    await conn.ping()
                assert info.value.may_have_executed is False


async def test_a_cancelled_caller_does_not_abandon_the_connect_of_others() -> None:
    """Connecting belongs to the connection, not to the task that happened to start it."""
    held = Held()

    async def handler(peer: Peer) -> None:
        await held.hold()
        await peer.greet()
        await serve_normally(peer)

    async with hostile_server(handler) as server:
        with trio.fail_after(HANG):
            async with trio.open_nursery() as nursery:
                conn = tt.Connection("127.0.0.1", server.port)
                conn.attach(nursery)
                results: list[Any] = []
                answered = trio.Event()

                async def patient() -> None:
                    results.append(await conn.ping(notime=True))
                    answered.set()

                with trio.move_on_after(0.05):
                    await conn.ping()  # starts connecting, then gives up
                nursery.start_soon(patient)
                await held.reached.wait()
                held.release.set()
                await answered.wait()
                assert results == ["Success"]
                assert server.connections == 1
                await conn.aclose()


async def test_request_deadline_covers_a_server_that_never_greets() -> None:
    """socket_timeout bounds a request that must reconnect (it hung forever)."""

    async def handler(peer: Peer) -> None:
        await trio.sleep_forever()

    async with hostile_server(handler) as server:
        async with trio.open_nursery() as nursery:
            conn = tt.Connection("127.0.0.1", server.port, socket_timeout=0.3,
                                 connection_timeout=0.3)
            conn.attach(nursery)
            start = trio.current_time()
            with trio.fail_after(HANG), pytest.raises(tt.TarantoolTimeoutError) as info:
                await conn.ping()
            elapsed = trio.current_time() - start
            conn.close()
    assert info.value.may_have_executed is False
    assert "connecting" in str(info.value)
    # One deadline: 0.3 s, not 11 attempts x 0.3 s (it took 4.3 s).
    assert elapsed < 1.5, elapsed


async def test_request_deadline_says_written_when_the_reply_never_comes() -> None:
    async def handler(peer: Peer) -> None:
        await peer.greet()
        await peer.serve_handshake()
        await peer.drain()  # reads the request, never answers

    async with hostile_server(handler) as server:
        with trio.fail_after(HANG):
            async with tt.connect("127.0.0.1", server.port, socket_timeout=0.2) as conn:
                with pytest.raises(tt.TarantoolTimeoutError) as info:
                    await conn.replace(512, [1])
                assert info.value.may_have_executed is True
                assert "waiting for the reply" in str(info.value)
                assert isinstance(info.value, TimeoutError)


async def test_junk_after_the_greeting_is_a_protocol_error_of_the_connect() -> None:
    async def handler(peer: Peer) -> None:
        await peer.send_raw(greeting() + b"\xc1junk")
        await peer.drain()

    async with hostile_server(handler) as server:
        with trio.fail_after(HANG), pytest.raises(tt.ProtocolError) as info:
            async with tt.connect("127.0.0.1", server.port):
                pass
    assert info.value.may_have_executed is False  # no request existed yet


async def test_state_changes_leave_info_records_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    """Connected, lost, failed attempts: INFO on trio_tarantool.connection; never the password."""
    import logging

    connections = 0

    async def handler(peer: Peer) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await peer.greet()
            await peer.serve_handshake()  # answers ID and AUTH, then hangs up on the first request
        # later connections: dropped before the greeting

    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    async with hostile_server(handler) as server:
        with trio.fail_after(HANG):
            async with tt.connect("127.0.0.1", server.port, user="app", password="pw-S3CRET",
                                  reconnect_max_attempts=1, reconnect_delay=0) as conn:
                for _ in range(3):  # lost, then two polls of a dead server
                    with pytest.raises(tt.NetworkError):
                        await conn.ping()
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("connected" in m for m in info), info
    assert any("connection lost" in m for m in info), info
    # The first failure after a success at INFO; its repeats (the second ping's
    # attempts too) at DEBUG: a dead server logs once, not once per poll.
    assert [m for m in info if "connect attempt" in m] == [
        m for m in info if "connect attempt 1 of 2 failed" in m][:1], info
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("connect attempt" in m for m in debug) >= 3, debug
    for record in caplog.records:
        assert record.name.startswith("trio_tarantool.")
        assert "S3CRET" not in record.getMessage()
