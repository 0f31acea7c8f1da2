"""The pool's retry policy (trio_tarantool._retry): the table, and properties by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_tarantool._errors import (
    ConnectionClosedError,
    DatabaseError,
    ErrorCode,
    NetworkError,
    TarantoolTimeoutError,
)
from trio_tarantool._retry import CRUD_READS, Failure, Kind, classify, decide, kind_of
from trio_tarantool._strategy import Mode


def test_kinds_of_the_pool_methods() -> None:
    assert {m: kind_of(m) for m in ("select", "ping")} == {"select": Kind.READ, "ping": Kind.READ}
    for method in ("insert", "replace", "update", "upsert", "delete"):
        assert kind_of(method) == Kind.WRITE
    for method in ("call", "eval", "execute"):
        assert kind_of(method) == Kind.CODE
    with pytest.raises(ValueError, match="prepare"):
        kind_of("prepare")
    assert "crud.get" in CRUD_READS and "crud.insert" not in CRUD_READS


def test_classify() -> None:
    assert classify(NetworkError("x", may_have_executed=False)) == Failure.NOT_SENT
    assert classify(NetworkError("x", may_have_executed=True)) == Failure.UNKNOWN
    assert classify(TarantoolTimeoutError("x", may_have_executed=True)) == Failure.UNKNOWN
    assert classify(ConnectionClosedError("x", may_have_executed=False)) == Failure.NOT_SENT
    assert classify(DatabaseError(ErrorCode.ER_READONLY, "ro")) == Failure.READONLY
    assert classify(DatabaseError(ErrorCode.ER_LOADING, "loading")) == Failure.LOADING
    assert classify(DatabaseError(ErrorCode.ER_TUPLE_FOUND, "dup")) == Failure.ANSWERED
    with pytest.raises(TypeError):
        classify(ValueError("not a request failure"))


def test_classify_synchronous_replication_errors() -> None:
    """The codes Tarantool 3.8 answers around elections and synchronous spaces."""
    assert classify(DatabaseError(ErrorCode.ER_SYNC_ROLLBACK, "rollback")) == Failure.ROLLED_BACK
    assert classify(DatabaseError(289, "queue full")) == Failure.ROLLED_BACK
    assert classify(DatabaseError(ErrorCode.ER_SYNC_QUORUM_TIMEOUT, "quorum")) == Failure.MAY_COMMIT
    assert classify(DatabaseError(295, "detached, keeps waiting")) == Failure.MAY_COMMIT
    assert classify(DatabaseError(227, "queue unclaimed")) == Failure.READONLY
    assert classify(DatabaseError(228, "queue foreign")) == Failure.READONLY


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("idempotent", [False, True])
def test_a_quorum_timeout_is_never_retried_and_may_have_committed(kind: Kind, idempotent: bool) -> None:
    for code in (ErrorCode.ER_SYNC_QUORUM_TIMEOUT, 295):
        d = decide(kind, Mode.RW, classify(DatabaseError(code, "quorum")), idempotent=idempotent)
        assert (d.retry, d.may_have_executed) == (False, True)


def test_a_rolled_back_write_is_retried_as_not_executed() -> None:
    d = decide(Kind.WRITE, Mode.RW, classify(DatabaseError(ErrorCode.ER_SYNC_ROLLBACK, "rb")))
    assert (d.retry, d.mode, d.may_have_executed) == (True, Mode.RW, False)
    d = decide(Kind.CODE, Mode.RW, Failure.ROLLED_BACK)
    assert (d.retry, d.may_have_executed) == (False, True)


# The table of the module docstring, for mode ANY, first attempt, retries on.
TABLE = {
    # (kind, idempotent, failure): (retry, retry mode, may have executed)
    (Kind.READ, False, Failure.NOT_SENT): (True, Mode.ANY, False),
    (Kind.READ, False, Failure.READONLY): (True, Mode.RW, False),
    (Kind.READ, False, Failure.LOADING): (True, Mode.ANY, False),
    (Kind.WRITE, False, Failure.NOT_SENT): (True, Mode.ANY, False),
    (Kind.WRITE, False, Failure.READONLY): (True, Mode.RW, False),
    (Kind.WRITE, False, Failure.LOADING): (True, Mode.ANY, False),
    (Kind.CODE, False, Failure.NOT_SENT): (True, Mode.ANY, False),
    (Kind.CODE, False, Failure.READONLY): (False, Mode.ANY, True),
    (Kind.CODE, False, Failure.LOADING): (False, Mode.ANY, True),
    (Kind.CODE, True, Failure.NOT_SENT): (True, Mode.ANY, False),
    (Kind.CODE, True, Failure.READONLY): (True, Mode.RW, True),
    (Kind.CODE, True, Failure.LOADING): (True, Mode.ANY, True),
    (Kind.READ, False, Failure.ROLLED_BACK): (True, Mode.ANY, False),
    (Kind.WRITE, False, Failure.ROLLED_BACK): (True, Mode.ANY, False),
    (Kind.CODE, False, Failure.ROLLED_BACK): (False, Mode.ANY, True),
    (Kind.CODE, True, Failure.ROLLED_BACK): (True, Mode.ANY, True),
    (Kind.READ, False, Failure.MAY_COMMIT): (False, Mode.ANY, True),
    (Kind.WRITE, False, Failure.MAY_COMMIT): (False, Mode.ANY, True),
    (Kind.CODE, False, Failure.MAY_COMMIT): (False, Mode.ANY, True),
    (Kind.CODE, True, Failure.MAY_COMMIT): (False, Mode.ANY, True),
}


@pytest.mark.parametrize(("key", "expected"), sorted(TABLE.items(), key=str))
def test_the_documented_table(key: tuple[Kind, bool, Failure], expected: tuple[bool, Mode, bool]) -> None:
    kind, idempotent, failure = key
    decision = decide(kind, Mode.ANY, failure, idempotent=idempotent)
    if expected[0]:
        assert (decision.retry, decision.mode, decision.may_have_executed) == expected
    else:
        assert (decision.retry, decision.may_have_executed) == (False, expected[2])


def test_a_call_refused_as_read_only_is_not_retried_and_may_have_run() -> None:
    """The defect of issue 8 item 3: a CALL's ER_READONLY may come after its body did something."""
    decision = decide(kind_of("call"), Mode.ANY, classify(DatabaseError(ErrorCode.ER_READONLY, "ro")))
    assert decision.retry is False
    assert decision.may_have_executed is True


