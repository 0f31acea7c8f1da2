"""One accepted IPROTO connection of a simulated instance (the server side).

A connection is a reader loop (parse packets, let the instance answer them in
arrival order) and an ordered writer (replies, pushes and watch events leave in
the order they were queued). Both wait while the instance is paused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from trio_tarantool._iproto import _constants as C

from . import _iproto_server as P
from ._net import FakeSocket

if TYPE_CHECKING:
    from ._instance import FakeInstance


@dataclass
class CallContext:
    """What a call/eval handler gets: the instance, the caller, and ``push``."""

    instance: FakeInstance
    user: str
    sync: int
    conn: ServerConn

    def push(self, value: Any) -> None:
        """Send an out-of-band message (IPROTO_CHUNK) before the final reply."""
        self.conn.queue(P.push(self.sync, self.instance.db.schema_version, value))


@dataclass
class Watch:
    acked: bool = False
    dirty: bool = False


class ServerConn:
    """One accepted connection: reader loop plus an ordered writer."""

    def __init__(self, instance: FakeInstance, sock: FakeSocket, number: int) -> None:
        self.instance = instance
        self.sock = sock
        self.number = number
        self.stream = trio.SocketStream(sock)
        self.user = "guest"
        self.salt = instance.world.rng.randbytes(32)
        self.reader = P.PacketReader()
        self.watches: dict[str, Watch] = {}
        #: (write number, virtual time) of the client's write that carried the
        #: end of the request being handled (see :meth:`FakeSocket.peer_write_of`).
        self.request_written: tuple[int, float] = (0, 0.0)
        #: Streams with a request still running (an async call): the requests
        #: that arrived on it meanwhile, each with its ``request_written``.
        self._stream_backlog: dict[int, deque[tuple[dict[int, Any], dict[int, Any], tuple[int, float]]]] = {}
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](float("inf"))
        self.cancel_scope = trio.CancelScope()

    @property
    def name(self) -> str:
        return f"conn:{self.sock.getpeername()[1]}"

    def queue(self, data: bytes) -> None:
        """Send ``data`` after everything queued before it."""
        try:
            self._out_send.send_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def run(self) -> None:
        with self.cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self.instance.wait_running()
                self.queue(P.greeting(self.instance.version, self.instance.uuid, self.salt))
                await self._reader(nursery)
                nursery.cancel_scope.cancel()
        self.sock.close()

    async def _writer(self, scope: trio.CancelScope) -> None:
        try:
            async for data in self._out_recv:
                await self.instance.wait_running()
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()  # the client is gone: stop reading too

    async def _reader(self, nursery: trio.Nursery) -> None:
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self.reader.feed(data)
            try:
                packets = [(h, b, self.reader.consumed) for h, b in self.reader.packets()]
            except P.ProtocolViolation as exc:
                self.instance.record(f"{self.name} protocol error: {exc}")
                return
            for header, body, end in packets:
                await self.instance.wait_running()
                self.request_written = self.sock.peer_write_of(end)
                sid = header.get(C.STREAM_ID, 0) if self.instance.config.has(C.FEATURE_STREAMS) else 0
                backlog = self._stream_backlog.get(sid) if sid else None
                if backlog is not None:  # the stream's previous request still runs
                    backlog.append((header, body, self.request_written))
                    continue
                result = self.instance.handle(self, header, body)
                if isinstance(result, bytes):
                    self.queue(result)
                elif result is not None:
                    if sid:
                        self._stream_backlog[sid] = deque()
                        nursery.start_soon(self._finish_stream, result, sid)
                    else:
                        nursery.start_soon(self._finish, result)

    async def _finish(self, pending: Awaitable[bytes]) -> None:
        self.queue(await pending)

    async def _finish_stream(self, pending: Awaitable[bytes], sid: int) -> None:
        """Finish a stream's slow request, then run the ones queued behind it, in order."""
        self.queue(await pending)
        backlog = self._stream_backlog[sid]
        while backlog:
            header, body, written = backlog.popleft()
            await self.instance.wait_running()
            self.request_written = written
            result = self.instance.handle(self, header, body)
            if isinstance(result, bytes):
                self.queue(result)
            elif result is not None:
                self.queue(await result)
        del self._stream_backlog[sid]

    def kill(self) -> None:
        """The process died: the kernel closes the socket.

        As on Linux, a socket with received-but-unread bytes is aborted with
        an RST (the client sees ECONNRESET); otherwise it gets a FIN (EOF),
        and a later write from the client fails.
        """
        if self.sock.has_unread_data() or self.reader.buffered:
            self.sock.reset()
        else:
            self.sock.close()
        self.cancel_scope.cancel()

    def notify(self, key: str, value: Any) -> None:
        w = self.watches.get(key)
        if w is None:
            return
        if w.acked:
            w.acked = False
            self.queue(P.event(key, value))
        else:
            w.dirty = True


