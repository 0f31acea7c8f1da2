"""Responses as the application sees them, and server errors as exceptions.

A reply that is well framed but has the wrong shape (DATA that is not an array,
SQL_INFO that is not a map, a STMT_ID that is not an integer...) raises
:class:`~trio_tarantool.ProtocolError` for that one request, never a builtin
``TypeError``/``AttributeError`` from deep inside a property: the framing was
fine, so the connection goes on. ``may_have_executed`` is True, since the
server received and answered the request.

Checks are cheap and shallow: a select's DATA costs one ``type(x) is list``
test and its rows are never walked; the SQL keys (small, and only in SQL
replies) are checked when the Response is built, so ``execute``/``prepare``
fail at once rather than at the first property access.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

from ._errors import BoxError, ProtocolError, SchemaError, ServerError, error_name
from ._iproto import constants as C
from ._iproto._decoder import Reply
from ._iproto._ext import ExtDecodeError, decode_error_stack
from ._iproto._handshake import kind
from ._schema import Schema

#: Request type -> name, for messages ("reply to SELECT: ...").
REQUEST_NAMES: dict[int, str] = {
    C.SELECT: "SELECT", C.INSERT: "INSERT", C.REPLACE: "REPLACE", C.UPDATE: "UPDATE",
    C.DELETE: "DELETE", C.CALL_16: "CALL_16", C.AUTH: "AUTH", C.EVAL: "EVAL",
    C.UPSERT: "UPSERT", C.CALL: "CALL", C.EXECUTE: "EXECUTE", C.NOP: "NOP",
    C.PREPARE: "PREPARE", C.BEGIN: "BEGIN", C.COMMIT: "COMMIT", C.ROLLBACK: "ROLLBACK",
    C.PING: "PING", C.ID: "ID", C.WATCH: "WATCH", C.UNWATCH: "UNWATCH",
}

_DATA = C.DATA

_COLUMN_NAMES = {
    C.FIELD_NAME: "name", C.FIELD_TYPE: "type", C.FIELD_COLL: "collation",
    C.FIELD_IS_NULLABLE: "is_nullable", C.FIELD_IS_AUTOINCREMENT: "is_autoincrement",
    C.FIELD_SPAN: "span",
}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def reply_to(request_type: int | None, sync: int) -> str:
    """How messages name a reply: ``reply to SELECT (sync 7)``, or by sync alone."""
    if request_type is None:
        return f"reply to request sync={sync}"
    name = REQUEST_NAMES.get(request_type, f"request type {request_type:#x}")
    return f"reply to {name} (sync {sync})"


def _is_int(value: Any) -> bool:
    return type(value) is int


def _malformed(where: str, what: str, value: Any, expected: str) -> ProtocolError:
    return ProtocolError(f"{where}: {what} is {kind(value)}, expected {expected}", may_have_executed=True)


def _sql_info(body: Mapping[int, Any], where: str) -> Mapping[int, Any] | None:
    """SQL_INFO checked: a map whose ROW_COUNT is an integer and AUTOINCREMENT_IDS an array of them."""
    info = body.get(C.SQL_INFO)
    if info is None:
        return None
    if not isinstance(info, Mapping):
        raise _malformed(where, "SQL_INFO", info, "a map")
    count = info.get(C.SQL_INFO_ROW_COUNT, 0)
    if not _is_int(count):
        raise _malformed(where, "SQL_INFO ROW_COUNT", count, "an integer")
    ids = info.get(C.SQL_INFO_AUTOINCREMENT_IDS, [])
    if type(ids) is not list and type(ids) is not tuple:
        raise _malformed(where, "SQL_INFO AUTOINCREMENT_IDS", ids, "an array")
    for i, value in enumerate(ids):
        if not _is_int(value):
            raise _malformed(where, f"SQL_INFO AUTOINCREMENT_IDS[{i}]", value, "an integer")
    return info


def _columns(body: Mapping[int, Any], key: int, key_name: str, where: str) -> list[dict[str, Any]]:
    """METADATA / BIND_METADATA as dicts; every entry must be a map, its name and type strings."""
    entries = body.get(key)
    if entries is None:
        return []
    if type(entries) is not list and type(entries) is not tuple:
        raise _malformed(where, key_name, entries, "an array")
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise _malformed(where, f"{key_name}[{i}]", entry, "a map")
        column: dict[str, Any] = {}
        for k, v in entry.items():
            name = _COLUMN_NAMES.get(k) if _is_int(k) else None
            if name in ("name", "type"):
                if not isinstance(v, str | bytes):
                    raise _malformed(where, f"{key_name}[{i}] {name}", v, "a string")
                v = _text(v)
            column[name if name is not None else _text(k)] = v
        out.append(column)
    return out


def _uint(body: Mapping[int, Any], key: int, key_name: str, where: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise _malformed(where, key_name, value, "a non-negative integer")
    return int(value)


def _other_data(reply: Reply, data: Any, request_type: int | None) -> list[Any]:
    """DATA of a reply off the hot path (absent, a tuple, or wrong), its other keys checked.

    An undecodable reply lands here too: the decoder leaves DATA out of it.
    """
    where = reply_to(request_type, reply.sync)
    if reply.decode_error is not None:
        raise ProtocolError(f"{where}: {reply.decode_error}", may_have_executed=True)
    rows: list[Any]
    if data is None:
        rows = []
    elif type(data) is tuple:
        rows = list(data)
    else:
        raise _malformed(where, "DATA", data, "an array")
    if reply.body:
        _check_sql_keys(reply.body, where)
    return rows


def _check_sql_keys(body: Mapping[int, Any], where: str) -> None:
    """Every SQL key of ``body`` has its documented shape (or ProtocolError)."""
    _sql_info(body, where)
    _columns(body, C.METADATA, "METADATA", where)
    _columns(body, C.BIND_METADATA, "BIND_METADATA", where)
    _uint(body, C.BIND_COUNT, "BIND_COUNT", where)
    _uint(body, C.STMT_ID, "STMT_ID", where)


class Response(Sequence[Any]):
    """A successful reply: a read-only sequence of the returned tuples.

    Attributes:
        sync: The request id the reply answers.
        code: The response type (0 for success).
        schema_version: The server's schema version when it answered.
        data: The returned tuples (or values of a call), as a list.
    """

    __slots__ = ("_reply", "_request_type", "_schema", "_space", "data")

    def __init__(self, reply: Reply, *, request_type: int | None = None) -> None:
        """Wrap a successful reply.

        Args:
            reply: The decoded reply.
            request_type: What was asked (``constants.SELECT``...), only to name
                the request in error messages.

        Raises:
            ProtocolError: The reply could not be decoded, its DATA is not an
                array, or an SQL key has the wrong shape.
        """
        self._reply = reply
        self._request_type = request_type
        #: Set by the connection for requests on a space (rows by name).
        self._space: int | str | None = None
        self._schema: Schema | None = None
        body = reply.body
        data = body.get(_DATA)
        if type(data) is list:  # the hot path: one test, rows never walked
            self.data: list[Any] = data
            if len(body) > 1:
                # Not a plain {DATA: [...]}: an SQL reply (or one from a newer
                # server); its few small keys are checked now, not at first use.
                _check_sql_keys(body, reply_to(request_type, reply.sync))
        else:
            self.data = _other_data(reply, data, request_type)

    @property
    def sync(self) -> int:
        """The request id the reply answers."""
        return self._reply.sync

    @property
    def code(self) -> int:
        """The response type (0 for success)."""
        return self._reply.code

    @property
    def schema_version(self) -> int:
        """The server's schema version when it answered."""
        return self._reply.schema_version

    @property
    def _body(self) -> dict[int, Any]:
        return self._reply.body

    def _where(self) -> str:
        return reply_to(self._request_type, self.sync)

    # -- sequence protocol ---------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.data[index]

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Response):
            return self.data == other.data
        if isinstance(other, list | tuple):
            return self.data == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def rowcount(self) -> int:
        """Rows returned or, for SQL DML, rows changed."""
        info = _sql_info(self._body, self._where())
        if info is not None:
            return int(info.get(C.SQL_INFO_ROW_COUNT, 0))
        return len(self.data)

    # -- SQL -------------------------------------------------------------------
    @property
    def affected_row_count(self) -> int | None:
        """Rows changed by an SQL statement (None for non-SQL replies)."""
        info = _sql_info(self._body, self._where())
        return None if info is None else int(info.get(C.SQL_INFO_ROW_COUNT, 0))

    @property
    def autoincrement_ids(self) -> list[int]:
        """Ids generated by AUTOINCREMENT in an SQL INSERT."""
        info = _sql_info(self._body, self._where())
        return [] if info is None else [int(i) for i in info.get(C.SQL_INFO_AUTOINCREMENT_IDS, [])]

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """SQL result columns: dicts with ``name``, ``type`` and optional flags."""
        return _columns(self._body, C.METADATA, "METADATA", self._where())

    @property
    def bind_metadata(self) -> list[dict[str, Any]]:
        """Parameters of a prepared statement (name, type)."""
        return _columns(self._body, C.BIND_METADATA, "BIND_METADATA", self._where())

    @property
    def bind_count(self) -> int:
        """How many parameters a prepared statement takes (0 when not a PREPARE reply)."""
        count = _uint(self._body, C.BIND_COUNT, "BIND_COUNT", self._where())
        return 0 if count is None else count

    @property
    def stmt_id(self) -> int | None:
        """The id of the statement a PREPARE created."""
        return _uint(self._body, C.STMT_ID, "STMT_ID", self._where())

    def rows(self, as_dict: bool = False) -> list[Any]:
        """The returned tuples; with ``as_dict``, each as ``{field name: value}``.

        Names come from the space's format (``box.space.x:format()``), for the
        replies of ``select`` and the DML requests. Fields beyond the format
        are keyed by their position (0-based int). Raises
        :class:`SchemaError` for a reply that is not about a space, or when
        the connection has no schema (``fetch_schema=False``).
        """
        if not as_dict:
            return list(self.data)
        if self._space is None or self._schema is None:
            raise SchemaError(f"{self._where()}: no space format to name the fields by (only "
                              "select and DML replies on a connection with fetch_schema have one)")
        names = self._schema.field_names(self._space)
        result = []
        for row in self.data:
            if not isinstance(row, list | tuple):
                raise ProtocolError(f"{self._where()}: a row is {type(row).__name__}, not a tuple",
                                    may_have_executed=True)
            named: dict[Any, Any] = dict(zip(names, row, strict=False))
            for position in range(len(names), len(row)):
                named[position] = row[position]
            result.append(named)
        return result

    # -- the reference connector's names -----------------------------------------
    @property
    def return_code(self) -> int:
        """0: a Response is always a success (errors raise :class:`ServerError`)."""
        return self.code & 0x7FFF

    @property
    def return_message(self) -> str:
        """``""``: a Response is always a success (errors carry their message)."""
        return ""

    @property
    def strerror(self) -> tuple[str, str]:
        """``(name, message)`` of :attr:`return_code`, as the reference gives it."""
        return error_name(self.return_code), self.return_message

    @property
    def body(self) -> dict[int, Any]:
        """The raw body map, keyed by IPROTO numbers (for what has no attribute)."""
        return self._body

    def __repr__(self) -> str:
        if len(self.data) > 5:
            return f"<Response sync={self.sync} rows={len(self.data)} {self.data[:5]!r}...>"
        return f"<Response sync={self.sync} {self.data!r}>"


