"""The server side of IPROTO: greeting, chap-sha1 check, framing, replies.

Written independently of the client codec in ``trio_tarantool._iproto``; the
two share only the protocol numbers in ``_constants``, so a misreading of the
protocol on one side shows up as a failing test instead of cancelling out.

Framing (both directions): a msgpack unsigned integer holding the packet
length, then a header map and (usually) a body map. The server always sends
the length as ``0xce`` + 4 bytes, as Tarantool does.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import msgpack

from trio_tarantool._iproto import _constants as C

#: The type Tarantool reports for errors raised by the box itself.
CLIENT_ERROR = "ClientError"


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a valid IPROTO packet."""


def greeting(version: str, instance_uuid: str, salt: bytes) -> bytes:
    """The 128-byte greeting: two 64-byte lines (banner, base64 salt)."""
    banner = f"Tarantool {version} (Binary) {instance_uuid}"
    salt_line = base64.b64encode(salt).decode("ascii")
    if len(banner) > 63 or len(salt_line) > 63:
        raise ValueError("greeting line too long")
    out = (banner.ljust(63) + "\n" + salt_line.ljust(63) + "\n").encode("ascii")
    assert len(out) == C.GREETING_SIZE
    return out


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def check_chap_sha1(password: str, salt: bytes, scramble: bytes) -> bool:
    """Verify a chap-sha1 scramble the way the server does.

    The client sends ``sha1(pw) XOR sha1(salt[:20] + sha1(sha1(pw)))``; the
    server knows only ``sha1(sha1(pw))``. XOR-ing the scramble with
    ``sha1(salt + hash2)`` must give a value whose sha1 is ``hash2``.
    """
    if len(scramble) != 20:
        return False
    hash2 = _sha1(_sha1(password.encode("utf-8")))
    mask = _sha1(salt[:20], hash2)
    candidate = bytes(a ^ b for a, b in zip(scramble, mask, strict=True))
    return _sha1(candidate) == hash2


