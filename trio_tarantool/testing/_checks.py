"""Checkers over a :class:`History`: each raises an AssertionError that explains the violation.

The message names every offending request (with what each instance did with
it), the faults that were played and the replay line that runs the very same
schedule again, so a failing Hypothesis example can be rerun and read.

* :func:`check_at_most_once`: no request, and no operation the app retried,
  took effect twice; an error that said "not executed" is true.
* :func:`check_no_lost_acknowledged_writes`: an acknowledged write ran, and
  the final data still holds it unless a later (or concurrent) write
  replaced it.
* :func:`check_reads_served_by_mode`: a request in mode RW ran on a writable
  instance, one in mode RO on a read-only one (allowing for how long the pool
  may take to see a role change).
* :func:`check_liveness_after_healing`: once the world was healed for
  ``within`` seconds, the app's requests succeed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ._history import History, RecordedRequest
from ._runner import default_within

__all__ = [
    "check_at_most_once",
    "check_liveness_after_healing",
    "check_no_lost_acknowledged_writes",
    "check_reads_served_by_mode",
]

#: Methods whose repetition changes nothing more than doing them once.
DEFAULT_IDEMPOTENT = frozenset({"select", "replace", "delete", "ping"})


def _fail(history: History, what: str, problems: list[tuple[str, list[RecordedRequest]]]) -> None:
    if not problems:
        return
    lines = [f"{what}: {len(problems)} violation(s)"]
    concerned: list[RecordedRequest] = []
    for text, reqs in problems[:20]:
        lines.append(f"  ! {text}")
        for req in reqs:
            if req not in concerned:
                concerned.append(req)
    if len(problems) > 20:
        lines.append(f"  ... and {len(problems) - 20} more")
    lines.append(history.report(concerned[:40]))
    raise AssertionError("\n".join(lines))


def check_at_most_once(history: History, *, idempotent: Collection[str] = DEFAULT_IDEMPOTENT) -> None:
    """No request ran twice, no operation took effect twice, "not executed" was true.

    Three rules, on the simulator's ground truth:

    1. A write (or a ``call``/``eval``/``execute`` not sent with
       ``idempotent=True``) was executed by at most one instance, once.
    2. A request that failed saying ``may_have_executed=False`` was executed
       nowhere (not even later).
    3. An *operation*, a call and the retries the app made of it (the same
       call repeated by the same task after it failed), took effect at most
       once, unless its method is in ``idempotent`` (default: select,
       replace, delete, ping) or it was sent with ``idempotent=True``. An
       app that blindly retries an ``update`` or a ``call`` after a timeout
       breaks this rule: the first attempt may well have run.

    "Took effect" is an execution that succeeded (a DML that failed changed
    nothing); server code counts whenever it started, since it may have
    done something before failing.
    """
    problems: list[tuple[str, list[RecordedRequest]]] = []
    ops: dict[int, list[RecordedRequest]] = {}
    for req in history.requests:
        ops.setdefault(req.op, []).append(req)
        executed = [e for e in req.executions if e.executed]
        once = req.is_write or (req.runs_code and not req.idempotent)
        if once and len(executed) > 1:
            problems.append((f"#{req.id} {req.method} was executed {len(executed)} times "
                             f"(on {', '.join(e.name for e in executed)})", [req]))
        if req.error is not None and not req.may_have_executed and executed:
            problems.append((f"#{req.id} {req.method} failed with may_have_executed=False, but "
                             f"{executed[0].name} executed it at {executed[0].time:.6f}", [req]))
    for attempts in ops.values():
        first = attempts[0]
        if first.method in idempotent or first.idempotent or len(attempts) < 2:
            continue
        effects = [(req, e) for req in attempts for e in req.executions
                   if e.executed and (req.runs_code or e.outcome == "ok")]
        if len(effects) > 1:
            problems.append((
                f"operation {first.op} ({first.method} by {first.task}, {len(attempts)} attempts) took effect "
                f"{len(effects)} times: " + ", ".join(f"attempt {r.attempt} on {e.name} at {e.time:.6f}"
                                                      for r, e in effects)
                + " (a retry after an error that said the request may have executed)", attempts))
    _fail(history, "at most once", problems)


def check_no_lost_acknowledged_writes(history: History, *, spaces: Collection[str] | None = None) -> None:
    """Every acknowledged write ran, and its effect is in the final data unless superseded.

    For each write the app was told succeeded (insert, replace, update,
    upsert, delete whose primary key is known):

    * some instance executed it (the simulator's ground truth);
    * the master's final row for its key (after healing, replication caught
      up) is one a write could have left: the acknowledged write that ended
      last for that key, or any write to the key that did not end before it
      started and may have run (acknowledged, or failed saying it may have
      executed). An update's or upsert's result is known only from an
      acknowledged update's reply; a key whose possible final value is
      unknown is not judged.

    Writes made by server code (``call``/``eval``) are not visible here: give
    ``spaces`` to judge only the spaces the app writes with box requests.
    """
    problems: list[tuple[str, list[RecordedRequest]]] = []
    by_key: dict[tuple[str, Any], list[RecordedRequest]] = {}
    for req in history.requests:
        if not req.is_write or req.space is None or req.key is None:
            continue
        if spaces is not None and req.space not in spaces:
            continue
        by_key.setdefault((req.space, req.key), []).append(req)
        if req.ok and not any(e.executed and e.outcome == "ok" for e in req.executions):
            problems.append((f"#{req.id} {req.method} was acknowledged but no instance executed it", [req]))
    for (space, key), writes in by_key.items():
        acked = [w for w in writes if w.ok]
        if not acked:
            continue
        last = max(acked, key=lambda w: (w.end or 0.0, w.id))
        candidates = [w for w in writes
                      if (w.end is None or w.end >= last.start) and
                      (w.ok or any(e.effective for e in w.executions)
                       or (not w.executions and w.may_have_executed))]
        expected: list[tuple[Any, ...] | None] = []
        unknown = False
        for w in candidates:
            value = _result_of(w)
            if value is _UNKNOWN:
                unknown = True
                break
            expected.append(value)
        if unknown:
            continue
        final = history.final.get(space, {}).get(key)
        if final not in expected:
            shown = ", ".join("(deleted)" if v is None else repr(v) for v in expected)
            problems.append((
                f"{space} key {key!r}: the final row is {'(none)' if final is None else repr(final)}, "
                f"but the acknowledged #{last.id} {last.method} (ended {last.end:.6f}) and what may have "
                f"run after it allow only: {shown}", candidates))
    _fail(history, "no acknowledged write lost", problems)


_UNKNOWN: Any = object()


def _result_of(write: RecordedRequest) -> tuple[Any, ...] | Any | None:
    """The row ``write`` leaves for its key (None: deleted; _UNKNOWN: cannot tell)."""
    if write.method in ("insert", "replace"):
        return tuple(write.args[0]) if write.args else _UNKNOWN
    if write.method == "delete":
        return None
    if write.method == "update" and write.ok:
        rows = write.value
        if isinstance(rows, tuple) and len(rows) == 1 and isinstance(rows[0], tuple):
            return rows[0]
        if rows == ():  # no row with that key: nothing changed
            return _UNKNOWN
    return _UNKNOWN


def check_reads_served_by_mode(history: History, *, tolerance: float | None = None) -> None:
    """A request in mode RW ran on a writable instance, one in mode RO on a read-only one.

    Judged on the ground truth: the instance had the mode's role at some
    moment between ``tolerance`` seconds before the client wrote the request
    and the moment the instance executed it. (A pool learns of a role change
    a little later, from its probes or events, hence the tolerance, by default
    ``history.view_lag``: the pools' ``refresh_delay + probe_timeout`` plus
    round trips; and a request written to a replica that is paused, then
    promoted, runs on a master when it resumes.) PREFER_RW,
    PREFER_RO, ANY and requests on a plain connection are not judged.
    """
    lag = history.view_lag if tolerance is None else tolerance
    problems: list[tuple[str, list[RecordedRequest]]] = []
    for req in history.requests:
        if req.mode not in ("RW", "RO"):
            continue
        want = "rw" if req.mode == "RW" else "ro"
        for ex in req.executions:
            if not ex.executed:
                continue
            role = "ro" if ex.read_only else "rw"
            seen = {r.split("/")[0] for r in history.roles_during(ex.instance, ex.written_at - lag, ex.time)}
            if role == want or want in seen:
                continue
            problems.append((f"#{req.id} {req.method} in mode {req.mode} ran on {ex.name} at {ex.time:.6f}, "
                             f"which was {role} then, and from {lag:.3f}s before the client wrote it "
                             f"(at {ex.written_at:.6f})", [req]))
    _fail(history, "reads served by the mode's instances", problems)


def check_liveness_after_healing(history: History, *, within: float | None = None) -> None:
    """Once the world has been healed for ``within`` seconds, the app's requests succeed.

    Every request that started at or after ``healed_at + within`` succeeded
    (the runner's cancel at the end of the window aside), and there is at
    least one: an app that stopped asking proves nothing. ``within``
    defaults to the pools' ``view_lag`` plus round trips plus twice their
    ``socket_timeout`` (a request started just before the view caught up
    may still time out once).
    """
    bound = default_within(history.view_lag, history.request_bound) if within is None else within
    since = history.healed_at + bound
    later = [r for r in history.requests if r.start >= since]
    problems: list[tuple[str, list[RecordedRequest]]] = []
    failed = [r for r in later if not r.ok and not r.cancelled]
    for req in failed:
        problems.append((f"#{req.id} {req.method} started {req.start - history.healed_at:.6f}s after healing "
                         f"(bound {bound:.3f}s) and failed: {req.outcome}", [req]))
    if not any(r.ok for r in later):
        problems.append((f"no request started {bound:.3f}s or more after healing (at "
                         f"{history.healed_at:.6f}) and succeeded: the app must keep working through "
                         f"the liveness window (until {history.ended_at:.6f}; run_schedule's liveness= sets "
                         "its length)", []))
    _fail(history, "liveness after healing", problems)
