"""What an app did during a schedule, and what the simulated world really did: the History.

The app talks to the replicaset through a :class:`RecordedClient` (a
``ConnectionPool`` or ``Connection`` wrapper that :class:`Recorder` hands
out). Each call it makes becomes a :class:`RecordedRequest`: method, mode,
space and key, when it started and ended, its value or exception (with
``may_have_executed``), and which logical operation it belongs to (a call
repeated by the same task after it failed is a retry: the same operation).

Server side, the runner wraps each simulated instance's ``handle`` and notes
every request it logs (``sim.RequestRecord``: executed or refused, read-only
then, the client write that carried it). When the run is over each server
record is matched to the recorded request it came from (:meth:`Recorder.build`):

* by content: request type, space, index and key (or tuple; function and
  arguments for ``call``/``eval``) must be equal;
* by time: the client wrote it (``written_seq``, the world-wide number of
  the network write) after the request started; a request still in flight at
  that write is preferred over one that had already ended, and among
  several identical requests in flight, the one with the fewest executions
  so far. Identical concurrent requests cannot be told apart on the wire;
  this assignment never invents a second execution of one of them.

Requests the pool makes for itself (probes, watchers) match nothing and are
left out. Keys with extension types (decimal, uuid, datetime) are compared
as the simulator decodes them and may not be matched: such requests show no
executions.
"""

from __future__ import annotations

import enum
import inspect
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from trio_tarantool._iproto import _constants as C

if TYPE_CHECKING:
    from trio_tarantool.sim import FakeInstance, Replicaset

    from ._schedule import Schedule

__all__ = ["Execution", "History", "RecordedClient", "RecordedRequest", "Recorder"]

#: Recorded methods -> the IPROTO request type name the simulator logs.
_WIRE = {"select": "SELECT", "insert": "INSERT", "replace": "REPLACE", "update": "UPDATE",
         "upsert": "UPSERT", "delete": "DELETE", "call": "CALL", "eval": "EVAL",
         "execute": "EXECUTE", "ping": "PING"}
#: Methods that write a space.
WRITES = frozenset({"insert", "replace", "update", "upsert", "delete"})
#: Methods that run server code (their effect is the code's).
CODE = frozenset({"call", "eval", "execute"})
#: Options that are not part of a request's identity.
_NOT_IDENTITY = frozenset({"on_push", "on_push_ctx"})
#: Tarantool's ITER_ALL.
_ITER_ALL = 2

Hashable = Any