class PacketReader:
    """Incremental parser: feed bytes, iterate complete (header, body) pairs."""

    def __init__(self) -> None:
        self._buf = bytearray()
        #: Stream offset just past the last whole packet parsed.
        self.consumed = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed into a whole packet."""
        return len(self._buf)

    def packets(self) -> Iterator[tuple[dict[int, Any], dict[int, Any]]]:
        while True:
            parsed = self._length()
            if parsed is None:
                return
            prefix, length = parsed
            if len(self._buf) < prefix + length:
                return
            payload = bytes(self._buf[prefix : prefix + length])
            del self._buf[: prefix + length]
            self.consumed += prefix + length
            yield self._decode(payload)

    def _length(self) -> tuple[int, int] | None:
        if not self._buf:
            return None
        first = self._buf[0]
        if first <= 0x7F:
            return 1, first
        widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
        if first not in widths:
            raise ProtocolViolation(f"packet length must be a msgpack uint, got byte 0x{first:02x}")
        w = widths[first]
        if len(self._buf) < 1 + w:
            return None
        length = int.from_bytes(self._buf[1 : 1 + w], "big")
        if length > C.MAX_PACKET_SIZE:
            raise ProtocolViolation(f"packet length {length} is too large")
        return 1 + w, length

    @staticmethod
    def _decode(payload: bytes) -> tuple[dict[int, Any], dict[int, Any]]:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
        unpacker.feed(payload)
        try:
            header = next(unpacker)
        except (StopIteration, ValueError) as exc:
            raise ProtocolViolation("packet has no header") from exc
        try:
            body = next(unpacker)
        except StopIteration:
            body = {}
        except ValueError as exc:
            raise ProtocolViolation(f"bad body: {exc}") from exc
        if not isinstance(header, dict) or not isinstance(body, dict):
            raise ProtocolViolation("header and body must be maps")
        return header, body


def _frame(header: dict[int, Any], body: dict[int, Any] | None) -> bytes:
    payload: bytes = msgpack.packb(header, use_bin_type=True)
    if body is not None:
        payload += msgpack.packb(body, use_bin_type=True)
    return b"\xce" + len(payload).to_bytes(4, "big") + payload


def response(sync: int, schema_version: int, body: dict[int, Any], code: int = C.OK) -> bytes:
    """An OK (or CHUNK/EVENT, by ``code``) packet."""
    header = {C.REQUEST_TYPE: code, C.SYNC: sync, C.SCHEMA_VERSION: schema_version}
    return _frame(header, body)


def data_response(sync: int, schema_version: int, data: list[Any]) -> bytes:
    return response(sync, schema_version, {C.DATA: data})


def push(sync: int, schema_version: int, value: Any) -> bytes:
    """An IPROTO_CHUNK message, as ``box.session.push(value)`` sends it."""
    return response(sync, schema_version, {C.DATA: [value]}, code=C.CHUNK)


def event(key: str, value: Any) -> bytes:
    """An IPROTO_EVENT message for a watched key (sync 0)."""
    body: dict[int, Any] = {C.EVENT_KEY: key}
    if value is not None:
        body[C.EVENT_DATA] = value
    return _frame({C.REQUEST_TYPE: C.EVENT, C.SYNC: 0}, body)


def error_response(
    sync: int,
    schema_version: int,
    code: int,
    message: str,
    *,
    error_type: str = CLIENT_ERROR,
    file: str = "sim/_instance.py",
    line: int = 1,
    fields: dict[str, Any] | None = None,
) -> bytes:
    """An error reply carrying both the 1.x message (0x31) and the stack (0x52).

    ``fields`` (3.x: the error's payload, e.g. ER_READONLY's ``reason`` and
    ``leader_uuid``) go into the stack entry's ``fields`` map when given.
    """
    stack_entry: dict[int, Any] = {
        C.MP_ERROR_TYPE: error_type,
        C.MP_ERROR_FILE: file,
        C.MP_ERROR_LINE: line,
        C.MP_ERROR_MESSAGE: message,
        C.MP_ERROR_ERRNO: 0,
        C.MP_ERROR_ERRCODE: code,
    }
    if fields:
        stack_entry[C.MP_ERROR_FIELDS] = fields
    body = {C.ERROR_24: message, C.ERROR: {C.MP_ERROR_STACK: [stack_entry]}}
    header = {C.REQUEST_TYPE: C.TYPE_ERROR | code, C.SYNC: sync, C.SCHEMA_VERSION: schema_version}
    return _frame(header, body)


def watch_once_response(sync: int, schema_version: int, value: Any) -> bytes:
    """The reply to IPROTO_WATCH_ONCE: the key's value in DATA (an empty array if it has none)."""
    return response(sync, schema_version, {C.DATA: [] if value is None else [value]})


def reply_code(packet: bytes) -> int:
    """The response type of one framed packet this module produced."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(packet[5:])
    header = next(unpacker)
    return int(header[C.REQUEST_TYPE])


#: Request type numbers to names, for traces and counters.
REQUEST_NAMES: dict[int, str] = {
    C.SELECT: "SELECT", C.INSERT: "INSERT", C.REPLACE: "REPLACE", C.UPDATE: "UPDATE",
    C.DELETE: "DELETE", C.CALL_16: "CALL_16", C.AUTH: "AUTH", C.EVAL: "EVAL",
    C.UPSERT: "UPSERT", C.CALL: "CALL", C.EXECUTE: "EXECUTE", C.NOP: "NOP",
    C.PREPARE: "PREPARE", C.BEGIN: "BEGIN", C.COMMIT: "COMMIT", C.ROLLBACK: "ROLLBACK",
    C.PING: "PING", C.ID: "ID", C.WATCH: "WATCH", C.UNWATCH: "UNWATCH",
    C.WATCH_ONCE: "WATCH_ONCE",
}
