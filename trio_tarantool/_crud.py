"""Request and response shaping for the `crud <https://github.com/tarantool/crud>`_ module.

The crud module is plain Lua on the server: every ``crud_*`` method here is a
CALL of ``crud.<name>`` with positional arguments, and the module answers with
Lua multi-returns, which IPROTO delivers as the response's data list:

* most functions return ``result, nil`` on success and ``nil, err`` on failure,
  where ``result`` is a map (``metadata``, ``rows``, ...) and ``err`` a map
  (``class_name``, ``err``, ``str``, ``file``, ``line``, ``stack``...);
* the ``*_many`` functions return ``result, errors``: both may be set at once
  when some tuples went through and some did not;
* ``truncate``, ``len`` and ``storage_info`` return just the value on success
  (no trailing ``nil``) and ``nil, err`` on failure; ``count`` returns
  ``count, nil``; ``stats`` returns a single map.

:class:`CrudMixin` turns those into :class:`CrudResult` objects or raises
:class:`~trio_tarantool.CrudModuleError` /
:class:`~trio_tarantool.CrudModuleManyError`.  Its only dependency is an
abstract :meth:`CrudMixin._crud_call`, so the single connection and the pool
share every line of it; the pool routes by ``mode``, a single connection
ignores it.

A server without the module (or a user without the right to call it) answers
"Procedure 'crud.x' is not defined" or "Execute access ... denied"; those
errors get a hint appended that says what is probably missing.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from ._errors import (
    ConfigurationError,
    CrudModuleError,
    CrudModuleManyError,
    ErrorCode,
    ServerError,
)
from ._iproto._requests import describe
from ._iproto._requests import operations as operations_list
from ._strategy import Mode

__all__ = ["CrudError", "CrudMixin", "CrudResult", "unflatten_rows"]

#: Appended to ER_NO_SUCH_PROC / ER_ACCESS_DENIED from a crud.* call.
CRUD_HINT = (
    ". Hint: the server must have the crud module loaded and its router role "
    "enabled (require('crud').init_router() or crud.cfg), and the user needs "
    "'execute' rights on the crud functions (or on 'universe')"
)

_HINT_CODES = frozenset({ErrorCode.ER_NO_SUCH_PROC, ErrorCode.ER_ACCESS_DENIED})


class _HasData(Protocol):
    """What :class:`CrudMixin` needs from a CALL response: the returned values."""

    @property
    def data(self) -> list[Any]: ...


def _key(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


class _CrudRecord:
    """A crud map (result or error) whose keys are also attributes.

    The crud module adds fields between versions; keeping every key (not a
    fixed set) means nothing the server sent is lost.  ``fields`` holds the whole
    map with ``str`` keys.
    """

    def __init__(self, response: Mapping[Any, Any]) -> None:
        if not isinstance(response, Mapping):
            raise TypeError(
                f"crud returned {type(response).__name__} where a map was expected: {response!r}"
            )
        self.fields: dict[str, Any] = {_key(k): v for k, v in response.items()}
        for name, value in self.fields.items():
            if name.isidentifier() and name != "fields":
                setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            assert isinstance(other, _CrudRecord)
            return self.fields == other.fields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fields!r})"


class CrudResult(_CrudRecord):
    """A successful crud answer: usually ``metadata`` (field formats) and ``rows``."""

    rows: list[Any]
    metadata: list[dict[str, Any]]

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as ``{field name: value}`` (names from ``metadata``), as
        :meth:`Response.rows(as_dict=True) <trio_tarantool.Response.rows>` gives box replies."""
        return unflatten_rows(self.fields.get("rows") or [], self.fields.get("metadata") or [])


class CrudError(_CrudRecord):
    """An error the crud module returned: ``class_name``, ``err``, ``str``, ``stack``..."""

    class_name: str
    err: str

    def __str__(self) -> str:
        text = self.fields.get("str") or self.fields.get("err")
        return str(text) if text is not None else repr(self)