def freeze(value: Any) -> Hashable:
    """A hashable, comparable copy of a msgpack-like value (lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, enum.Enum):
        return value.name
    return value


@dataclass(frozen=True)
class Execution:
    """One handling of a recorded request by a simulated instance (ground truth).

    Attributes:
        instance: The instance's index in ``addrs``.
        name: Its name (``tt1`` ...).
        time: Virtual time it handled the request.
        executed: It ran (False: refused unexecuted, e.g. ER_READONLY on a DML).
        outcome: ``"ok"`` or ``"error <code>"``.
        read_only: The instance was read-only then (a replica, or not the leader).
        written_at: When the client wrote the request (virtual time).
    """

    instance: int
    name: str
    time: float
    executed: bool
    outcome: str
    read_only: bool
    written_at: float

    @property
    def effective(self) -> bool:
        """It changed something: ran and succeeded (a DML that failed was atomic)."""
        return self.executed and self.outcome == "ok"


@dataclass
class RecordedRequest:
    """One call the app made through a :class:`RecordedClient`, and what became of it.

    Attributes:
        id: Its number in the history (from 1, in start order).
        task: The trio task that made it (name and a per-run number).
        method: ``select``, ``insert``, ``replace``, ``update``, ``upsert``,
            ``delete``, ``call``, ``eval``, ``execute`` or ``ping``.
        args: Its positional arguments (after the space, for box requests).
        mode: The pool mode's name (``"RW"``, ``"RO"``, ...), None on a connection.
        space: The space's name (box requests), else None.
        key: The primary key it reads or writes (a tuple), when known.
        idempotent: Sent with ``idempotent=True``.
        op: Its logical operation: a call repeated by the same task after it
            failed shares the failed call's ``op``.
        attempt: 1 for the first call of an operation, 2 for its first retry...
        start: Virtual time the app made the call.
        start_seq: The network's write count then (orders it among writes).
        end: Virtual time it returned or raised (None: it never ended).
        end_seq: The network's write count then.
        value: The response's rows on success.
        error: The exception it raised (None on success or cancellation).
        cancelled: The app cancelled it (or the runner did, at the end).
        executions: What the instances did with it (see :class:`Execution`).
    """

    id: int
    task: str
    method: str
    args: tuple[Any, ...]
    mode: str | None
    space: str | None
    key: tuple[Any, ...] | None
    idempotent: bool
    op: int
    attempt: int
    start: float
    start_seq: int
    end: float | None = None
    end_seq: int | None = None
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False
    executions: list[Execution] = field(default_factory=list)
    #: (wire name, target, content) the server side is matched on; None: not matched.
    fingerprint: tuple[Any, ...] | None = None
    #: The call's identity (method, arguments, options) and task number: retries share them.
    _identity: Any = field(default=None, repr=False, compare=False)
    _task_no: int = field(default=0, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """It returned a value."""
        return self.end is not None and self.error is None and not self.cancelled

    @property
    def may_have_executed(self) -> bool:
        """What the app was told: True on success, after a cancel, or when the error says so."""
        if self.ok or self.cancelled or self.end is None:
            return True
        return bool(getattr(self.error, "may_have_executed", True))

    @property
    def is_write(self) -> bool:
        return self.method in WRITES

    @property
    def runs_code(self) -> bool:
        return self.method in CODE

    @property
    def outcome(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.end is None:
            return "never ended"
        if self.error is None:
            return f"ok {self.value!r}"[:120]
        may = getattr(self.error, "may_have_executed", None)
        return f"{type(self.error).__name__}(may_have_executed={may}): {self.error}"[:200]

    def describe(self) -> str:
        """One line: ``#7 [task 2 op 5/2] RW replace kv (1, 'a'): ok ...``."""
        where = f" {self.space}" if self.space else ""
        args = ", ".join(repr(a) for a in self.args)
        if len(args) > 80:
            args = args[:77] + "..."
        end = "..." if self.end is None else f"{self.end:.6f}"
        return (f"#{self.id} [{self.task}, op {self.op} attempt {self.attempt}] "
                f"{self.mode or '-'} {self.method}{where}({args}) {self.start:.6f}-{end}: {self.outcome}")


@dataclass
class History:
    """Everything one :func:`run_schedule` saw: the app's requests and the world's truth.

    Attributes:
        schedule: The schedule that was played.
        seed: The world's seed.
        n: Instances in the replicaset.
        version: The Tarantool version the simulator played.
        election: Raft elections decided the leader.
        requests: Every recorded request, in start order.
        faults: ``(virtual time, what)`` of each step played (no-ops say so).
        roles: ``(virtual time, roles)`` each time the truth changed: per
            instance ``rw``, ``ro``, ``down``, or ``rw/paused``/``ro/paused``.
        healed_at: When everything was healed and one master stood.
        ended_at: When the app was stopped (the end of the liveness window).
        final: The master's rows at the end, per space written: ``{space:
            {primary key: row}}`` (keys and rows as tuples).
        view_lag: How long a pool of the app may take to see a role change
            (max over its pools of ``probe_timeout + refresh_delay``, plus the
            network's round trips); the default tolerance of
            :func:`check_reads_served_by_mode`.
        request_bound: The longest a request may take (max over its clients of
            twice ``socket_timeout`` when set).
        trace: The simulator's trace (ground-truth changes, faults).
        replay: A Python expression that runs this very schedule again.
    """

    schedule: Schedule
    seed: int
    n: int
    version: str
    election: bool
    requests: list[RecordedRequest]
    faults: list[tuple[float, str]]
    roles: list[tuple[float, tuple[str, ...]]]
    healed_at: float
    ended_at: float
    final: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]
    view_lag: float
    request_bound: float
    trace: list[str]
    replay: str

    def role_at(self, instance: int, time: float) -> str:
        """The instance's role at ``time`` (from the recorded timeline)."""
        role = self.roles[0][1][instance] if self.roles else "?"
        for at, roles in self.roles:
            if at > time:
                break
            role = roles[instance]
        return role

    def roles_during(self, instance: int, start: float, end: float) -> set[str]:
        """Every role the instance had at some moment of ``[start, end]``."""
        seen = {self.role_at(instance, start)}
        seen.update(roles[instance] for at, roles in self.roles if start <= at <= end)
        return seen

    def report(self, requests: Sequence[RecordedRequest] = (), tail: int = 40) -> str:
        """The replay line, the faults, the given requests with their executions, the roles."""
        lines = [f"replay: {self.replay}", "faults played:"]
        lines += [f"  {at:11.6f} {what}" for at, what in self.faults] or ["  (none)"]
        lines.append(f"healed at {self.healed_at:.6f}, app stopped at {self.ended_at:.6f}")
        if requests:
            lines.append("requests concerned:")
            for req in requests:
                lines.append(f"  {req.describe()}")
                for ex in req.executions:
                    lines.append(f"      {ex.time:11.6f} {ex.name} {'EXECUTED' if ex.executed else 'refused'} "
                                 f"{ex.outcome} (read_only={ex.read_only}, written at {ex.written_at:.6f})")
        lines.append(f"roles (last {tail} changes):")
        lines += [f"  {at:11.6f} {' '.join(roles)}" for at, roles in self.roles[-tail:]]
        return "\n".join(lines)


