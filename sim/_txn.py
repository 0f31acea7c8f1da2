"""Interactive transactions on IPROTO streams, with memtx MVCC's visible rules.

A transaction belongs to one stream of one connection (``BEGIN`` with a
``STREAM_ID``). Its statements run on a private view of the spaces they touch:
the committed data with the transaction's own changes laid over it, so its
uncommitted rows are visible to it and to nobody else. ``COMMIT`` applies the
changes to the real spaces (one row change each, replicated like any write).

Conflicts follow what Tarantool 3.8 with ``memtx_use_mvcc_engine`` does
(checked against the real server, ``tests/sim/test_txn_fidelity.py``):

* A transaction *reads* a key when it selects it by the full primary key
  (found or not), inserts it (the duplicate check reads the gap), upserts,
  updates or deletes it; any other select (a range, a secondary index) reads
  the whole space. ``replace`` is a blind write: it reads nothing.
* When any writer (autocommit request, another transaction's commit, a
  replicated row) commits a change to a key an open transaction has read,
  that transaction *conflicts*: if it has run a DML statement (even one that
  changed nothing, like deleting a missing key) it is aborted
  (every later request, ``COMMIT`` included, fails with
  ER_TRANSACTION_CONFLICT 97 until ``COMMIT``/``ROLLBACK`` ends it); if it has
  only read, it is moved to a *read view*: it goes on seeing the data as it
  was just before that commit, and its first write aborts it (97).
* A transaction whose ``TIMEOUT`` passed fails every request with
  ER_TRANSACTION_TIMEOUT (231) until ``COMMIT``/``ROLLBACK`` ends it.
* Closing the connection (or a crash) rolls back its transactions.

Isolation levels 0-3 (default, read-committed, read-confirmed, best-effort)
are accepted and behave alike: the simulator commits instantly and has no
synchronous replication, so "committed", "confirmed" and "prepared" coincide.
Linearizable (4) is refused (ER_UNSUPPORTED): it needs a quorum's vclock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from trio_tarantool._iproto import _constants as C
from trio_tarantool._iproto._constants import Iterator as It

from ._spaces import BoxError, Database, Space
from ._values import ER_UNSUPPORTED
from ._values import rank_value as _rank_value

if TYPE_CHECKING:
    from ._session import ServerConn

ER_INVALID_MSGPACK = 20
ER_ACTIVE_TRANSACTION = 79
ER_TRANSACTION_CONFLICT = 97
ER_UNABLE_TO_PROCESS_OUT_OF_STREAM = 230
ER_TRANSACTION_TIMEOUT = 231
ER_ILLEGAL_PARAMS = 1
ER_VIEW_IS_RO = 113

#: Isolation levels the simulator runs (see the module docstring).
SUPPORTED_ISOLATION = (0, 1, 2, 3)
LINEARIZABLE = 4

RankKey = tuple[Any, ...]
RowKey = tuple[int, RankKey]


def rank_key(key: list[Any]) -> RankKey:
    """A hashable form of a primary key that equates what Tarantool equates (1 == 1.0)."""
    return tuple(_rank_value(v) for v in key)


def conflict_error() -> BoxError:
    return BoxError(ER_TRANSACTION_CONFLICT, "Transaction has been aborted by conflict",
                    fields={"name": "TRANSACTION_CONFLICT"})


def timeout_error() -> BoxError:
    return BoxError(ER_TRANSACTION_TIMEOUT, "Transaction has been aborted by timeout",
                    fields={"name": "TRANSACTION_TIMEOUT"})


def out_of_stream_error(request: str) -> BoxError:
    return BoxError(ER_UNABLE_TO_PROCESS_OUT_OF_STREAM, f"Unable to process {request} request out of stream",
                    fields={"name": "UNABLE_TO_PROCESS_OUT_OF_STREAM", "request": request})


def _invalid_body() -> BoxError:
    return BoxError(ER_INVALID_MSGPACK, "Invalid MsgPack - request body",
                    fields={"name": "INVALID_MSGPACK", "details": "request body"})


@dataclass(eq=False)
class Txn:
    """One open transaction: its stream, state, changes and what it has read."""

    conn: ServerConn
    stream_id: int
    isolation: int
    #: Virtual time after which it is aborted by timeout (None: never).
    deadline: float | None
    #: ``active``, ``read_view`` (conflicted, read-only so far) or ``aborted``.
    state: str = "active"
    abort_error: BoxError | None = None
    #: Its own changes in statement order: row -> (primary key, new tuple or None).
    writes: dict[RowKey, tuple[list[Any], list[Any] | None]] = field(default_factory=dict)
    #: In a read view: the first old value of every row changed since it began.
    undo: dict[RowKey, tuple[list[Any], list[Any] | None]] = field(default_factory=dict)
    point_reads: set[RowKey] = field(default_factory=set)
    space_reads: set[int] = field(default_factory=set)
    #: A DML statement succeeded (even one that changed nothing, like deleting
    #: a missing key): the transaction is read-write, so a conflict aborts it.
    wrote: bool = False

    def expired(self) -> bool:
        return self.deadline is not None and trio.current_time() >= self.deadline

    def abort(self, error: BoxError) -> None:
        """Roll back now; later requests get ``error`` until COMMIT/ROLLBACK."""
        self.state = "aborted"
        self.abort_error = error
        self.writes.clear()
        self.undo.clear()

    def check_usable(self) -> None:
        """Raise the error every request of an aborted (or timed-out) transaction gets."""
        if self.state != "aborted" and self.expired():
            self.abort(timeout_error())
        if self.state == "aborted":
            assert self.abort_error is not None
            raise self.abort_error


class Transactions:
    """The open transactions of one instance, and MVCC conflict bookkeeping."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.open: list[Txn] = []
        #: The transaction whose commit is being applied (its own rows never conflict it).
        self.committing: Txn | None = None

    # -- lifecycle ---------------------------------------------------------------
    def find(self, conn: ServerConn, stream_id: int) -> Txn | None:
        for txn in self.open:
            if txn.conn is conn and txn.stream_id == stream_id:
                return txn
        return None

    def begin(self, conn: ServerConn, stream_id: int, body: dict[int, Any]) -> Txn:
        """IPROTO_BEGIN: validate TIMEOUT and TXN_ISOLATION as 3.8 does, open a transaction."""
        if stream_id == 0:
            raise out_of_stream_error("BEGIN")
        timeout = body.get(C.TIMEOUT)
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise _invalid_body()
        isolation = body.get(C.TXN_ISOLATION, 0)
        if not isinstance(isolation, int) or isinstance(isolation, bool) or isolation < 0:
            raise _invalid_body()
        if isolation > LINEARIZABLE:
            raise BoxError(ER_ILLEGAL_PARAMS, "unknown isolation level", "IllegalParams")
        if isolation == LINEARIZABLE:
            raise BoxError(ER_UNSUPPORTED, "The simulator does not support linearizable isolation",
                           fields={"name": "UNSUPPORTED"})
        if self.find(conn, stream_id) is not None:
            raise BoxError(ER_ACTIVE_TRANSACTION,
                           "Operation is not permitted when there is an active transaction ",
                           fields={"name": "ACTIVE_TRANSACTION"})
        deadline = None if timeout is None else trio.current_time() + float(timeout)
        txn = Txn(conn, stream_id, isolation, deadline)
        self.open.append(txn)
        return txn

    def end(self, txn: Txn) -> None:
        if txn in self.open:
            self.open.remove(txn)

    def drop_connection(self, conn: ServerConn) -> int:
        """The connection closed: roll back its transactions; returns how many."""
        mine = [t for t in self.open if t.conn is conn]
        for txn in mine:
            txn.abort(conflict_error())
            self.end(txn)
        return len(mine)

    def drop_all(self) -> None:
        for txn in list(self.open):
            txn.abort(conflict_error())
        self.open.clear()

    # -- conflicts -----------------------------------------------------------------
    def row_committed(self, space_id: int, pk: list[Any], old: list[Any] | None) -> None:
        """A row change was just committed (``old``: the tuple it replaced or deleted)."""
        row = (space_id, rank_key(pk))
        for txn in self.open:
            if txn is self.committing or txn.state == "aborted":
                continue
            if txn.state == "active" and (row in txn.point_reads or space_id in txn.space_reads):
                if txn.wrote:
                    txn.abort(conflict_error())
                    continue
                txn.state = "read_view"
            if txn.state == "read_view" and row not in txn.undo:
                txn.undo[row] = (list(pk), list(old) if old is not None else None)

    # -- statements ----------------------------------------------------------------
    def view(self, txn: Txn, space: Space, *, copy: bool = False) -> Space:
        """What ``txn`` sees of ``space``: committed rows with its overlay (own writes or undo).

        Without ``copy`` a space the overlay does not touch is returned as is
        (to be read only); with it, always a private copy to run a write on.
        """
        overlay = txn.undo if txn.state == "read_view" else txn.writes
        entries = [(pk, tup) for (sid, _), (pk, tup) in overlay.items() if sid == space.id]
        if space.engine == "sysview" or not (entries or copy):
            return space
        view = space.clone()
        for pk, tup in entries:
            _put_row(view, pk, tup)
        return view

    def select(self, txn: Txn, body: dict[int, Any]) -> list[list[Any]]:
        txn.check_usable()
        space = self.db.space(body.get(C.SPACE_ID, 0))
        index_id = body.get(C.INDEX_ID, 0)
        key = body.get(C.KEY, []) or []
        iterator = body.get(C.ITERATOR, 0)
        view = self.view(txn, space)
        rows = view.select(index_id, iterator, key, body.get(C.OFFSET, 0), body.get(C.LIMIT, 0xFFFFFFFF))
        if txn.state == "active":
            if index_id == 0 and iterator in (It.EQ, It.REQ) and space.indexes and len(key) == len(space.primary.parts):
                row = (space.id, rank_key(list(key)))
                if row not in txn.writes:
                    txn.point_reads.add(row)
            else:
                txn.space_reads.add(space.id)
        return rows

    def write(self, txn: Txn, rtype: int, body: dict[int, Any], check_writable: Callable[[], None]) -> list[Any]:
        """One DML statement inside ``txn``; returns the reply's data."""
        txn.check_usable()
        space = self.db.space(body.get(C.SPACE_ID, 0))
        if space.engine == "sysview":
            raise BoxError(ER_VIEW_IS_RO, f"View '{space.name}' is read-only")
        check_writable()
        if txn.state == "read_view":
            txn.abort(conflict_error())
            txn.check_usable()
        view = self.view(txn, space, copy=True)
        rows = self._statement(txn, space, view, rtype, body)
        txn.wrote = True
        return rows

    def _statement(self, txn: Txn, space: Space, view: Space, rtype: int, body: dict[int, Any]) -> list[Any]:
        base = body.get(C.INDEX_BASE, 0)
        tup = list(body.get(C.TUPLE, []) or [])
        index_id = body.get(C.INDEX_ID, 0)
        key = list(body.get(C.KEY, []) or [])
        # What the statement reads is tracked even when it then fails.
        if rtype in (C.INSERT, C.UPSERT) and space.indexes:
            self._read_row(txn, space, space.primary.key_of(tup))
        elif rtype in (C.UPDATE, C.DELETE):
            if index_id == 0 and space.indexes:
                self._read_row(txn, space, key)
            else:
                txn.space_reads.add(space.id)
        if rtype == C.INSERT:
            view.insert(tup)
            self._record(txn, space, tup)
            return [tup]
        if rtype == C.REPLACE:
            new, _ = view.replace(tup)
            self._record(txn, space, new)
            return [new]
        if rtype == C.UPDATE:
            updated, _ = view.update(index_id, key, tup, base)
            if updated is None:
                return []
            self._record(txn, space, updated)
            return [updated]
        if rtype == C.DELETE:
            deleted = view.delete(index_id, key)
            if deleted is None:
                return []
            self._record(txn, space, deleted, deleted=True)
            return [deleted]
        upserted, before = view.upsert(tup, list(body.get(C.OPS, []) or []), base)
        if upserted is not None and upserted is not before:
            self._record(txn, space, upserted)
        return []

    def _read_row(self, txn: Txn, space: Space, key: list[Any]) -> None:
        row = (space.id, rank_key(key))
        if row not in txn.writes:
            txn.point_reads.add(row)

    @staticmethod
    def _record(txn: Txn, space: Space, tup: list[Any], *, deleted: bool = False) -> None:
        pk = space.primary.key_of(tup)
        row = (space.id, rank_key(pk))
        txn.writes.pop(row, None)  # keep statement order: the last change goes last
        txn.writes[row] = (pk, None if deleted else list(tup))

    def prepare(self, txn: Txn) -> list[tuple[Space, list[Any], list[Any] | None]]:
        """Check that ``txn``'s changes still apply to the committed data; the rows to apply.

        A change that no longer fits (a unique secondary key taken meanwhile by
        a blind write) aborts the transaction with a conflict, as MVCC would.
        """
        touched: dict[int, Space] = {}
        out: list[tuple[Space, list[Any], list[Any] | None]] = []
        for (sid, _), (pk, tup) in txn.writes.items():
            space = self.db.spaces.get(sid)
            if space is None:
                continue
            scratch = touched.get(sid)
            if scratch is None:
                scratch = touched[sid] = space.clone()
            try:
                _put_row(scratch, pk, tup, check=True)
            except BoxError:
                txn.abort(conflict_error())
                raise conflict_error() from None
            out.append((space, pk, tup))
        return out


def _put_row(space: Space, pk: list[Any], tup: list[Any] | None, *, check: bool = False) -> None:
    """Make the row with primary key ``pk`` be ``tup`` (None: absent) in ``space``."""
    old = space.primary.get(pk)
    if tup is None:
        if old is not None:
            space._put_delete(old)
        return
    if check:
        space.validate(tup)
        space._conflict(tup, old)
    space._put(list(tup), old)
