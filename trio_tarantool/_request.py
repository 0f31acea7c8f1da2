"""Requests as values: what to send, before it is known where.

Every box method of :class:`~trio_tarantool.Connection` (and of the pool) first
builds a :class:`Request` from its arguments, which checks them at once: a bad
argument raises :class:`~trio_tarantool.ConfigurationError` naming the method
and the argument, in the caller, before anything is sent (for the pool too,
which calls the same builders through :data:`BUILDERS`). A
request addressed by space or index *name* keeps a ``build`` function and is
turned into a body only once the names are resolved on the connection that
sends it, since different connections may hold different schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from ._errors import ConfigurationError
from ._iproto import _constants as C
from ._iproto import _requests as R

PushCallback = Callable[[Any, Any], Any]

#: What to make of a successful reply (``Request.finish``).
FINISH_RESPONSE = 0
FINISH_PING = 1
FINISH_PING_NOTIME = 2
FINISH_PREPARE = 3


class Request:
    """One request: its type, its body (or how to build it), push callback.

    ``body`` is set when every space/index is given by id; otherwise ``build``
    makes the body from the resolved ``(space_id, index_id)``.
    """

    __slots__ = ("body", "build", "finish", "index", "on_push", "on_push_ctx", "space", "type")

    def __init__(self, request_type: int, body: dict[int, Any] | None,
                 on_push: PushCallback | None = None, on_push_ctx: Any = None,
                 finish: int = FINISH_RESPONSE, space: str | int = 0, index: str | int = 0,
                 build: Callable[[int, int], dict[int, Any]] | None = None) -> None:
        # Positional on purpose: this runs once per request.
        self.type = request_type
        self.body = body
        self.on_push = on_push
        self.on_push_ctx = on_push_ctx
        self.finish = finish
        self.space = space
        self.index = index
        self.build = build


_U32_MAX = 0xFFFFFFFF
#: Key types that need no check: a list or tuple of parts, or a str / None.
_PLAIN_KEYS: frozenset[type] = frozenset({list, tuple, str, type(None)})


def _refused(method: str, argument: str, expected: str, value: Any) -> ConfigurationError:
    return ConfigurationError(f"{method}(): {argument} must be {expected}, got {R.describe(value)}")


def _check_tuple(method: str, argument: str, value: Any) -> None:
    """A tuple is a list or a tuple (or a subclass such as a namedtuple).

    Called only when ``type(value)`` is neither list nor tuple. A str, bytes,
    dict, set or generator is refused: each is iterable, and spreading it into
    fields would store something the caller did not write.
    """
    if not isinstance(value, list | tuple):
        raise _refused(method, argument, "a list or tuple (one tuple)", value)


def _check_key(method: str, key: Any) -> None:
    """A key is a scalar (one part) or a list/tuple of parts; never a map or a set.

    Called only for keys whose type is not in :data:`_PLAIN_KEYS`.
    """
    if type(key) is int or (isinstance(key, int) and not isinstance(key, bool)):
        if not R.INT_MIN <= key < R.INT_END:
            raise ConfigurationError(
                f"{method}(): key {key} is outside {R.INT_RANGE_TEXT}"
            )
        return
    if isinstance(key, list | tuple):
        return
    if isinstance(key, Mapping | AbstractSet | Iterator):
        raise _refused(method, "key", "a scalar or a list/tuple of key parts", key)


def _check_window(method: str, offset: Any, limit: Any) -> None:
    """``offset`` and ``limit`` are ints in 0 .. 2**32-1 (uint32 on the wire)."""
    for argument, value in (("offset", offset), ("limit", limit)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _refused(method, argument, "an int", value)
        if not 0 <= value <= _U32_MAX:
            raise ConfigurationError(f"{method}(): {argument} must be in 0 .. 2**32-1, got {value}")


def _check_name(method: str, argument: str, value: Any) -> None:
    """A space or index is a name (str) or an id (int, not bool)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _refused(method, argument, "a name (str) or an id (int)", value)


def _check_on_push(method: str, on_push: Any) -> None:
    if not callable(on_push):
        raise _refused(method, "on_push", "a callable (data, ctx) or None", on_push)


def _named(method: str, request_type: int, space: Any, index: Any,
           build: Callable[[int, int], dict[int, Any]], on_push: PushCallback | None,
           on_push_ctx: Any) -> Request:
    """A request that names its space or index: built once they are resolved."""
    _check_name(method, "space_name", space)
    _check_name(method, "index", index)
    return Request(request_type, None, on_push, on_push_ctx, FINISH_RESPONSE, space, index, build)