class RecordedClient:
    """A pool (or connection) whose box requests are recorded in the :class:`History`.

    ``select``, ``insert``, ``replace``, ``update``, ``upsert``, ``delete``,
    ``call``, ``eval``, ``execute`` and ``ping`` are recorded and then passed
    on unchanged (same arguments, same result, same exception); any other
    attribute is the wrapped object's (not recorded).
    """

    def __init__(self, recorder: Recorder, target: Any) -> None:
        self._recorder = recorder
        self._target = target
        recorder._note_client(target)

    @property
    def wrapped(self) -> Any:
        """The pool or connection underneath."""
        return self._target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __repr__(self) -> str:
        return f"<RecordedClient of {self._target!r}>"

    async def select(self, *args: Any, **kwargs: Any) -> Any:
        """``select`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "select", args, kwargs)

    async def insert(self, *args: Any, **kwargs: Any) -> Any:
        """``insert`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "insert", args, kwargs)

    async def replace(self, *args: Any, **kwargs: Any) -> Any:
        """``replace`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "replace", args, kwargs)

    async def update(self, *args: Any, **kwargs: Any) -> Any:
        """``update`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "update", args, kwargs)

    async def upsert(self, *args: Any, **kwargs: Any) -> Any:
        """``upsert`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "upsert", args, kwargs)

    async def delete(self, *args: Any, **kwargs: Any) -> Any:
        """``delete`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "delete", args, kwargs)

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        """``call`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "call", args, kwargs)

    async def eval(self, *args: Any, **kwargs: Any) -> Any:
        """``eval`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "eval", args, kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """``execute`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "execute", args, kwargs)

    async def ping(self, *args: Any, **kwargs: Any) -> Any:
        """``ping`` of the wrapped object, recorded."""
        return await self._recorder._perform(self._target, "ping", args, kwargs)


@dataclass
class _ServerRecord:
    instance: int
    inst: FakeInstance
    index: int
    fingerprint: tuple[Any, ...]


