"""The pool's retry policy: may a failed attempt be sent again, and where?

This module is pure, like :mod:`trio_tarantool._strategy`: no I/O, no trio,
no clock.  The pool (``_pool.py``) classifies how an attempt failed
(:func:`classify`), asks :func:`decide`, and carries the decision out.
``tests/unit/test_retry.py`` checks the table below exhaustively and with
hypothesis.

Request kinds (:func:`kind_of`):

* ``READ``: ``select``, ``ping`` and the crud reads (``crud.get``,
  ``crud.select``, ``crud.min``/``max``, ``crud.count``, ``crud.len``,
  ``crud.storage_info``, ``crud.stats``): no side effects, so running one twice
  is harmless.
* ``WRITE``: ``insert``, ``replace``, ``update``, ``upsert``, ``delete``: one
  box statement, which the server refuses *before* executing it when the
  instance is read-only (``ER_READONLY``) or not loaded yet (``ER_LOADING``).
* ``CODE``: ``call``, ``eval``, ``execute`` and the crud writes: arbitrary code
  on the server.  An ``ER_READONLY`` can come from the first write *inside*
  the code, after earlier statements (a counter, a log line, a call to another
  system) already ran; so the pool cannot tell a refused request from a
  partly executed one.  With ``idempotent=True`` the caller says running it
  again is harmless, and it is retried like a ``WRITE``.

The table (for the first attempt, with ``retry_not_executed=True``; there is
never more than one retry, and nothing is retried with
``retry_not_executed=False``):

================================  ========  ========  ===================  =========================
Failure of the attempt            READ      WRITE     CODE                 CODE, idempotent
================================  ========  ========  ===================  =========================
not sent (NetworkError,           retry     retry     retry                retry
``may_have_executed`` False)
``ER_READONLY``                   retry*    retry*    **no**, error says   retry*
                                                      may_have_executed
``ER_LOADING``                    retry     retry     **no**, error says   retry
                                                      may_have_executed
rolled back (``ER_SYNC_ROLLBACK``, retry     retry     **no**, error says   retry
``ER_SYNC_QUEUE_FULL``)                                may_have_executed
may commit later                  no        no        no                   no
(``ER_SYNC_QUORUM_TIMEOUT``,
``ER_SYNC_TIMEOUT``)
anything else (an answer, a lost  no        no        no                   no
connection after writing, a
timeout)
================================  ========  ========  ===================  =========================

Synchronous replication (Tarantool >= 2.5, elections in 3.x):

* ``ER_SYNC_ROLLBACK`` (217): the synchronous transaction was rolled back
  everywhere (a new leader's PROMOTE did not include it); a box statement had
  no lasting effect, so a READ/WRITE is retried (``may_have_executed``
  False) - typically to the new leader, once it is known. Code may have done
  something outside the transaction: CODE only with ``idempotent=True``.
* ``ER_SYNC_QUEUE_FULL`` (289): the limbo refused the transaction before it
  was written; treated like a rollback.
* ``ER_SYNC_QUORUM_TIMEOUT`` (216) and 3.x's ``ER_SYNC_TIMEOUT`` (295): the
  transaction is in the leader's WAL and waits for a quorum; since 3.x it is
  "detached from the fiber and continues waiting", so it **may commit
  later**. Never retried, ``may_have_executed`` True whatever the kind.
* ``ER_SYNC_QUEUE_UNCLAIMED`` (227) and ``ER_SYNC_QUEUE_FOREIGN`` (228): the
  instance does not own the synchronous queue, so it refused the write before
  executing it, like ``ER_READONLY`` (same row of the table).
* ``ER_READONLY`` from 3.x carries the reason in its error fields
  (``reason``, ``state``, ``leader_id``, ``leader_uuid``...); the policy does
  not need them (the row is the same), the health side uses ``leader_uuid``
  to route the retry to the new leader at once (:mod:`._health`).

Where the retry goes: to the same mode, except that a request refused with
``ER_READONLY`` under ``ANY`` or ``PREFER_RW`` is retried as ``RW`` (another
replica would refuse it too), and under ``RO`` it is not retried at all (every
instance that mode allows is read-only).

``may_have_executed`` of the error the caller finally gets is True when *any*
attempt may have run: a CODE request's refusal counts as "may have run", as
does a NetworkError that says so.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._errors import ErrorCode, NetworkError, ServerError
from ._strategy import Mode

__all__ = [
    "Decision",
    "Failure",
    "Kind",
    "classify",
    "decide",
    "kind_of",
]


class Kind(enum.Enum):
    """What a request does on the server, as far as retrying is concerned."""

    #: No side effects (select, ping, crud reads).
    READ = "read"
    #: One box DML statement, refused before it runs on a read-only or loading instance.
    WRITE = "write"
    #: Code (call, eval, SQL, crud writes): a refusal may come after some of it ran.
    CODE = "code"


class Failure(enum.Enum):
    """How one attempt failed (see :func:`classify`)."""

    #: A NetworkError with ``may_have_executed`` False: the packet never left.
    NOT_SENT = "not sent"
    #: The server answered ``ER_READONLY``.
    READONLY = "readonly"
    #: The server answered ``ER_LOADING``.
    LOADING = "loading"
    #: A synchronous transaction was rolled back (``ER_SYNC_ROLLBACK``, ``ER_SYNC_QUEUE_FULL``).
    ROLLED_BACK = "rolled back"
    #: A synchronous transaction may still commit (``ER_SYNC_QUORUM_TIMEOUT``, ``ER_SYNC_TIMEOUT``).
    MAY_COMMIT = "may commit"
    #: Another server answer: final, the request's own outcome.
    ANSWERED = "answered"
    #: A NetworkError after the packet was (or may have been) written.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decision:
    """What the pool does after a failed attempt.

    Attributes:
        retry: Send the request again.
        mode: The mode of the retry (meaningful when ``retry``).
        may_have_executed: Whether this failed attempt may have run on the
            server; the pool ORs it over all attempts into the final error.
    """

    retry: bool
    mode: Mode
    may_have_executed: bool


_READ_METHODS = frozenset({"select", "ping"})
_WRITE_METHODS = frozenset({"insert", "replace", "update", "upsert", "delete"})
_CODE_METHODS = frozenset({"call", "eval", "execute"})
#: crud functions without side effects (crud routes reads to storages itself).
CRUD_READS = frozenset({
    "crud.get", "crud.select", "crud.min", "crud.max", "crud.count", "crud.len",
    "crud.storage_info", "crud.stats",
})


#: 3.x codes not in :class:`ErrorCode` (Tarantool's errcode.h numbers).
ER_SYNC_QUEUE_UNCLAIMED = 227
ER_SYNC_QUEUE_FOREIGN = 228
ER_SYNC_QUEUE_FULL = 289
ER_SYNC_TIMEOUT = 295
#: Refused before executing because this instance cannot write now.
_READONLY_CODES = frozenset({ErrorCode.ER_READONLY, ER_SYNC_QUEUE_UNCLAIMED, ER_SYNC_QUEUE_FOREIGN})
_ROLLED_BACK_CODES = frozenset({ErrorCode.ER_SYNC_ROLLBACK, ER_SYNC_QUEUE_FULL})
_MAY_COMMIT_CODES = frozenset({ErrorCode.ER_SYNC_QUORUM_TIMEOUT, ER_SYNC_TIMEOUT})


def kind_of(method_name: str) -> Kind:
    """The kind of a pool request by its method name.

    Raises:
        ValueError: An unknown method name (a bug in the pool, not a user error).
    """
    if method_name in _READ_METHODS:
        return Kind.READ
    if method_name in _WRITE_METHODS:
        return Kind.WRITE
    if method_name in _CODE_METHODS:
        return Kind.CODE
    raise ValueError(f"no retry kind for pool method {method_name!r}")


def classify(exc: BaseException) -> Failure:
    """How an attempt that raised ``exc`` failed.

    Only :class:`ServerError` and :class:`NetworkError` are failures of an
    attempt; anything else is passed to the caller by the pool untouched.
    """
    if isinstance(exc, NetworkError):
        return Failure.UNKNOWN if exc.may_have_executed else Failure.NOT_SENT
    if isinstance(exc, ServerError):
        code = exc.code
        if code in _READONLY_CODES:
            return Failure.READONLY
        if code == ErrorCode.ER_LOADING:
            return Failure.LOADING
        if code in _ROLLED_BACK_CODES:
            return Failure.ROLLED_BACK
        if code in _MAY_COMMIT_CODES:
            return Failure.MAY_COMMIT
        return Failure.ANSWERED
    raise TypeError(f"not a failure of a request: {exc!r}")


def decide(kind: Kind, mode: Mode, failure: Failure, *, idempotent: bool = False,
           attempt: int = 0, enabled: bool = True, code_may_have_run: bool = True) -> Decision:
    """Whether and where to retry after ``failure`` of attempt number ``attempt`` (0-based).

    Args:
        kind: The request's kind (:func:`kind_of`).
        mode: The mode the failed attempt was sent with.
        failure: How it failed (:func:`classify`).
        idempotent: The caller said running the request twice is harmless
            (the ``idempotent=`` keyword; crud reads are READ already): a CODE
            request refused with ER_READONLY/ER_LOADING is then retried. Its
            refusal still counts as "may have run".
        attempt: 0 for the first attempt; only the first one may be retried.
        enabled: The pool's ``retry_not_executed``.
        code_may_have_run: For an ANSWERED failure, what the answer's own
            error code says (``ServerError.may_have_executed``).
    """
    if failure == Failure.NOT_SENT:
        ran = False
    elif failure in (Failure.UNKNOWN, Failure.MAY_COMMIT):
        ran = True
    elif failure == Failure.ANSWERED:
        ran = code_may_have_run or kind == Kind.CODE
    else:  # READONLY, LOADING, ROLLED_BACK: no effect left, unless the refusal came from code
        ran = kind == Kind.CODE
    retry_mode = mode
    retry = enabled and attempt == 0
    if failure in (Failure.UNKNOWN, Failure.ANSWERED, Failure.MAY_COMMIT):
        retry = False
    elif failure != Failure.NOT_SENT and kind == Kind.CODE and not idempotent:
        retry = False
    elif failure == Failure.READONLY:
        if mode in (Mode.ANY, Mode.PREFER_RW):
            retry_mode = Mode.RW
        elif mode == Mode.RO:
            retry = False  # every instance RO may use is read-only: it would be refused again
    return Decision(retry, retry_mode, ran)
