"""Values, error codes and the server error type shared by the engine modules.

``rank_value`` gives Tarantool's cross-type order for index keys and
``is_type`` its field type rules; :class:`BoxError` carries a code and the
exact message a real server sends.
"""

from __future__ import annotations

from typing import Any

import msgpack

# Error codes the engine raises (numbers from Tarantool's errcode.h).
ER_ILLEGAL_PARAMS = 1
ER_TUPLE_FOUND = 3
ER_UNSUPPORTED = 5
ER_READONLY = 7
ER_KEY_PART_TYPE = 18
ER_EXACT_MATCH = 19
ER_FIELD_TYPE = 23
ER_UPDATE_SPLICE = 25
ER_UPDATE_ARG_TYPE = 26
ER_UNKNOWN_UPDATE_OP = 28
ER_UPDATE_FIELD = 29
ER_KEY_PART_COUNT = 31
ER_NO_SUCH_INDEX_ID = 35
ER_NO_SUCH_SPACE = 36
ER_NO_SUCH_FIELD_NO = 37
ER_FIELD_MISSING = 39
ER_MORE_THAN_ONE_TUPLE = 41
ER_ACCESS_DENIED = 42
ER_CANT_UPDATE_PRIMARY_KEY = 94
ER_UNSUPPORTED_INDEX_FEATURE = 112
ER_UPDATE_INTEGER_OVERFLOW = 95
ER_SPACE_EXISTS = 10

UINT64_MAX = (1 << 64) - 1
INT64_MIN = -(1 << 63)
FIRST_USER_SPACE_ID = 512


class BoxError(Exception):
    """A server-side error with Tarantool's code and message.

    Raise it from a call/eval handler to make the simulated server answer
    with that error (``type`` defaults to ``ClientError``).
    """

    def __init__(
        self, code: int, message: str, type: str = "ClientError", fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.type = type
        #: The error's payload fields (3.x sends them in the error stack's
        #: ``fields``: ``name``, ``reason``, ``leader_id``...); None: none.
        self.fields = fields

    def __str__(self) -> str:
        return f"({self.code}) {self.message}"


# -- values -------------------------------------------------------------------

def rank_value(v: Any) -> tuple[int, Any]:
    """A sort key giving Tarantool's scalar order: nil < bool < number < string < bin."""
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, (int, float)):
        return (2, v)
    if isinstance(v, str):
        return (3, v)  # code point order == UTF-8 byte order
    if isinstance(v, (bytes, bytearray)):
        return (4, bytes(v))
    if isinstance(v, msgpack.ExtType):
        return (5, (v.code, v.data))
    return (6, repr(v))


def is_type(value: Any, ftype: str) -> bool:
    """Whether ``value`` may be stored in a field of type ``ftype``."""
    if ftype == "any":
        return True
    if ftype == "unsigned":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if ftype == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if ftype == "number":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, msgpack.ExtType) and value.code == 1
        )
    if ftype == "double":
        return isinstance(value, float)
    if ftype == "string":
        return isinstance(value, str)
    if ftype == "varbinary":
        return isinstance(value, (bytes, bytearray))
    if ftype == "boolean":
        return isinstance(value, bool)
    if ftype == "scalar":
        return value is not None and not isinstance(value, (list, dict))
    if ftype == "array":
        return isinstance(value, list)
    if ftype == "map":
        return isinstance(value, dict)
    if ftype == "uuid":
        return isinstance(value, msgpack.ExtType) and value.code == 2
    if ftype == "decimal":
        return isinstance(value, msgpack.ExtType) and value.code == 1
    raise ValueError(f"unknown field type {ftype!r}")


