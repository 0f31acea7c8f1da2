"""crud.* on a single simulated storage: the call interface of tarantool/crud.

The real crud module needs vshard. Like the Lua stand-in the real-server
tests load (``tests/real/lua/crud.lua``), this implements the module's *call
interface* on one instance: the same function names and arguments, and the
same answer shapes (Lua multi-returns, i.e. the CALL's data list):

* ``result, nil`` with ``result = {metadata = [{name, type, is_nullable}], rows = [...]}``,
  or ``nil, err`` with ``err = {class_name, err, str, file, line, stack}``;
* ``*_many``: ``result`` (None when nothing went through) and a list of
  errors, each with ``operation_data``;
* ``count``: ``n, nil``; ``len``: ``n``; ``truncate``: ``true``;
  ``storage_info``: ``{uuid: {status, is_master}}``; ``stats``: ``{}``.

Writes go through the instance (so read-only, replication and the trace apply);
Lua field numbers in update/upsert operations are 1-based, as in crud.
``bucket_id`` (when the space has that field and it is empty) is computed as
the stand-in does: ``digest.crc32(msgpack(primary key)) % 3000 + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from trio_tarantool._iproto._constants import Iterator as It

from ._spaces import BoxError, Space
from ._values import rank_value as _rank_value

if TYPE_CHECKING:
    from ._instance import FakeInstance
    from ._session import CallContext

BUCKET_COUNT = 3000
_ITERATORS = {"=": It.EQ, "==": It.EQ, "<": It.LT, "<=": It.LE, ">": It.GT, ">=": It.GE}


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """What Tarantool's ``digest.crc32`` computes: CRC-32C (Castagnoli) with
    initial value 0xFFFFFFFF and *no* final inversion (checked against 2.6)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


