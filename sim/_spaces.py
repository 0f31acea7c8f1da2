"""memtx-like spaces: tuples, tree indexes, iterators, DML, system views.

This is the storage engine of a simulated instance. It reproduces what a
client can observe from Tarantool 2.6: the order tuples come back in, the
error codes and messages for bad requests, and the ``_vspace``/``_vindex``
system views. Messages were checked against a real 2.6.0 server.

Values are the Python objects msgpack decodes to (``int``, ``float``,
``str``, ``bytes``, ``bool``, ``None``, ``list``, ``dict``, ``ExtType``).
Field numbers inside this module are 0-based; messages show them 1-based, as
Tarantool does. Update operations live in :mod:`sim._update_ops`, values,
type rules and error codes in :mod:`sim._values`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from trio_tarantool._iproto._constants import VINDEX_ID, VSPACE_ID
from trio_tarantool._iproto._constants import Iterator as It

from ._update_ops import apply_ops, check_ops
from ._values import (  # re-exported: the engine's public names
    ER_ACCESS_DENIED,
    ER_CANT_UPDATE_PRIMARY_KEY,
    ER_EXACT_MATCH,
    ER_FIELD_MISSING,
    ER_FIELD_TYPE,
    ER_KEY_PART_COUNT,
    ER_KEY_PART_TYPE,
    ER_MORE_THAN_ONE_TUPLE,
    ER_NO_SUCH_FIELD_NO,
    ER_NO_SUCH_INDEX_ID,
    ER_NO_SUCH_SPACE,
    ER_READONLY,
    ER_SPACE_EXISTS,
    ER_TUPLE_FOUND,
    ER_UNSUPPORTED_INDEX_FEATURE,
    FIRST_USER_SPACE_ID,
    BoxError,
)
from ._values import is_type as _is_type
from ._values import rank_value as _rank_value

__all__ = ["ER_ACCESS_DENIED", "ER_READONLY", "BoxError", "Change", "Database", "Field", "Index", "Part", "Space"]

# -- definitions --------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One entry of a space format."""

    name: str
    type: str = "any"
    is_nullable: bool = False

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.is_nullable:
            out["is_nullable"] = True
        return out


@dataclass(frozen=True)
class Part:
    """One index part: a 0-based field number and its type."""

    field: int
    type: str
    is_nullable: bool = False


