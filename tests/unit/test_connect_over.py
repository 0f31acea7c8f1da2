"""connect_over(): IPROTO over a stream the caller opened (here: in memory)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio
import trio.testing

import trio_tarantool as tt
from tests.hostile import HostileServer, Peer
from trio_tarantool._iproto import _constants as C


async def serve(stream: trio.abc.Stream, server: HostileServer) -> None:
    peer = Peer(cast(trio.SocketStream, stream), server)
    await peer.greet()
    await peer.serve_handshake()
    assert peer.pending is not None
    header, _ = peer.pending
    await peer.reply(header[C.SYNC], {C.DATA: [["pong"]]})
    await peer.drain()


async def test_requests_travel_over_the_given_stream() -> None:
    client, server_end = trio.testing.memory_stream_pair()
    server = HostileServer(0)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, server_end, server)
            async with tt.connect_over(client, name="memory", user="u", password="p") as conn:
                assert (await conn.eval("return 'pong'")).data == [["pong"]]
                assert "memory" in repr(conn)
                await server_end.aclose()
                await conn.wait_disconnected()
                with pytest.raises(tt.NetworkError, match="cannot be reopened") as info:
                    await conn.ping()
                assert info.value.may_have_executed is False
    assert [rtype for rtype, _ in server.requests] == [C.ID, C.AUTH, C.EVAL]


async def test_connect_over_takes_no_address() -> None:
    client, _ = trio.testing.memory_stream_pair()
    with pytest.raises(tt.ConfigurationError, match="no host or port"):
        async with tt.connect_over(client, host="x"):
            pass


def test_connection_is_an_async_resource_and_open_connection_is_connect() -> None:
    conn: Any = tt.Connection("127.0.0.1", 3301)
    assert isinstance(conn, trio.abc.AsyncResource)
    assert tt.open_connection is tt.connect
