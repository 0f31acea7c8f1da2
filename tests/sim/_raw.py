"""A deliberately tiny IPROTO client used to test the simulated server.

It shares nothing with trio_tarantool's codec except the protocol numbers,
so the fake server is checked against an independent reading of the protocol.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgpack
import trio

from trio_tarantool._iproto import _constants as C


def scramble(salt_b64: bytes, password: str) -> bytes:
    """chap-sha1: sha1(pw) XOR sha1(salt[:20] + sha1(sha1(pw)))."""
    salt = base64.b64decode(salt_b64)[:20]
    h1 = hashlib.sha1(password.encode()).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(salt + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3, strict=True))


class RawClient:
    """Send requests with explicit sync numbers; read raw (header, body) replies."""

    def __init__(self, stream: trio.abc.Stream, greeting: bytes) -> None:
        self.stream = stream
        self.greeting = greeting
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self._sync = 0

    @classmethod
    async def open(cls, host: str, port: int) -> RawClient:
        stream = await trio.open_tcp_stream(host, port)
        buf = b""
        while len(buf) < C.GREETING_SIZE:
            chunk = await stream.receive_some(C.GREETING_SIZE - len(buf))
            assert chunk, "EOF inside the greeting"
            buf += chunk
        return cls(stream, buf)

    @property
    def salt_line(self) -> bytes:
        return self.greeting[64:128].strip()

    async def send(self, rtype: int, body: dict[int, Any] | None = None, **header: Any) -> int:
        self._sync += 1
        head: dict[int, Any] = {C.REQUEST_TYPE: rtype, C.SYNC: self._sync}
        if "schema_version" in header:
            head[C.SCHEMA_VERSION] = header["schema_version"]
        payload = msgpack.packb(head) + msgpack.packb(body or {}, use_bin_type=True)
        await self.stream.send_all(b"\xce" + len(payload).to_bytes(4, "big") + payload)
        return self._sync

    async def recv(self) -> tuple[dict[int, Any], dict[int, Any]]:
        """One packet: skips the length, returns header and body."""
        while True:
            try:
                self._unpacker.unpack()  # the length
                break
            except msgpack.OutOfData:
                await self._fill()
        while True:
            try:
                header = self._unpacker.unpack()
                break
            except msgpack.OutOfData:
                await self._fill()
        while True:
            try:
                body = self._unpacker.unpack()
                break
            except msgpack.OutOfData:
                await self._fill()
        return header, body

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("server closed the connection")
        self._unpacker.feed(data)

    async def request(self, rtype: int, body: dict[int, Any] | None = None, **header: Any) -> tuple[dict[int, Any], dict[int, Any]]:
        sync = await self.send(rtype, body, **header)
        h, b = await self.recv()
        assert h[C.SYNC] == sync
        return h, b

    async def auth(self, user: str, password: str) -> tuple[dict[int, Any], dict[int, Any]]:
        return await self.request(
            C.AUTH, {C.USER_NAME: user, C.TUPLE: ["chap-sha1", scramble(self.salt_line, password)]}
        )

    async def aclose(self) -> None:
        await self.stream.aclose()