def test_where_a_read_only_refusal_is_retried() -> None:
    ro = Failure.READONLY
    assert decide(Kind.WRITE, Mode.ANY, ro).mode == Mode.RW
    assert decide(Kind.WRITE, Mode.PREFER_RW, ro).mode == Mode.RW
    assert decide(Kind.WRITE, Mode.RW, ro).mode == Mode.RW
    assert decide(Kind.WRITE, Mode.PREFER_RO, ro).mode == Mode.PREFER_RO
    assert decide(Kind.WRITE, Mode.RO, ro).retry is False  # every RO instance would refuse it


kinds = st.sampled_from(list(Kind))
modes = st.sampled_from(list(Mode))
failures = st.sampled_from(list(Failure))


@given(kind=kinds, mode=modes, failure=failures, idempotent=st.booleans(),
       attempt=st.integers(0, 3), enabled=st.booleans(), code_may_have_run=st.booleans())
def test_policy_properties(kind: Kind, mode: Mode, failure: Failure, idempotent: bool,
                           attempt: int, enabled: bool, code_may_have_run: bool) -> None:
    d = decide(kind, mode, failure, idempotent=idempotent, attempt=attempt, enabled=enabled,
               code_may_have_run=code_may_have_run)
    # At most one retry, and none when retries are off.
    if attempt > 0 or not enabled:
        assert not d.retry
    # Never retried after an outcome that may be the request's own (answer, lost after writing).
    if failure in (Failure.UNKNOWN, Failure.ANSWERED, Failure.MAY_COMMIT):
        assert not d.retry
    # A synchronous transaction that may still commit may have executed, whatever the kind.
    if failure == Failure.MAY_COMMIT:
        assert d.may_have_executed
    # Retried only if it surely did not run, or the caller said running it twice is fine.
    if d.retry:
        assert not d.may_have_executed or (kind == Kind.CODE and idempotent)
    # A request that never left is retried whatever its kind (first attempt, retries on).
    if failure == Failure.NOT_SENT:
        assert d.may_have_executed is False
        assert d.retry == (enabled and attempt == 0)
    # Code that was refused may have run part of its body.
    if kind == Kind.CODE and failure in (Failure.READONLY, Failure.LOADING, Failure.ANSWERED,
                                         Failure.ROLLED_BACK):
        assert d.may_have_executed
    # Plain code is never retried after a refusal.
    if kind == Kind.CODE and not idempotent and failure != Failure.NOT_SENT:
        assert not d.retry
    # The retry goes to the same mode, or to RW for a read-only refusal under ANY/PREFER_RW.
    if d.retry:
        if failure == Failure.READONLY and mode in (Mode.ANY, Mode.PREFER_RW):
            assert d.mode == Mode.RW
        else:
            assert d.mode == mode
    # The answer's own code decides for READ/WRITE answers.
    if failure == Failure.ANSWERED and kind != Kind.CODE:
        assert d.may_have_executed == code_may_have_run
