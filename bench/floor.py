"""The floor: the least a trio IPROTO client can do per request (benchmark only).

One reader task and one writer task own the socket (its fd read and written
directly, trio's ``wait_readable``/``wait_writable`` only on EAGAIN, as
trio_tarantool does); a caller frames its packet with a reusable msgpack
Packer, queues it, registers its task under its sync and parks in
``wait_task_rescheduled`` until the reader reschedules it with the reply.
Nothing else: no schema (spaces by id), no timeouts, no reconnect, no
argument checks, and a parked caller cannot be cancelled. Whatever
trio_tarantool spends per request above this client is the cost of its
layers; ``bench/run`` runs it side by side with the real clients.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import outcome
import trio

PING, SELECT, REPLACE, CALL, AUTH = 64, 1, 3, 10, 7
_SYNC, _DATA, _ERROR = 1, 0x30, 0x31
_RECV = 64 * 1024
#: The system space of space definitions and its index by name (to find ids).
VSPACE, VSPACE_NAME_INDEX = 281, 2


class FloorError(Exception):
    """The server answered with an error, or the connection is gone."""


def _no_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # a parked caller waits for its reply


def scramble(password: str, salt: bytes) -> bytes:
    """chap-sha1 proof: sha1(pw) XOR sha1(salt[:20] + sha1(sha1(pw)))."""
    h1 = hashlib.sha1(password.encode()).digest()
    mask = hashlib.sha1(salt[:20] + hashlib.sha1(h1).digest()).digest()
    return bytes(a ^ b for a, b in zip(h1, mask, strict=True))


class FloorClient:
    """A minimal pipelined IPROTO client on one non-blocking socket fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pack = msgpack.Packer(use_bin_type=True).pack
        self.sync = 0
        self.waiters: dict[int, trio.lowlevel.Task] = {}
        self.outbox: list[bytes] = []
        self.writer: trio.lowlevel.Task | None = None
        self.writer_parked = False

    async def request(self, rtype: int, body: dict[int, Any] | None) -> Any:
        """Send one request; its reply's DATA (or raise FloorError)."""
        self.sync = sync = self.sync + 1
        payload = self.pack({0: rtype, _SYNC: sync}) + (
            b"\x80" if body is None else self.pack(body)
        )
        self.outbox.append(b"\xce" + len(payload).to_bytes(4, "big") + payload)
        self.waiters[sync] = trio.lowlevel.current_task()
        if self.writer_parked:
            self.writer_parked = False
            trio.lowlevel.reschedule(self.writer)  # type: ignore[arg-type]
        code, reply = await trio.lowlevel.wait_task_rescheduled(_no_abort)
        if code:
            raise FloorError(f"error {code & 0x7FFF}: {reply.get(_ERROR)}")
        return reply.get(_DATA)

    def ping(self) -> Any:
        return self.request(PING, None)

    def select(self, space_id: int, key: list[Any], index_id: int = 0) -> Any:
        # The same fields trio_tarantool sends: limit, offset, iterator EQ, key.
        return self.request(
            SELECT, {0x10: space_id, 0x11: index_id, 0x12: 0xFFFFFFFF, 0x13: 0, 0x14: 0, 0x20: key}
        )

    def call(self, name: str, args: list[Any]) -> Any:
        return self.request(CALL, {0x22: name, 0x21: args})

    def replace(self, space_id: int, values: list[Any]) -> Any:
        return self.request(REPLACE, {0x10: space_id, 0x21: values})

    async def space_id(self, name: str) -> int:
        """The id of space ``name`` (a select on ``_vspace`` by name)."""
        rows = await self.select(VSPACE, [name], VSPACE_NAME_INDEX)
        if not rows:
            raise FloorError(f"no space named {name!r}")
        return int(rows[0][0])

    async def reader(self) -> None:
        """Read replies and reschedule their callers; on exit fail every waiter."""
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        pop, reschedule, value, fd = (
            self.waiters.pop,
            trio.lowlevel.reschedule,
            outcome.Value,
            self.fd,
        )
        state, end = 0, 0
        header: Any = None
        try:
            while True:
                try:
                    data = os.read(fd, _RECV)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
                    continue
                if not data:
                    break
                unpacker.feed(data)
                for obj in unpacker:  # length, header, body, length, ...
                    if state == 0:
                        end, state = unpacker.tell() + obj, 1
                        continue
                    if state == 1:
                        header = obj
                        if unpacker.tell() != end:
                            state = 2
                            continue
                        obj = {}
                    state = 0
                    task = pop(header[_SYNC], None)
                    if task is not None:
                        reschedule(task, value((header[0], obj)))
        finally:
            waiters = list(self.waiters.values())
            self.waiters.clear()
            for task in waiters:
                reschedule(task, outcome.Error(FloorError("connection closed")))

    def _writer_abort(self, _: Any) -> trio.lowlevel.Abort:
        self.writer_parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    async def writer_loop(self) -> None:
        """Write everything queued in one os.write per wake-up."""
        self.writer = trio.lowlevel.current_task()
        while True:
            if not self.outbox:
                self.writer_parked = True
                await trio.lowlevel.wait_task_rescheduled(self._writer_abort)
                continue
            view = memoryview(b"".join(self.outbox))
            self.outbox.clear()
            while view:
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.fd)


async def _handshake(stream: trio.SocketStream, user: str | None, password: str) -> None:
    greeting = b""
    while len(greeting) < 128:
        chunk = await stream.receive_some(128 - len(greeting))
        if not chunk:
            raise FloorError("no greeting")
        greeting += chunk
    if user is None:
        return
    salt = base64.b64decode(greeting[64:108])
    pack = msgpack.Packer(use_bin_type=True).pack
    payload = pack({0: AUTH, _SYNC: 0}) + pack(
        {0x23: user, 0x21: ["chap-sha1", scramble(password, salt)]}
    )
    await stream.send_all(b"\xce" + len(payload).to_bytes(4, "big") + payload)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    objs: list[Any] = []
    while len(objs) < 3:
        chunk = await stream.receive_some(_RECV)
        if not chunk:
            raise FloorError("connection closed during auth")
        unpacker.feed(chunk)
        objs += list(unpacker)
    if objs[1][0]:
        raise FloorError(f"auth failed: {objs[2].get(_ERROR)}")


@asynccontextmanager
async def connect(
    host: str, port: int, user: str | None = None, password: str = ""
) -> AsyncIterator[FloorClient]:
    """Connect (and authenticate); the client lives inside the ``async with``."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await _handshake(stream, user, password)
        client = FloorClient(stream.socket.fileno())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.reader)
            nursery.start_soon(client.writer_loop)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
