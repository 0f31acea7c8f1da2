"""Requests as values: what to send, before it is known where.

Every box method of :class:`~trio_tarantool.Connection` (and of the pool) first
builds a :class:`Request` from its arguments, which checks them at once (a bad
iterator or SQL parameter fails in the caller, before anything is sent). A
request addressed by space or index *name* keeps a ``build`` function and is
turned into a body only once the names are resolved on the connection that
sends it, since different connections may hold different schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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


def _named(request_type: int, space: str | int, index: str | int,
           build: Callable[[int, int], dict[int, Any]], on_push: PushCallback | None,
           on_push_ctx: Any) -> Request:
    """A request that names its space or index: built once they are resolved."""
    if not isinstance(space, str | int) or isinstance(space, bool):
        raise TypeError(f"space must be a name or an id, got {type(space).__name__} {space!r}")
    if not isinstance(index, str | int) or isinstance(index, bool):
        raise TypeError(f"index must be a name or an id, got {type(index).__name__} {index!r}")
    return Request(request_type, None, on_push, on_push_ctx, FINISH_RESPONSE, space, index, build)


def iterator_value(iterator: Any) -> int:
    """An iterator given by name (``'GE'``), :class:`Iterator` or number."""
    if iterator is None:
        return C.Iterator.EQ
    if isinstance(iterator, str):
        try:
            return C.Iterator[iterator.upper()]
        except KeyError:
            names = ", ".join(i.name for i in C.Iterator)
            raise ValueError(f"unknown iterator {iterator!r}: expected one of {names}") from None
    if isinstance(iterator, int) and not isinstance(iterator, bool):
        try:
            return C.Iterator(iterator)
        except ValueError:
            raise ValueError(f"unknown iterator number {iterator}") from None
    raise TypeError(f"iterator must be a name, an Iterator or an int, got {type(iterator).__name__}")


# -- one builder per box method (same signatures as the Connection methods) -------------


def ping(notime: bool = False) -> Request:
    return Request(C.PING, {}, None, None, FINISH_PING_NOTIME if notime else FINISH_PING)


def select(space_name: str | int, key: Any = None, *, offset: int = 0, limit: int = 0xFFFFFFFF,
           index: str | int = 0, iterator: Any = None, on_push: PushCallback | None = None,
           on_push_ctx: Any = None) -> Request:
    if iterator is None:
        empty = key is None or (type(key) in (list, tuple) and not key)
        it: int = C.Iterator.ALL if empty else C.Iterator.EQ
    else:
        it = iterator_value(iterator)
    if type(space_name) is int and type(index) is int:
        return Request(C.SELECT, R.select_body(space_name, index, key, offset, limit, it), on_push, on_push_ctx)
    return _named(C.SELECT, space_name, index,
                  lambda s, i: R.select_body(s, i, key, offset, limit, it), on_push, on_push_ctx)


def insert(space_name: str | int, values: Sequence[Any], *, on_push: PushCallback | None = None,
           on_push_ctx: Any = None) -> Request:
    if type(space_name) is int:
        return Request(C.INSERT, R.tuple_body(space_name, values), on_push, on_push_ctx)
    return _named(C.INSERT, space_name, 0, lambda s, _: R.tuple_body(s, values), on_push, on_push_ctx)


def replace(space_name: str | int, values: Sequence[Any], *, on_push: PushCallback | None = None,
            on_push_ctx: Any = None) -> Request:
    if type(space_name) is int:
        return Request(C.REPLACE, R.tuple_body(space_name, values), on_push, on_push_ctx)
    return _named(C.REPLACE, space_name, 0, lambda s, _: R.tuple_body(s, values), on_push, on_push_ctx)


def update(space_name: str | int, key: Any, op_list: Sequence[Any], *, index: str | int = 0,
           on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Request:
    if type(space_name) is int and type(index) is int:
        return Request(C.UPDATE, R.update_body(space_name, index, key, op_list), on_push, on_push_ctx)
    return _named(C.UPDATE, space_name, index, lambda s, i: R.update_body(s, i, key, op_list),
                  on_push, on_push_ctx)


def upsert(space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
           index: str | int = 0, on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Request:
    if type(space_name) is int and type(index) is int:
        return Request(C.UPSERT, R.upsert_body(space_name, index, tuple_value, op_list), on_push, on_push_ctx)
    return _named(C.UPSERT, space_name, index, lambda s, i: R.upsert_body(s, i, tuple_value, op_list),
                  on_push, on_push_ctx)


def delete(space_name: str | int, key: Any, *, index: str | int = 0,
           on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Request:
    if type(space_name) is int and type(index) is int:
        return Request(C.DELETE, R.delete_body(space_name, index, key), on_push, on_push_ctx)
    return _named(C.DELETE, space_name, index, lambda s, i: R.delete_body(s, i, key), on_push, on_push_ctx)


def call(func_name: str, *args: Any, on_push: PushCallback | None = None,
         on_push_ctx: Any = None) -> Request:
    """CALL (the connection sends CALL_16 instead when opened with ``call_16``)."""
    if not isinstance(func_name, str) or not func_name:
        raise TypeError(f"func_name must be a non-empty string, got {func_name!r}")
    return Request(C.CALL, R.call_body(func_name, args), on_push, on_push_ctx)


def eval(expr: str, *args: Any, on_push: PushCallback | None = None,
         on_push_ctx: Any = None) -> Request:
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a string, got {type(expr).__name__}")
    return Request(C.EVAL, R.eval_body(expr, args), on_push, on_push_ctx)


def execute(query: str | int, params: Any = None) -> Request:
    if not isinstance(query, str | int) or isinstance(query, bool):
        raise TypeError(f"query must be SQL text or a statement id, got {type(query).__name__}")
    return Request(C.EXECUTE, R.execute_body(query, params))


def prepare(query: str) -> Request:
    if not isinstance(query, str):
        raise TypeError(f"query must be SQL text, got {type(query).__name__}")
    return Request(C.PREPARE, R.prepare_body(query), None, None, FINISH_PREPARE)


#: Builders by method name, for code that carries requests as (name, args, kwargs).
BUILDERS: dict[str, Callable[..., Request]] = {
    "ping": ping, "select": select, "insert": insert, "replace": replace, "update": update,
    "upsert": upsert, "delete": delete, "call": call, "eval": eval, "execute": execute,
    "prepare": prepare,
}