def unflatten_rows(rows: Sequence[Sequence[Any]], metadata: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Turn crud rows (lists) into dicts keyed by the field names of ``metadata``.

    This is done locally, like the reference connector does: the metadata that
    came with the rows already names every field.

    Raises:
        ConfigurationError: A row has more fields than ``metadata`` describes,
            or a metadata entry has no ``name``.
    """
    try:
        names = [_key(m["name"]) for m in metadata]
    except (KeyError, TypeError, IndexError):
        raise ConfigurationError(
            "crud_unflatten_rows(): metadata must be a list of maps with a 'name' each "
            "(as crud returns it)"
        ) from None
    result = []
    for number, row in enumerate(rows):
        if len(row) > len(names):
            raise ConfigurationError(
                f"crud_unflatten_rows(): rows[{number}] has {len(row)} fields but metadata names only {len(names)}"
            )
        result.append(dict(zip(names, row, strict=False)))
    return result


def _check(method: str, name: str, value: Any, types: type | tuple[type, ...], what: str) -> None:
    """Raise ConfigurationError naming ``method`` and ``name`` unless ``value`` is of ``types``."""
    if not isinstance(value, types):
        raise ConfigurationError(f"{method}(): {name} must be {what}, got {describe(value)}")


def _value(data: list[Any], index: int) -> Any:
    return data[index] if len(data) > index else None


def _single(data: list[Any]) -> CrudResult:
    """Shape ``result, err`` into a CrudResult or raise CrudModuleError.

    With ``opts={'noreturn': True}`` crud answers ``nil, nil``: that is a
    success with nothing to show, an empty CrudResult (``fields == {}``).
    """
    err = _value(data, 1)
    if err is not None:
        raise CrudModuleError(None, CrudError(err))
    result = _value(data, 0)
    return CrudResult({} if result is None else result)


def _many(data: list[Any]) -> CrudResult | None:
    """Shape ``result, errors`` of a *_many call; partial success raises with both."""
    first = _value(data, 0)
    result = CrudResult(first) if first is not None else None
    errors = _value(data, 1)
    if errors is not None:
        if isinstance(errors, Mapping):  # a single error for the whole batch
            errors = [errors]
        raise CrudModuleManyError(result, [CrudError(e) for e in errors])
    return result


def _plain(data: list[Any]) -> Any:
    """Shape ``value`` / ``nil, err`` (truncate, len, storage_info, count)."""
    err = _value(data, 1)
    if err is not None:
        raise CrudModuleError(None, CrudError(err))
    return _value(data, 0)


class CrudMixin(abc.ABC):
    """The 23 ``crud_*`` methods on top of one abstract CALL primitive.

    Mixed into the single connection, whose signatures they are (the reference
    Connection's); the pool's take a ``mode`` too (:class:`PoolCrudMixin`).
    """

    @abc.abstractmethod
    async def _crud_call(self, func_name: str, args: tuple[Any, ...]) -> _HasData:
        """CALL ``func_name`` with ``args`` and return the response."""

    async def _crud(self, func_name: str, args: tuple[Any, ...]) -> list[Any]:
        try:
            response = await self._crud_call(func_name, args)
        except CrudModuleError:
            raise
        except ServerError as exc:
            if exc.code in _HINT_CODES and CRUD_HINT not in exc.message:
                raise ServerError(exc.code, exc.message + CRUD_HINT, exc.extra_info) from exc
            raise
        return list(response.data)

    # -- single-tuple DML ----------------------------------------------------
    async def crud_insert(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult:
        """Insert a tuple through ``crud.insert``."""
        _check("crud_insert", "space_name", space_name, str, "a str")
        _check("crud_insert", "values", values, (list, tuple), "a list or tuple (one tuple)")
        return _single(await self._crud("crud.insert", (space_name, values, _opts(opts, "crud_insert"))))

    async def crud_insert_object(self, space_name: str, values: Mapping[str, Any], opts: dict[str, Any] | None = None) -> CrudResult:
        """Insert an object (field name -> value) through ``crud.insert_object``."""
        _check("crud_insert_object", "space_name", space_name, str, "a str")
        _check("crud_insert_object", "values", values, Mapping, "a dict (field name -> value)")
        return _single(await self._crud("crud.insert_object", (space_name, values, _opts(opts, "crud_insert_object"))))

    async def crud_get(self, space_name: str, key: Any, opts: dict[str, Any] | None = None) -> CrudResult:
        """Get the tuple with primary key ``key`` through ``crud.get``."""
        _check("crud_get", "space_name", space_name, str, "a str")
        _check_key("crud_get", key)
        return _single(await self._crud("crud.get", (space_name, key, _opts(opts, "crud_get"))))

    async def crud_update(self, space_name: str, key: Any, operations: Sequence[Any] | None = None, opts: dict[str, Any] | None = None) -> CrudResult:
        """Update the tuple with primary key ``key`` through ``crud.update``."""
        _check("crud_update", "space_name", space_name, str, "a str")
        _check_key("crud_update", key)
        ops = _ops(operations, "crud_update")
        return _single(await self._crud("crud.update", (space_name, key, ops, _opts(opts, "crud_update"))))

    async def crud_delete(self, space_name: str, key: Any, opts: dict[str, Any] | None = None) -> CrudResult:
        """Delete the tuple with primary key ``key`` through ``crud.delete``."""
        _check("crud_delete", "space_name", space_name, str, "a str")
        _check_key("crud_delete", key)
        return _single(await self._crud("crud.delete", (space_name, key, _opts(opts, "crud_delete"))))

    async def crud_replace(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult:
        """Insert or replace a tuple through ``crud.replace``."""
        _check("crud_replace", "space_name", space_name, str, "a str")
        _check("crud_replace", "values", values, (list, tuple), "a list or tuple (one tuple)")
        return _single(await self._crud("crud.replace", (space_name, values, _opts(opts, "crud_replace"))))

    async def crud_replace_object(self, space_name: str, values: Mapping[str, Any], opts: dict[str, Any] | None = None) -> CrudResult:
        """Insert or replace an object through ``crud.replace_object``."""
        _check("crud_replace_object", "space_name", space_name, str, "a str")
        _check("crud_replace_object", "values", values, Mapping, "a dict (field name -> value)")
        return _single(await self._crud("crud.replace_object", (space_name, values, _opts(opts, "crud_replace_object"))))

    async def crud_upsert(self, space_name: str, values: Sequence[Any], operations: Sequence[Any] | None = None, opts: dict[str, Any] | None = None) -> CrudResult:
        """Insert ``values`` or apply ``operations`` to the existing tuple (``crud.upsert``)."""
        _check("crud_upsert", "space_name", space_name, str, "a str")
        _check("crud_upsert", "values", values, (list, tuple), "a list or tuple (one tuple)")
        ops = _ops(operations, "crud_upsert")
        return _single(await self._crud("crud.upsert", (space_name, values, ops, _opts(opts, "crud_upsert"))))

    async def crud_upsert_object(self, space_name: str, values: Mapping[str, Any], operations: Sequence[Any] | None = None, opts: dict[str, Any] | None = None) -> CrudResult:
        """Upsert an object through ``crud.upsert_object``."""
        _check("crud_upsert_object", "space_name", space_name, str, "a str")
        _check("crud_upsert_object", "values", values, Mapping, "a dict (field name -> value)")
        ops = _ops(operations, "crud_upsert_object")
        return _single(await self._crud("crud.upsert_object", (space_name, values, ops, _opts(opts, "crud_upsert_object"))))

    # -- batches -------------------------------------------------------------
    async def crud_insert_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult | None:
        """Insert a batch of tuples (``crud.insert_many``).

        Raises:
            CrudModuleManyError: Some tuples failed; ``success_list`` holds the rest.
        """
        _check("crud_insert_many", "space_name", space_name, str, "a str")
        _check("crud_insert_many", "values", values, (list, tuple), "a list or tuple of tuples")
        _check_each("crud_insert_many", "values", values, (list, tuple), "a list or tuple (one tuple)")
        return _many(await self._crud("crud.insert_many", (space_name, values, _opts(opts, "crud_insert_many"))))

    async def crud_insert_object_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult | None:
        """Insert a batch of objects (``crud.insert_object_many``)."""
        _check("crud_insert_object_many", "space_name", space_name, str, "a str")
        _check("crud_insert_object_many", "values", values, (list, tuple), "a list or tuple of dicts")
        _check_each("crud_insert_object_many", "values", values, Mapping, "a dict (field name -> value)")
        return _many(await self._crud("crud.insert_object_many", (space_name, values, _opts(opts, "crud_insert_object_many"))))

    async def crud_replace_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult | None:
        """Insert or replace a batch of tuples (``crud.replace_many``)."""
        _check("crud_replace_many", "space_name", space_name, str, "a str")
        _check("crud_replace_many", "values", values, (list, tuple), "a list or tuple of tuples")
        _check_each("crud_replace_many", "values", values, (list, tuple), "a list or tuple (one tuple)")
        return _many(await self._crud("crud.replace_many", (space_name, values, _opts(opts, "crud_replace_many"))))

    async def crud_replace_object_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult | None:
        """Insert or replace a batch of objects (``crud.replace_object_many``)."""
        _check("crud_replace_object_many", "space_name", space_name, str, "a str")
        _check("crud_replace_object_many", "values", values, (list, tuple), "a list or tuple of dicts")
        _check_each("crud_replace_object_many", "values", values, Mapping, "a dict (field name -> value)")
        return _many(await self._crud("crud.replace_object_many", (space_name, values, _opts(opts, "crud_replace_object_many"))))

    async def crud_upsert_many(self, space_name: str, values_operation: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult | None:
        """Upsert a batch of ``[tuple, operations]`` pairs (``crud.upsert_many``)."""
        _check("crud_upsert_many", "space_name", space_name, str, "a str")
        _check("crud_upsert_many", "values_operation", values_operation, (list, tuple), "a list or tuple of pairs")
        _check_pairs("crud_upsert_many", "values_operation", values_operation, (list, tuple), "a list or tuple (one tuple)")
        return _many(await self._crud("crud.upsert_many", (space_name, values_operation, _opts(opts, "crud_upsert_many"))))

    async def crud_upsert_object_many(self, space_name: str, values_operation: Sequence[Any], opts: dict[str, Any] | None = None) -> CrudResult | None:
        """Upsert a batch of ``[object, operations]`` pairs (``crud.upsert_object_many``)."""
        _check("crud_upsert_object_many", "space_name", space_name, str, "a str")
        _check("crud_upsert_object_many", "values_operation", values_operation, (list, tuple), "a list or tuple of pairs")
        _check_pairs("crud_upsert_object_many", "values_operation", values_operation, Mapping, "a dict (field name -> value)")
        return _many(await self._crud("crud.upsert_object_many", (space_name, values_operation, _opts(opts, "crud_upsert_object_many"))))

    # -- reads -----------------------------------------------------------------
    async def crud_select(self, space_name: str, conditions: Sequence[Any] | None = None, opts: dict[str, Any] | None = None) -> CrudResult:
        """Select tuples matching ``conditions`` (``crud.select``)."""
        _check("crud_select", "space_name", space_name, str, "a str")
        conds = _conditions(conditions, "crud_select")
        return _single(await self._crud("crud.select", (space_name, conds, _opts(opts, "crud_select"))))

    async def crud_min(self, space_name: str, index_name: str | int, opts: dict[str, Any] | None = None) -> CrudResult:
        """The tuple with the smallest key of ``index_name`` (``crud.min``)."""
        _check("crud_min", "space_name", space_name, str, "a str")
        _check_index("crud_min", index_name)
        return _single(await self._crud("crud.min", (space_name, index_name, _opts(opts, "crud_min"))))

    async def crud_max(self, space_name: str, index_name: str | int, opts: dict[str, Any] | None = None) -> CrudResult:
        """The tuple with the largest key of ``index_name`` (``crud.max``)."""
        _check("crud_max", "space_name", space_name, str, "a str")
        _check_index("crud_max", index_name)
        return _single(await self._crud("crud.max", (space_name, index_name, _opts(opts, "crud_max"))))

    async def crud_count(self, space_name: str, conditions: Sequence[Any] | None = None, opts: dict[str, Any] | None = None) -> int:
        """How many tuples match ``conditions`` (``crud.count``); a plain int."""
        _check("crud_count", "space_name", space_name, str, "a str")
        conds = _conditions(conditions, "crud_count")
        return int(_plain(await self._crud("crud.count", (space_name, conds, _opts(opts, "crud_count")))))

    async def crud_len(self, space_name: str, opts: dict[str, Any] | None = None) -> int:
        """The number of tuples in the space (``crud.len``); a plain int."""
        _check("crud_len", "space_name", space_name, str, "a str")
        return int(_plain(await self._crud("crud.len", (space_name, _opts(opts, "crud_len")))))

    # -- administration ------------------------------------------------------
    async def crud_truncate(self, space_name: str, opts: dict[str, Any] | None = None) -> bool:
        """Remove every tuple of the space (``crud.truncate``); True on success."""
        _check("crud_truncate", "space_name", space_name, str, "a str")
        return bool(_plain(await self._crud("crud.truncate", (space_name, _opts(opts, "crud_truncate")))))

    async def crud_storage_info(self, opts: dict[str, Any] | None = None) -> dict[Any, Any]:
        """Status of every storage the router sees (``crud.storage_info``): a dict."""
        value = _plain(await self._crud("crud.storage_info", (_opts(opts, "crud_storage_info"),)))
        if not isinstance(value, dict):
            raise TypeError(f"crud.storage_info returned {type(value).__name__}, expected a map")
        return value

    async def crud_stats(self, space_name: str | None = None) -> CrudResult | None:
        """Operation statistics (``crud.stats``), for one space or all; None when empty."""
        if space_name is not None:
            _check("crud_stats", "space_name", space_name, str, "a str or None")
        data = await self._crud("crud.stats", (space_name,))
        stats = _value(data, 0)
        if not stats:
            return None
        return CrudResult(stats)

    def crud_unflatten_rows(self, rows: Sequence[Sequence[Any]], metadata: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Turn crud ``rows`` into dicts by ``metadata`` names; local, no request."""
        _check("crud_unflatten_rows", "rows", rows, (list, tuple), "a list or tuple")
        _check("crud_unflatten_rows", "metadata", metadata, (list, tuple), "a list or tuple")
        return unflatten_rows(rows, metadata)


class _InMode(CrudMixin):
    """The pool's crud calls bound to one mode: CrudMixin's methods, routed by it."""

    __slots__ = ("_mode", "_pool")

    def __init__(self, pool: PoolCrudMixin, mode: Mode) -> None:
        self._pool = pool
        self._mode = mode

    async def _crud_call(self, func_name: str, args: tuple[Any, ...]) -> _HasData:
        return await self._pool._crud_call_in(func_name, args, self._mode)


class PoolCrudMixin(CrudMixin):
    """The ``crud_*`` methods of the pool: the connection's, plus ``mode``.

    ``mode`` picks the instance (``Mode.ANY`` by default, as in the reference
    pool); everything else is :class:`CrudMixin`'s.
    """

    @abc.abstractmethod
    async def _crud_call_in(self, func_name: str, args: tuple[Any, ...], mode: Mode) -> _HasData:
        """CALL ``func_name`` with ``args`` on an instance of ``mode``."""

    async def _crud_call(self, func_name: str, args: tuple[Any, ...]) -> _HasData:
        return await self._crud_call_in(func_name, args, Mode.ANY)

    async def crud_insert(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_insert(space_name, values, opts)

    async def crud_insert_object(self, space_name: str, values: Mapping[str, Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_insert_object(space_name, values, opts)

    async def crud_get(self, space_name: str, key: Any, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_get(space_name, key, opts)

    async def crud_update(self, space_name: str, key: Any, operations: Sequence[Any] | None = None, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_update(space_name, key, operations, opts)

    async def crud_delete(self, space_name: str, key: Any, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_delete(space_name, key, opts)

    async def crud_replace(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_replace(space_name, values, opts)

    async def crud_replace_object(self, space_name: str, values: Mapping[str, Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_replace_object(space_name, values, opts)

    async def crud_upsert(self, space_name: str, values: Sequence[Any], operations: Sequence[Any] | None = None, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_upsert(space_name, values, operations, opts)

    async def crud_upsert_object(self, space_name: str, values: Mapping[str, Any], operations: Sequence[Any] | None = None, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_upsert_object(space_name, values, operations, opts)

    async def crud_insert_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_insert_many(space_name, values, opts)

    async def crud_insert_object_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_insert_object_many(space_name, values, opts)

    async def crud_replace_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_replace_many(space_name, values, opts)

    async def crud_replace_object_many(self, space_name: str, values: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_replace_object_many(space_name, values, opts)

    async def crud_upsert_many(self, space_name: str, values_operation: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_upsert_many(space_name, values_operation, opts)

    async def crud_upsert_object_many(self, space_name: str, values_operation: Sequence[Any], opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_upsert_object_many(space_name, values_operation, opts)

    async def crud_select(self, space_name: str, conditions: Sequence[Any] | None = None, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_select(space_name, conditions, opts)

    async def crud_min(self, space_name: str, index_name: str | int, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_min(space_name, index_name, opts)

    async def crud_max(self, space_name: str, index_name: str | int, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> CrudResult:
        return await _InMode(self, mode).crud_max(space_name, index_name, opts)

    async def crud_count(self, space_name: str, conditions: Sequence[Any] | None = None, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> int:
        return await _InMode(self, mode).crud_count(space_name, conditions, opts)

    async def crud_len(self, space_name: str, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> int:
        return await _InMode(self, mode).crud_len(space_name, opts)

    async def crud_truncate(self, space_name: str, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> bool:
        return await _InMode(self, mode).crud_truncate(space_name, opts)

    async def crud_storage_info(self, opts: dict[str, Any] | None = None, *, mode: Mode = Mode.ANY) -> dict[Any, Any]:
        return await _InMode(self, mode).crud_storage_info(opts)

    async def crud_stats(self, space_name: str | None = None, *, mode: Mode = Mode.ANY) -> CrudResult | None:
        return await _InMode(self, mode).crud_stats(space_name)

    def crud_unflatten_rows(self, rows: Sequence[Sequence[Any]], metadata: Sequence[Mapping[str, Any]], *, mode: Mode = Mode.ANY) -> list[dict[str, Any]]:
        """As the connection's; ``mode`` is accepted (the reference pool's signature) and unused."""
        return super().crud_unflatten_rows(rows, metadata)



def _document_pool_methods() -> None:
    """The pool's crud methods carry the connection's docstrings, plus ``mode``."""
    for name, method in vars(PoolCrudMixin).items():
        base = getattr(CrudMixin, name, None)
        if name.startswith("crud_") and base is not None and base.__doc__ and not method.__doc__:
            method.__doc__ = base.__doc__.rstrip() + "\n\n``mode`` picks the instance (``Mode.ANY`` by default)."


_document_pool_methods()

def _opts(opts: dict[str, Any] | None, method: str) -> dict[str, Any]:
    if opts is None:
        return {}
    _check(method, "opts", opts, dict, "a dict")
    return opts


def _ops(operations: Sequence[Any] | None, method: str) -> Sequence[Any]:
    """Operations as box takes them: each ``[op, field, arg...]`` with a str op."""
    if operations is None:
        return []
    return operations_list(operations, method, "operations")


def _conditions(conditions: Sequence[Any] | None, method: str) -> Sequence[Any]:
    if conditions is None:
        return []
    _check(method, "conditions", conditions, (list, tuple), "a list or tuple")
    return conditions


def _check_index(method: str, index_name: Any) -> None:
    """crud.min/max take an index by name or by id."""
    if not isinstance(index_name, str | int) or isinstance(index_name, bool):
        raise ConfigurationError(
            f"{method}(): index_name must be a name (str) or an id (int), got {describe(index_name)}"
        )


def _check_key(method: str, key: Any) -> None:
    """A key is a scalar or a list/tuple of parts: a map, a set or an iterator is refused."""
    if isinstance(key, Mapping | AbstractSet | Iterator):
        raise ConfigurationError(
            f"{method}(): key must be a scalar or a list/tuple of key parts, got {describe(key)}"
        )


def _check_each(method: str, argument: str, items: Sequence[Any], types: type | tuple[type, ...],
                what: str) -> None:
    """Every item of a batch is of ``types``."""
    for number, item in enumerate(items):
        if not isinstance(item, types):
            raise ConfigurationError(
                f"{method}(): {argument}[{number}] must be {what}, got {describe(item)}"
            )


def _check_pairs(method: str, argument: str, items: Sequence[Any], first: type | tuple[type, ...],
                 what: str) -> None:
    """Every item of an upsert batch is a pair ``[tuple or object, operations]``."""
    for number, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ConfigurationError(
                f"{method}(): {argument}[{number}] must be a pair [{what}, operations], "
                f"got {describe(item)}"
            )
        if not isinstance(item[0], first):
            raise ConfigurationError(
                f"{method}(): {argument}[{number}][0] must be {what}, got {describe(item[0])}"
            )
        operations_list(item[1], method, f"{argument}[{number}][1]")
