"""Space and index names resolved to ids, from the server's `_vspace`/`_vindex`.

The cache is a plain value: the connection fetches the two system spaces and
hands the rows here. It is dropped (marked stale) whenever a reply carries a
schema version other than the one it was loaded at, and after a reconnect.

The rows come from the server, so they are checked: a row that is not an
array, is too short, or holds an id that is not an integer or a name that is
not a string raises :class:`~trio_tarantool.ProtocolError` naming the row,
never a builtin ``IndexError``/``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import ProtocolError, SchemaError
from ._iproto._handshake import kind


def _name(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _rows(rows: Any, space: str) -> Iterable[Any]:
    """``rows`` if it can be a list of rows: a reply's DATA that is a map or a scalar is refused."""
    if isinstance(rows, Mapping | str | bytes | bytearray) or not isinstance(rows, Iterable):
        raise ProtocolError(f"reply to SELECT from {space}: DATA is {kind(rows)}, expected an array of rows",
                            may_have_executed=True)
    return rows


def _bad_row(space: str, position: int, row: Any, problem: str) -> ProtocolError:
    return ProtocolError(f"reply to SELECT from {space}: row {position} ({row!r:.80}) {problem}",
                         may_have_executed=True)


def _fields(space: str, position: int, row: Any, layout: str, ids: tuple[int, ...]) -> tuple[list[int], str]:
    """The integer fields at ``ids`` and the name (field 2) of a system space row, checked."""
    if isinstance(row, str | bytes | bytearray) or not isinstance(row, Sequence):
        raise _bad_row(space, position, row, f"is {kind(row)}, expected an array {layout}")
    if len(row) < 3:
        raise _bad_row(space, position, row, f"has {len(row)} field(s), expected at least 3 {layout}")
    numbers: list[int] = []
    for field in ids:
        value = row[field]
        if type(value) is not int or value < 0:
            raise _bad_row(space, position, row, f"field {field} is {kind(value)}, expected an id "
                           f"(a non-negative integer) {layout}")
        numbers.append(value)
    name = row[2]
    if not isinstance(name, str | bytes):
        raise _bad_row(space, position, row, f"field 2 is {kind(name)}, expected a name (a string) {layout}")
    return numbers, _name(name)


class Schema:
    """Name -> id maps for spaces and their indexes, at one schema version."""

    __slots__ = ("_formats", "_space_names", "index_ids", "space_ids", "version")

    def __init__(self, version: int, spaces: Iterable[Sequence[Any]], indexes: Iterable[Sequence[Any]]) -> None:
        """Build the maps from `_vspace` rows ``[id, owner, name, ...]`` and
        `_vindex` rows ``[space_id, index_id, name, ...]``.

        Raises:
            ProtocolError: A row (or the rows' container) has the wrong shape;
                the message names the system space, the row and the field.
        """
        self.version = version
        #: Space name -> id, and space id -> index name -> id: plain dicts, for
        #: the connection's hot path to read directly (never to be changed).
        self.space_ids: dict[str, int] = {}
        self._space_names: dict[int, str] = {}
        #: The raw format field (7th) of each space's row, parsed on first use.
        self._formats: dict[int, Any] = {}
        for position, row in enumerate(_rows(spaces, "_vspace")):
            (space_id,), name = _fields("_vspace", position, row, "[id, owner, name, ...]", (0,))
            self.space_ids[name] = space_id
            self._space_names[space_id] = name
            if len(row) > 6:
                self._formats[space_id] = row[6]
        self.index_ids: dict[int, dict[str, int]] = {}
        for position, row in enumerate(_rows(indexes, "_vindex")):
            (space_id, index_id), name = _fields("_vindex", position, row,
                                                 "[space_id, index_id, name, ...]", (0, 1))
            self.index_ids.setdefault(space_id, {})[name] = index_id

    def space_id(self, name: str | bytes) -> int | None:
        """The id of the space called ``name``, or None.

        A ``bytes`` name (what an ``encoding=None`` connection hands around) is
        decoded as UTF-8, as the names from the server were.
        """
        space_id = self.space_ids.get(name)  # type: ignore[arg-type]
        if space_id is None and type(name) is not str:
            space_id = self.space_ids.get(_name(name))
        return space_id

    def space_name(self, space_id: int) -> str | None:
        return self._space_names.get(space_id)

    def index_id(self, space_id: int, name: str | bytes) -> int | None:
        """The id of index ``name`` of a space, or None."""
        names = self.index_ids.get(space_id)
        if names is None:
            return None
        index_id = names.get(name)  # type: ignore[arg-type]
        if index_id is None and type(name) is not str:
            index_id = names.get(_name(name))
        return index_id

    def field_names(self, space: int | str | bytes) -> tuple[str, ...]:
        """The names of a space's formatted fields, in order (empty without a format).

        Raises:
            SchemaError: No such space.
            ProtocolError: The space's format in ``_vspace`` is malformed.
        """
        space_id = space if isinstance(space, int) else self.require_space(space)
        if space_id not in self._space_names:
            raise SchemaError(f"there is no space with id {space_id} (schema version {self.version})")
        fmt = self._formats.get(space_id)
        if fmt is None:
            return ()
        if isinstance(fmt, str | bytes | Mapping) or not isinstance(fmt, Sequence):
            raise ProtocolError(f"_vspace: the format of space {space_id} is {kind(fmt)}, expected an array",
                                may_have_executed=True)
        names: list[str] = []
        for number, field in enumerate(fmt):
            name = field.get("name", field.get(b"name")) if isinstance(field, Mapping) else None
            if not isinstance(name, str | bytes):
                raise ProtocolError(f"_vspace: field {number} of space {space_id}'s format has no name "
                                    f"({field!r:.60})", may_have_executed=True)
            names.append(_name(name))
        return tuple(names)

    def require_space(self, name: str | bytes) -> int:
        space_id = self.space_id(name)
        if space_id is None:
            raise SchemaError(f"there is no space named {name!r} (schema version {self.version})")
        return space_id

    def require_index(self, space_id: int, name: str | bytes) -> int:
        index_id = self.index_id(space_id, name)
        if index_id is None:
            space = self.space_name(space_id) or str(space_id)
            raise SchemaError(f"space {space!r} has no index named {name!r} (schema version {self.version})")
        return index_id

    def __repr__(self) -> str:
        return f"<Schema version={self.version} spaces={len(self.space_ids)}>"