class Recorder:
    """Hands the app recorded clients and notes what the instances do (one per run).

    The app receives it as its second argument::

        async def app(addrs, recorder):
            async with recorder.pool(addrs, socket_timeout=0.5) as pool:
                await pool.replace("kv", [1, "a"])

    Attributes:
        replicaset: The simulated replicaset (for what the app's set-up needs).
        healed: True once the schedule is over and the world healed.
    """

    def __init__(self, replicaset: Replicaset) -> None:
        self.replicaset = replicaset
        self.healed = False
        self._healed_event = trio.Event()
        self._requests: list[RecordedRequest] = []
        self._server: list[_ServerRecord] = []
        self._tasks: dict[trio.lowlevel.Task, int] = {}
        #: Per task: call identity -> (op, attempt, last attempt failed).
        self._chains: dict[int, dict[Hashable, tuple[int, int, bool]]] = {}
        self._ops = itertools.count(1)
        self.view_lag = 0.0
        self.request_bound = 0.0

    # -- for the app ---------------------------------------------------------------------------
    @asynccontextmanager
    async def pool(self, addrs: Sequence[Mapping[str, Any]], **options: Any) -> AsyncIterator[RecordedClient]:
        """``trio_tarantool.open_pool(addrs, **options)``, recorded."""
        from trio_tarantool import open_pool

        async with open_pool(addrs, **options) as pool:
            yield RecordedClient(self, pool)

    @asynccontextmanager
    async def connect(self, host: str, port: int, **options: Any) -> AsyncIterator[RecordedClient]:
        """``trio_tarantool.connect(host, port, **options)``, recorded (no mode)."""
        from trio_tarantool import connect

        async with connect(host, port, **options) as conn:
            yield RecordedClient(self, conn)

    def wrap(self, client: Any) -> RecordedClient:
        """Record the requests made through a pool or connection the app opened itself."""
        return RecordedClient(self, client)

    async def wait_healed(self) -> None:
        """Wait until the schedule is over and every fault healed (the liveness window)."""
        await self._healed_event.wait()

    # -- for the runner ----------------------------------------------------------------------------
    def set_healed(self) -> None:
        self.healed = True
        self._healed_event.set()

    def watch_instance(self, index: int, inst: FakeInstance) -> None:
        """Note every request ``inst`` handles (wraps ``inst.handle`` on this object only)."""
        original = inst.handle

        def handle(conn: Any, header: dict[int, Any], body: dict[int, Any]) -> Any:
            at = len(inst.request_log)
            result = original(conn, header, body)
            if len(inst.request_log) > at:
                fp = _server_fingerprint(inst.request_log[at].name, body)
                if fp is not None:
                    self._server.append(_ServerRecord(index, inst, at, fp))
            return result

        inst.handle = handle  # type: ignore[method-assign]

    def build(self) -> list[RecordedRequest]:
        """Match every server record to its request (see the module docstring)."""
        by_fp: dict[Hashable, list[RecordedRequest]] = {}
        for req in self._requests:
            req.executions.clear()
            if req.fingerprint is not None:
                by_fp.setdefault(req.fingerprint, []).append(req)
        records = sorted(
            ((rec.inst.request_log[rec.index], rec) for rec in self._server),
            key=lambda pair: (pair[0].written_seq, pair[0].time),
        )
        for log, rec in records:
            candidates = [r for r in by_fp.get(rec.fingerprint, ()) if r.start_seq < log.written_seq]
            if not candidates:
                continue
            live = [r for r in candidates if r.end_seq is None or r.end_seq >= log.written_seq]
            if live:
                chosen = min(live, key=lambda r: (sum(e.executed for e in r.executions), r.start_seq))
            else:  # written just after its caller gave up (the same instant)
                chosen = max(candidates, key=lambda r: (r.end_seq or 0, r.start_seq))
            chosen.executions.append(Execution(
                rec.instance, rec.inst.name, log.time, log.executed, log.outcome, log.read_only,
                log.written_at))
        return list(self._requests)

    # -- recording -----------------------------------------------------------------------------------
    def _note_client(self, target: Any) -> None:
        refresh = getattr(target, "refresh_delay", None)
        probe = getattr(target, "probe_timeout", None)
        if isinstance(refresh, (int, float)) and isinstance(probe, (int, float)):
            self.view_lag = max(self.view_lag, float(refresh) + float(probe))
        timeout = getattr(target, "socket_timeout", None)
        if isinstance(timeout, (int, float)):
            self.request_bound = max(self.request_bound, 2 * float(timeout))

    def _task_number(self) -> int:
        task = trio.lowlevel.current_task()
        if task not in self._tasks:
            self._tasks[task] = len(self._tasks) + 1
        return self._tasks[task]

    async def _perform(self, target: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        req = self._start(target, method, args, kwargs)
        network = self.replicaset.world.network
        try:
            result = await getattr(target, method)(*args, **kwargs)
        except trio.Cancelled:
            req.cancelled = True
            req.end, req.end_seq = trio.current_time(), network.write_count
            self._chain_end(req, failed=True)
            raise
        except BaseException as exc:
            req.error = exc
            req.end, req.end_seq = trio.current_time(), network.write_count
            self._chain_end(req, failed=True)
            raise
        req.end, req.end_seq = trio.current_time(), network.write_count
        req.value = freeze(list(result)) if _iterable(result) else result
        self._chain_end(req, failed=False)
        return result

    def _start(self, target: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RecordedRequest:
        mode = kwargs.get("mode", _default_mode(target, method))
        mode_name = None if mode is None else getattr(mode, "name", str(mode))
        task = self._task_number()
        identity = (method, freeze(args),
                    freeze({k: v for k, v in kwargs.items() if k not in _NOT_IDENTITY}))
        chains = self._chains.setdefault(task, {})
        previous = chains.get(identity)
        if previous is not None and previous[2]:
            op, attempt = previous[0], previous[1] + 1
        else:
            op, attempt = next(self._ops), 1
        chains[identity] = (op, attempt, False)
        space, key, fingerprint, rest = self._describe(method, args, kwargs)
        req = RecordedRequest(
            id=len(self._requests) + 1, task=f"task {task}", method=method, args=rest,
            mode=mode_name, space=space, key=key, idempotent=bool(kwargs.get("idempotent", False)),
            op=op, attempt=attempt, start=trio.current_time(),
            start_seq=self.replicaset.world.network.write_count, fingerprint=fingerprint,
            _identity=identity, _task_no=task,
        )
        self._requests.append(req)
        return req

    def _chain_end(self, req: RecordedRequest, *, failed: bool) -> None:
        self._chains[req._task_no][req._identity] = (req.op, req.attempt, failed)

    def _describe(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[str | None, tuple[Any, ...] | None, tuple[Any, ...] | None, tuple[Any, ...]]:
        """(space name, primary key, fingerprint, args after the space) of a call."""
        wire = _WIRE[method]
        if method in CODE:
            if not args:
                return None, None, None, ()
            if method == "execute":
                return None, None, None, tuple(args)
            return None, None, (wire, str(args[0]), freeze(args[1:])), tuple(args)
        if method == "ping":
            return None, None, None, tuple(args)
        if not args:
            return None, None, None, ()
        space = self._space(args[0])
        rest = tuple(args[1:])
        if space is None:
            return str(args[0]), None, None, rest
        index = kwargs.get("index", 0)
        index_id = self._index_id(space, index)
        if method in ("insert", "replace", "upsert"):
            tup = list(rest[0]) if rest and _iterable(rest[0]) else None
            if tup is None:
                return space.name, None, None, rest
            key = freeze(space.primary.key_of(tup)) if space.indexes else None
            return space.name, key, (wire, space.id, freeze(tup)), rest
        raw = rest[0] if rest else None
        key_list = [] if raw is None else list(raw) if isinstance(raw, (list, tuple)) else [raw]
        pk = freeze(key_list) if index_id == 0 else None
        if index_id is None:
            return space.name, None, None, rest
        return space.name, pk, (wire, space.id, index_id, freeze(key_list)), rest

    def _space(self, name: Any) -> Any:
        db = self.replicaset.instances[0].db
        try:
            return db.space(name) if isinstance(name, int) else db.space_by_name(str(name))
        except Exception:
            return None

    @staticmethod
    def _index_id(space: Any, index: Any) -> int | None:
        if isinstance(index, int):
            return index
        for idx in space.indexes:
            if idx.name == index:
                return int(idx.id)
        return None

    def final_rows(self, spaces: Sequence[str]) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
        """The master's rows of ``spaces`` (by primary key); empty if there is no master."""
        rs = self.replicaset
        if rs.master is None:
            return {}
        db = rs.instances[rs.master].db
        out: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
        for name in spaces:
            try:
                space = db.space_by_name(name)
            except Exception:
                continue
            if not space.indexes:
                continue
            rows = space.select(0, _ITER_ALL, [], 0, 2**32)
            out[name] = {freeze(space.primary.key_of(row)): freeze(row) for row in rows}
        return out


def _iterable(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (
        hasattr(value, "__iter__") and not isinstance(value, (str, bytes, dict)))


def _default_mode(target: Any, method: str) -> Any:
    """The mode a pool method uses when none is given (None: a connection, or required)."""
    fn: Callable[..., Any] | None = getattr(type(target), method, None)
    if fn is None:
        return None
    try:
        param = inspect.signature(fn).parameters.get("mode")
    except (TypeError, ValueError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def _server_fingerprint(name: str, body: dict[int, Any]) -> tuple[Any, ...] | None:
    """The content a server-side request is matched on (None: not matchable)."""
    if name in ("CALL", "CALL_16"):
        return ("CALL", str(body.get(C.FUNCTION_NAME)), freeze(body.get(C.TUPLE, [])))
    if name == "EVAL":
        return ("EVAL", str(body.get(C.EXPR)), freeze(body.get(C.TUPLE, [])))
    if name in ("INSERT", "REPLACE", "UPSERT"):
        return (name, body.get(C.SPACE_ID), freeze(body.get(C.TUPLE, [])))
    if name in ("SELECT", "UPDATE", "DELETE"):
        return (name, body.get(C.SPACE_ID), body.get(C.INDEX_ID, 0), freeze(body.get(C.KEY, [])))
    return None