_new_response = object.__new__


def response_of(reply: Reply, request_type: int, space: int | str | None, schema: Schema | None) -> Response:
    """``Response(reply, request_type=request_type)`` with its space and schema
    (rows by name) set: the connection's hot path, which builds the object
    directly when the body is the plain ``{DATA: [...]}`` (any other shape
    goes through the checking constructor)."""
    body = reply.body
    data = body.get(_DATA)
    if type(data) is list and len(body) == 1:
        response: Response = _new_response(Response)
        response._reply = reply
        response._request_type = request_type
        response.data = data
    else:
        response = Response(reply, request_type=request_type)
    response._space = space
    response._schema = schema
    return response


def database_error(reply: Reply) -> ServerError:
    """The exception for an error reply: code, message and the error stack.

    The code comes from the header and is trusted; a malformed body only costs
    detail, never the exception: an ERROR stack of the wrong shape is dropped
    (``extra_info`` None) and the message comes from ERROR_24; when neither
    holds a usable message, the message says what was wrong with the reply.
    """
    body = reply.body
    problems: list[str] = []
    raw_message = body.get(C.ERROR_24)
    if isinstance(raw_message, str | bytes):
        message = _text(raw_message)
    else:
        message = ""
        if raw_message is not None:
            problems.append(f"ERROR_24 is {kind(raw_message)}, expected a string")
    extra: BoxError | None = None
    stack = body.get(C.ERROR)
    if reply.decode_error is not None:
        problems.append(reply.decode_error)
    elif stack is not None:
        try:
            extra = decode_error_stack(stack)
        except ExtDecodeError as exc:
            problems.append(f"its ERROR stack is malformed ({exc})")
        if not message and extra is not None:
            message = extra.message
    if not message and problems:
        message = f"(malformed error reply: {'; '.join(problems)})"
    return ServerError(reply.error_code, message, extra)