class CrudError(Exception):
    """A crud-level failure: becomes the ``err`` map of the answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FieldsError(CrudError):
    """``opts.fields`` names a field the space does not have."""


def _error(class_name: str, message: str, operation_data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {
        "class_name": class_name,
        "err": message,
        "str": f"{class_name}: {message}",
        "file": "sim/_crud.py",
        "line": 1,
        "stack": "stack traceback:\n\tsim/_crud.py: in function <crud>",
    }
    if operation_data is not None:
        err["operation_data"] = operation_data
    return err


class Crud:
    """The crud functions of one instance (registered as ``crud.<name>``)."""

    def __init__(self, instance: FakeInstance) -> None:
        self.instance = instance

    def install(self) -> None:
        table: dict[str, Callable[..., Any]] = {
            "insert": self.insert, "insert_object": self.insert_object,
            "replace": self.replace, "replace_object": self.replace_object,
            "get": self.get, "update": self.update, "delete": self.delete,
            "upsert": self.upsert, "upsert_object": self.upsert_object,
            "insert_many": self.insert_many, "insert_object_many": self.insert_object_many,
            "replace_many": self.replace_many, "replace_object_many": self.replace_object_many,
            "upsert_many": self.upsert_many, "upsert_object_many": self.upsert_object_many,
            "select": self.select, "count": self.count, "min": self.min, "max": self.max,
            "len": self.len, "truncate": self.truncate, "storage_info": self.storage_info,
            "stats": self.stats,
        }
        for name, fn in table.items():
            self.instance.register_function(f"crud.{name}", fn)

    # -- helpers -------------------------------------------------------------
    def _space(self, name: Any) -> Space:
        try:
            if isinstance(name, int):
                return self.instance.db.space(name)
            return self.instance.db.space_by_name(str(name))
        except BoxError:
            raise CrudError(f'Space "{name}" doesn\'t exist') from None

    @staticmethod
    def _metadata(space: Space) -> list[dict[str, Any]]:
        return [{"name": f.name, "type": f.type, "is_nullable": f.is_nullable} for f in space.format]

    @staticmethod
    def _numbers(space: Space) -> dict[str, int]:
        return {f.name: i for i, f in enumerate(space.format)}

    def _with_bucket_id(self, space: Space, tup: Sequence[Any]) -> list[Any]:
        out = list(tup)
        fieldno = self._numbers(space).get("bucket_id")
        if fieldno is None:
            return out
        while len(out) <= fieldno:
            out.append(None)
        if out[fieldno] is None:
            key = space.primary.key_of(out)
            out[fieldno] = crc32c(msgpack.packb(key)) % BUCKET_COUNT + 1
        return out

    def _flatten(self, space: Space, obj: Any) -> list[Any]:
        if not isinstance(obj, dict):
            raise CrudError(f"Object should be a table, got {type(obj).__name__}")
        numbers = self._numbers(space)
        for name in obj:
            if name not in numbers:
                raise CrudError(f'Unknown field "{name}" is specified')
        out: list[Any] = []
        for f in space.format:
            value = obj.get(f.name)
            if value is None and not f.is_nullable and f.name != "bucket_id":
                raise CrudError(f'Field "{f.name}" isn\'t nullable')
            out.append(value)
        while out and out[-1] is None:
            out.pop()  # a Lua table has no trailing nils
        return out

    def _result(self, space: Space, rows: list[list[Any]], opts: Any) -> dict[str, Any]:
        meta = self._metadata(space)
        fields = opts.get("fields") if isinstance(opts, dict) else None
        if fields is None:
            return {"metadata": meta, "rows": rows}
        numbers = self._numbers(space)
        picks = []
        for name in fields:
            if name not in numbers:
                raise FieldsError(f'Space format doesn\'t contain field named "{name}"')
            picks.append(numbers[name])
        return {
            "metadata": [meta[n] for n in picks],
            "rows": [[row[n] if n < len(row) else None for n in picks] for row in rows],
        }

    def _one(self, class_name: str, space_name: Any, opts: Any, fn: Callable[[Space], list[Any] | None]) -> list[Any]:
        try:
            space = self._space(space_name)
            row = fn(space)
            return [self._result(space, [row] if row is not None else [], opts), None]
        except FieldsError as exc:
            return [None, _error("FieldsError", exc.message)]
        except (CrudError, BoxError) as exc:
            return [None, _error(class_name, exc.message)]

    @staticmethod
    def _key(key: Any) -> list[Any]:
        return list(key) if isinstance(key, (list, tuple)) else [key]

    # -- single-tuple DML -------------------------------------------------------
    def insert(self, ctx: CallContext, space: Any, tup: Any, opts: Any = None) -> list[Any]:
        return self._one("InsertError", space, opts,
                         lambda sp: self.instance.insert(sp.id, self._with_bucket_id(sp, tup)))

    def insert_object(self, ctx: CallContext, space: Any, obj: Any, opts: Any = None) -> list[Any]:
        return self._one("InsertError", space, opts,
                         lambda sp: self.instance.insert(sp.id, self._with_bucket_id(sp, self._flatten(sp, obj))))

    def replace(self, ctx: CallContext, space: Any, tup: Any, opts: Any = None) -> list[Any]:
        return self._one("ReplaceError", space, opts,
                         lambda sp: self.instance.replace(sp.id, self._with_bucket_id(sp, tup)))

    def replace_object(self, ctx: CallContext, space: Any, obj: Any, opts: Any = None) -> list[Any]:
        return self._one("ReplaceError", space, opts,
                         lambda sp: self.instance.replace(sp.id, self._with_bucket_id(sp, self._flatten(sp, obj))))

    def get(self, ctx: CallContext, space: Any, key: Any, opts: Any = None) -> list[Any]:
        def run(sp: Space) -> list[Any] | None:
            k = self._key(key)
            sp.primary.check_key(k, exact=True)
            return sp.primary.get(k)

        return self._one("GetError", space, opts, run)

    def update(self, ctx: CallContext, space: Any, key: Any, ops: Any, opts: Any = None) -> list[Any]:
        return self._one("UpdateError", space, opts,
                         lambda sp: self.instance.update(sp.id, 0, self._key(key), list(ops or []), 1))

    def delete(self, ctx: CallContext, space: Any, key: Any, opts: Any = None) -> list[Any]:
        return self._one("DeleteError", space, opts,
                         lambda sp: self.instance.delete(sp.id, 0, self._key(key)))

    def upsert(self, ctx: CallContext, space: Any, tup: Any, ops: Any, opts: Any = None) -> list[Any]:
        def run(sp: Space) -> None:
            self.instance.upsert(sp.id, self._with_bucket_id(sp, tup), list(ops or []), 1)

        return self._one("UpsertError", space, opts, run)

    def upsert_object(self, ctx: CallContext, space: Any, obj: Any, ops: Any, opts: Any = None) -> list[Any]:
        def run(sp: Space) -> None:
            self.instance.upsert(sp.id, self._with_bucket_id(sp, self._flatten(sp, obj)), list(ops or []), 1)

        return self._one("UpsertError", space, opts, run)

    # -- batches ----------------------------------------------------------------
    def _many(self, class_name: str, space_name: Any, items: Any, opts: Any,
              fn: Callable[[Space, Any], list[Any] | None]) -> list[Any]:
        opts = opts if isinstance(opts, dict) else {}
        try:
            space = self._space(space_name)
        except CrudError as exc:
            return [None, [_error(class_name, exc.message)]]
        if not isinstance(items, list):
            return [None, [_error(class_name, "Batch should be a table")]]
        rows: list[list[Any]] = []
        errs: list[dict[str, Any]] = []
        transactional = opts.get("rollback_on_error") is True
        snapshot = [list(t) for t in space.primary._tuples] if transactional else []
        for item in items:
            try:
                out = fn(space, item)
                if out is not None:
                    rows.append(out)
            except (BoxError, CrudError) as exc:
                errs.append(_error(class_name, exc.message, item))
                if opts.get("stop_on_error"):
                    break
        if transactional and errs:
            self._restore(space, snapshot)
            rows = []
        result = None
        if rows or not errs:
            try:
                result = self._result(space, rows, opts)
            except FieldsError as exc:
                return [None, [_error("FieldsError", exc.message)]]
        return [result, errs or None]

    def _restore(self, space: Space, snapshot: list[list[Any]]) -> None:
        """Roll a batch back: put the space's rows back as they were.

        The compensating writes replicate like any other (the real module
        would roll back one transaction instead; replicas see the same end state).
        """
        saved = {tuple(_rank_value(v) for v in space.primary.key_of(t)): t for t in snapshot}
        current = {tuple(_rank_value(v) for v in space.primary.key_of(t)): t for t in space.primary._tuples}
        for key, tup in list(current.items()):
            if key not in saved:
                self.instance.delete(space.id, 0, space.primary.key_of(tup))
        for key, tup in saved.items():
            if current.get(key) != tup:
                self.instance.replace(space.id, tup)

    def insert_many(self, ctx: CallContext, space: Any, tuples: Any, opts: Any = None) -> list[Any]:
        return self._many("InsertManyError", space, tuples, opts,
                          lambda sp, t: self.instance.insert(sp.id, self._with_bucket_id(sp, t)))

    def insert_object_many(self, ctx: CallContext, space: Any, objs: Any, opts: Any = None) -> list[Any]:
        return self._many("InsertManyError", space, objs, opts,
                          lambda sp, o: self.instance.insert(sp.id, self._with_bucket_id(sp, self._flatten(sp, o))))

    def replace_many(self, ctx: CallContext, space: Any, tuples: Any, opts: Any = None) -> list[Any]:
        return self._many("ReplaceManyError", space, tuples, opts,
                          lambda sp, t: self.instance.replace(sp.id, self._with_bucket_id(sp, t)))

    def replace_object_many(self, ctx: CallContext, space: Any, objs: Any, opts: Any = None) -> list[Any]:
        return self._many("ReplaceManyError", space, objs, opts,
                          lambda sp, o: self.instance.replace(sp.id, self._with_bucket_id(sp, self._flatten(sp, o))))

    def upsert_many(self, ctx: CallContext, space: Any, pairs: Any, opts: Any = None) -> list[Any]:
        def run(sp: Space, pair: Any) -> None:
            self.instance.upsert(sp.id, self._with_bucket_id(sp, pair[0]), list(pair[1] or []) if len(pair) > 1 else [], 1)

        return self._many("UpsertManyError", space, pairs, opts, run)

    def upsert_object_many(self, ctx: CallContext, space: Any, pairs: Any, opts: Any = None) -> list[Any]:
        def run(sp: Space, pair: Any) -> None:
            tup = self._with_bucket_id(sp, self._flatten(sp, pair[0]))
            self.instance.upsert(sp.id, tup, list(pair[1] or []) if len(pair) > 1 else [], 1)

        return self._many("UpsertManyError", space, pairs, opts, run)

    # -- reads --------------------------------------------------------------------
    def _picker(self, space: Space, ident: Any) -> tuple[Callable[[list[Any]], Any], Any]:
        if isinstance(ident, str):
            for idx in space.indexes:
                if idx.name == ident:
                    return (lambda t, idx=idx: idx.key_of(t)), idx
            fieldno = self._numbers(space).get(ident)
        else:
            fieldno = ident - 1 if isinstance(ident, int) else None  # Lua numbers
        if fieldno is None:
            raise CrudError(f'No field or index "{ident}" found')
        return (lambda t: t[fieldno] if fieldno < len(t) else None), None

    @staticmethod
    def _compare(a: Any, b: Any) -> int:
        a = a if isinstance(a, list) else [a]
        b = b if isinstance(b, list) else [b]
        for x, y in zip(a, b, strict=False):
            if x != y or type(x) is not type(y):
                if x is None:
                    return -1
                if y is None:
                    return 1
                rx, ry = _rank_value(x), _rank_value(y)
                if rx != ry:
                    return -1 if rx < ry else 1
        return 0

    def _matching(self, space: Space, conditions: Any, opts: Any) -> list[list[Any]]:
        conditions = conditions or []
        opts = opts if isinstance(opts, dict) else {}
        first = opts.get("first")
        if first is not None and first < 0:
            raise CrudError("Negative first is not supported by the simulator")
        scan, key, it = space.primary, [], It.GE
        chosen = False
        filters = []
        for cond in conditions:
            op, ident, value = cond[0], cond[1], cond[2] if len(cond) > 2 else None
            if op not in _ITERATORS:
                raise CrudError(f"Unknown operator {op}")
            pick, idx = self._picker(space, ident)
            if idx is not None and not chosen:
                chosen = True
                scan, it = idx, _ITERATORS[op]
                key = list(value) if isinstance(value, list) else [value]
            filters.append((op, pick, value))
        after = opts.get("after")
        after_key = space.primary.key_of(after) if after is not None else None
        skipping = after_key is not None
        rows: list[list[Any]] = []
        for tup in scan.iterate(it, key):
            if skipping:
                if self._compare(space.primary.key_of(tup), after_key) == 0:
                    skipping = False
                continue
            if all(self._holds(op, self._compare(pick(tup), value)) for op, pick, value in filters):
                rows.append(tup)
                if first is not None and len(rows) >= first:
                    break
        return rows

    @staticmethod
    def _holds(op: str, cmp: int) -> bool:
        return {"=": cmp == 0, "==": cmp == 0, "<": cmp < 0, "<=": cmp <= 0,
                ">": cmp > 0, ">=": cmp >= 0}[op]

    def select(self, ctx: CallContext, space: Any, conditions: Any = None, opts: Any = None) -> list[Any]:
        return self._one_rows("SelectError", space, opts, lambda sp: self._matching(sp, conditions, opts))

    def _one_rows(self, class_name: str, space_name: Any, opts: Any,
                  fn: Callable[[Space], list[list[Any]]]) -> list[Any]:
        try:
            space = self._space(space_name)
            return [self._result(space, fn(space), opts), None]
        except FieldsError as exc:
            return [None, _error("FieldsError", exc.message)]
        except (CrudError, BoxError) as exc:
            return [None, _error(class_name, exc.message)]

    def count(self, ctx: CallContext, space: Any, conditions: Any = None, opts: Any = None) -> list[Any]:
        try:
            sp = self._space(space)
            return [len(self._matching(sp, conditions, {})), None]
        except (CrudError, BoxError) as exc:
            return [None, _error("CountError", exc.message)]

    def _border(self, space: Any, index_name: Any, opts: Any, last: bool) -> list[Any]:
        def run(sp: Space) -> list[list[Any]]:
            idx = next((i for i in sp.indexes if i.name == index_name or i.id == index_name), None)
            if index_name is None:
                idx = sp.primary
            if idx is None:
                raise CrudError(f'Index "{index_name}" of space "{sp.name}" doesn\'t exist')
            rows = list(idx.iterate(It.LE if last else It.GE, []))
            return rows[:1]

        return self._one_rows("BorderError", space, opts, run)

    def min(self, ctx: CallContext, space: Any, index_name: Any = None, opts: Any = None) -> list[Any]:
        return self._border(space, index_name, opts, last=False)

    def max(self, ctx: CallContext, space: Any, index_name: Any = None, opts: Any = None) -> list[Any]:
        return self._border(space, index_name, opts, last=True)

    def len(self, ctx: CallContext, space: Any, opts: Any = None) -> list[Any]:
        try:
            return [len(self._space(space))]
        except CrudError as exc:
            return [None, _error("LenError", exc.message)]

    def truncate(self, ctx: CallContext, space: Any, opts: Any = None) -> list[Any]:
        try:
            sp = self._space(space)
        except CrudError as exc:
            return [None, _error("TruncateError", exc.message)]
        self.instance.check_writable()
        for tup in list(sp.primary._tuples):
            self.instance.delete(sp.id, 0, sp.primary.key_of(tup))
        return [True]

    def storage_info(self, ctx: CallContext, opts: Any = None) -> list[Any]:
        return [{self.instance.uuid: {"status": "running", "is_master": not self.instance.ro}}]

    def stats(self, ctx: CallContext, space: Any = None) -> list[Any]:
        return [{}]
