"""A scriptable, hostile IPROTO server on loopback, for tests that must break the client.

Each accepted connection runs the test's handler with a :class:`Peer`, which can
greet (or not), read the client's requests, answer them (rightly, wrongly, late or
never), send garbage, or drop the socket. The server shares only protocol numbers
with the library, so a bug in the library's codec cannot hide itself here.

Use::

    async def handler(peer: Peer) -> None:
        await peer.greet()
        header, body = await peer.read_request()
        await peer.reply(header[C.SYNC], {C.DATA: [[1]]})

    async with hostile_server(handler) as server:
        async with trio_tarantool.connect("127.0.0.1", server.port) as conn:
            ...

``server.connections`` counts accepted sockets; ``server.requests`` records every
``(request_type, body)`` any peer read, so a test can prove what was (not) sent.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import trio

from trio_tarantool._iproto import _constants as C

SALT = base64.b64encode(bytes(range(32)))


def greeting(version: str = "2.6.0", salt: bytes = SALT) -> bytes:
    """A 128-byte Tarantool greeting."""
    line1 = f"Tarantool {version} (Binary) 11111111-2222-3333-4444-555555555555".encode()
    return line1.ljust(63) + b"\n" + salt.ljust(63) + b"\n"


def frame(header: dict[int, Any], body: Any) -> bytes:
    """One IPROTO packet: length prefix, header map, body."""
    payload: bytes = msgpack.packb(header) + msgpack.packb(body, use_bin_type=True)
    return b"\xce" + len(payload).to_bytes(4, "big") + payload


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, stream: trio.SocketStream, server: HostileServer) -> None:
        self.stream = stream
        self.server = server
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    async def greet(self, version: str = "2.6.0") -> None:
        await self.stream.send_all(greeting(version))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _unpack(self) -> Any:
        while True:
            try:
                return self._unpacker.unpack()
            except msgpack.OutOfData:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("client closed the connection") from None
                self._unpacker.feed(data)

    async def read_request(self) -> tuple[dict[int, Any], dict[int, Any]]:
        """The next request's header and body (EOFError when the client hung up)."""
        await self._unpack()  # the length prefix
        header = await self._unpack()
        body = await self._unpack()
        self.server.requests.append((header.get(C.REQUEST_TYPE), body))
        return header, body

    async def reply(self, sync: int, body: Any = None, *, code: int = 0,
                    schema_version: int = 1) -> None:
        header = {C.REQUEST_TYPE: code, C.SYNC: sync, C.SCHEMA_VERSION: schema_version}
        await self.stream.send_all(frame(header, {} if body is None else body))

    async def error(self, sync: int, errcode: int, message: str, *, schema_version: int = 1) -> None:
        """An error reply (``0x8000 | errcode``) with IPROTO_ERROR_24."""
        await self.reply(sync, {C.ERROR_24: message}, code=C.TYPE_ERROR | errcode,
                         schema_version=schema_version)

    async def serve_handshake(self) -> None:
        """Answer what a 2.6 server answers before requests: ID unknown, AUTH ok.

        Reads requests until the first one that is neither ID nor AUTH, and
        returns it unanswered in :attr:`pending`.
        """
        while True:
            header, body = await self.read_request()
            rtype = header.get(C.REQUEST_TYPE)
            if rtype == C.ID:
                await self.error(header[C.SYNC], 48, "Unknown request type 73")
            elif rtype == C.AUTH:
                await self.reply(header[C.SYNC])
            else:
                self.pending = (header, body)
                return

    pending: tuple[dict[int, Any], dict[int, Any]] | None = None

    async def serve(self, answer: Callable[[dict[int, Any], dict[int, Any]], Any]) -> None:
        """Greet, handshake like 2.6 (:meth:`serve_handshake`), then answer every
        request, in order, with the body ``answer(header, body)`` returns."""
        await self.greet()
        await self.serve_handshake()
        assert self.pending is not None
        header, body = self.pending
        while True:
            await self.reply(header[C.SYNC], answer(header, body))
            header, body = await self.read_request()

    async def drain(self) -> None:
        """Read (and record) requests until the client hangs up."""
        try:
            while True:
                await self.read_request()
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            return


Handler = Callable[[Peer], Awaitable[None]]


class HostileServer:
    """What :func:`hostile_server` yields: its port and what it saw."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self.requests: list[tuple[int | None, Any]] = []

    def requests_of(self, request_type: int) -> list[Any]:
        return [body for rtype, body in self.requests if rtype == request_type]


@asynccontextmanager
async def hostile_server(handler: Handler) -> AsyncIterator[HostileServer]:
    """Serve ``handler`` for every connection on a free loopback port until the block exits."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    server = HostileServer(port)

    async def serve_one(stream: trio.SocketStream) -> None:
        server.connections += 1
        peer = Peer(stream, server)
        try:
            await handler(peer)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_one, listeners)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
