"""Request encoders: from a request's arguments to the bytes on the wire.

Each ``*_body`` function builds the body map of one request type; :class:`Encoder`
frames a body with its header into one packet (a 5-byte msgpack uint32 length,
then the header map, then the body map).

The body functions shape arguments that the builders in
:mod:`trio_tarantool._request` have already checked (types, ranges); what only
msgpack can tell (an object it cannot encode, a str that is not valid UTF-8, an
int outside -2**63 .. 2**64-1 deep inside a tuple) is found when the packet is
framed: :meth:`Encoder.frame` then raises :class:`~trio_tarantool.ConfigurationError`
naming the method, the argument and the position of the bad value, before
anything is written. That check costs nothing on the valid path (the packing
has to happen anyway); only a failure walks the body to say where it failed.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from .._errors import ConfigurationError
from . import _constants as C
from ._ext import default as _ext_default
from ._greeting import chap_sha1_scramble

_pack_len = struct.Struct(">BI").pack

#: The range of integers msgpack can carry.
INT_MIN = -(1 << 63)
INT_END = 1 << 64
INT_RANGE_TEXT = "the msgpack range -2**63 .. 2**64-1"


#: The whole packet head ``ce <len32> 8N 00 <type> 01 <sync>`` in one struct, by
#: the width of the sync (positive fixint, uint16, uint32): the common cases.
_HEAD_FIX = struct.Struct(">BIBBBBB").pack
_HEAD_16 = struct.Struct(">BIBBBBBH").pack
_HEAD_32 = struct.Struct(">BIBBBBBI").pack


class Encoder:
    """Frames requests; one per connection (it owns a reusable msgpack Packer)."""

    __slots__ = ("_pack", "_version", "_version_bytes")

    def __init__(self) -> None:
        self._pack = msgpack.Packer(default=_ext_default, use_bin_type=True).pack
        #: The last schema version framed and its header entry (``05 <uint>``).
        self._version = 0
        self._version_bytes = b""

    def frame(self, request_type: int, sync: int, body: Mapping[int, Any] | None,
              schema_version: int | None = None, stream_id: int = 0) -> bytes:
        """One complete packet.

        The header is written by one ``struct`` call for the usual request
        (no stream, a sync below 2**32): the same bytes msgpack would make
        for the map ``{REQUEST_TYPE: t, SYNC: s[, SCHEMA_VERSION: v]}``.

        Raises:
            ConfigurationError: A value in ``body`` cannot be encoded; the
                message names the method, the argument and where in it.
        """
        pack = self._pack
        if body is None:
            payload = b"\x80"
        else:
            try:
                payload = pack(body)
            except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
                # msgpack's Packer resets its buffer on failure, so this encoder stays usable.
                error = unencodable_error(request_type, body)
                if request_type == C.AUTH:  # never chain an error that may quote a password
                    raise error from None
                raise error from exc
        if stream_id or not 0 <= sync <= 0xFFFFFFFF or not 0 <= request_type <= 0x7F:
            return self._frame_general(request_type, sync, payload, schema_version, stream_id)
        return self._assemble(request_type, sync, payload, schema_version)

    def _assemble(self, request_type: int, sync: int, payload: bytes, schema_version: int | None) -> bytes:
        """The packet around an encoded body: a type below 0x80, a sync below 2**32, no stream."""
        if schema_version:
            extra = self._version_bytes if schema_version == self._version else self._version_entry(schema_version)
            size = len(extra) + len(payload)
            if sync > 0xFFFF:
                head = _HEAD_32(0xCE, 9 + size, 0x83, 0, request_type, 1, 0xCE, sync)
            elif sync > 0x7F:
                head = _HEAD_16(0xCE, 7 + size, 0x83, 0, request_type, 1, 0xCD, sync)
            else:
                head = _HEAD_FIX(0xCE, 5 + size, 0x83, 0, request_type, 1, sync)
            return b"".join((head, extra, payload))
        if sync > 0xFFFF:
            return _HEAD_32(0xCE, 9 + len(payload), 0x82, 0, request_type, 1, 0xCE, sync) + payload
        if sync > 0x7F:
            return _HEAD_16(0xCE, 7 + len(payload), 0x82, 0, request_type, 1, 0xCD, sync) + payload
        return _HEAD_FIX(0xCE, 5 + len(payload), 0x82, 0, request_type, 1, sync) + payload

    def _version_entry(self, schema_version: int) -> bytes:
        """The header entry ``05 <uint>`` of a schema version other than the last
        one framed (kept: the next request most likely carries it too)."""
        self._version_bytes = b"\x05" + self._pack(schema_version)
        self._version = schema_version
        return self._version_bytes

    def frame_plain(self, request_type: int, sync: int, body: Mapping[int, Any],
                    schema_version: int | None) -> bytes:
        """:meth:`frame` for the connection's hot path: a body (never None), a
        request type below 0x80 and a sync from the connection's own counter
        (positive), no stream; the same bytes, fewer checks."""
        try:
            payload: bytes = self._pack(body)
        except (TypeError, ValueError, OverflowError):
            return self.frame(request_type, sync, body, schema_version)  # raises, naming the value
        if sync > 0xFFFF:
            if sync > 0xFFFFFFFF:
                return self._frame_general(request_type, sync, payload, schema_version, 0)
            if not schema_version:
                return _HEAD_32(0xCE, 9 + len(payload), 0x82, 0, request_type, 1, 0xCE, sync) + payload
            extra = self._version_bytes if schema_version == self._version else self._version_entry(schema_version)
            return b"".join((_HEAD_32(0xCE, 9 + len(extra) + len(payload), 0x83, 0, request_type, 1, 0xCE,
                                      sync), extra, payload))
        return self._assemble(request_type, sync, payload, schema_version)  # a young connection

    def _frame_general(self, request_type: int, sync: int, payload: bytes,
                       schema_version: int | None, stream_id: int) -> bytes:
        """:meth:`frame` for a stream request or an out-of-the-way type or sync."""
        pack = self._pack
        head: dict[int, int] = {C.REQUEST_TYPE: request_type, C.SYNC: sync}
        if stream_id:
            head[C.STREAM_ID] = stream_id
        if schema_version:
            head[C.SCHEMA_VERSION] = schema_version
        header: bytes = pack(head)
        return _pack_len(0xCE, len(header) + len(payload)) + header + payload


# -- what went wrong, for an error message --------------------------------------------

#: The public method behind each request type, as named in error messages.
METHOD_NAMES: dict[int, str] = {
    C.SELECT: "select", C.INSERT: "insert", C.REPLACE: "replace", C.UPDATE: "update",
    C.UPSERT: "upsert", C.DELETE: "delete", C.CALL: "call", C.CALL_16: "call", C.EVAL: "eval",
    C.EXECUTE: "execute", C.PREPARE: "prepare", C.AUTH: "auth", C.ID: "id", C.PING: "ping",
}

#: The argument of the public methods each body key comes from.
_ARGUMENT_NAMES: dict[int, str] = {
    C.SPACE_ID: "space_name", C.INDEX_ID: "index", C.LIMIT: "limit", C.OFFSET: "offset",
    C.ITERATOR: "iterator", C.KEY: "key", C.FUNCTION_NAME: "func_name", C.EXPR: "expr",
    C.OPS: "op_list", C.SQL_TEXT: "query", C.STMT_ID: "query", C.SQL_BIND: "params",
    C.USER_NAME: "user",
}

#: TUPLE (0x21) carries a different argument in each request type.
_TUPLE_NAMES: dict[int, str] = {
    C.INSERT: "values", C.REPLACE: "values", C.UPDATE: "op_list", C.UPSERT: "tuple_value",
    C.CALL: "args", C.CALL_16: "args", C.EVAL: "args", C.AUTH: "password",
}

#: msgpack refuses values nested deeper than this (counting the body map as level 0).
_MAX_DEPTH = 1024


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """A value for an error message: its type and a short repr (``str 'q7z'``)."""
    return f"{type(value).__name__} {short_repr(value)}"


def unencodable_error(request_type: int, body: Mapping[int, Any]) -> ConfigurationError:
    """The error for a ``body`` that msgpack refused: which argument, where, and why.

    Only called once packing failed, so the walk over the body is off the hot path.
    For AUTH, no value is quoted: it may hold the password.
    """
    method = METHOD_NAMES.get(request_type, f"request type {request_type}")
    secret = request_type == C.AUTH
    pack = msgpack.Packer(default=_ext_default, use_bin_type=True).pack
    for key, value in body.items():
        if key == C.TUPLE:
            name = _TUPLE_NAMES.get(request_type, "tuple")
        else:
            name = _ARGUMENT_NAMES.get(key, f"body key {key:#x}")
        found = _first_unencodable(value, name, pack, secret)
        if found is not None:
            where, why = found
            if len(where) > 100:  # a deeply nested position: its start and its end tell enough
                where = f"{where[:60]}...{where[-30:]}"
            return ConfigurationError(f"{method}(): {where}: {why}")
    return ConfigurationError(f"{method}(): the request cannot be encoded as msgpack")


def _first_unencodable(value: Any, path: str, pack: Any, secret: bool) -> tuple[str, str] | None:
    """The path to the first value inside ``value`` that msgpack cannot encode, and why.

    Iterative (an explicit stack), so a value nested past msgpack's limit does
    not hit Python's recursion limit first.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return where, f"nested deeper than msgpack allows ({_MAX_DEPTH} levels)"
        if isinstance(item, list | tuple):
            stack.extend((part, f"{where}[{number}]", depth + 1)
                         for number, part in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            pairs = []
            for key, part in item.items():
                pairs.append((key, f"{where} (a key)", depth + 1))
                pairs.append((part, where if secret else f"{where}[{short_repr(key, 30)}]", depth + 1))
            stack.extend(reversed(pairs))
        else:
            try:
                pack(item)
            except (TypeError, ValueError, OverflowError) as exc:
                return where, _why(item, exc, secret)
    return None


def _why(value: Any, exc: BaseException, secret: bool) -> str:
    """Why msgpack refused one scalar ``value``."""
    shown = "" if secret else " " + short_repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value < INT_END:
        return f"int{shown} is outside {INT_RANGE_TEXT}"
    if isinstance(value, str) and isinstance(exc, UnicodeEncodeError):
        return (f"str{shown} cannot be encoded as UTF-8 ({exc.reason} at position {exc.start}); "
                "send text as valid Unicode, or binary data as bytes")
    if isinstance(exc, ValueError):  # a supported type with a value Tarantool cannot hold
        return f"{type(value).__name__}{shown} cannot be sent" + ("" if secret else f": {exc}")
    return (f"cannot send a value of type {type(value).__name__}{shown} to Tarantool "
            "(send None, bool, int, float, str, bytes, list, tuple, dict, Decimal, UUID, "
            "datetime, Datetime or Interval)")


# -- bodies ------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    """Keys and tuples are arrays on the wire; a scalar key becomes a 1-element key."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def select_body(space_id: int, index_id: int, key: Any, offset: int, limit: int,
                iterator: int) -> dict[int, Any]:
    return {
        C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.LIMIT: limit, C.OFFSET: offset,
        C.ITERATOR: iterator, C.KEY: _as_list(key),
    }


