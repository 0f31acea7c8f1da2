"""A simulated Tarantool instance that speaks real IPROTO over the fake network.

Each accepted connection gets a greeting with a fresh salt, then a loop that
parses packets and answers them. Requests are handled in the order they
arrive and, unless a call/eval handler is a coroutine function, without
yielding, so pipelined DML executes in order exactly as Tarantool's fibers
would. Async handlers run in their own task, so a slow call does not block a
``box.info`` probe pipelined behind it (again like Tarantool).

Ground truth (read-only flag, status, up/down, paused) lives here; the
replicaset changes it and the trace records every change.
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid as _uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from trio_tarantool._iproto import _constants as C

from . import _iproto_server as P
from ._net import FakeSocket, Listener
from ._session import CallContext, ServerConn, Watch
from ._spaces import ER_ACCESS_DENIED, ER_READONLY, BoxError, Change, Database, Field, Space
from ._txn import Transactions, Txn, out_of_stream_error

if TYPE_CHECKING:
    from ._world import World

ER_PROC_LUA = 32
ER_NO_SUCH_PROC = 33
ER_NO_SUCH_USER = 45
ER_PASSWORD_MISMATCH = 47
ER_UNKNOWN_REQUEST_TYPE = 48
ER_WRONG_SCHEMA_VERSION = 109
ER_VIEW_IS_RO = 113
ER_LOADING = 116
ER_UNSUPPORTED = 5
ER_ILLEGAL_PARAMS_BROADCAST = 1


def uuid_ext(text: str) -> msgpack.ExtType:
    """A UUID as the MP_UUID extension (how 3.x sends ``leader_uuid`` and ``box.id``'s uuids)."""
    return msgpack.ExtType(2, _uuid.UUID(text).bytes)


@dataclass
class ElectionState:
    """One instance's view of Raft: term, its role, the leader it knows, the synchro queue owner."""

    term: int = 1
    #: ``leader``, ``follower`` or ``candidate``.
    role: str = "follower"
    #: The leader's instance id (0: none known).
    leader_id: int = 0
    queue_owner_id: int = 0
    queue_owner_uuid: str = ""
    queue_term: int = 0

#: Requests that touch data; they get ER_LOADING while the instance loads.
_DATA_REQUESTS = frozenset(
    {C.SELECT, C.INSERT, C.REPLACE, C.UPDATE, C.DELETE, C.UPSERT, C.CALL, C.CALL_16,
     C.EVAL, C.EXECUTE, C.PREPARE}
)
_WRITE_REQUESTS = frozenset({C.INSERT, C.REPLACE, C.UPDATE, C.DELETE, C.UPSERT})

Handler = Callable[..., Any]
"""A call/eval handler: ``handler(ctx, *args)`` returning a list of Lua return
values (or None for none), or a coroutine that does. Raise :class:`BoxError`
to answer with an error."""


@dataclass(frozen=True)
class RequestRecord:
    """One request an instance handled: when, from which connection, and how it ended.

    ``outcome`` is ``"ok"``, ``"error <code>"``, ``"pending"`` (an async
    handler still running; it is replaced when the handler finishes) or
    ``"none"`` (requests without a reply, e.g. WATCH). ``executed`` says
    whether the request ran (False when refused by ER_READONLY, ER_LOADING,
    a wrong schema version, access rules or an unknown request type). A
    CALL/EVAL whose body started counts as executed whatever its error,
    ER_READONLY from a write inside the body included: a Lua function may
    have had side effects before that write, as on a real server.

    ``written_seq`` and ``written_at`` say when the client wrote (the end of)
    this request: its number in the network's world-wide order of writes
    (:attr:`sim.Network.write_count`) and the virtual time. With link delay a
    request is handled later than it was written; these tell "written before
    the client's close() returned" from "written after".
    """

    time: float
    conn: str
    sync: int
    name: str
    target: str
    outcome: str
    executed: bool
    read_only: bool
    written_seq: int = 0
    written_at: float = 0.0


#: Error codes with which the instance refuses a request without running it
#: (and, for transaction requests, the refusals of BEGIN/COMMIT/statements of
#: an aborted transaction: nothing of theirs was applied).
_NOT_EXECUTED = frozenset({7, 42, 48, 109, 116, 20, 79, 97, 230, 231})

#: IPROTO_ID features (3.8's numbering) the simulator implements: streams,
#: transactions, error extension, watchers, watch_once. Not announced:
#: pagination (4), space and index names (5), tuple extensions (7-9),
#: is_sync (11), insert_arrow (12).
FEATURES_3X = (C.FEATURE_STREAMS, C.FEATURE_TRANSACTIONS, C.FEATURE_ERROR_EXTENSION,
               C.FEATURE_WATCHERS, C.FEATURE_WATCH_ONCE)
#: The protocol version Tarantool 3.8 reports in its ID reply.
PROTOCOL_VERSION_3X = 10


@dataclass
class InstanceConfig:
    """Static settings of one simulated instance."""

    version: str = "2.6.0"
    #: None: a 2.6 server (IPROTO_ID is an unknown request). An int: the
    #: protocol version a 2.10+ server reports in its ID reply.
    protocol_version: int | None = None
    features: tuple[int, ...] = (0, 1, 2, 3)
    users: dict[str, str] = field(default_factory=dict)
    #: When False, unauthenticated ("guest") sessions may only ping.
    guest_access: bool = True
    #: Virtual seconds an instance reports ER_LOADING after (re)start.
    loading_time: float = 0.0
    #: Register the crud.* functions (single-storage crud call interface).
    crud: bool = False

    @property
    def major(self) -> int:
        """The major version number of ``version`` (2 for "2.6.0")."""
        try:
            return int(self.version.split(".", 1)[0])
        except ValueError:
            return 2

    def has(self, feature: int) -> bool:
        """Whether the instance plays a server that announces ``feature`` in IPROTO_ID."""
        return self.protocol_version is not None and feature in self.features


class FakeInstance:
    """One simulated Tarantool server.

    Ground-truth attributes: ``up`` (process alive and listening),
    ``paused`` (frozen: accepts, never answers), ``status``
    (``running``/``loading``/``orphan``), ``read_only`` (``box.cfg.read_only``).
    ``requests`` counts handled requests by type name.
    """

    def __init__(
        self,
        world: World,
        name: str,
        host: str,
        port: int,
        *,
        instance_id: int = 1,
        config: InstanceConfig | None = None,
    ) -> None:
        self.world = world
        self.name = name
        self.host = host
        self.port = port
        self.id = instance_id
        self.config = config or InstanceConfig()
        self.version = self.config.version
        self.uuid = world.uuid()
        self.db = Database()
        self.db.major = self.config.major
        self.functions: dict[str, Handler] = {}
        self.evals: dict[str, Handler] = {}
        self.requests: Counter[str] = Counter()
        #: Every handled request, in order (see :class:`RequestRecord`).
        self.request_log: list[RequestRecord] = []
        self.connections: list[ServerConn] = []
        self.lsn = 0
        self.up = False
        self.paused = False
        self.status = "running"
        self.read_only = False
        self.started_at = 0.0
        #: Called with every committed change (the replicaset ships it).
        #: Called with every committed change (a tuple of them for a committed
        #: transaction: a replica applies those at once, as Tarantool does).
        self.on_change: Callable[[FakeInstance, Change | tuple[Change, ...]], None] | None = None
        #: Rows of the transaction being committed (shipped together at its end).
        self._txn_batch: list[Change] | None = None
        self._running = trio.Event()
        self._running.set()
        self._listener: Listener | None = None
        self._conn_counter = 0
        self._conns_changed = trio.lowlevel.ParkingLot()
        self._generation = 0  # bumped by every start
        #: Set by ``_call`` when a call/eval body starts (``handle`` is synchronous).
        self._body_started = False
        #: Open interactive transactions (streams), see :mod:`sim._txn`.
        self.txns = Transactions(self.db)
        #: Raft state (``election=True`` replicasets, see :class:`sim.Replicaset`):
        #: None when elections are off.
        self.election: ElectionState | None = None
        #: Values of watched keys set by ``box.broadcast`` (and ``box.shutdown``).
        self.broadcasts: dict[str, Any] = {}
        #: Called by ``box.ctl.promote()`` (the replicaset runs the election).
        self.on_promote: Callable[[FakeInstance], Awaitable[None]] | None = None
        self._install_builtins()
        if self.config.crud:
            self.install_crud()

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        if self.paused:
            state = "paused"
        return (
            f"<FakeInstance {self.name} {self.host}:{self.port} {state} "
            f"status={self.status} ro={self.ro}>"
        )

    # -- ground truth ---------------------------------------------------------
    @property
    def ro(self) -> bool:
        """What ``box.info.ro`` says: read-only unless running, rw and (with elections) the leader."""
        if self.election is not None and self.election.role != "leader":
            return True
        return self.read_only or self.status != "running"

    @property
    def address(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}

    def record(self, event: str) -> None:
        self.world.record(self.name, event)

    def start(self) -> None:
        """Start listening (status ``loading`` for ``loading_time`` if set)."""
        if self.up:
            return
        self.up = True
        self.broadcasts.clear()  # box.shutdown and user keys do not survive a restart
        self.started_at = trio.current_time()
        self._listener = self.world.network.listen((self.host, self.port), self._accept)
        self._generation += 1
        if self.config.loading_time > 0:
            self.set_status("loading")
            generation = self._generation
            self.world.call_later(self.config.loading_time, lambda: self._finish_loading(generation))
        self.record("start")

    def _finish_loading(self, generation: int) -> None:
        # A timer from an earlier life of the process must not end this one's loading.
        if self.up and self.status == "loading" and generation == self._generation:
            self.set_status("running")

    def stop(self) -> None:
        """Shut down for good at the end of a simulation (traced as ``stop``)."""
        self._kill("stop")

    def crash(self) -> None:
        """Die: reset every connection, refuse new ones. Data survives (WAL)."""
        self._kill("crash")

    async def shutdown(self, grace: float = 3.0) -> bool:
        """Stop gracefully, as 3.x does on SIGTERM or ``os.exit()``.

        New connections are refused; ``box.shutdown`` becomes true (an event
        for every connection watching it); requests keep being answered while
        the connections that watch ``box.shutdown`` close, for at most
        ``grace`` virtual seconds (3.x's default ``on_shutdown`` timeout is 3 s); then the process exits (remaining
        connections closed as by :meth:`crash`). Returns True if every
        watching client closed in time. Without the watchers feature (a 2.6
        server) it is just a stop.
        """
        if not self.up:
            return True
        self.record(f"shutdown begin grace={grace}")
        if self._listener is not None:
            self.world.network.unlisten(self._listener)
            self._listener = None
        clean = True
        if self.config.has(C.FEATURE_WATCHERS):
            self.broadcasts["box.shutdown"] = True
            self.notify("box.shutdown")
            with trio.move_on_after(grace) as scope:
                while any("box.shutdown" in c.watches for c in self.connections):
                    await self._conns_changed.park()
            clean = not scope.cancelled_caught
        self._kill("shutdown" if clean else "shutdown (timeout: clients still connected)")
        return clean

    def _kill(self, event: str) -> None:
        """Stop listening and close every connection as a dying process does."""
        if not self.up:
            return
        self.up = False
        if self._listener is not None:
            self.world.network.unlisten(self._listener)
            self._listener = None
        for conn in list(self.connections):
            conn.kill()
        self.txns.drop_all()
        self.paused = False
        self._running.set()
        self.record(event)

    def pause(self) -> None:
        """Freeze (like SIGSTOP): connections are accepted but nothing is answered."""
        if not self.paused:
            self.paused = True
            self._running = trio.Event()
            self.record("pause")

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._running.set()
            self.record("resume")

    async def wait_running(self) -> None:
        await self._running.wait()

    def set_read_only(self, flag: bool) -> None:
        if self.read_only != flag:
            self.read_only = flag
            self.record(f"read_only={flag}")
            self._notify_status()

    def set_status(self, status: str) -> None:
        if status not in ("running", "loading", "orphan"):
            raise ValueError(f"unknown status {status!r}")
        if self.status != status:
            self.status = status
            self.record(f"status={status}")
            self._notify_status()

    def box_status(self) -> dict[str, Any]:
        """The ``box.status`` event (3.x adds ``dd_version``)."""
        out: dict[str, Any] = {"is_ro": self.ro, "is_ro_cfg": self.read_only, "status": self.status}
        if self.config.major >= 3:
            out["dd_version"] = self.version
        return out

    def box_election(self) -> dict[str, Any]:
        """The ``box.election`` event: ``{term, role, is_ro, leader}`` (leader 0: none known)."""
        e = self.election
        if e is None:
            return {"term": 1, "role": "follower", "is_ro": self.ro, "leader": 0}
        return {"term": e.term, "role": e.role, "is_ro": self.ro, "leader": e.leader_id}

    def _notify_status(self) -> None:
        self.notify("box.status")
        if self.config.major >= 3:
            self.notify("box.election")

    def notify(self, key: str) -> None:
        """Send ``key``'s current value to every connection watching it (once acknowledged)."""
        value = self._watch_value(key)
        for conn in self.connections:
            conn.notify(key, value)

    def broadcast(self, key: str, value: Any) -> None:
        """``box.broadcast(key, value)``: set a watched key's value and notify its watchers."""
        if key.startswith("box.") and key != "box.shutdown":
            raise BoxError(ER_ILLEGAL_PARAMS_BROADCAST, "System event can't be broadcast", "IllegalParams")
        self.broadcasts[key] = value
        self.record(f"broadcast {key}")
        self.notify(key)

    def set_election(self, *, term: int | None = None, role: str | None = None,
                     leader_id: int | None = None, queue: tuple[int, str, int] | None = None) -> None:
        """Change this instance's Raft state (traced; box.status/box.election events follow)."""
        e = self.election
        if e is None:
            e = self.election = ElectionState()
        before = (e.term, e.role, e.leader_id, self.ro)
        if term is not None:
            e.term = term
        if role is not None:
            e.role = role
        if leader_id is not None:
            e.leader_id = leader_id
        if queue is not None:
            e.queue_owner_id, e.queue_owner_uuid, e.queue_term = queue
        if (e.term, e.role, e.leader_id, self.ro) != before:
            self.record(f"election term={e.term} role={e.role} leader={e.leader_id}")
            self._notify_status()

    def box_info(self) -> dict[str, Any]:
        """The ``box.info`` table (the fields a client or pool looks at)."""
        return {
            "id": self.id,
            "uuid": self.uuid,
            "status": self.status,
            "ro": self.ro,
            "lsn": self.lsn,
            "signature": self.lsn,
            "vclock": {self.id: self.lsn} if self.lsn else {},
            "version": f"{self.version}-0-g47aa4e01e",
            "pid": 1000 + self.id,
            "uptime": int(trio.current_time() - self.started_at) + 1,
            "cluster": {"uuid": self.world.cluster_uuid},
            **({"election": self.election_info(), "ro_reason": self._ro_reason()} if self.config.major >= 3 else {}),
        }

    def _ro_reason(self) -> str | None:
        if not self.ro:
            return None
        if self.read_only:
            return "config"
        if self.status == "orphan":
            return "orphan"
        e = self.election
        if e is not None and e.queue_owner_id and e.queue_owner_id != self.id:
            return "synchro"
        return "election"

    # -- schema and handlers ----------------------------------------------------
    def create_space(
        self,
        name: str,
        format: Sequence[Field | tuple[str, str] | tuple[str, str, bool]] = (),
        *,
        id: int | None = None,
    ) -> Space:
        return self.db.create_space(name, format, id=id)

    def register_function(self, name: str, handler: Handler) -> None:
        """Make ``call(name, ...)`` run ``handler(ctx, *args)``."""
        self.functions[name] = handler

    def register_eval(self, expr: str, handler: Handler) -> None:
        """Make ``eval(expr, ...)`` run ``handler(ctx, *args)`` (exact text match)."""
        self.evals[expr.strip()] = handler

    def install_crud(self) -> None:
        """Register ``crud.insert``, ``crud.select``, ... (see :mod:`sim._crud`)."""
        from ._crud import Crud

        Crud(self).install()

    def _install_builtins(self) -> None:
        info = lambda ctx, *a: [self.box_info()]  # noqa: E731
        self.functions["box.info"] = info
        for expr in ("return box.info", "return box.info()"):
            self.evals[expr] = info
        self.evals["return box.info.ro"] = lambda ctx, *a: [self.ro]
        self.evals["return box.info.status"] = lambda ctx, *a: [self.status]
        self.evals["return box.info.ro, box.info.status"] = lambda ctx, *a: [self.ro, self.status]
        self.evals["return box.cfg.read_only"] = lambda ctx, *a: [self.read_only]
        self.evals["return ..."] = lambda ctx, *a: list(a)
        # Tarantool 3.x: box.broadcast, box.ctl.promote, the election state.
        self.functions["box.broadcast"] = self._builtin_broadcast
        self.evals["box.broadcast(...)"] = self._builtin_broadcast
        self.functions["box.ctl.promote"] = self._builtin_promote
        self.evals["box.ctl.promote()"] = self._builtin_promote
        self.evals["return box.info.election"] = lambda ctx, *a: [self.election_info()]

    def _builtin_broadcast(self, ctx: CallContext, key: Any = None, value: Any = None, *rest: Any) -> None:
        if not isinstance(key, str):
            raise BoxError(ER_ILLEGAL_PARAMS_BROADCAST, "Usage: box.broadcast(key[, value])", "IllegalParams")
        self.broadcast(key, value)

    async def _builtin_promote(self, ctx: CallContext, *args: Any) -> None:
        if self.on_promote is None or self.election is None:
            # What 3.8 says with election_mode='off' and no synchronous replication to claim.
            raise BoxError(ER_UNSUPPORTED, "box.ctl.promote() is not supported by the simulator without elections")
        await self.on_promote(self)

    def election_info(self) -> dict[str, Any]:
        """``box.info.election``: state, term, vote, leader (0: none), leader_idle."""
        e = self.election
        if e is None:
            return {"state": "follower", "term": 1, "vote": 0, "leader": 0, "leader_name": None, "leader_idle": 0}
        return {"state": e.role, "term": e.term, "vote": e.leader_id, "leader": e.leader_id,
                "leader_name": None, "leader_idle": 0}

    # -- data changes (shared by IPROTO DML, handlers and replication) ----------
    def check_writable(self) -> None:
        if self.status == "loading":
            raise BoxError(ER_LOADING, "Instance bootstrap hasn't finished yet")
        if self.ro:
            if self.config.major < 3:
                raise BoxError(ER_READONLY, "Can't modify data because this instance is in read-only mode.")
            raise self._readonly_error()

    def _readonly_error(self) -> BoxError:
        """3.x's ER_READONLY: the reason in the message and in the error fields (as 3.8 sends them)."""
        base = "Can't modify data on a read-only instance"
        fields: dict[str, Any] = {"name": "READONLY"}
        if self.read_only:
            fields["reason"] = "config"
            return BoxError(ER_READONLY, f"{base} - box.cfg.read_only is true", fields=fields)
        if self.status == "orphan":
            fields["reason"] = "orphan"
            return BoxError(ER_READONLY, f"{base} - it is an orphan", fields=fields)
        e = self.election
        assert e is not None, "read-only without a reason"
        fields.update({"reason": "election", "state": e.role, "term": e.term})
        text = f"state is election {e.role} with term {e.term}"
        leader = self.world.instance_by_id(e.leader_id) if e.leader_id else None
        if leader is not None:
            fields["leader_id"] = leader.id
            fields["leader_uuid"] = uuid_ext(leader.uuid)
            text += f", leader is {leader.id} ({leader.uuid})"
        if e.queue_owner_id and e.queue_owner_id != self.id:
            fields["reason"] = "synchro"
            fields["queue_owner_id"] = e.queue_owner_id
            fields["queue_term"] = e.queue_term
            fields["queue_owner_uuid"] = uuid_ext(e.queue_owner_uuid)
            text += f", synchro queue with term {e.queue_term} belongs to {e.queue_owner_id} ({e.queue_owner_uuid})"
        return BoxError(ER_READONLY, f"{base} - {text}", fields=fields)

    def _writable_space(self, space_id: int) -> Space:
        """The space a write goes to; "no such space" is reported before read-only (as 2.6)."""
        space = self.db.space(space_id)
        if space.engine == "sysview":
            raise BoxError(ER_VIEW_IS_RO, f"View '{space.name}' is read-only")
        self.check_writable()
        return space

    def _commit(self, space: Space, new: list[Any] | None, old: list[Any] | None) -> None:
        if new is None and old is None:
            return
        if new is not None and old is not None and new is old:
            return  # upsert that changed nothing
        self.lsn += 1
        old_key = space.primary.key_of(old) if old is not None else None
        change = Change(space.id, old_key, list(new) if new is not None else None)
        row = new if new is not None else old
        assert row is not None
        self.txns.row_committed(space.id, space.primary.key_of(row), old)
        if self._txn_batch is not None:
            self._txn_batch.append(change)
        elif self.on_change is not None:
            self.on_change(self, change)

    def apply_change(self, change: Change) -> None:
        """Apply a replicated row (bypasses read-only, as the applier does)."""
        space = self.db.spaces.get(change.space_id)
        if space is None:
            return
        if change.new is None:
            if change.old_key is not None:
                gone = space.delete(0, change.old_key)
                self.txns.row_committed(space.id, change.old_key, gone)
        else:
            old = space.primary.get(space.primary.key_of(change.new))
            self.txns.row_committed(space.id, space.primary.key_of(change.new), old)
            for idx in space.indexes[1:]:
                if idx.unique:
                    clash = idx.get(idx.key_of(change.new))
                    if clash is not None and clash is not old:
                        space._put_delete(clash)
            space._put(list(change.new), old)
        self.lsn += 1

    def insert(self, space_id: int, tup: list[Any]) -> list[Any]:
        space = self._writable_space(space_id)
        space.insert(tup)
        self._commit(space, tup, None)
        return tup

    def replace(self, space_id: int, tup: list[Any]) -> list[Any]:
        space = self._writable_space(space_id)
        new, old = space.replace(tup)
        self._commit(space, new, old)
        return new

    def update(self, space_id: int, index_id: int, key: list[Any], ops: list[Any], index_base: int = 0) -> list[Any] | None:
        space = self._writable_space(space_id)
        new, old = space.update(index_id, key, ops, index_base)
        self._commit(space, new, old)
        return new

    def upsert(self, space_id: int, tup: list[Any], ops: list[Any], index_base: int = 0) -> None:
        space = self._writable_space(space_id)
        new, old = space.upsert(tup, ops, index_base)
        self._commit(space, new, old)

    def delete(self, space_id: int, index_id: int, key: list[Any]) -> list[Any] | None:
        space = self._writable_space(space_id)
        old = space.delete(index_id, key)
        if old is not None:
            self.lsn += 1
            self.txns.row_committed(space.id, space.primary.key_of(old), old)
            if self.on_change is not None:
                self.on_change(self, Change(space.id, space.primary.key_of(old), None))
        return old

    # -- connections ------------------------------------------------------------
    async def _accept(self, sock: FakeSocket) -> None:
        self._conn_counter += 1
        conn = ServerConn(self, sock, self._conn_counter)
        if not self.up:
            sock.reset()
            sock.close()
            return
        self.connections.append(conn)
        try:
            await conn.run()
        finally:
            self.connections.remove(conn)
            self._conns_changed.unpark_all()
            if self.txns.drop_connection(conn):
                self.record(f"{conn.name} closed: its transactions rolled back")

    def handle(self, conn: ServerConn, header: dict[int, Any], body: dict[int, Any]) -> bytes | Awaitable[bytes] | None:
        """Answer one request: reply bytes, an awaitable of them, or None (no reply)."""
        rtype = header.get(C.REQUEST_TYPE)
        sync = header.get(C.SYNC, 0)
        name = P.REQUEST_NAMES.get(rtype, str(rtype)) if isinstance(rtype, int) else str(rtype)
        self.requests[name] += 1
        self.world.record_request(self.name, conn.name, name, sync, body)
        sv = self.db.schema_version
        target = str(body.get(C.FUNCTION_NAME, body.get(C.EXPR, body.get(C.SPACE_ID, ""))))
        was_ro = self.ro
        self._body_started = False
        try:
            result = self._dispatch(conn, rtype, sync, header, body)
        except BoxError as exc:
            if self.world.trace_requests:
                self.record(f"{conn.name} sync={sync} error {exc.code}")
            executed = self._body_started or exc.code not in _NOT_EXECUTED
            self._log(conn, sync, name, target, f"error {exc.code}", executed, was_ro)
            return P.error_response(sync, sv, exc.code, exc.message, error_type=exc.type,
                                    fields=self._error_fields(exc))
        if result is None:
            self._log(conn, sync, name, target, "none", True, was_ro)
        elif isinstance(result, bytes):
            self._log(conn, sync, name, target, "ok", True, was_ro)
        else:
            index = len(self.request_log)
            self._log(conn, sync, name, target, "pending", True, was_ro)
            result = self._track(result, index)
        return result

    def _error_fields(self, exc: BoxError) -> dict[str, Any] | None:
        """The error's fields as this version sends them (2.x: none)."""
        return exc.fields if self.config.major >= 3 else None

    def _log(self, conn: ServerConn, sync: int, name: str, target: str, outcome: str,
             executed: bool, read_only: bool) -> None:
        seq, at = conn.request_written
        self.request_log.append(RequestRecord(
            trio.current_time(), conn.name, sync, name, target, outcome, executed, read_only, seq, at))

    async def _track(self, pending: Awaitable[bytes], index: int) -> bytes:
        """Finish an async handler and fill in its log entry's outcome."""
        data = await pending
        code = P.reply_code(data)
        rec = self.request_log[index]
        outcome = "ok" if code == C.OK else f"error {code & ~C.TYPE_ERROR}"
        self.request_log[index] = dataclasses.replace(rec, outcome=outcome)
        return data

    def _dispatch(self, conn: ServerConn, rtype: Any, sync: int, header: dict[int, Any], body: dict[int, Any]) -> bytes | Awaitable[bytes] | None:
        sv = self.db.schema_version
        cfg = self.config
        if rtype == C.PING:
            return P.response(sync, sv, {})
        if rtype == C.NOP:
            return P.response(sync, sv, {})
        if rtype == C.AUTH:
            return self._auth(conn, sync, body)
        if rtype == C.ID and cfg.protocol_version is not None:
            return P.response(sync, sv, {
                C.VERSION: cfg.protocol_version,
                C.FEATURES: list(cfg.features),
                C.AUTH_TYPE: "chap-sha1",
            })
        stream_id = header.get(C.STREAM_ID, 0) if cfg.has(C.FEATURE_STREAMS) else 0
        if rtype in (C.BEGIN, C.COMMIT, C.ROLLBACK) and cfg.has(C.FEATURE_TRANSACTIONS):
            return self._transaction_request(conn, rtype, sync, stream_id, body)
        if rtype == C.WATCH_ONCE and cfg.has(C.FEATURE_WATCH_ONCE):
            key = body.get(C.EVENT_KEY)
            return P.watch_once_response(sync, sv, self._watch_value(key) if isinstance(key, str) else None)
        if rtype in (C.WATCH, C.UNWATCH) and cfg.has(C.FEATURE_WATCHERS):
            key = body.get(C.EVENT_KEY)
            if not isinstance(key, str):
                return None
            if rtype == C.UNWATCH:
                conn.watches.pop(key, None)
                return None
            w = conn.watches.get(key)
            if w is None:
                conn.watches[key] = Watch(acked=False)
                return P.event(key, self._watch_value(key))
            w.acked = True
            if w.dirty:
                w.dirty = False
                w.acked = False
                return P.event(key, self._watch_value(key))
            return None
        if rtype not in _DATA_REQUESTS:
            raise BoxError(ER_UNKNOWN_REQUEST_TYPE, f"Unknown request type {rtype}")
        want_sv = header.get(C.SCHEMA_VERSION)
        if want_sv and want_sv != sv:
            raise BoxError(
                ER_WRONG_SCHEMA_VERSION,
                f"Wrong schema version, current: {sv}, in request: {want_sv}",
            )
        if self.status == "loading":
            raise BoxError(ER_LOADING, "Instance bootstrap hasn't finished yet")
        if not cfg.guest_access and conn.user == "guest":
            self._deny_guest(rtype, body)
        txn = self.txns.find(conn, stream_id) if stream_id else None
        if txn is not None and rtype == C.SELECT:
            return P.data_response(sync, sv, self.txns.select(txn, body))
        if txn is not None and rtype in _WRITE_REQUESTS:
            return P.data_response(sync, sv, self.txns.write(txn, rtype, body, self.check_writable))
        if rtype == C.SELECT:
            space = self.db.space(body.get(C.SPACE_ID, 0))
            rows = space.select(
                body.get(C.INDEX_ID, 0), body.get(C.ITERATOR, 0), body.get(C.KEY, []) or [],
                body.get(C.OFFSET, 0), body.get(C.LIMIT, 0xFFFFFFFF),
            )
            return P.data_response(sync, sv, rows)
        if rtype in _WRITE_REQUESTS:
            return P.data_response(sync, self.db.schema_version, self._write(rtype, body))
        if rtype in (C.CALL, C.CALL_16, C.EVAL):
            return self._call(conn, rtype, sync, body)
        raise BoxError(ER_UNSUPPORTED, "SQL is not supported by the simulator")

    def _transaction_request(self, conn: ServerConn, rtype: int, sync: int, stream_id: int,
                             body: dict[int, Any]) -> bytes:
        """BEGIN / COMMIT / ROLLBACK on a stream (3.8's checks, codes and messages)."""
        sv = self.db.schema_version
        if rtype == C.BEGIN:
            txn = self.txns.begin(conn, stream_id, body)
            if self.world.trace_requests:
                self.record(f"{conn.name} stream={stream_id} begin isolation={txn.isolation}")
            return P.response(sync, sv, {})
        if stream_id == 0:
            raise out_of_stream_error("COMMIT" if rtype == C.COMMIT else "ROLLBACK")
        found = self.txns.find(conn, stream_id)
        if found is None:
            return P.response(sync, sv, {})  # nothing to end: 3.8 answers OK
        self.txns.end(found)
        if rtype == C.ROLLBACK:
            return P.response(sync, sv, {})
        self._commit_txn(found)
        return P.response(sync, sv, {})

    def _commit_txn(self, txn: Txn) -> None:
        """Apply a transaction's changes as committed rows (replicated like any write)."""
        txn.check_usable()
        if not txn.writes:
            return
        if self.status == "loading":
            raise BoxError(ER_LOADING, "Instance bootstrap hasn't finished yet")
        if self.ro:
            # What 3.8 answers to COMMIT after the instance lost its leadership.
            if self.config.major >= 3:
                raise BoxError(ER_READONLY, "Can't modify data on a read-only instance",
                               fields={"name": "READONLY"})
            raise BoxError(ER_READONLY, "Can't modify data because this instance is in read-only mode.")
        rows = self.txns.prepare(txn)
        self.txns.committing = txn
        self._txn_batch = []
        try:
            for space, pk, tup in rows:
                old = space.primary.get(pk)
                if tup is None:
                    if old is not None:
                        space._put_delete(old)
                        self._commit(space, None, old)
                else:
                    new = list(tup)
                    space._put(new, old)
                    self._commit(space, new, old)
        finally:
            self.txns.committing = None
            batch, self._txn_batch = self._txn_batch, None
            if batch and self.on_change is not None:
                self.on_change(self, tuple(batch))

    def _write(self, rtype: int, body: dict[int, Any]) -> list[Any]:
        space_id = body.get(C.SPACE_ID, 0)
        base = body.get(C.INDEX_BASE, 0)
        if rtype == C.INSERT:
            return [self.insert(space_id, list(body.get(C.TUPLE, [])))]
        if rtype == C.REPLACE:
            return [self.replace(space_id, list(body.get(C.TUPLE, [])))]
        if rtype == C.DELETE:
            old = self.delete(space_id, body.get(C.INDEX_ID, 0), list(body.get(C.KEY, [])))
            return [old] if old is not None else []
        if rtype == C.UPDATE:
            new = self.update(space_id, body.get(C.INDEX_ID, 0), list(body.get(C.KEY, [])),
                              list(body.get(C.TUPLE, [])), base)
            return [new] if new is not None else []
        self.upsert(space_id, list(body.get(C.TUPLE, [])), list(body.get(C.OPS, [])), base)
        return []

    def _deny_guest(self, rtype: int, body: dict[int, Any]) -> None:
        if rtype in (C.CALL, C.CALL_16):
            what = f"Execute access to function '{body.get(C.FUNCTION_NAME)}'"
        elif rtype == C.EVAL:
            what = "Execute access to universe ''"
        else:
            try:
                sname = self.db.space(body.get(C.SPACE_ID, 0)).name
            except BoxError:
                return  # "no such space" wins
            kind = "Read" if rtype == C.SELECT else "Write"
            what = f"{kind} access to space '{sname}'"
        raise BoxError(ER_ACCESS_DENIED, f"{what} is denied for user 'guest'")

    def _auth(self, conn: ServerConn, sync: int, body: dict[int, Any]) -> bytes:
        user = body.get(C.USER_NAME)
        tup = body.get(C.TUPLE) or []
        sv = self.db.schema_version
        if user == "guest":
            conn.user = "guest"
            return P.response(sync, sv, {})
        password = self.config.users.get(str(user))
        if password is None:
            raise BoxError(ER_NO_SUCH_USER, f"User '{user}' is not found")
        scramble = tup[1] if len(tup) > 1 else b""
        if isinstance(scramble, str):
            scramble = scramble.encode("utf-8", "surrogateescape")
        if not P.check_chap_sha1(password, conn.salt, bytes(scramble)):
            raise BoxError(ER_PASSWORD_MISMATCH, f"Incorrect password supplied for user '{user}'")
        conn.user = str(user)
        self.record(f"{conn.name} auth {user}")
        return P.response(sync, sv, {})

    def _watch_value(self, key: str) -> Any:
        if key == "box.status":
            return self.box_status()
        if key == "box.id":
            if self.config.major >= 3:
                return {"id": self.id, "instance_uuid": uuid_ext(self.uuid), "instance_name": None,
                        "replicaset_uuid": uuid_ext(self.world.cluster_uuid), "replicaset_name": None,
                        "cluster_name": None}
            return {"id": self.id, "instance_uuid": self.uuid, "replicaset_uuid": self.world.cluster_uuid}
        if key == "box.election" and self.config.major >= 3:
            return self.box_election()
        return self.broadcasts.get(key)

    def _call(self, conn: ServerConn, rtype: int, sync: int, body: dict[int, Any]) -> bytes | Awaitable[bytes]:
        args = list(body.get(C.TUPLE, []) or [])
        if rtype == C.EVAL:
            expr = str(body.get(C.EXPR, ""))
            handler = self.evals.get(expr.strip())
            if handler is None:
                raise BoxError(ER_PROC_LUA, f"eval:1: the simulator has no handler for {expr!r}", "LuajitError")
        else:
            fname = str(body.get(C.FUNCTION_NAME, ""))
            handler = self.functions.get(fname)
            if handler is None:
                raise BoxError(ER_NO_SUCH_PROC, f"Procedure '{fname}' is not defined")
        ctx = CallContext(self, conn.user, sync, conn)
        self._body_started = True
        try:
            result = handler(ctx, *args)
        except BoxError:
            raise
        except Exception as exc:  # a Lua error inside the function
            raise BoxError(ER_PROC_LUA, str(exc), "LuajitError") from exc
        if inspect.isawaitable(result):
            return self._finish_call(rtype, sync, result)
        return P.data_response(sync, self.db.schema_version, self._shape(rtype, result))

    async def _finish_call(self, rtype: int, sync: int, pending: Awaitable[Any]) -> bytes:
        try:
            result = await pending
        except BoxError as exc:
            return P.error_response(sync, self.db.schema_version, exc.code, exc.message,
                                    error_type=exc.type, fields=self._error_fields(exc))
        except Exception as exc:
            return P.error_response(sync, self.db.schema_version, ER_PROC_LUA, str(exc), error_type="LuajitError")
        return P.data_response(sync, self.db.schema_version, self._shape(rtype, result))

    @staticmethod
    def _shape(rtype: int, result: Any) -> list[Any]:
        values = [] if result is None else list(result)
        if rtype == C.CALL_16:  # every value becomes a tuple
            return [v if isinstance(v, list) else [v] for v in values]
        return values
