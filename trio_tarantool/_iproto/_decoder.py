"""Incremental response decoder: bytes in (any chunking), replies out.

The decoder never blocks and never waits for bytes that cannot come: a length
prefix that is not a msgpack unsigned integer, a packet whose header or body
does not fill its declared length exactly (or is not msgpack at all), or a
header without the mandatory keys puts it in a broken state in which every
call raises :class:`~trio_tarantool.ProtocolError`: the stream's framing is
lost, so the connection cannot go on.

A packet that is well framed but whose *contents* cannot be decoded (a string
that is not UTF-8, an extension value that is malformed or of a type this
client does not know, a map keyed by an array) costs that one reply only: it
comes out with ``decode_error`` set and an empty body (an error reply keeps
its ERROR_24 message, decoded leniently), and the stream goes on.

Pushes (IPROTO_CHUNK) are screened too, because the connection hands their
DATA to application callbacks: a push whose DATA is not an array, or that
could not be decoded, is not returned; instead the final reply with the same
sync comes out with ``decode_error`` set, so the request fails with
ProtocolError rather than its callback receiving garbage.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .._errors import ProtocolError
from . import _constants as C
from ._ext import ExtDecodeError, ext_hook
from ._handshake import kind

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from

#: Extension types this client decodes (see ``_ext``); any other is refused.
KNOWN_EXT_TYPES: dict[int, str] = {
    C.EXT_DECIMAL: "decimal", C.EXT_UUID: "uuid", C.EXT_ERROR: "error",
    C.EXT_DATETIME: "datetime", C.EXT_INTERVAL: "interval",
}
_KNOWN_EXT_LIST = ", ".join(f"{code} {name}" for code, name in KNOWN_EXT_TYPES.items())
#: Syncs whose pushes were malformed, remembered until their final reply; a
#: hostile server cannot grow this past the bound (the oldest is forgotten).
MAX_BAD_PUSHES = 256
_MAP_MARKERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
#: First bytes of a msgpack unsigned integer: the legal length prefixes.
_UINT_MARKERS = frozenset([*range(0x00, 0x80), 0xCC, 0xCD, 0xCE, 0xCF])
_CHUNK = C.CHUNK
#: What ``next(stream, _OUT)`` returns when the unpacker is out of bytes.
_OUT = object()
#: The streaming unpacker holds one packet plus what came after it in the same reads.
_STREAM_SLACK = 4 << 20
_MAX_STREAM_BUFFER = (1 << 31) - 1


class UnknownExtTypeError(ExtDecodeError):
    """A msgpack extension type this client does not decode."""

    def __init__(self, code: int) -> None:
        super().__init__(f"unknown msgpack extension type {code}")
        self.code = code


def _ext_hook(code: int, data: bytes) -> Any:
    """Decode the extension types we know; refuse the others (the application
    would otherwise get opaque ``ExtType`` objects as values)."""
    if code not in KNOWN_EXT_TYPES:
        raise UnknownExtTypeError(code)
    return ext_hook(code, data)


def _content_problem(exc: BaseException) -> str:
    """What a content (not framing) decoding failure means, for ``decode_error``."""
    if isinstance(exc, UnicodeDecodeError):
        return (f"the reply holds a string that is not valid UTF-8 ({exc.reason} at byte "
                f"{exc.start}); connect with encoding=None to receive raw bytes")
    if isinstance(exc, UnknownExtTypeError):
        return (f"the reply holds a value of unknown msgpack extension type {exc.code} "
                f"(this client decodes {_KNOWN_EXT_LIST})")
    if isinstance(exc, ExtDecodeError):
        return f"the reply holds a malformed msgpack extension value ({exc})"
    if isinstance(exc, TypeError) and "unhashable" in str(exc):
        return "the reply holds a map whose key is an array or a map, which Python cannot use as a key"
    return f"the reply holds a value that cannot be decoded ({type(exc).__name__}: {exc})"


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

    def unwrap(self) -> Reply:
        """The reply itself.

        The connection hands a Reply to ``trio.lowlevel.reschedule`` where an
        ``outcome.Value(reply)`` would go: all ``wait_task_rescheduled`` does
        with what it is sent is call ``unwrap()``, so this saves an object and
        three calls per reply (a failure is still sent as ``outcome.Error``).
        """
        return self

    @property
    def is_error(self) -> bool:
        return bool(self.code & C.TYPE_ERROR)

    @property
    def error_code(self) -> int:
        """The box error code of an error reply (0 otherwise)."""
        return self.code & ~C.TYPE_ERROR if self.code & C.TYPE_ERROR else 0

    def __repr__(self) -> str:
        return f"Reply(sync={self.sync}, code={self.code:#x}, schema_version={self.schema_version})"


_new_reply = object.__new__


class Decoder:
    """Splits a byte stream into :class:`Reply` objects.

    Two paths, one contract. The *streaming* path (the hot one) feeds every
    received chunk once to one msgpack ``Unpacker`` and iterates it: length,
    header, body, length, ... checking each packet's framing by position
    (``tell()`` against the declared length) as the floor client does, with no
    copy of the bytes. Whatever it does not recognise as a well-formed packet
    (a length prefix that is not a msgpack uint, a header or body of the wrong
    type, a packet whose objects do not end exactly where its length says, any
    exception of the unpacker) is handed, from the start of that packet, to the
    *careful* path: the packet-by-packet decoder below, which judges it
    (broken stream, one undecodable reply, or wait for more bytes). After the
    careful path returns a reply, the stream goes back to the streaming path.

    Args:
        raw: Leave msgpack strings as ``bytes`` (the connection's ``encoding=None``).
        max_packet_size: Declared lengths above this are treated as corruption.
    """

    def __init__(self, *, raw: bool = False, max_packet_size: int = C.MAX_PACKET_SIZE) -> None:
        self._raw = raw
        self._max = max_packet_size
        self._error: ProtocolError | None = None
        self._bad_pushes: dict[int, str] = {}
        # -- the careful path: its buffer, read position and per-packet unpacker
        self._careful = False
        self._buf = bytearray()
        self._pos = 0
        self._unpacker = self._new_unpacker()
        self._stream_pos = 0
        # -- the streaming path. Positions count the bytes fed to ``_stream``.
        self._stream = self._new_stream()
        self._fed = 0
        #: Where the packet being read starts, and (phase 1) where it ends.
        self._start = 0
        self._end = 0
        #: 0: expecting a length prefix; 1: the prefix is read, the packet's
        #: bytes (up to ``_end``) are not all here yet.
        self._phase = 0
        #: The fed chunks that cover ``_start`` .. ``_fed`` (from ``_held_at``):
        #: what the careful path gets if the packet turns out odd.
        self._held: list[bytes] = []
        self._held_at = 0

    def _new_unpacker(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(
            raw=self._raw, strict_map_key=False, ext_hook=_ext_hook,
            max_buffer_size=self._max + 16,
        )

    def _new_stream(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(
            raw=self._raw, strict_map_key=False, ext_hook=_ext_hook,
            max_buffer_size=min(self._max + _STREAM_SLACK, _MAX_STREAM_BUFFER),
        )

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as replies."""
        if self._careful:
            return len(self._buf) - self._pos
        return self._fed - self._start

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            data = bytes(data)  # held below: must not change under us
        if not data:
            return
        if self._careful:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += data
            return
        held = self._held
        start = self._start
        if start == self._fed:
            if held:
                held.clear()
            self._held_at = start
        else:
            while self._held_at + len(held[0]) <= start:
                self._held_at += len(held.pop(0))
        held.append(data)
        self._fed += len(data)
        try:
            self._stream.feed(data)
        except msgpack.BufferFull:
            self._to_careful()

    def _fail(self, message: str) -> ProtocolError:
        self._error = ProtocolError(f"malformed server data: {message}")
        self._buf.clear()
        self._pos = 0
        self._held = []
        self._careful = True
        return self._error

    def _to_careful(self) -> None:
        """Hand the bytes from the current packet's start to the careful path."""
        held = self._held
        joined = held[0] if len(held) == 1 else b"".join(held)
        self._buf = bytearray(joined[self._start - self._held_at:])
        self._pos = 0
        self._held = []
        self._careful = True
        self._unpacker = self._new_unpacker()
        self._stream_pos = 0

    def _to_streaming(self) -> None:
        """Back to the streaming path after the careful one returned a reply."""
        rest = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = 0
        self._careful = False
        self._stream = self._new_stream()
        self._fed = self._start = self._held_at = 0
        self._phase = 0
        self._held = []
        if rest:
            self._held.append(rest)
            self._fed = len(rest)
            self._stream.feed(rest)  # at most one packet's worth: fits

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes are fed."""
        while True:
            if self._careful:
                reply = self._careful_reply()
            else:
                reply = self._streamed(None)
                if reply is None and self._careful:
                    continue  # handed over: the careful path judges that packet
            if reply is None or (reply.code != C.CHUNK and not self._bad_pushes):
                return reply
            reply = self._screen(reply)
            if reply is not None:
                return reply

    def replies(self) -> list[Reply]:
        """Every complete reply buffered now."""
        out: list[Reply] = []
        while True:
            if not self._careful:
                self._streamed(out)
                if not self._careful:
                    return out
            reply = self.next_reply()
            if reply is None:
                return out
            out.append(reply)

    def _careful_reply(self) -> Reply | None:
        reply = self._next_packet()
        if reply is not None and self._error is None:
            self._to_streaming()
        return reply

    def _screen(self, reply: Reply) -> Reply | None:
        """A push passes if well formed; a malformed one is dropped (None) and
        remembered, and the final reply of its request fails instead."""
        if reply.code == C.CHUNK:
            problem = reply.decode_error
            if problem is None:
                data = reply.body.get(C.DATA)
                if type(data) is list:
                    return reply
                problem = f"DATA is {kind(data)}, expected an array"
            bad = self._bad_pushes
            if len(bad) >= MAX_BAD_PUSHES and reply.sync not in bad:
                del bad[next(iter(bad))]
            bad.setdefault(reply.sync, problem)
            return None
        problem = self._bad_pushes.pop(reply.sync, None)
        if problem is None:
            return reply
        message = reply.body.get(C.ERROR_24) if reply.is_error else None
        return Reply(reply.sync, reply.code, reply.schema_version,
                     {} if message is None else {C.ERROR_24: message},
                     f"a push (IPROTO_CHUNK) for this request was malformed: {problem}")

    def _streamed(self, out: list[Reply] | None) -> Reply | None:
        """The streaming path: with ``out``, append every complete reply to it
        (screened) and return None; without, return the next reply (unscreened)
        or None. Switches to the careful path (``_careful``) and returns at the
        first packet it cannot vouch for.

        A packet is taken whole: its length prefix first, then, once all the
        bytes it declares are buffered, its header and body with no state
        kept in between (phase 1 only remembers a prefix whose packet is
        still coming).
        """
        if self._error is not None:
            raise self._error
        stream = self._stream
        tell = stream.tell
        fed = self._fed
        phase = self._phase
        end = self._end
        start = self._start
        maximum = self._max
        bad = self._bad_pushes
        last = self._held[-1] if self._held else b""
        last_at = fed - len(last)
        try:
            while True:
                if not phase:
                    length = next(stream, _OUT)
                    if length is _OUT:  # out of bytes: a prefix that cannot be a uint never will
                        self._start, self._phase = start, 0
                        if start != fed and self._marker() not in _UINT_MARKERS:
                            self._to_careful()
                        return None
                    if type(length) is not int or not 0 < length <= maximum:
                        break
                    end = tell()
                    if end - start != 1:  # not a positive fixint: uint8/16/32/64 only
                        if start >= last_at:  # the prefix's first byte is almost always in the last chunk
                            if last[start - last_at] not in _UINT_MARKERS:
                                break
                        elif self._marker(start) not in _UINT_MARKERS:
                            break
                    end += length
                    if end > fed:  # the rest of the packet is still coming
                        self._start, self._phase, self._end = start, 1, end
                        return None
                elif end > fed:
                    return None
                phase = 0
                header = next(stream)  # every byte the packet declares is here
                if type(header) is not dict:
                    break
                at = tell()
                if at < end:
                    body = next(stream)
                    if type(body) is not dict or tell() != end:
                        break
                elif at == end:
                    body = {}
                else:
                    break
                try:  # what Tarantool always sends: subscripts are cheaper than get()
                    code = header[0]
                    sync = header[1]
                    version = header[5]
                except KeyError:
                    code = header.get(0)
                    sync = header.get(1, 0)
                    version = header.get(5, 0)
                if type(code) is not int or type(sync) is not int or type(version) is not int:
                    break  # (the careful path takes a version of another type as 0)
                reply = _new_reply(Reply)
                reply.sync = sync
                reply.code = code
                reply.schema_version = version
                reply.body = body
                reply.decode_error = None
                start = end
                if out is None:
                    self._start, self._phase = start, 0
                    return reply
                if code == _CHUNK or bad:
                    screened = self._screen(reply)
                    if screened is not None:
                        out.append(screened)
                else:
                    out.append(reply)
        except Exception:
            pass
        # A packet this path cannot vouch for: the careful path judges it,
        # from its first byte.
        self._start, self._phase = start, 0
        self._to_careful()
        return None

    def _marker(self, start: int | None = None) -> int:
        """The first byte of the packet at ``start`` (default: the current one),
        i.e. its length prefix's marker."""
        offset = (self._start if start is None else start) - self._held_at
        for chunk in self._held:
            if offset < len(chunk):
                return chunk[offset]
            offset -= len(chunk)
        raise AssertionError("the current packet's first byte is not held")

    def _next_packet(self) -> Reply | None:
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
        except Exception as exc:
            # Framing error (the packet is not msgpack) or a content error
            # (the packet is fine, a value in it is not): _undecodable tells.
            return self._undecodable(start, end, exc)
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

    def _undecodable(self, start: int, end: int, exc: Exception) -> Reply:
        """A packet whose decoding failed: one bad reply if its structure is sound
        msgpack (a header map with integer type and sync, then a body map, filling
        the declared length exactly), else a broken stream."""
        self._unpacker = self._new_unpacker()  # its state is mid-object: start afresh
        self._stream_pos = 0
        packet = bytes(self._buf[start:end])  # a copy: a view would pin the buffer
        length = end - start
        # Structure only: no strings decoded, no extension interpreted.
        plain = msgpack.Unpacker(raw=True, use_list=False, strict_map_key=False)
        plain.feed(packet)
        try:
            header = plain.unpack()
            body_start = plain.tell()
            if body_start != length:
                plain.skip()
        except Exception:
            raise self._fail(f"undecodable msgpack ({type(exc).__name__}: {exc})") from exc
        if plain.tell() != length:
            raise self._fail("packet length does not match its contents")
        if type(header) is not dict or (body_start != length and packet[body_start] not in _MAP_MARKERS):
            raise self._fail("header and body must be maps")
        code = header.get(C.REQUEST_TYPE)
        sync = header.get(C.SYNC, 0)
        schema_version = header.get(C.SCHEMA_VERSION, 0)
        if type(code) is not int or type(sync) is not int:
            raise self._fail("header request type and sync must be integers")
        self._pos = end
        body: dict[int, Any] = {}
        if code & C.TYPE_ERROR and body_start != length:
            body = self._lenient_message(packet[body_start:])
        return Reply(sync, code, schema_version if type(schema_version) is int else 0, body,
                     _content_problem(exc))

    def _lenient_message(self, body_bytes: bytes) -> dict[int, Any]:
        """ERROR_24 of an error reply whose body could not be decoded as is: the
        server's message is worth keeping (bad bytes replaced, extensions left
        undecoded); ``{}`` when even that fails."""
        lenient = msgpack.Unpacker(raw=self._raw, unicode_errors="replace", use_list=False,
                                   strict_map_key=False)
        lenient.feed(body_bytes)
        try:
            body = lenient.unpack()
        except Exception:
            return {}
        message = body.get(C.ERROR_24) if type(body) is dict else None
        return {C.ERROR_24: message} if isinstance(message, str | bytes) else {}