def tuple_body(space_id: int, values: Sequence[Any]) -> dict[int, Any]:
    """Body of INSERT and REPLACE."""
    return {C.SPACE_ID: space_id, C.TUPLE: list(values)}


def update_body(space_id: int, index_id: int, key: Any, ops: Sequence[Any]) -> dict[int, Any]:
    """Body of UPDATE; ``ops`` as checked by :func:`operations`."""
    return {C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.KEY: _as_list(key), C.TUPLE: ops}


def upsert_body(space_id: int, index_id: int, values: Sequence[Any], ops: Sequence[Any]) -> dict[int, Any]:
    """Body of UPSERT.

    The index goes under ``INDEX_ID``: ``INDEX_BASE`` (0x15) is a different key,
    the base (0 or 1) of the field numbers in ``ops``, and sending an index id
    there would make a server read the operations' field numbers off by one.
    ``ops`` as checked by :func:`operations`.
    """
    return {C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.TUPLE: list(values), C.OPS: ops}


def delete_body(space_id: int, index_id: int, key: Any) -> dict[int, Any]:
    return {C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.KEY: _as_list(key)}


def call_body(function_name: str, args: Sequence[Any]) -> dict[int, Any]:
    """Body of CALL and CALL_16."""
    return {C.FUNCTION_NAME: function_name, C.TUPLE: list(args)}


