"""Request encoders: from a request's arguments to the bytes on the wire.

Each ``*_body`` function builds the body map of one request type; :class:`Encoder`
frames a body with its header into one packet (a 5-byte msgpack uint32 length,
then the header map, then the body map).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from . import _constants as C
from ._ext import default as _ext_default
from ._greeting import chap_sha1_scramble

_pack_len = struct.Struct(">BI").pack


class Encoder:
    """Frames requests; one per connection (it owns a reusable msgpack Packer)."""

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack = msgpack.Packer(default=_ext_default, use_bin_type=True).pack

    def frame(self, request_type: int, sync: int, body: Mapping[int, Any] | None,
              schema_version: int | None = None) -> bytes:
        """One complete packet."""
        pack = self._pack
        if schema_version:
            header = pack({C.REQUEST_TYPE: request_type, C.SYNC: sync, C.SCHEMA_VERSION: schema_version})
        else:
            header = pack({C.REQUEST_TYPE: request_type, C.SYNC: sync})
        payload = header + pack(body) if body is not None else header + b"\x80"
        return bytes(_pack_len(0xCE, len(payload)) + payload)


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
    return {C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.KEY: _as_list(key), C.TUPLE: _ops(ops)}


def upsert_body(space_id: int, index_id: int, values: Sequence[Any], ops: Sequence[Any]) -> dict[int, Any]:
    """Body of UPSERT.

    The index goes under ``INDEX_ID``: ``INDEX_BASE`` (0x15) is a different key,
    the base (0 or 1) of the field numbers in ``ops``, and sending an index id
    there would make a server read the operations' field numbers off by one.
    """
    return {C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.TUPLE: list(values), C.OPS: _ops(ops)}


def delete_body(space_id: int, index_id: int, key: Any) -> dict[int, Any]:
    return {C.SPACE_ID: space_id, C.INDEX_ID: index_id, C.KEY: _as_list(key)}


def call_body(function_name: str, args: Sequence[Any]) -> dict[int, Any]:
    """Body of CALL and CALL_16."""
    return {C.FUNCTION_NAME: function_name, C.TUPLE: list(args)}


def eval_body(expr: str, args: Sequence[Any]) -> dict[int, Any]:
    return {C.EXPR: expr, C.TUPLE: list(args)}


def sql_bind(params: Any) -> list[Any]:
    """Positional parameters as an array; named ones as ``[{":name": value}, ...]``."""
    if params is None:
        return []
    if isinstance(params, Mapping):
        bound = []
        for name, value in params.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"SQL parameter names must be non-empty strings, got {name!r}")
            prefixed = name if name[0] in ":@$" else ":" + name
            bound.append({prefixed: value})
        return bound
    if isinstance(params, list | tuple):
        return list(params)
    raise TypeError(f"SQL params must be a list, tuple or dict, got {type(params).__name__}")


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
        raise ValueError(f"unknown auth_type {auth_type!r}: expected 'chap-sha1' or 'pap-sha256'")
    return {C.USER_NAME: user, C.TUPLE: [auth_type, proof]}


def id_body(version: int = C.CLIENT_PROTOCOL_VERSION,
            features: Sequence[int] = C.CLIENT_FEATURES) -> dict[int, Any]:
    return {C.VERSION: version, C.FEATURES: list(features)}


def _ops(ops: Sequence[Any]) -> list[Any]:
    if not isinstance(ops, list | tuple):
        raise TypeError(f"update operations must be a list of lists, got {type(ops).__name__}")
    out = []
    for op in ops:
        if not isinstance(op, list | tuple) or len(op) < 2:
            raise TypeError(f"each update operation is [op, field, arg...], got {op!r}")
        out.append(list(op))
    return out