def iterator_value(iterator: Any, method: str = "select") -> int:
    """An iterator given by name (``'GE'``), :class:`Iterator` or number."""
    if iterator is None:
        return C.Iterator.EQ
    if isinstance(iterator, str):
        try:
            return C.Iterator[iterator.upper()]
        except KeyError:
            names = ", ".join(i.name for i in C.Iterator)
            raise ConfigurationError(
                f"{method}(): unknown iterator {iterator!r}: expected one of {names}"
            ) from None
    if isinstance(iterator, int) and not isinstance(iterator, bool):
        try:
            return C.Iterator(iterator)
        except ValueError:
            raise ConfigurationError(f"{method}(): unknown iterator number {iterator}") from None
    raise _refused(method, "iterator", "a name, an Iterator or an int", iterator)


# -- one builder per box method (same signatures as the Connection methods) -------------
#
# Each one checks its arguments with a cheap type test first (``type(x) is list``)
# and calls a slower check only when that fails, so a valid request pays a few
# comparisons. Whether every value in a tuple can be encoded is left to the
# framing (see trio_tarantool._iproto._requests), which happens in the caller's
# task before anything is written.


def ping(notime: bool = False) -> Request:
    """PING; the connection returns the round-trip time, or ``"Success"`` with ``notime``."""
    return Request(C.PING, {}, None, None, FINISH_PING_NOTIME if notime else FINISH_PING)


def select(space_name: str | int, key: Any = None, *, offset: int = 0, limit: int = 0xFFFFFFFF,
           index: str | int = 0, iterator: Any = None, on_push: PushCallback | None = None,
           on_push_ctx: Any = None) -> Request:
    """SELECT: ``key`` a scalar or a list/tuple of parts (None or [] selects all);
    ``offset`` and ``limit`` ints in 0 .. 2**32-1."""
    tk = type(key)
    if tk is int:
        if not R.INT_MIN <= key < R.INT_END:
            _check_key("select", key)
    elif tk not in _PLAIN_KEYS:
        _check_key("select", key)
    if type(offset) is not int or type(limit) is not int or not 0 <= offset <= _U32_MAX \
            or not 0 <= limit <= _U32_MAX:
        _check_window("select", offset, limit)
    if on_push is not None:
        _check_on_push("select", on_push)
    if iterator is None:
        empty = key is None or (type(key) in (list, tuple) and not key)
        it: int = C.Iterator.ALL if empty else C.Iterator.EQ
    else:
        it = iterator_value(iterator)
    if type(space_name) is int and type(index) is int:
        return Request(C.SELECT, R.select_body(space_name, index, key, offset, limit, it), on_push, on_push_ctx)
    return _named("select", C.SELECT, space_name, index,
                  lambda s, i: R.select_body(s, i, key, offset, limit, it), on_push, on_push_ctx)


def insert(space_name: str | int, values: Sequence[Any], *, on_push: PushCallback | None = None,
           on_push_ctx: Any = None) -> Request:
    """INSERT of one tuple: ``values`` is a list or tuple (a namedtuple too)."""
    if type(values) is not list and type(values) is not tuple:
        _check_tuple("insert", "values", values)
    if on_push is not None:
        _check_on_push("insert", on_push)
    if type(space_name) is int:
        return Request(C.INSERT, R.tuple_body(space_name, values), on_push, on_push_ctx)
    return _named("insert", C.INSERT, space_name, 0, lambda s, _: R.tuple_body(s, values),
                  on_push, on_push_ctx)


def replace(space_name: str | int, values: Sequence[Any], *, on_push: PushCallback | None = None,
            on_push_ctx: Any = None) -> Request:
    """REPLACE of one tuple: ``values`` is a list or tuple (a namedtuple too)."""
    if type(values) is not list and type(values) is not tuple:
        _check_tuple("replace", "values", values)
    if on_push is not None:
        _check_on_push("replace", on_push)
    if type(space_name) is int:
        return Request(C.REPLACE, R.tuple_body(space_name, values), on_push, on_push_ctx)
    return _named("replace", C.REPLACE, space_name, 0, lambda s, _: R.tuple_body(s, values),
                  on_push, on_push_ctx)