def eval_body(expr: str, args: Sequence[Any]) -> dict[int, Any]:
    return {C.EXPR: expr, C.TUPLE: list(args)}


def sql_bind(params: Any, method: str = "execute") -> list[Any]:
    """Positional parameters as an array; named ones as ``[{":name": value}, ...]``.

    Accepted: None (no parameters), a list or tuple (positional), or a mapping
    whose keys are non-empty str (named; ``name`` is sent as ``:name`` unless
    it starts with ``:``, ``@`` or ``$``). A str, bytes or set is refused: it
    would be iterated into parameters the caller did not mean.

    Raises:
        ConfigurationError: ``params`` is none of the above; the message names it.
    """
    if params is None:
        return []
    if type(params) is list or type(params) is tuple:
        return list(params)
    if isinstance(params, Mapping):
        bound = []
        for name, value in params.items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError(
                    f"{method}(): params: SQL parameter names must be non-empty strings, "
                    f"got {describe(name)}"
                )
            prefixed = name if name[0] in ":@$" else ":" + name
            bound.append({prefixed: value})
        return bound
    if isinstance(params, list | tuple):
        return list(params)
    raise ConfigurationError(
        f"{method}(): params must be a list or tuple (positional SQL parameters) or a dict "
        f"with str keys (named ones), got {describe(params)}"
    )