@dataclass
class Index:
    """A tree index: keys kept sorted, each pointing at a whole tuple.

    A unique index is ordered by its key; a non-unique one by its key, then
    the primary key (as memtx does), so equal keys come back in primary-key
    order.
    """

    space: Space
    id: int
    name: str
    parts: list[Part]
    unique: bool = True
    type: str = "TREE"
    _keys: list[tuple[Any, ...]] = field(default_factory=list)
    _tuples: list[list[Any]] = field(default_factory=list)

    def key_of(self, tup: Sequence[Any]) -> list[Any]:
        return [tup[p.field] if p.field < len(tup) else None for p in self.parts]

    def _sort_key(self, tup: Sequence[Any]) -> tuple[Any, ...]:
        k = tuple(_rank_value(v) for v in self.key_of(tup))
        if not self.unique:
            k += tuple(_rank_value(v) for v in self.space.primary.key_of(tup))
        return k

    def _find(self, tup: Sequence[Any]) -> int:
        sk = self._sort_key(tup)
        i = bisect.bisect_left(self._keys, sk)
        if i < len(self._keys) and self._keys[i] == sk:
            return i
        return -1

    def add(self, tup: list[Any]) -> None:
        sk = self._sort_key(tup)
        i = bisect.bisect_left(self._keys, sk)
        self._keys.insert(i, sk)
        self._tuples.insert(i, tup)

    def remove(self, tup: Sequence[Any]) -> None:
        i = self._find(tup)
        if i >= 0:
            del self._keys[i]
            del self._tuples[i]

    def __len__(self) -> int:
        return len(self._tuples)

    # -- lookups ----------------------------------------------------------
    def check_key(self, key: Sequence[Any], exact: bool = False) -> None:
        """Validate a search key as Tarantool does (count, then part types)."""
        n = len(self.parts)
        if exact:
            if not self.unique:
                raise BoxError(
                    ER_MORE_THAN_ONE_TUPLE,
                    "Get() doesn't support partial keys and non-unique indexes",
                )
            if len(key) != n:
                raise BoxError(
                    ER_EXACT_MATCH,
                    f"Invalid key part count in an exact match (expected {n}, got {len(key)})",
                )
        elif len(key) > n:
            raise BoxError(
                ER_KEY_PART_COUNT, f"Invalid key part count (expected [0..{n}], got {len(key)})"
            )
        for i, (value, part) in enumerate(zip(key, self.parts, strict=False)):
            if value is None and part.is_nullable:
                continue
            if not _is_type(value, part.type):
                raise BoxError(
                    ER_KEY_PART_TYPE,
                    f"Supplied key type of part {i} does not match index part type: "
                    f"expected {part.type}",
                )

    def get(self, key: Sequence[Any]) -> list[Any] | None:
        """The tuple with exactly this (full, validated) key, if any."""
        kp = tuple(_rank_value(v) for v in key)
        i = bisect.bisect_left(self._keys, kp)
        if i < len(self._keys) and self._keys[i][: len(kp)] == kp:
            return self._tuples[i]
        return None

    def iterate(self, iterator: int, key: Sequence[Any]) -> Iterator[list[Any]]:
        """Tuples in Tarantool's order for ``iterator`` and a (partial) ``key``."""
        kp = tuple(_rank_value(v) for v in key)
        n = len(kp)
        keys, tuples = self._keys, self._tuples
        ascending = iterator in (It.EQ, It.ALL, It.GE, It.GT)
        if not kp:
            order: Iterable[int] = range(len(keys)) if ascending else range(len(keys) - 1, -1, -1)
            for i in order:
                yield tuples[i]
            return
        lo = bisect.bisect_left(keys, kp)
        hi = lo
        while hi < len(keys) and keys[hi][:n] == kp:
            hi += 1
        if iterator == It.EQ:
            order = range(lo, hi)
        elif iterator == It.REQ:
            order = range(hi - 1, lo - 1, -1)
        elif iterator in (It.GE, It.ALL):  # a TREE index treats ALL+key as GE
            order = range(lo, len(keys))
        elif iterator == It.GT:
            order = range(hi, len(keys))
        elif iterator == It.LE:
            order = range(hi - 1, -1, -1)
        elif iterator == It.LT:
            order = range(lo - 1, -1, -1)
        else:  # pragma: no cover - filtered by select()
            raise AssertionError(iterator)
        for i in order:
            yield tuples[i]


