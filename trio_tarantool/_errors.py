"""The exception hierarchy and the server's error codes.

Every exception the library raises on purpose derives from :class:`Error`.
Network-level failures say whether the request may have reached the server
(:attr:`NetworkError.may_have_executed`), so callers and the pool can decide
whether a retry is safe without guessing.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class ErrorCode(enum.IntEnum):
    """Tarantool's box error codes that a client meets in practice."""

    ER_UNKNOWN = 0
    ER_ILLEGAL_PARAMS = 1
    ER_MEMORY_ISSUE = 2
    ER_TUPLE_FOUND = 3
    ER_TUPLE_NOT_FOUND = 4
    ER_UNSUPPORTED = 5
    ER_NONMASTER = 6
    ER_READONLY = 7
    ER_INJECTION = 8
    ER_CREATE_SPACE = 9
    ER_SPACE_EXISTS = 10
    ER_DROP_SPACE = 11
    ER_ALTER_SPACE = 12
    ER_INDEX_TYPE = 13
    ER_MODIFY_INDEX = 14
    ER_LAST_DROP = 15
    ER_TUPLE_FORMAT_LIMIT = 16
    ER_DROP_PRIMARY_KEY = 17
    ER_KEY_PART_TYPE = 18
    ER_EXACT_MATCH = 19
    ER_INVALID_MSGPACK = 20
    ER_PROC_RET = 21
    ER_TUPLE_NOT_ARRAY = 22
    ER_FIELD_TYPE = 23
    ER_INDEX_PART_TYPE_MISMATCH = 24
    ER_UPDATE_SPLICE = 25
    ER_UPDATE_ARG_TYPE = 26
    ER_FORMAT_MISMATCH_INDEX_PART = 27
    ER_UNKNOWN_UPDATE_OP = 28
    ER_UPDATE_FIELD = 29
    ER_FUNCTION_TX_ACTIVE = 30
    ER_KEY_PART_COUNT = 31
    ER_PROC_LUA = 32
    ER_NO_SUCH_PROC = 33
    ER_NO_SUCH_TRIGGER = 34
    ER_NO_SUCH_INDEX_ID = 35
    ER_NO_SUCH_SPACE = 36
    ER_NO_SUCH_FIELD_NO = 37
    ER_EXACT_FIELD_COUNT = 38
    ER_FIELD_MISSING = 39
    ER_WAL_IO = 40
    ER_MORE_THAN_ONE_TUPLE = 41
    ER_ACCESS_DENIED = 42
    ER_CREATE_USER = 43
    ER_DROP_USER = 44
    ER_NO_SUCH_USER = 45
    ER_USER_EXISTS = 46
    ER_PASSWORD_MISMATCH = 47
    ER_UNKNOWN_REQUEST_TYPE = 48
    ER_UNKNOWN_SCHEMA_OBJECT = 49
    ER_CREATE_FUNCTION = 50
    ER_NO_SUCH_FUNCTION = 51
    ER_FUNCTION_EXISTS = 52
    ER_NO_SUCH_ENGINE = 57
    ER_CFG = 59
    ER_NO_CONNECTION = 77
    ER_TIMEOUT = 78
    ER_ACTIVE_TRANSACTION = 79
    ER_NO_SUCH_ROLE = 82
    ER_INDEX_EXISTS = 85
    ER_SESSION_CLOSED = 86
    ER_CANT_UPDATE_PRIMARY_KEY = 94
    ER_TRANSACTION_CONFLICT = 97
    ER_PROTOCOL = 104
    ER_WRONG_SCHEMA_VERSION = 109
    ER_NO_TRANSACTION = 114
    ER_SYSTEM = 115
    ER_LOADING = 116
    ER_CONNECTION_TO_SELF = 117
    ER_SQL_PARSER_GENERIC = 166
    ER_SQL_EXECUTE = 170
    ER_SQL_BIND_VALUE = 172
    ER_SQL_BIND_TYPE = 173
    ER_SQL_BIND_PARAMETER_MAX = 174
    ER_SQL_PARSER_LIMIT = 183
    ER_SQL_PREPARE = 194
    ER_WRONG_QUERY_ID = 195