def execute_body(query: str | int, params: Any) -> dict[int, Any]:
    """EXECUTE by SQL text, or by the id of a prepared statement."""
    key = C.STMT_ID if isinstance(query, int) else C.SQL_TEXT
    return {key: query, C.SQL_BIND: sql_bind(params)}


def prepare_body(query: str | int) -> dict[int, Any]:
    """PREPARE of SQL text; with a statement id it is an unprepare."""
    return {C.STMT_ID: query} if isinstance(query, int) else {C.SQL_TEXT: query}


def auth_body(user: str, password: str, salt: bytes, auth_type: str = "chap-sha1") -> dict[int, Any]:
    """AUTH body for chap-sha1 (scramble) or pap-sha256 (plain password, needs TLS)."""
    if auth_type == "chap-sha1":
        proof: bytes | str = chap_sha1_scramble(password, salt)
    elif auth_type == "pap-sha256":
        proof = password
    else:
        raise ConfigurationError(f"unknown auth_type {auth_type!r}: expected 'chap-sha1' or 'pap-sha256'")
    return {C.USER_NAME: user, C.TUPLE: [auth_type, proof]}


def begin_body(timeout: float | None, isolation: int) -> dict[int, Any]:
    """BEGIN: an optional transaction timeout (seconds) and isolation level."""
    body: dict[int, Any] = {}
    if timeout is not None:
        body[C.TIMEOUT] = float(timeout)
    if isolation:
        body[C.TXN_ISOLATION] = isolation
    return body


def id_body(version: int = C.CLIENT_PROTOCOL_VERSION,
            features: Sequence[int] = C.CLIENT_FEATURES) -> dict[int, Any]:
    return {C.VERSION: version, C.FEATURES: list(features)}


def operations(ops: Any, method: str = "update", argument: str = "op_list") -> list[Any]:
    """Update/upsert operations checked and copied: a list of ``[op, field, arg...]``.

    ``ops`` must be a list or tuple; each operation a list or tuple of at least
    two items whose first is the operator as a str (``'='``, ``'+'``, ``'#'``,
    ``':'``...). What the operator needs after that is for the server to judge.

    Raises:
        ConfigurationError: Anything else, naming ``method``, ``argument`` and the
            position of the bad operation.
    """
    if not isinstance(ops, list | tuple):
        raise ConfigurationError(
            f"{method}(): {argument} must be a list or tuple of operations [op, field, arg...], "
            f"got {describe(ops)}"
        )
    out = []
    for op in ops:
        if (type(op) is list or type(op) is tuple) and len(op) >= 2 and type(op[0]) is str:
            out.append(list(op))  # the common case: exact types, checked cheaply
        elif isinstance(op, list | tuple) and len(op) >= 2 and isinstance(op[0], str):
            out.append(list(op))  # subclasses (a namedtuple, a str subclass op)
        else:
            raise ConfigurationError(
                f"{method}(): {argument}[{len(out)}]: each update operation is a list or tuple "
                f"[op, field, arg...] whose op is a str such as '=', got {describe(op)}"
            )
    return out
