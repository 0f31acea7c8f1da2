"""Space and index names resolved to ids, from the server's `_vspace`/`_vindex`.

The cache is a plain value: the connection fetches the two system spaces and
hands the rows here. It is dropped (marked stale) whenever a reply carries a
schema version other than the one it was loaded at, and after a reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._errors import SchemaError


def _name(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Schema:
    """Name -> id maps for spaces and their indexes, at one schema version."""

    __slots__ = ("_index_ids", "_space_ids", "_space_names", "version")

    def __init__(self, version: int, spaces: Iterable[Sequence[Any]], indexes: Iterable[Sequence[Any]]) -> None:
        self.version = version
        self._space_ids: dict[str, int] = {}
        self._space_names: dict[int, str] = {}
        for row in spaces:
            space_id, name = int(row[0]), _name(row[2])
            self._space_ids[name] = space_id
            self._space_names[space_id] = name
        self._index_ids: dict[int, dict[str, int]] = {}
        for row in indexes:
            self._index_ids.setdefault(int(row[0]), {})[_name(row[2])] = int(row[1])

    def space_id(self, name: str | bytes) -> int | None:
        """The id of the space called ``name``, or None.

        A ``bytes`` name (what an ``encoding=None`` connection hands around) is
        decoded as UTF-8, as the names from the server were.
        """
        return self._space_ids.get(_name(name))

    def space_name(self, space_id: int) -> str | None:
        return self._space_names.get(space_id)

    def index_id(self, space_id: int, name: str | bytes) -> int | None:
        """The id of index ``name`` of a space, or None."""
        return self._index_ids.get(space_id, {}).get(_name(name))

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
        return f"<Schema version={self.version} spaces={len(self._space_ids)}>"