#: Codes with which a server refuses a request before executing anything, so
#: sending the same request elsewhere cannot execute it twice.
NOT_EXECUTED_CODES: frozenset[int] = frozenset(
    {ErrorCode.ER_READONLY, ErrorCode.ER_LOADING, ErrorCode.ER_WRONG_SCHEMA_VERSION}
)


def error_name(code: int) -> str:
    """The symbolic name of a server error code, or ``ER_<number>``."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ER_{code}"


@dataclass(frozen=True)
class BoxError:
    """One entry of a server error stack (IPROTO key 0x52 or the error extension).

    ``prev`` links to the error that caused this one, as ``box.error.prev`` does.
    """

    type: str
    file: str
    line: int
    message: str
    errno: int
    errcode: int
    fields: dict[str, Any] = field(default_factory=dict)
    prev: BoxError | None = None

    @classmethod
    def from_stack(cls, stack: Sequence[BoxError]) -> BoxError | None:
        """Chain a decoded stack (first = most recent) through ``prev``."""
        head: BoxError | None = None
        for entry in reversed(stack):
            head = BoxError(
                entry.type, entry.file, entry.line, entry.message, entry.errno,
                entry.errcode, entry.fields, head,
            )
        return head


class Error(Exception):
    """Base class of every exception raised by trio_tarantool."""


class ConfigurationError(Error, ValueError):
    """A parameter given to the library is invalid; the message names it."""


class NotSupportedError(Error):
    """The request needs something this connection or server does not offer."""


class SchemaError(Error):
    """A space or index name could not be resolved on the server's schema."""


class DatabaseError(Error):
    """The server executed the request and answered with an error.

    Attributes:
        code: The box error code (compare with :class:`ErrorCode`).
        message: The server's message.
        extra_info: The top of the extended error stack (:class:`BoxError`),
            when the server sent one.
    """

    def __init__(self, code: int, message: str, extra_info: BoxError | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.extra_info = extra_info

    @property
    def may_have_executed(self) -> bool:
        """False when the server refused the request before executing it."""
        return self.code not in NOT_EXECUTED_CODES

    def __str__(self) -> str:
        return f"({error_name(self.code)}) {self.message}"


class NetworkError(Error):
    """The connection failed, so the request's outcome is known only partly.

    Attributes:
        may_have_executed: False when the request surely never reached the
            server (it was not written to the socket), True otherwise.
    """

    def __init__(self, message: str, *, may_have_executed: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.may_have_executed = may_have_executed

    def __str__(self) -> str:
        suffix = (
            " (the request may have been executed)"
            if self.may_have_executed
            else " (the request was not sent)"
        )
        return self.message + suffix


class ProtocolError(NetworkError):
    """The server sent bytes that are not valid IPROTO; the connection is dropped."""


class ConnectionClosedError(NetworkError):
    """The connection (or pool) was closed by the application."""


class TarantoolTimeoutError(NetworkError, builtins.TimeoutError):
    """A request, or connecting, took longer than its timeout.

    It is also a builtin :class:`TimeoutError`, so generic code catches it.
    """


class CrudModuleError(DatabaseError):
    """A crud.* function returned an error (``nil, err``).

    Attributes:
        extra_info_error: The :class:`~trio_tarantool.CrudError` the module returned.
    """

    def __init__(self, _: Any, error: Any) -> None:
        message = str(getattr(error, "str", None) or getattr(error, "err", error))
        super().__init__(ErrorCode.ER_PROC_LUA, message)
        self.extra_info_error = error


class CrudModuleManyError(DatabaseError):
    """A crud.*_many function failed for some of its tuples.

    Attributes:
        success_list: The :class:`~trio_tarantool.CrudResult` of the tuples that
            went through (None when none did).
        errors_list: The :class:`~trio_tarantool.CrudError` of each failed tuple.
    """

    def __init__(self, success: Any, errors: Sequence[Any]) -> None:
        message = "; ".join(str(getattr(e, "str", None) or getattr(e, "err", e)) for e in errors)
        super().__init__(ErrorCode.ER_PROC_LUA, message or "crud *_many call failed")
        self.success_list = success
        self.errors_list = list(errors)


class PoolTopologyError(Error):
    """No pool instance fits the request's mode."""


#: The spelling used by the reference connector, kept for migrating users.
PoolTolopogyError = PoolTopologyError