class Space:
    """A memtx-like space: a format plus indexes, the first being primary."""

    def __init__(
        self, id: int, name: str, format: Sequence[Field] = (), engine: str = "memtx"
    ) -> None:
        self.id = id
        self.name = name
        self.format = list(format)
        self.engine = engine
        self.indexes: list[Index] = []
        #: The database whose schema version DDL on this space bumps.
        self.db: Database | None = None

    @property
    def primary(self) -> Index:
        if not self.indexes:
            raise BoxError(
                ER_NO_SUCH_INDEX_ID, f"No index #0 is defined in space '{self.name}'"
            )
        return self.indexes[0]

    def field_no(self, name: str) -> int:
        for i, f in enumerate(self.format):
            if f.name == name:
                return i
        raise BoxError(ER_NO_SUCH_FIELD_NO, f"Field '{name}' was not found in the tuple")

    def index(self, index_id: int) -> Index:
        for idx in self.indexes:
            if idx.id == index_id:
                return idx
        raise BoxError(
            ER_NO_SUCH_INDEX_ID, f"No index #{index_id} is defined in space '{self.name}'"
        )

    def create_index(
        self,
        name: str,
        parts: Sequence[tuple[int | str, str] | tuple[int | str, str, bool]],
        *,
        unique: bool = True,
        type: str = "TREE",
    ) -> Index:
        """Add an index; ``parts`` are (field number or name, type[, nullable])."""
        resolved = []
        for p in parts:
            fno = self.field_no(p[0]) if isinstance(p[0], str) else int(p[0])
            nullable = bool(p[2]) if len(p) > 2 else False
            resolved.append(Part(fno, str(p[1]), nullable))
        idx = Index(self, len(self.indexes), name, resolved, unique if self.indexes else True, type.upper())
        for tup in self.primary._tuples if self.indexes else []:
            idx.add(tup)
        self.indexes.append(idx)
        if self.db is not None:
            self.db.schema_version += 1
        return idx

    def __len__(self) -> int:
        return len(self.indexes[0]) if self.indexes else 0

    def clone(self) -> Space:
        """A detached copy (same id, format, indexes and tuples; no database).

        Tuples are shared, not copied: nothing changes a stored tuple in
        place (updates build a new list). Transactions run their statements
        on such copies (see :mod:`sim._txn`).
        """
        copy = Space(self.id, self.name, self.format, self.engine)
        copy.db = self.db  # for the version's messages; DDL is never run on a copy
        for idx in self.indexes:
            copy.indexes.append(Index(copy, idx.id, idx.name, list(idx.parts), idx.unique, idx.type,
                                      list(idx._keys), list(idx._tuples)))
        return copy

    # -- validation ---------------------------------------------------------
    def validate(self, tup: Sequence[Any]) -> None:
        """Check a tuple against the format and index part types."""
        for i, f in enumerate(self.format):
            if i >= len(tup):
                if not f.is_nullable:
                    raise BoxError(
                        ER_FIELD_MISSING, f"Tuple field {i + 1} required by space format is missing"
                    )
                continue
            value = tup[i]
            if value is None and f.is_nullable:
                continue
            if not _is_type(value, f.type):
                raise self._field_type_error(i, f.type, value)
        for idx in self.indexes:
            for p in idx.parts:
                if p.field >= len(tup):
                    if p.is_nullable:
                        continue
                    raise BoxError(
                        ER_FIELD_MISSING, f"Tuple field {p.field + 1} required by space format is missing"
                    )
                value = tup[p.field]
                if value is None and p.is_nullable:
                    continue
                if not _is_type(value, p.type):
                    raise self._field_type_error(p.field, p.type, value)

    def _field_type_error(self, fno: int, expected: str, value: Any) -> BoxError:
        """ER_FIELD_TYPE as this version words it (3.x names the field and the value's type)."""
        if self.db is None or self.db.major < 3:
            return BoxError(ER_FIELD_TYPE, f"Tuple field {fno + 1} type does not match one required by "
                                           f"operation: expected {expected}")
        name = f" ({self.format[fno].name})" if fno < len(self.format) else ""
        return BoxError(ER_FIELD_TYPE, f"Tuple field {fno + 1}{name} type does not match one required by "
                                       f"operation: expected {expected}, got {mp_type(value)}",
                        fields={"name": "FIELD_TYPE"})

    def _conflict(self, tup: Sequence[Any], old: Sequence[Any] | None) -> None:
        for idx in self.indexes:
            if not idx.unique:
                continue
            key = idx.key_of(tup)
            if any(v is None for v in key) and any(p.is_nullable for p in idx.parts):
                continue  # nulls never collide in a nullable unique index
            found = idx.get(key)
            if found is not None and found is not old:
                if self.db is not None and self.db.major >= 3:
                    raise BoxError(
                        ER_TUPLE_FOUND,
                        f'Duplicate key exists in unique index "{idx.name}" in space "{self.name}" '
                        f"with old tuple - {mp_str(found)} and new tuple - {mp_str(tup)}",
                        fields={"name": "TUPLE_FOUND", "index": idx.name, "space": self.name,
                                "old_tuple": list(found), "new_tuple": list(tup)},
                    )
                raise BoxError(
                    ER_TUPLE_FOUND,
                    f"Duplicate key exists in unique index '{idx.name}' in space '{self.name}'",
                )

    def _put(self, tup: list[Any], old: list[Any] | None) -> None:
        if old is not None:
            for idx in self.indexes:
                idx.remove(old)
        for idx in self.indexes:
            idx.add(tup)

    # -- requests -----------------------------------------------------------
    def select(
        self, index_id: int, iterator: int, key: Sequence[Any], offset: int, limit: int
    ) -> list[list[Any]]:
        idx = self.index(index_id)
        idx.check_key(key)  # the key is validated before the iterator type
        if iterator not in (It.EQ, It.REQ, It.ALL, It.LT, It.LE, It.GE, It.GT):
            raise BoxError(
                ER_UNSUPPORTED_INDEX_FEATURE,
                f"Index '{idx.name}' ({idx.type}) of space '{self.name}' ({self.engine}) "
                "does not support requested iterator type",
            )
        out: list[list[Any]] = []
        if limit <= 0:
            return out
        skipped = 0
        for tup in idx.iterate(iterator, key):
            if skipped < offset:
                skipped += 1
                continue
            out.append(tup)
            if len(out) >= limit:
                break
        return out

    def insert(self, tup: list[Any]) -> list[Any]:
        self.validate(tup)
        self._conflict(tup, None)
        self._put(tup, None)
        return tup

    def replace(self, tup: list[Any]) -> tuple[list[Any], list[Any] | None]:
        self.validate(tup)
        old = self.primary.get(self.primary.key_of(tup))
        self._conflict(tup, old)
        self._put(tup, old)
        return tup, old

    def delete(self, index_id: int, key: Sequence[Any]) -> list[Any] | None:
        idx = self.index(index_id)
        idx.check_key(key, exact=True)
        old = idx.get(key)
        if old is not None:
            self._put_delete(old)
        return old

    def _put_delete(self, old: list[Any]) -> None:
        for idx in self.indexes:
            idx.remove(old)

    def update(
        self, index_id: int, key: Sequence[Any], ops: Sequence[Any], index_base: int = 0
    ) -> tuple[list[Any] | None, list[Any] | None]:
        """Apply ``ops`` to the tuple with ``key``; returns (new, old)."""
        idx = self.index(index_id)
        idx.check_key(key, exact=True)
        old = idx.get(key)
        if old is None:
            return None, None  # Tarantool does not look at the ops then
        new = apply_ops(self, old, ops, index_base)
        # Order of checks as in 2.6: format, unique indexes, then primary key.
        self.validate(new)
        self._conflict(new, old)
        self._check_pk_unchanged(old, new)
        self._put(new, old)
        return new, old

    def _check_pk_unchanged(self, old: Sequence[Any], new: Sequence[Any]) -> None:
        pk = self.primary
        if [_rank_value(v) for v in pk.key_of(old)] != [_rank_value(v) for v in pk.key_of(new)]:
            raise BoxError(
                ER_CANT_UPDATE_PRIMARY_KEY,
                f"Attempt to modify a tuple field which is part of index '{pk.name}' "
                f"in space '{self.name}'",
            )

    def upsert(
        self, tup: list[Any], ops: Sequence[Any], index_base: int = 0
    ) -> tuple[list[Any] | None, list[Any] | None]:
        """Insert ``tup`` or apply ``ops`` to the existing tuple; returns (new, old).

        As in Tarantool, an op that fails on the stored tuple is skipped (the
        server only logs it) and the request still succeeds.
        """
        self.validate(tup)
        check_ops(ops)
        old = self.primary.get(self.primary.key_of(tup))
        if old is None:
            self._conflict(tup, None)
            self._put(tup, None)
            return tup, None
        # memtx logs and skips an op that fails on the stored tuple and a
        # change of the primary key, but a result that breaks the space
        # format or a unique index is an error (checked against 2.6).
        new = apply_ops(self, old, ops, index_base, skip_errors=True)
        self.validate(new)
        try:
            self._check_pk_unchanged(old, new)
        except BoxError:
            return old, old
        self._conflict(new, old)
        self._put(new, old)
        return new, old


