"""Well-framed but malformed replies, met by the real client (issue 8, item 10).

A hostile in-test server (``tests/hostile.py``, no Tarantool process) answers
one request with a reply of the wrong shape. The client must raise
:class:`~trio_tarantool.ProtocolError` for that request (``may_have_executed``
True: the server received and answered it), or a :class:`DatabaseError` when
only an error reply's stack is bad, never a builtin exception, and the *same*
connection must serve the next request (``server.connections == 1``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest
import trio

import trio_tarantool
from tests.hostile import HostileServer, Peer, hostile_server
from trio_tarantool import DatabaseError, ProtocolError
from trio_tarantool._iproto import _constants as C

#: (peer, header, body, how many requests were answered before) -> answers it.
Answer = Callable[[Peer, dict[int, Any], dict[int, Any], int], Awaitable[None]]

SPACES = [[512, 1, "tester", "memtx", 0, {}, []]]
INDEXES = [[512, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]]]


def serving(answer: Answer) -> Callable[[Peer], Awaitable[None]]:
    """A handler: greet as 2.6, pass the handshake, then ``answer`` every request."""

    async def handler(peer: Peer) -> None:
        await peer.greet()
        await peer.serve_handshake()
        assert peer.pending is not None
        header, body = peer.pending
        answered = 0
        while True:
            await answer(peer, header, body, answered)
            answered += 1
            header, body = await peer.read_request()

    return handler


async def check_protocol_error(server: HostileServer, first: Callable[[Any], Awaitable[Any]],
                               then: Callable[[Any], Awaitable[Any]], match: str,
                               *, executed: bool = True) -> Any:
    """``first(conn)`` raises ProtocolError matching ``match`` and saying whether
    the request may have run (``executed``); ``then(conn)`` on the same
    connection succeeds (its result is returned)."""
    with trio.fail_after(10):
        async with trio_tarantool.connect("127.0.0.1", server.port) as conn:
            with pytest.raises(ProtocolError, match=match) as info:
                await first(conn)
            assert info.value.may_have_executed is executed
            result = await then(conn)
            assert conn.is_connected()
    assert server.connections == 1
    return result


async def test_select_data_as_a_map() -> None:
    """Regression: select returned a Response whose DATA was a dict (r[0] -> KeyError)."""

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        await peer.reply(header[C.SYNC], {C.DATA: {1: [1, "x"]}} if n == 0 else {C.DATA: [[1, "x"]]})

    async with hostile_server(serving(answer)) as server:
        result = await check_protocol_error(
            server, lambda c: c.select(512, 1), lambda c: c.select(512, 1),
            r"DATA is a map, expected an array")
    assert list(result) == [[1, "x"]]


async def test_vspace_row_that_is_a_string() -> None:
    """Regression: a name-addressed select loads the schema; a `_vspace` row that
    is a string raised ValueError (int('t')) out of select(). The select itself
    was never sent (its name could not be resolved): may_have_executed False."""
    vspace_answers = 0

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        nonlocal vspace_answers
        space = body.get(C.SPACE_ID)
        if space == C.VSPACE_ID:
            vspace_answers += 1
            rows: list[Any] = ["tester"] if vspace_answers == 1 else SPACES
            await peer.reply(header[C.SYNC], {C.DATA: rows})
        elif space == C.VINDEX_ID:
            await peer.reply(header[C.SYNC], {C.DATA: INDEXES})
        else:
            assert space == 512
            await peer.reply(header[C.SYNC], {C.DATA: [[1, "x"]]})

    async with hostile_server(serving(answer)) as server:
        result = await check_protocol_error(
            server, lambda c: c.select("tester", 1), lambda c: c.select("tester", 1),
            r"_vspace: row 0 \('tester'\) is a string, expected an array", executed=False)
    assert list(result) == [[1, "x"]]
    assert [body[C.SPACE_ID] for body in server.requests_of(C.SELECT)] == [
        C.VSPACE_ID, C.VINDEX_ID, C.VSPACE_ID, C.VINDEX_ID, 512]


async def test_execute_sql_info_as_a_list() -> None:
    """Regression: execute returned a Response whose rowcount raised AttributeError."""

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        assert header[C.REQUEST_TYPE] == C.EXECUTE
        info: Any = [1] if n == 0 else {C.SQL_INFO_ROW_COUNT: 1}
        await peer.reply(header[C.SYNC], {C.SQL_INFO: info})

    async with hostile_server(serving(answer)) as server:
        result = await check_protocol_error(
            server, lambda c: c.execute("UPDATE t SET a = 1"), lambda c: c.execute("UPDATE t SET a = 1"),
            r"SQL_INFO is an array, expected a map")
    assert result.rowcount == 1


async def test_prepare_stmt_id_as_a_string() -> None:
    """Regression: int() of the STMT_ID string raised ValueError out of prepare()
    (and a numeric string was silently accepted)."""

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        assert header[C.REQUEST_TYPE] == C.PREPARE
        await peer.reply(header[C.SYNC], {C.STMT_ID: "statement-7" if n == 0 else 7, C.BIND_COUNT: 0,
                                          C.BIND_METADATA: [], C.METADATA: [{0: "1", 1: "integer"}]})

    async with hostile_server(serving(answer)) as server:
        stmt = await check_protocol_error(
            server, lambda c: c.prepare("SELECT 1"), lambda c: c.prepare("SELECT 1"),
            r"STMT_ID is a string, expected a non-negative integer")
    assert (stmt.stmt_id, stmt.params_count, stmt.columns) == (7, 0, [{"name": "1", "type": "integer"}])


async def test_error_reply_with_a_garbage_error_stack() -> None:
    """The code and ERROR_24 are trusted, the stack dropped: a DatabaseError.
    Regression: a malformed extension value inside the stack broke the whole
    stream (ProtocolError, then a reconnect)."""

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        sync = header[C.SYNC]
        if n == 0:  # a bad decimal (sign nibble 5) among the stack entry's fields
            stack = {0: [{0: "ClientError", 3: "boom", 5: 32, 6: {"x": msgpack.ExtType(1, b"\x00\x05")}}]}
            await peer.reply(sync, {C.ERROR_24: "boom", C.ERROR: stack}, code=C.TYPE_ERROR | 32)
        elif n == 1:  # a stack of the wrong shape
            await peer.reply(sync, {C.ERROR_24: "bang", C.ERROR: "garbage"}, code=C.TYPE_ERROR | 32)
        else:
            await peer.reply(sync, {C.DATA: [True]})

    async with hostile_server(serving(answer)) as server:
        with trio.fail_after(10):
            async with trio_tarantool.connect("127.0.0.1", server.port) as conn:
                for message in ("boom", "bang"):
                    with pytest.raises(DatabaseError) as info:
                        await conn.call("f")
                    assert (info.value.code, info.value.message) == (32, message)
                    assert info.value.extra_info is None
                assert list(await conn.call("f")) == [True]
        assert server.connections == 1


async def test_push_with_data_as_an_int() -> None:
    """Regression: on_push received 5 (not a DATA array) and the call succeeded."""
    pushed: list[Any] = []

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        sync = header[C.SYNC]
        if n == 0:
            await peer.reply(sync, {C.DATA: ["fine"]}, code=C.CHUNK)
            await peer.reply(sync, {C.DATA: 5}, code=C.CHUNK)
        await peer.reply(sync, {C.DATA: [n]})

    def on_push(data: Any, ctx: Any) -> None:
        pushed.append(data)

    async with hostile_server(serving(answer)) as server:
        result = await check_protocol_error(
            server, lambda c: c.call("f", on_push=on_push), lambda c: c.call("f", on_push=on_push),
            r"push \(IPROTO_CHUNK\) for this request was malformed: DATA is an integer, expected an array")
    assert pushed == [["fine"]]
    assert list(result) == [1]


async def test_reply_with_an_unknown_extension_type() -> None:
    """Regression: an ExtType object was handed to the application as a value."""

    async def answer(peer: Peer, header: dict[int, Any], body: dict[int, Any], n: int) -> None:
        value = msgpack.ExtType(42, b"\x01\x02") if n == 0 else 1
        await peer.reply(header[C.SYNC], {C.DATA: [[value]]})

    async with hostile_server(serving(answer)) as server:
        result = await check_protocol_error(
            server, lambda c: c.select(512), lambda c: c.select(512),
            r"unknown msgpack extension type 42")
    assert list(result) == [[1]]


async def test_id_reply_with_features_as_a_map() -> None:
    """At connect, before any request existed: ProtocolError, may_have_executed False.
    (Regression: the connection iterated the map's keys as features.)"""

    async def handler(peer: Peer) -> None:
        await peer.greet("2.10.0")
        header, _ = await peer.read_request()
        assert header[C.REQUEST_TYPE] == C.ID
        await peer.reply(header[C.SYNC], {C.VERSION: 3, C.FEATURES: {0: True, 1: True}})
        await peer.drain()

    async with hostile_server(handler) as server:
        with trio.fail_after(10), pytest.raises(ProtocolError, match=r"FEATURES is a map, expected an array") as info:
            async with trio_tarantool.connect("127.0.0.1", server.port):
                pass
        assert info.value.may_have_executed is False
