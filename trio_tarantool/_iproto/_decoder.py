"""Incremental response decoder: bytes in (any chunking), replies out.

The decoder never blocks and never waits for bytes that cannot come: a length
prefix that is not a msgpack unsigned integer, a packet whose header or body
does not fill its declared length exactly, or a header without the mandatory
keys puts it in a broken state in which every call raises
:class:`~trio_tarantool.ProtocolError`.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .._errors import ProtocolError
from . import _constants as C
from ._ext import ext_hook

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from


class Reply:
    """One packet from the server.

    ``code`` is the raw response type: ``OK`` (0), ``CHUNK`` (a push that
    precedes the final reply with the same ``sync``), ``EVENT`` (a watcher
    notification), or ``TYPE_ERROR | errcode``.
    """

    __slots__ = ("body", "code", "decode_error", "schema_version", "sync")

    def __init__(self, sync: int, code: int, schema_version: int, body: dict[int, Any],
                 decode_error: str | None = None) -> None:
        self.sync = sync
        self.code = code
        self.schema_version = schema_version
        self.body = body
        #: Set (and ``body`` empty) when the packet was well framed but its body
        #: held a string that is not valid UTF-8: that one reply is unusable,
        #: the stream is not.
        self.decode_error = decode_error

    @property
    def is_error(self) -> bool:
        return bool(self.code & C.TYPE_ERROR)

    @property
    def error_code(self) -> int:
        """The box error code of an error reply (0 otherwise)."""
        return self.code & ~C.TYPE_ERROR if self.code & C.TYPE_ERROR else 0

    def __repr__(self) -> str:
        return f"Reply(sync={self.sync}, code={self.code:#x}, schema_version={self.schema_version})"


class Decoder:
    """Splits a byte stream into :class:`Reply` objects.

    Args:
        raw: Leave msgpack strings as ``bytes`` (the connection's ``encoding=None``).
        max_packet_size: Declared lengths above this are treated as corruption.
    """

    def __init__(self, *, raw: bool = False, max_packet_size: int = C.MAX_PACKET_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._raw = raw
        self._max = max_packet_size
        self._unpacker = self._new_unpacker()
        self._error: ProtocolError | None = None
        self._stream_pos = 0

    def _new_unpacker(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(
            raw=self._raw, strict_map_key=False, ext_hook=ext_hook,
            max_buffer_size=self._max + 16,
        )

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as replies."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._error is not None:
            raise self._error
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def _fail(self, message: str) -> ProtocolError:
        self._error = ProtocolError(f"malformed server data: {message}")
        self._buf.clear()
        self._pos = 0
        return self._error

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes are fed."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail <= 0:
            return None
        first = buf[pos]
        if first <= 0x7F:
            length, start = first, pos + 1
        elif first == 0xCE:
            if avail < 5:
                return None
            length, start = _U32(buf, pos + 1)[0], pos + 5
        elif first == 0xCD:
            if avail < 3:
                return None
            length, start = _U16(buf, pos + 1)[0], pos + 3
        elif first == 0xCC:
            if avail < 2:
                return None
            length, start = buf[pos + 1], pos + 2
        elif first == 0xCF:
            if avail < 9:
                return None
            length, start = _U64(buf, pos + 1)[0], pos + 9
        else:
            raise self._fail(f"packet length prefix starts with byte {first:#04x}, not an unsigned integer")
        if length == 0 or length > self._max:
            raise self._fail(f"packet length {length} is outside 1..{self._max}")
        end = start + length
        if end > len(buf):
            return None
        unpacker = self._unpacker
        unpacker.feed(memoryview(buf)[start:end])
        # tell() counts every byte ever fed: the packet must be consumed exactly.
        expected_end = self._stream_pos + length
        self._stream_pos = expected_end
        try:
            header = unpacker.unpack()
            # A packet may end right after its header (no body). Decide that by
            # position, not by catching OutOfData on the body: msgpack advances
            # tell() over a partial object and keeps it pending, so a truncated
            # body would otherwise pass the length check below and swallow the
            # start of the next packet.
            body = {} if unpacker.tell() == expected_end else unpacker.unpack()
        except msgpack.OutOfData:
            raise self._fail("packet ends inside a msgpack value (its length is too short)") from None
        except UnicodeDecodeError as exc:
            return self._undecodable_text(start, end, exc)
        except Exception as exc:
            raise self._fail(f"undecodable msgpack ({type(exc).__name__}: {exc})") from exc
        if unpacker.tell() != expected_end:
            raise self._fail("packet length does not match its contents")
        self._pos = end
        if type(header) is not dict or type(body) is not dict:
            raise self._fail("header and body must be maps")
        try:
            code = header[C.REQUEST_TYPE]
            sync = header.get(C.SYNC, 0)
        except KeyError:
            raise self._fail("header has no request type") from None
        if type(code) is not int or type(sync) is not int:
            raise self._fail("header request type and sync must be integers")
        schema_version = header.get(C.SCHEMA_VERSION, 0)
        return Reply(sync, code, schema_version if type(schema_version) is int else 0, body)

    def _undecodable_text(self, start: int, end: int, exc: UnicodeDecodeError) -> Reply:
        """A reply whose strings are not UTF-8: report it, keep the stream."""
        self._unpacker = self._new_unpacker()  # its state is mid-object: start afresh
        self._stream_pos = 0
        raw = msgpack.Unpacker(raw=True, strict_map_key=False, ext_hook=ext_hook)
        raw.feed(memoryview(self._buf)[start:end])
        length = end - start
        try:
            header = raw.unpack()
            body = {} if raw.tell() == length else raw.unpack()
        except Exception:
            raise self._fail(f"undecodable msgpack ({exc})") from exc
        if raw.tell() != length or type(header) is not dict or type(body) is not dict:
            raise self._fail(f"undecodable msgpack ({exc})")
        code = header.get(C.REQUEST_TYPE)
        sync = header.get(C.SYNC, 0)
        schema_version = header.get(C.SCHEMA_VERSION, 0)
        if type(code) is not int or type(sync) is not int:
            raise self._fail("header request type and sync must be integers")
        self._pos = end
        return Reply(sync, code, schema_version if type(schema_version) is int else 0, {},
                     f"the reply holds a string that is not valid UTF-8 ({exc.reason} at byte "
                     f"{exc.start}); connect with encoding=None to receive raw bytes")

    def replies(self) -> list[Reply]:
        """Every complete reply buffered now."""
        out: list[Reply] = []
        while True:
            reply = self.next_reply()
            if reply is None:
                return out
            out.append(reply)