def mp_type(value: Any) -> str:
    """The MsgPack type name Tarantool's messages use for ``value``."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "unsigned" if value >= 0 else "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "varbinary"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    return "extension"


def mp_str(value: Any) -> str:
    """A value as Tarantool prints it in error messages (``[6, "Bob", 40.5, null]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) or not value.is_integer() else str(int(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(mp_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{mp_str(k)}: {mp_str(v)}" for k, v in value.items()) + "}"
    return repr(value)


# -- the whole database ---------------------------------------------------------

@dataclass
class Change:
    """One committed row change, as replication ships it (row-based)."""

    space_id: int
    old_key: list[Any] | None  # primary key of the replaced/deleted tuple
    new: list[Any] | None  # the tuple now stored, or None for a delete


class Database:
    """All spaces of one instance plus the schema version and system views."""

    def __init__(self) -> None:
        self.spaces: dict[int, Space] = {}
        #: The major version the instance plays (3: 3.x's error messages).
        self.major = 2
        #: Tarantool 2.6 starts around 80 on a fresh instance; DDL bumps it.
        self.schema_version = 80
        #: System views, rebuilt when the schema version moves (DDL always bumps it).
        self._views: dict[int, tuple[int, Space]] = {}

    def space(self, space_id: int) -> Space:
        if space_id in (VSPACE_ID, VINDEX_ID):
            cached = self._views.get(space_id)
            if cached is None or cached[0] != self.schema_version:
                view = self._vspace() if space_id == VSPACE_ID else self._vindex()
                cached = (self.schema_version, view)
                self._views[space_id] = cached
            return cached[1]
        sp = self.spaces.get(space_id)
        if sp is None:
            raise BoxError(ER_NO_SUCH_SPACE, f"Space '{space_id}' does not exist")
        return sp

    def create_space(
        self,
        name: str,
        format: Sequence[Field | tuple[str, str] | tuple[str, str, bool]] = (),
        *,
        id: int | None = None,
        engine: str = "memtx",
    ) -> Space:
        """DDL: a new user space (ids from 512, like box.schema.space.create)."""
        for sp in self.spaces.values():
            if sp.name == name:
                raise BoxError(ER_SPACE_EXISTS, f"Space '{name}' already exists")
        if id is None:
            id = max([FIRST_USER_SPACE_ID - 1, *self.spaces]) + 1
        fields = [f if isinstance(f, Field) else Field(*f) for f in format]
        sp = Space(id, name, fields, engine)
        sp.db = self
        self.spaces[id] = sp
        self.schema_version += 1
        return sp

    def drop_space(self, space_id: int) -> None:
        self.space(space_id)
        del self.spaces[space_id]
        self.schema_version += 1

    def space_by_name(self, name: str) -> Space:
        for sp in self.spaces.values():
            if sp.name == name:
                return sp
        raise BoxError(ER_NO_SUCH_SPACE, f"Space '{name}' does not exist")

    # -- system views ---------------------------------------------------------
    _VSPACE_FORMAT = (
        Field("id", "unsigned"), Field("owner", "unsigned"), Field("name", "string"),
        Field("engine", "string"), Field("field_count", "unsigned"), Field("flags", "map"),
        Field("format", "array"),
    )
    _VINDEX_FORMAT = (
        Field("id", "unsigned"), Field("iid", "unsigned"), Field("name", "string"),
        Field("type", "string"), Field("opts", "map"), Field("parts", "array"),
    )

    def _system_defs(self) -> list[tuple[Space, list[tuple[str, list[Any], bool]]]]:
        vs = Space(VSPACE_ID, "_vspace", self._VSPACE_FORMAT, "sysview")
        vi = Space(VINDEX_ID, "_vindex", self._VINDEX_FORMAT, "sysview")
        return [
            (vs, [("primary", [(0, "unsigned")], True), ("owner", [(1, "unsigned")], False),
                  ("name", [(2, "string")], True)]),
            (vi, [("primary", [(0, "unsigned"), (1, "unsigned")], True),
                  ("name", [(0, "unsigned"), (2, "string")], True)]),
        ]

    def _all_spaces(self) -> list[Space]:
        system = []
        for sp, idefs in self._system_defs():
            for name, parts, unique in idefs:
                sp.create_index(name, parts, unique=unique)
            if sp.id == VINDEX_ID:  # _vindex has no index #1
                sp.indexes[1].id = 2
            system.append(sp)
        return system + [self.spaces[k] for k in sorted(self.spaces)]

    def _vspace(self) -> Space:
        view = Space(VSPACE_ID, "_vspace", self._VSPACE_FORMAT, "sysview")
        view.create_index("primary", [(0, "unsigned")])
        view.create_index("owner", [(1, "unsigned")], unique=False)
        view.create_index("name", [(2, "string")])
        for sp in self._all_spaces():
            view.insert([sp.id, 1, sp.name, sp.engine, 0, {}, [f.to_map() for f in sp.format]])
        return view

    def _vindex(self) -> Space:
        view = Space(VINDEX_ID, "_vindex", self._VINDEX_FORMAT, "sysview")
        view.create_index("primary", [(0, "unsigned"), (1, "unsigned")])
        view.create_index("name", [(0, "unsigned"), (2, "string")])
        view.indexes[1].id = 2
        for sp in self._all_spaces():
            for idx in sp.indexes:
                parts: list[Any] = [
                    {"field": p.field, "type": p.type, "is_nullable": True} if p.is_nullable
                    else [p.field, p.type]
                    for p in idx.parts
                ]
                view.insert([sp.id, idx.id, idx.name, idx.type.lower(), {"unique": idx.unique}, parts])
        return view