def update(space_name: str | int, key: Any, op_list: Sequence[Any], *, index: str | int = 0,
           on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Request:
    """UPDATE of the tuple with ``key``: ``op_list`` a list/tuple of ``[op, field, arg...]``."""
    tk = type(key)
    if tk is int:
        if not R.INT_MIN <= key < R.INT_END:
            _check_key("update", key)
    elif tk not in _PLAIN_KEYS:
        _check_key("update", key)
    ops = R.operations(op_list, "update", "op_list")
    if on_push is not None:
        _check_on_push("update", on_push)
    if type(space_name) is int and type(index) is int:
        return Request(C.UPDATE, R.update_body(space_name, index, key, ops), on_push, on_push_ctx)
    return _named("update", C.UPDATE, space_name, index, lambda s, i: R.update_body(s, i, key, ops),
                  on_push, on_push_ctx)


def upsert(space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
           index: str | int = 0, on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Request:
    """UPSERT: ``tuple_value`` a list or tuple, ``op_list`` a list/tuple of ``[op, field, arg...]``."""
    if type(tuple_value) is not list and type(tuple_value) is not tuple:
        _check_tuple("upsert", "tuple_value", tuple_value)
    ops = R.operations(op_list, "upsert", "op_list")
    if on_push is not None:
        _check_on_push("upsert", on_push)
    if type(space_name) is int and type(index) is int:
        return Request(C.UPSERT, R.upsert_body(space_name, index, tuple_value, ops), on_push, on_push_ctx)
    return _named("upsert", C.UPSERT, space_name, index,
                  lambda s, i: R.upsert_body(s, i, tuple_value, ops), on_push, on_push_ctx)


def delete(space_name: str | int, key: Any, *, index: str | int = 0,
           on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Request:
    """DELETE of the tuple with ``key`` (a scalar or a list/tuple of parts)."""
    tk = type(key)
    if tk is int:
        if not R.INT_MIN <= key < R.INT_END:
            _check_key("delete", key)
    elif tk not in _PLAIN_KEYS:
        _check_key("delete", key)
    if on_push is not None:
        _check_on_push("delete", on_push)
    if type(space_name) is int and type(index) is int:
        return Request(C.DELETE, R.delete_body(space_name, index, key), on_push, on_push_ctx)
    return _named("delete", C.DELETE, space_name, index, lambda s, i: R.delete_body(s, i, key),
                  on_push, on_push_ctx)


def call(func_name: str, *args: Any, on_push: PushCallback | None = None,
         on_push_ctx: Any = None) -> Request:
    """CALL (the connection sends CALL_16 instead when opened with ``call_16``).

    ``func_name`` is a non-empty str; each of ``args`` is one Lua argument.
    """
    if type(func_name) is not str or not func_name:
        raise _refused("call", "func_name", "a non-empty str", func_name)
    if on_push is not None:
        _check_on_push("call", on_push)
    return Request(C.CALL, R.call_body(func_name, args), on_push, on_push_ctx)


def eval(expr: str, *args: Any, on_push: PushCallback | None = None,
         on_push_ctx: Any = None) -> Request:
    """EVAL of the Lua chunk ``expr`` (a str), with ``...`` bound to ``args``."""
    if type(expr) is not str and not isinstance(expr, str):
        raise _refused("eval", "expr", "a str (Lua code)", expr)
    if on_push is not None:
        _check_on_push("eval", on_push)
    return Request(C.EVAL, R.eval_body(expr, args), on_push, on_push_ctx)


def execute(query: str | int, params: Any = None) -> Request:
    """EXECUTE of SQL text or a prepared statement id; ``params`` as :func:`R.sql_bind` says."""
    if not isinstance(query, str | int) or isinstance(query, bool):
        raise _refused("execute", "query", "SQL text (str) or a statement id (int)", query)
    return Request(C.EXECUTE, R.execute_body(query, params))


def prepare(query: str) -> Request:
    """PREPARE of SQL text (a str)."""
    if not isinstance(query, str):
        raise _refused("prepare", "query", "SQL text (str)", query)
    return Request(C.PREPARE, R.prepare_body(query), None, None, FINISH_PREPARE)


#: Builders by method name, for code that carries requests as (name, args, kwargs).
BUILDERS: dict[str, Callable[..., Request]] = {
    "ping": ping, "select": select, "insert": insert, "replace": replace, "update": update,
    "upsert": upsert, "delete": delete, "call": call, "eval": eval, "execute": execute,
    "prepare": prepare,
}
