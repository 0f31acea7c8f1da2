"""A pool of connections to the instances of one Tarantool replicaset.

Theory of operation
-------------------
``async with ConnectionPool(addrs, ...) as pool`` (or ``open_pool``) opens one
nursery that owns everything the pool runs:

* one **instance task** per address (:meth:`ConnectionPool._instance_task`).
  It owns that instance's :class:`~trio_tarantool.Connection` (whose reader and
  writer tasks run in the instance task's own, shielded nursery) and the
  receiving end of a trio memory channel of :class:`PoolTask` records. It
  hands each one to the connection *for its caller* without ever waiting:
  the caller stays parked and the reply wakes it directly. No task per
  request; requests to one instance are pipelined on its connection. What
  cannot be queued at once (reconnect, schema load, backpressure) goes back
  to the caller, which then performs it on the connection itself;
* one **health** runner (:class:`~trio_tarantool._health.Health`): per
  instance a probe loop (``box.info.ro``/``status`` by EVAL, under
  ``probe_timeout``, paced and backed off per instance) and a disconnect
  watcher.

A request (``pool.select(...)``) builds its :class:`~trio_tarantool._request.Request`
(bad arguments fail here, unsent), fixes **one deadline**
(``now + socket_timeout``, or none), asks the strategy
(:mod:`trio_tarantool._strategy`, pure) for an instance, sends a
:class:`PoolTask` and waits. On failure the retry policy
(:mod:`trio_tarantool._retry`, pure) says whether and where to send it once
more.

Invariants (checked by tests/real/test_pool*.py and, through the
simulator, by tests/sim):

1. **Routing.** A request goes only to an instance the strategy returns for
   its mode: RW only to an instance whose last known ``read_only`` is False,
   RO never to one known rw, PREFER_* to the other kind only when no
   preferred instance is healthy.
2. **Health.** An instance is HEALTHY only after a probe saw it connected
   and ``box.info.status == 'running'`` with a boolean ``box.info.ro``.
   Connection loss makes it UNHEALTHY at once, an ``ER_READONLY`` reply
   marks it read-only at once. Any probe error marks it UNHEALTHY (kept in
   ``last_error``) and never ends the probe loop; instances are probed every
   ``refresh_delay``, forever.
3. **Fast convergence, bounded cost.** Refusals, the loss of a stable
   connection and "no instance fits" wake the probes, each instance keeping
   its own pace (an early gap that doubles up to ``refresh_delay``, an
   exponential backoff with deterministic jitter while it fails), so a
   flapping instance costs about one connect per ``refresh_delay`` and its
   neighbours no extra probes. A request finding no fitting instance forces
   one probe round before :class:`PoolTopologyError` (the topology may have
   changed silently), and within ``probe_timeout`` of a role signal keeps
   refreshing until one fits: a switch-over delays requests, it does not
   fail them.
4. **At most once.** A request is re-sent (once) only as the retry policy
   allows: never after it may have executed; a CALL/EVAL/EXECUTE refused
   with ``ER_READONLY``/``ER_LOADING`` only with ``idempotent=True``, because
   the refusal may come after part of its code ran. The final error's
   ``may_have_executed`` is True if any attempt may have run.
5. **One outcome.** Every request ends with exactly one result or exception,
   its own: replies are matched by the connection's sync ids, and each
   :class:`PoolTask` wakes only its own caller.
6. **Bounded time.** With ``socket_timeout``, the request's one deadline
   covers picking, waiting for a refresh, every attempt and the retry; at the
   deadline it fails with :class:`TarantoolTimeoutError` whose
   ``may_have_executed`` is True only if some attempt's packet was written
   (or could not be known not to be). Cancelling the caller cancels the
   request; the connection stays usable.
7. **Lifecycle.** ``connect()`` returns when every instance was probed once,
   whatever the outcome. After ``close()`` every request fails at once with
   :class:`ConnectionClosedError`, nothing more is sent, waits end at once;
   when ``async with`` exits, no task of the pool is left.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import outcome
import trio

from ._addrs import Address, validate_addrs
from ._balance import HedgePolicy, pick_avoiding
from ._connection import _ALL_ROWS, _INF, RESEND, Connection, Ticket
from ._crud import PoolCrudMixin
from ._errors import (
    ClusterConnectWarning,
    ConfigurationError,
    ConnectionClosedError,
    Error,
    ErrorCode,
    NetworkError,
    NotSupportedError,
    PoolTopologyError,
    ServerError,
    TarantoolTimeoutError,
)
from ._health import Health
from ._membership import DEFAULT_DISCOVER_EVERY, PoolMembershipMixin, SharedOptions
from ._observe import (
    EventHub,
    InstanceStatistics,
    PoolClosedEvent,
    PoolEvents,
    PoolStatistics,
    RetryEvent,
    emit_warning,
    frozen_counts,
    logger,
)
from ._options import connection_options
from ._request import BUILDERS, Request
from ._response import Response
from ._retry import CRUD_READS, Failure, Kind, classify, decide, kind_of
from ._strategy import InstanceState, Mode, RoundRobinStrategy, Status, StrategyInterface
from ._stream import Isolation, Stream
from ._watch import Watcher

#: What :meth:`ConnectionPool._take` gives when no instance was picked. (Its
#: unit is typed Any: a unit whenever the deadline beside it is not None,
#: which the type system cannot say of two names unpacked from one tuple.)
_NOT_TAKEN: tuple[Any, None] = (None, None)

__all__ = [
    "ConnectionPool",
    "InstanceStatistics",
    "PoolTask",
    "PoolUnit",
    "open_pool",
    "queue_factory",
]

PushCallback = Callable[[Any, Any], Any]

_WRONG_SCHEMA = 0x8000 | ErrorCode.ER_WRONG_SCHEMA_VERSION


_QUEUED, _SUBMITTED, _DONE = 0, 1, 2


class _Slow:
    """Sent to a caller whose request the instance task could not queue at once."""


_SLOW = _Slow()
#: The modes a read may be hedged in (a second copy to another fitting instance).
_HEDGE_MODES = (Mode.ANY, Mode.RO, Mode.PREFER_RO)
#: What a caller's wait yields when the pool's deadline passed first.
_TIMED_OUT = object()


@dataclass(slots=True)
class PoolTask:
    """One request on its way to an instance task.

    The caller parks until its instance task has handed the request to the
    instance's connection; the reply then wakes the caller directly (no
    per-request task, no hop back through the instance task).

    Attributes:
        method_name: The :class:`~trio_tarantool.Connection` method to call.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
    """

    method_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: The request built from the three fields above.
    request: Request | None = field(default=None, repr=False)
    #: The parked task that sent it.
    caller: trio.lowlevel.Task | None = field(default=None, repr=False)
    #: The connection's ticket once queued on the connection.
    ticket: Ticket | None = field(default=None, repr=False)
    #: _QUEUED in the channel, _SUBMITTED to the connection, or _DONE.
    state: int = field(default=_QUEUED, repr=False)


def queue_factory() -> tuple[trio.MemorySendChannel[PoolTask], trio.MemoryReceiveChannel[PoolTask]]:
    """Build the channel that carries PoolTasks to an instance task.

    The reference builds a ``queue.Queue(maxsize=1)`` here; this is a trio
    memory channel. It needs no bound of its own: each entry is a caller
    parked until the instance task takes it, which it does without ever
    waiting, and the connection behind bounds what is in flight.
    """
    return trio.open_memory_channel[PoolTask](math.inf)


#: The shortest probe period (what ``refresh_delay=0`` means).
_MIN_REFRESH = 0.01


@dataclass
class PoolUnit:
    """One instance of the pool: its address, connection, channel, task and state.

    The trio memory channel pair replaces the reference connector's
    ``input_queue``/``output_queue``: requests go in through ``send_channel``
    and every :class:`PoolTask` carries its own reply slot, so concurrent
    callers can never receive each other's responses.
    """

    address: Address
    conn: Connection
    send_channel: trio.MemorySendChannel[PoolTask]
    receive_channel: trio.MemoryReceiveChannel[PoolTask]
    #: The instance task, while it runs.
    task: trio.lowlevel.Task | None = None
    state: InstanceState = field(default_factory=InstanceState)
    #: True between connect() and close().
    request_processing_enabled: bool = False
    #: The exception behind the last problem seen while probing or executing here.
    last_error: BaseException | None = None
    #: ``last_error`` as one line with its context, as the logs say it.
    last_error_message: str | None = None
    #: Requests routed here and not finished yet.
    in_flight: int = 0
    #: Attempts sent here (statistics).
    requests: int = 0
    #: Completed probes, successful or not.
    probes: int = 0
    #: Probes that failed.
    probe_failures: int = 0
    #: Seconds the last successful probe took, and their moving average.
    probe_rtt: float | None = None
    probe_rtt_ewma: float | None = None
    #: trio time at the end of the last successful probe.
    last_probe_ok_at: float | None = None
    #: Flips of ``box.info.ro`` while known.
    role_changes: int = 0
    #: Counts every role the instance was seen in (an event, a probe): a
    #: refusal that comes after a newer sighting no longer speaks for the role.
    role_epoch: int = 0
    #: Set to cut the probe loop's wait short.
    wake: trio.Event = field(default_factory=trio.Event)
    #: Set while a successful probe left the connection up (disconnect watcher).
    connected: trio.Event = field(default_factory=trio.Event)
    #: Membership: set by the request path when ``in_flight`` drops to 0 while
    #: :meth:`ConnectionPool.remove` waits for it (None otherwise).
    drained: trio.Event | None = None
    #: Membership: set once the instance task and its connection's tasks ended.
    ended: trio.Event = field(default_factory=trio.Event)

    @property
    def addr(self) -> dict[str, Any]:
        """The address as the reference gives it: ``{"host": ..., "port": ..., ...}``."""
        return self.address.as_dict()

    def get_address(self) -> str:
        """``host:port`` (or the socket path), as the reference's ``get_address``."""
        return self.address.key

    @property
    def key(self) -> str:
        """``host:port`` of the instance."""
        return self.address.key

    def role(self) -> str:
        """``rw``, ``ro`` or ``down``, for repr and logs."""
        if self.state.status != Status.HEALTHY:
            return "down"
        return "rw" if self.state.read_only is False else "ro"


def _check_number(name: str, value: Any, *, allow_none: bool = False, positive: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigurationError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")


def _naming(exc: NetworkError, where: str, may_have_executed: bool) -> NetworkError:
    """The same kind of error, prefixed with the instance it came from, saying
    ``may_have_executed`` (which covers every attempt of the request)."""
    if not where and may_have_executed == exc.may_have_executed:
        return exc
    try:
        return type(exc)(f"{where}: {exc.message}" if where else exc.message,
                         may_have_executed=may_have_executed)
    except TypeError:  # a subclass with another constructor: keep it as it is
        exc.may_have_executed = may_have_executed
        return exc


class ConnectionPool(PoolMembershipMixin, PoolCrudMixin):
    """A pool of connections to a Tarantool replicaset, routing by request mode.

    Use it as ``async with ConnectionPool(addrs, ...) as pool:``; its API is the
    single :class:`~trio_tarantool.Connection`'s plus a ``mode`` keyword
    (:class:`~trio_tarantool.Mode`).  DML defaults to ``Mode.RW``, ``select``
    and ``crud_*`` to ``Mode.ANY``; ``call``, ``eval``, ``execute`` and
    ``ping`` require ``mode``.  Every user must be allowed to call ``box.info``.

    Args:
        addrs: ``[{"host": ..., "port": ...}, ...]`` (see the seed API).
        user: Passed to every connection, as are ``password``, ``socket_timeout``,
            ``reconnect_max_attempts``, ``reconnect_delay``, ``encoding``,
            ``call_16``, ``connection_timeout`` and ``fetch_schema``.
        connect_now: Connect when entering ``async with`` (else call
            :meth:`connect`).
        strategy_class: Chooses instances by mode (round robin by default).
        refresh_delay: Seconds between two ``box.info`` probes of an instance.
        probe_timeout: How long a probe (reconnect included) may take before the
            instance counts as UNHEALTHY; default ``max(1.0, refresh_delay)``,
            or ``connection_timeout`` if larger.
        retry_not_executed: Re-dispatch, once, a request that surely did not
            execute (True by default).
        status_events: Where the server has watchers (Tarantool >= 2.10),
            follow each instance's ``box.status`` and ``box.shutdown`` events
            between probes (True by default; False: probes only).
        hedge_after: Hedged reads (off by default): a read (select, ping, crud
            reads, call/eval with ``idempotent=True``) in ANY/RO/PREFER_RO still
            unanswered after this many seconds, or after this percentile of
            recent RTTs (``"p95"``), is also sent to another fitting instance;
            the first answer wins, the other copy is cancelled. One deadline
            covers both. Never a write or code not marked idempotent.
        discover: Find the replicaset's other members (``box.info.replication``)
            and add them: True at ``connect()`` and every 10 ``refresh_delay``
            periods, an int N every N periods; never removes one (see
            :meth:`discover`). Off by default.
    """

    def __init__(
        self,
        addrs: Sequence[Mapping[str, Any]],
        user: str | None = None,
        password: str | None = None,
        socket_timeout: float | None = None,
        reconnect_max_attempts: int = 0,
        reconnect_delay: float = 0,
        connect_now: bool = True,
        encoding: str | None = "utf-8",
        call_16: bool = False,
        connection_timeout: float | None = None,
        strategy_class: Callable[[list[PoolUnit]], StrategyInterface[PoolUnit]] = RoundRobinStrategy,
        refresh_delay: float = 1,
        fetch_schema: bool = True,
        *,
        probe_timeout: float | None = None,
        retry_not_executed: bool = True,
        status_events: bool = True,
        hedge_after: float | str | None = None,
        discover: bool | int = False,
    ) -> None:
        addresses = validate_addrs(addrs)
        if isinstance(discover, bool):
            self._discover_every = DEFAULT_DISCOVER_EVERY if discover else 0
        elif isinstance(discover, int) and discover >= 1:
            self._discover_every = discover
        else:
            raise ConfigurationError(f"discover must be True, False or an int >= 1 (refreshes), "
                                     f"got {discover!r}")
        if not isinstance(status_events, bool):
            raise ConfigurationError(f"status_events must be True or False, got {status_events!r}")
        _check_number("refresh_delay", refresh_delay)
        _check_number("probe_timeout", probe_timeout, allow_none=True, positive=True)
        if not callable(strategy_class):
            raise ConfigurationError(f"strategy_class must be a class, got {strategy_class!r}")
        if probe_timeout is None:
            probe_timeout = max(1.0, float(refresh_delay), float(connection_timeout or 0))
        #: The validated addresses, as the reference keeps them (list of dicts).
        self.addrs: list[dict[str, Any]] = [a.as_dict() for a in addresses]
        self.refresh_delay = float(refresh_delay)
        self.probe_timeout = float(probe_timeout)
        self.socket_timeout = socket_timeout
        self.connect_now = bool(connect_now)
        self.retry_not_executed = bool(retry_not_executed)
        self._units: list[PoolUnit] = []
        for number, address in enumerate(addresses):
            # One validator for every connection option, shared and per address.
            conn = Connection.from_options(connection_options(
                address.host, address.port, where=f"addrs[{number}]", user=user, password=password,
                socket_timeout=socket_timeout, connection_timeout=connection_timeout,
                reconnect_max_attempts=reconnect_max_attempts, reconnect_delay=reconnect_delay,
                encoding=encoding, call_16=call_16, fetch_schema=fetch_schema, **address.options,
            ))
            send, receive = queue_factory()
            self._units.append(PoolUnit(address, conn, send, receive))
        #: The shared connection options, for the instances add() and discovery bring.
        self._conn_options: dict[str, Any] = SharedOptions({
            "user": user, "password": password, "socket_timeout": socket_timeout,
            "connection_timeout": connection_timeout, "reconnect_max_attempts": reconnect_max_attempts,
            "reconnect_delay": reconnect_delay, "encoding": encoding, "call_16": call_16,
            "fetch_schema": fetch_schema,
        })
        self.strategy = strategy_class(self._units)
        #: The strategy's feedback hook (``_balance.Feedback``), looked up once;
        #: without one and without hedging, requests take the plain path.
        self._on_result = getattr(self.strategy, "on_result", None)
        self._hedge = None if hedge_after is None else HedgePolicy(hedge_after)
        self._plain = self._on_result is None and self._hedge is None
        self.status_events = status_events
        #: The subscribers of events() (the health runner publishes state changes).
        self._hub = EventHub()
        # refresh_delay=0 (the reference: refresh all the time) probes as often as
        # the pacing lets it, every _MIN_REFRESH, never in a busy loop.
        self._health = Health(self._units, self.strategy.update,
                              max(self.refresh_delay, _MIN_REFRESH), self.probe_timeout,
                              status_events=status_events, hub=self._hub)
        # Statistics counters (plain ints: nothing allocated on the request path).
        self._requests = 0
        self._retries = 0
        self._failovers = 0
        #: Failed attempts by exception class name.
        self._errors: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._scopes: list[trio.CancelScope] = []
        self._connected = False
        self._closed = False
        #: Requests may take :meth:`_take`'s shortcut: a plain pool, connected, not closed.
        self._direct_ok = False

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> ConnectionPool:
        if self._stack is not None:
            raise RuntimeError("this ConnectionPool is already open; enter it only once")
        if self._closed:
            raise ConnectionClosedError("the pool is closed", may_have_executed=False)
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(self._lifetime())
        self._stack = stack
        if self.connect_now:
            try:
                await self.connect()
            except BaseException:
                self.close()
                await stack.aclose()
                raise
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        self.close()
        assert self._stack is not None
        return await self._stack.__aexit__(*exc_info)  # type: ignore[arg-type]

    @asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[trio.Nursery]:
        """The nursery every pool task runs in.

        Errors of the ``async with`` body are caught inside the nursery and
        re-raised outside it, so callers see the exception itself and not an
        ExceptionGroup around it.
        """
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                error = exc
            finally:
                self.close()
        if error is not None:
            raise error

    async def connect(self) -> None:
        """Start every instance task and the health scanner; probe each instance once.

        Instances are connected in parallel.  Returns when each instance has
        been probed once (successfully or not, within ``probe_timeout``);
        unreachable instances do not make it fail: they are retried in the
        background every ``refresh_delay``.  Calling it again is a no-op.
        """
        if self._closed:
            raise ConnectionClosedError("the pool is closed", may_have_executed=False)
        if self._nursery is None:
            raise RuntimeError("use 'async with ConnectionPool(...)' before connect()")
        if self._connected:
            await trio.lowlevel.checkpoint()
            return
        self._connected = True
        self._direct_ok = self._plain
        logger.debug("pool connecting to %s", ", ".join(u.key for u in self._units))
        for unit in list(self._units):  # a snapshot: add() starts what it adds meanwhile
            await self._nursery.start(self._instance_task, unit)
        await self._nursery.start(self._run_health)
        if self._discover_every and not self._closed:
            await self._nursery.start(self._discovery_loop)
        if self._closed:
            return
        logger.info("pool connected: %s", ", ".join(
            f"{u.key} {u.role()}" + ("" if u.role() != "down" else f" ({u.last_error_message})")
            for u in self._units))
        for unit in self._units:  # once per instance: later probes warn about nothing more
            if unit.state.status != Status.HEALTHY and not unit.conn.is_connected():
                emit_warning(f"Failed to connect to {unit.key}, reason: {unit.last_error_message}",
                             ClusterConnectWarning, background=False)

    def close(self) -> None:
        """Stop request processing and close every connection; idempotent.

        Pending requests fail with :class:`ConnectionClosedError`, later ones
        fail at once.  Safe before :meth:`connect`.  The tasks are gone once the
        ``async with`` block has exited.
        """
        if self._closed:
            return
        self._closed = True
        self._direct_ok = False
        self._health.close()  # requests waiting for a refresh give up at once
        if self._connected:
            logger.info("pool closed: %s", ", ".join(u.key for u in self._units))
        self._hub.close(PoolClosedEvent(time=trio.current_time()))
        for unit in self._units:
            unit.request_processing_enabled = False
            unit.send_channel.close()
            unit.conn.close()
        for scope in self._scopes:
            scope.cancel()

    async def aclose(self) -> None:
        """Close, as :meth:`close`; a checkpoint like every async method."""
        self.close()
        await trio.lowlevel.checkpoint()

    def is_closed(self) -> bool:
        """False while at least one instance is ready to process requests."""
        if self._closed or not self._connected:
            return True
        return not any(u.request_processing_enabled and not u.conn.is_closed() for u in self._units)

    # -- introspection -----------------------------------------------------------------
    @property
    def pool(self) -> dict[str, PoolUnit]:
        """The units by ``host:port``, as the reference's ``pool.pool`` (a fresh dict)."""
        return {unit.key: unit for unit in self._units}

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot: the pool's counters and one record per instance.

        The result is also the sequence of the instances' records, in
        address order (``pool.statistics()[0].last_error``), as before.
        """
        instances = tuple(
            InstanceStatistics(
                u.key, u.state.status, u.state.read_only, u.last_error, u.in_flight,
                last_error_message=u.last_error_message, requests=u.requests, probes=u.probes,
                probe_failures=u.probe_failures, probe_rtt=u.probe_rtt,
                probe_rtt_ewma=u.probe_rtt_ewma, last_probe_ok_at=u.last_probe_ok_at,
                role_changes=u.role_changes,
            )
            for u in self._units
        )
        return PoolStatistics(
            instances, requests=self._requests, retries=self._retries, failovers=self._failovers,
            role_changes=self._health.role_changes, errors=frozen_counts(self._errors),
            events_dropped=self._hub.dropped,
        )

    def events(self, *, max_buffer: int = 256) -> PoolEvents:
        """Subscribe to the pool's state changes: ``async with pool.events() as events:``.

        ``async for event in events:`` then yields :class:`PoolEvent` records
        (frozen, each with ``kind`` and ``time``, the trio time): an instance
        up (``"up"``) or down (``"down"``, with the reason), a role change
        (``"role"``, old -> new), a retry (``"retry"``: request kind, from
        which instance to which, why) and the pool's close (``"close"``),
        after which iteration ends. Subscribed at once, so call it before
        ``connect()`` to see the first probes' "up" events. Each subscriber
        has its own buffer of ``max_buffer`` events and gets every event; the
        pool never waits for a reader: when the buffer is full the oldest
        event is dropped and counted (:attr:`PoolEvents.dropped`,
        ``statistics().events_dropped``). A plain ``async for event in
        pool.events():`` also works; it ends when the pool is closed.
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ConfigurationError(f"events(): max_buffer must be an int >= 1, got {max_buffer!r}")
        return self._hub.subscribe(max_buffer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._connected else "not connected")
        parts = ", ".join(
            f"{u.key} {u.role()}" + (f" in_flight={u.in_flight}" if u.in_flight else "")
            for u in self._units
        )
        in_flight = sum(u.in_flight for u in self._units)
        return f"<trio_tarantool.ConnectionPool {state} [{parts}] in_flight={in_flight}>"

    # -- the instance task -------------------------------------------------------------
    def _scope(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._scopes.append(scope)
        if self._closed:
            scope.cancel()
        return scope

    async def _instance_task(self, unit: PoolUnit, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own ``unit``'s connection and hand it every PoolTask sent to it.

        Handing over never waits: the request is queued on the connection for
        its caller (:meth:`_submit`), so requests to one instance are
        pipelined and cost no task of their own. The nursery holding the
        connection's reader and writer is shielded: they must end by
        themselves, through ``conn.close()``, because only then do they close
        their socket; a cancellation from outside the pool (a deadline around
        ``async with``) would otherwise leak it. :meth:`close` always runs when
        the pool's nursery winds down, so the shield cannot keep the pool alive.
        """
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as conn_nursery:
                unit.conn.attach(conn_nursery)
                unit.task = trio.lowlevel.current_task()
                unit.request_processing_enabled = True
                receive = unit.receive_channel
                try:
                    with self._scope():
                        task_status.started()
                        while True:
                            self._submit(unit, await receive.receive())
                            while True:  # drain the batch without a checkpoint per task
                                try:
                                    self._submit(unit, receive.receive_nowait())
                                except trio.WouldBlock:
                                    break
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    pass
                finally:
                    unit.request_processing_enabled = False
                    unit.conn.close()
                    unit.task = None
                    # Tasks still in the channel never reached the connection.
                    while True:
                        try:
                            ptask = receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                            break
                        self._wake(ptask, outcome.Error(ConnectionClosedError(
                            f"{unit.key}: the pool was closed before the request was sent",
                            may_have_executed=False)))
                    receive.close()
        unit.ended.set()  # remove() waits for this

    @staticmethod
    def _wake(ptask: PoolTask, result: outcome.Outcome[Any]) -> None:
        if ptask.state == _QUEUED:
            ptask.state = _DONE
            assert ptask.caller is not None
            trio.lowlevel.reschedule(ptask.caller, result)

    def _submit(self, unit: PoolUnit, ptask: PoolTask) -> None:
        """Queue ``ptask`` on the connection for its caller, or send it back."""
        if ptask.state != _QUEUED:
            return  # its caller gave up while it waited in the channel
        assert ptask.request is not None and ptask.caller is not None
        try:
            ticket = unit.conn.submit_nowait(ptask.request, ptask.caller)
        except Exception as exc:  # e.g. the socket failed on a direct write
            self._wake(ptask, outcome.Error(exc))
            return
        if ticket is None:
            # Not possible without waiting (reconnect, schema load, too many in
            # flight): the caller performs it on the connection itself.
            self._wake(ptask, outcome.Value(_SLOW))
        else:
            ptask.ticket = ticket
            ptask.state = _SUBMITTED

    # -- health --------------------------------------------------------------------------
    async def _run_health(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the probe loops and disconnect watchers (:mod:`._health`) until close()."""
        with self._scope():
            await self._health.run(task_status=task_status)

    # -- the request path ----------------------------------------------------------------
    def _closed_error(self) -> ConnectionClosedError:
        if self._closed:
            return ConnectionClosedError("the pool is closed", may_have_executed=False)
        return ConnectionClosedError(
            "the pool is not connected: use 'async with ConnectionPool(...)' "
            "(and connect() if connect_now=False)", may_have_executed=False,
        )

    @staticmethod
    def _closed_during(unit: PoolUnit, exc: ServerError | NetworkError,
                       may_have_executed: bool) -> Exception:
        """The error for a request the pool's close() overtook (``may_have_executed``
        covers every attempt)."""
        if isinstance(exc, NetworkError):
            return ConnectionClosedError(
                f"{unit.key}: the pool was closed while the request was in flight",
                may_have_executed=may_have_executed,
            )
        exc.may_have_executed = may_have_executed  # a real answer from the server
        return exc

    async def _attempt(self, unit: PoolUnit, ptask: PoolTask, deadline: float) -> Any:
        """Send ``request`` to ``unit`` once and wait for its outcome, until ``deadline``.

        The instance task queues it on the connection for this task
        (:meth:`Connection.submit_nowait`; the reply wakes it here); when that
        is not possible at once, or the reply asks to resend (stale schema),
        the request is performed on the connection from this task
        (:meth:`Connection.perform`, under the same deadline). Past the
        deadline: :class:`TarantoolTimeoutError` saying whether the packet was
        written.
        """
        conn = unit.conn
        request = ptask.request
        assert request is not None
        caller = ptask.caller = trio.lowlevel.current_task()
        start = trio.current_time()
        # While the instance task runs (its nursery hosts the connection) and
        # the socket is ready, queuing on the connection never waits: do it
        # here, with no hop and no wake-up of the instance task. Only a request
        # that must wait (connecting, schema, max_in_flight, draining) travels
        # to the instance task over the channel.
        ticket = conn.submit_nowait(request, caller) if unit.task is not None else None
        if ticket is not None:
            ptask.ticket = ticket
            ptask.state = _SUBMITTED
        else:
            try:
                unit.send_channel.send_nowait(ptask)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise self._closed_error() from None

        def abort(_: Any) -> trio.lowlevel.Abort:
            if ptask.state == _SUBMITTED and ptask.ticket is not None:
                ptask.ticket.cancel()
            ptask.state = _DONE
            return trio.lowlevel.Abort.SUCCEEDED

        unit.in_flight += 1
        unit.requests += 1
        try:
            if deadline == math.inf:  # no cancel scope to open and close
                reply = await trio.lowlevel.wait_task_rescheduled(abort)
            else:
                reply = _TIMED_OUT
                with trio.move_on_at(deadline):
                    reply = await trio.lowlevel.wait_task_rescheduled(abort)
            if reply is not _TIMED_OUT:
                if reply is not _SLOW:
                    assert ptask.ticket is not None
                    result = conn.finish(request, ptask.ticket, reply, start)
                    if result is not RESEND:
                        return result
                # Not possible at once, or a stale schema.
                if conn.draining:
                    # The server is shutting down: the connection would wait
                    # for its drain and reconnect there; send it elsewhere.
                    raise NetworkError(f"{unit.key}: the server is shutting down (box.shutdown)",
                                       may_have_executed=False)
                return await conn.perform(request, deadline)
        finally:
            self._release(unit)
        written = ptask.ticket is not None and ptask.ticket.written
        raise TarantoolTimeoutError(
            f"{unit.key}: no reply within socket_timeout={self.socket_timeout}s "
            "(the pool's deadline for the whole request)", may_have_executed=written,
        )

    async def _observed(self, unit: PoolUnit, ptask: PoolTask, deadline: float) -> Any:
        """:meth:`_attempt`, telling the strategy's feedback hook its RTT and outcome.

        ``ok`` is True for a result or a server's error reply (the instance
        answered), False for a NetworkError (timeouts included), None when the
        attempt was abandoned (cancelled: its caller, or a hedged read's
        losing copy).
        """
        start = trio.current_time()
        ok: bool | None = None
        try:
            result = await self._attempt(unit, ptask, deadline)
            ok = True
            return result
        except ServerError:
            ok = True
            raise
        except NetworkError:
            ok = False
            raise
        finally:
            if self._on_result is not None:
                now = trio.current_time()
                self._on_result(unit, now - start, ok, now)

    async def _hedged(self, first: PoolUnit, mode: Mode, ptask: PoolTask, deadline: float) -> Any:
        """A hedged read: ``ptask`` on ``first``, and after the hedge delay a copy elsewhere.

        The first copy to succeed (or to get a final error answer) wins and the
        other is cancelled (its ticket is cancelled: the connection discards
        the late reply and stays in sync). A copy that fails otherwise (a
        refusal, the network) lets the other one finish. If the first copy
        fails before the delay, nothing more is sent: the retry policy
        decides as for any request. When both fail, the first copy's error is
        raised, its ``may_have_executed`` true if either copy may have run
        (the other's failure is noted for the health checks).
        """
        hedge = self._hedge
        assert hedge is not None
        delay = hedge.delay()
        errors: list[tuple[PoolUnit, ServerError | NetworkError]] = []
        won: list[Any] = []
        unexpected: list[Exception] = []
        first_done = trio.Event()

        async def copy(unit: PoolUnit, task: PoolTask, cancel: trio.CancelScope) -> None:
            start = trio.current_time()
            try:
                result = await self._observed(unit, task, deadline)
            except (ServerError, NetworkError) as exc:
                errors.append((unit, exc))
                if isinstance(exc, ServerError) and classify(exc) == Failure.ANSWERED:
                    cancel.cancel()  # a final answer: the other copy would get it too
                    errors.insert(0, errors.pop())
            except Exception as exc:  # not a failure of the attempt: the caller's, as it is
                unexpected.append(exc)
                cancel.cancel()
            else:
                hedge.record(trio.current_time() - start)
                won.append(result)
                cancel.cancel()
            finally:
                if unit is first:
                    first_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, first, ptask, nursery.cancel_scope)
            if delay is not None:
                with trio.move_on_at(min(deadline, trio.current_time() + delay)):
                    await first_done.wait()
                if not first_done.is_set():
                    second = pick_avoiding(self.strategy, mode, [first])
                    if second is not None:
                        twin = PoolTask(ptask.method_name, ptask.args, ptask.kwargs, ptask.request)
                        nursery.start_soon(copy, second, twin, nursery.cancel_scope)
        if unexpected:
            raise unexpected[0]
        if won:
            return won[0]
        if not errors:  # both cancelled by the caller: the nursery re-raised that already
            raise AssertionError("a hedged read ended without an outcome")
        unit, exc = errors[0]
        for other_unit, other in errors[1:]:
            if other_unit is not unit:
                self._health.note_failure(other_unit, other)
            if other.may_have_executed and not exc.may_have_executed:
                exc.may_have_executed = True
        raise exc

    def _take(self, mode: Any) -> tuple[Any, float | None]:
        """``(unit, deadline)`` for a request of ``mode`` sent now: the instance
        the strategy picks, and the request's deadline if that instance is ready,
        counting the request in flight there (the caller must then
        :meth:`_release` it); ``(picked or None, None)`` otherwise.

        The steady state's shortcut: on a plain pool (no hedging, no feedback
        hook), when the picked instance's socket is ready and its instance task
        runs, a box method calls that connection's own method from the caller's
        task: the request is queued, framed and answered exactly as on one
        connection, with no :class:`PoolTask`, no builder call and no channel.
        The instance task still owns the connection (its nursery runs the
        socket's tasks). A request that must wait (connecting, a draining
        server), or finds no instance (not a plain pool, a bad mode, closed),
        takes :meth:`_send`, to the unit already picked if any (one pick per
        attempt).
        """
        if not self._direct_ok or type(mode) is not Mode:
            return _NOT_TAKEN
        try:
            unit = self.strategy.getnext(mode)
        except PoolTopologyError:
            return _NOT_TAKEN
        link = unit.conn._link
        if unit.task is None or link is None or link.draining:
            return unit, None
        unit.in_flight += 1
        unit.requests += 1
        self._requests += 1
        return unit, (_INF if self.socket_timeout is None else self._deadline())

    def _deadline(self) -> float:
        """The deadline of a request starting now (``socket_timeout``), in trio time."""
        timeout = self.socket_timeout
        return math.inf if timeout is None else trio.current_time() + timeout

    def _refused(self, unit: PoolUnit) -> None:
        """A request :meth:`_take` routed was refused before anything was sent
        (a bad argument): it is not a request of the pool's statistics."""
        unit.requests -= 1
        self._requests -= 1

    @staticmethod
    def _release(unit: PoolUnit) -> None:
        """A request routed to ``unit`` ended: one fewer in flight there (and
        :meth:`remove`, if it waits for that instance's last request, is told)."""
        unit.in_flight -= 1
        if unit.drained is not None and not unit.in_flight:
            unit.drained.set()

    async def _send(self, mode: Mode | None, method_name: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any] | None = None, *, kind: Kind | None = None,
                    idempotent: bool = False,
                    picked: PoolUnit | None = None,
                    failed: tuple[PoolUnit, ServerError | NetworkError, float] | None = None) -> Any:
        """Route one request by ``mode`` under one deadline, retrying as :mod:`._retry` says.

        ``picked``: the instance the strategy already chose for the first
        attempt (:meth:`_take`). ``failed``: the first attempt already went
        straight to an instance and failed there, with the request's deadline:
        go on from that failure as if this call had made the attempt.
        """
        if mode is None:
            raise ConfigurationError("Please, specify 'mode' keyword argument")
        if not isinstance(mode, Mode):
            raise ConfigurationError(f"Unexpected mode {mode!r}: mode must be a trio_tarantool.Mode")
        if not isinstance(idempotent, bool):
            raise ConfigurationError(f"idempotent must be True or False, got {idempotent!r}")
        if failed is None and (self._closed or not self._connected):
            raise self._closed_error()  # (a failed first attempt says below what it did)
        request = BUILDERS[method_name](*args, **(kwargs or {}))  # bad arguments fail here, unsent
        if kind is None:
            kind = kind_of(method_name)
        if failed is None:
            self._requests += 1
        deadline = failed[2] if failed is not None else self._deadline()
        may_have_executed = False
        attempt_mode = mode
        previous: ServerError | NetworkError | None = None
        previous_unit: PoolUnit | None = None
        for attempt in range(2):
            try:
                if failed is not None and not attempt:
                    unit = failed[0]
                elif picked is not None and not attempt and not self._closed:
                    unit = picked
                elif self._closed:
                    unit = await self._pick(attempt_mode, deadline)  # raises the closed error
                else:
                    try:  # the usual case, without a coroutine: an instance fits now
                        unit = self.strategy.getnext(attempt_mode)
                    except PoolTopologyError:
                        unit = await self._pick(attempt_mode, deadline)
            except PoolTopologyError as exc:
                self._count_error(exc)
                if previous is None:
                    raise
                self._note_retry(method_name, kind, attempt_mode, previous, previous_unit, None)
                raise self._final(previous, None, may_have_executed) from None
            except ConnectionClosedError as exc:
                if not may_have_executed:
                    raise
                raise ConnectionClosedError(  # closed while waiting to retry: say what the first attempt did
                    f"{exc.message} (while waiting to retry)", may_have_executed=True) from previous
            if previous is not None:
                self._note_retry(method_name, kind, attempt_mode, previous, previous_unit, unit)
            try:
                if failed is not None and not attempt:
                    raise failed[1]
                ptask = PoolTask(method_name, args, kwargs or {}, request)
                if self._plain:
                    return await self._attempt(unit, ptask, deadline)
                if (self._hedge is not None and attempt == 0 and mode in _HEDGE_MODES
                        and (kind == Kind.READ or (idempotent and method_name in ("call", "eval")))):
                    return await self._hedged(unit, mode, ptask, deadline)
                return await self._observed(unit, ptask, deadline)
            except (ServerError, NetworkError) as exc:
                self._count_error(exc)
                decision = decide(kind, attempt_mode, classify(exc), idempotent=idempotent,
                                  attempt=attempt, enabled=self.retry_not_executed,
                                  code_may_have_run=exc.may_have_executed)
                may_have_executed = may_have_executed or decision.may_have_executed
                if previous is not None and exc.__context__ is None:
                    exc.__context__ = previous
                if self._closed:
                    closed = self._closed_during(unit, exc, may_have_executed)
                    if closed is exc:
                        raise
                    raise closed from exc
                self._health.note_failure(unit, exc)
                if not decision.retry or trio.current_time() >= deadline:
                    final = self._final(exc, unit, may_have_executed, retried=previous is not None)
                    if final is exc:
                        raise
                    raise final from exc
                previous, previous_unit, attempt_mode = exc, unit, decision.mode
                # Let the other replies of this instant be seen first: in a
                # switch-over, the refusals of concurrent requests mark the old
                # master read-only before the retry picks an instance.
                await trio.lowlevel.checkpoint()
        raise AssertionError("unreachable: the second attempt never retries")

    def _count_error(self, exc: BaseException) -> None:
        """Count a failed attempt (or "no instance fits") by exception class, for statistics()."""
        name = type(exc).__name__
        self._errors[name] = self._errors.get(name, 0) + 1

    def _note_retry(self, method_name: str, kind: Kind, mode: Mode, error: ServerError | NetworkError,
                    first: PoolUnit | None, second: PoolUnit | None) -> None:
        """Count, log (INFO) and publish a retry: from which instance to which, and why."""
        assert first is not None
        self._retries += 1
        if second is not None and second is not first:
            self._failovers += 1
        reason = str(error)
        where = second.key if second is not None else None
        if where is None:
            logger.info("retry of %s (%s) failed on %s: %s; no instance fits mode %s", method_name,
                        kind.value, first.key, reason, mode.name)
        else:
            logger.info("retry of %s (%s): %s -> %s (mode %s) after: %s", method_name, kind.value,
                        first.key, where, mode.name, reason)
        self._hub.publish(RetryEvent(
            time=trio.current_time(), method=method_name, request_kind=kind.value,
            from_instance=first.key, to_instance=where, mode=mode.name, reason=reason, error=error))

    @staticmethod
    def _final(exc: ServerError | NetworkError, unit: PoolUnit | None, may_have_executed: bool,
               *, retried: bool = False) -> Exception:
        """The error the caller gets: naming its instance, saying whether any attempt may have run."""
        if isinstance(exc, NetworkError):
            where = ""
            if unit is not None and not exc.message.startswith(unit.key):
                where = f"{unit.key} (after a retry)" if retried else unit.key
            return _naming(exc, where, may_have_executed)
        if exc.may_have_executed != may_have_executed:
            exc.may_have_executed = may_have_executed
        return exc

    async def _pick(self, mode: Mode, deadline: float) -> PoolUnit:
        """The strategy's instance for ``mode``, forcing a refresh before giving up.

        When no instance fits, one probe round is forced (the topology may have
        changed since the last probe, e.g. a master elected after a long
        no-master window); within ``probe_timeout`` of a role signal (a
        refusal, a lost connection) the pool keeps refreshing until one fits,
        so a switch-over delays requests instead of failing them. Every wait
        ends by ``deadline``, then the PoolTopologyError is raised.
        """
        forced = False
        while True:
            if self._closed:
                raise self._closed_error()
            try:
                return self.strategy.getnext(mode)
            except PoolTopologyError:
                now = trio.current_time()
                if now >= deadline or (forced and now - self._health.role_signal_at > self.probe_timeout):
                    raise
                forced = True
                await self._health.refresh_all(min(deadline, now + self.probe_timeout))

    def _check_mode(self, mode: Any) -> Mode:
        if not isinstance(mode, Mode):
            raise ConfigurationError(f"Unexpected mode {mode!r}: mode must be a trio_tarantool.Mode")
        if self._closed or not self._connected:
            raise self._closed_error()
        return mode

    async def _pin(self, mode: Any) -> PoolUnit:
        """One instance for ``mode``, under the pool's deadline for one request."""
        mode = self._check_mode(mode)
        return await self._pick(mode, self._deadline())

    # -- streams, transactions, watchers (Tarantool >= 2.10) ---------------------------------
    async def stream(self, *, mode: Mode = Mode.RW) -> Stream:
        """A :class:`~trio_tarantool.Stream` on one instance of ``mode`` (RW by default).

        The instance is picked once: every request of the stream goes to its
        connection, in order (see :meth:`Connection.stream`). Nothing is
        retried elsewhere: a stream's requests (and its transaction) belong to
        that instance. Raises :class:`NotSupportedError` when the server has no
        streams (Tarantool < 2.10).
        """
        unit = await self._pin(mode)
        epoch = unit.role_epoch
        try:
            return await unit.conn.stream()
        except (ServerError, NetworkError) as exc:
            self._health.note_failure(unit, exc, epoch)
            raise

    @asynccontextmanager
    async def transaction(self, *, mode: Mode = Mode.RW, isolation: Any = Isolation.DEFAULT,
                          timeout: float | None = None) -> AsyncIterator[Stream]:  # noqa: ASYNC109
        """``async with pool.transaction() as tx:`` an interactive transaction on one instance.

        The strategy picks one instance of ``mode`` (RW by default) when the
        block is entered, and the whole transaction runs on its connection
        (:meth:`Connection.transaction`: commit on a normal exit, rollback on an
        exception or a cancellation, never left open). Each request has the
        pool's deadline (``socket_timeout``). A transaction is never retried
        on another instance (the pool cannot replay the block): a lost
        connection fails it with a :class:`NetworkError` whose
        ``may_have_executed`` is True only if the lost request was written (a
        COMMIT in flight may have committed); requests after the loss fail
        unsent. ``isolation`` and ``timeout`` (the server's limit, seconds) are
        :meth:`Stream.begin`'s. Raises :class:`NotSupportedError` before
        anything is sent when the server has no transactions (Tarantool < 2.10).
        """
        unit = await self._pin(mode)
        unit.in_flight += 1
        # The block's refusal reaches us only after its rollback: by then an
        # event may have shown the instance's newer role (see note_failure).
        epoch = unit.role_epoch
        try:
            async with unit.conn.transaction(isolation, timeout) as tx:
                yield tx
        except (ServerError, NetworkError) as exc:
            self._health.note_failure(unit, exc, epoch)
            raise
        finally:
            self._release(unit)

    @asynccontextmanager
    async def watch(self, key: str, *, mode: Mode = Mode.ANY) -> AsyncIterator[Watcher]:
        """``async with pool.watch(key, mode=...) as values: async for value in values:``.

        Watches ``key`` (``box.broadcast()`` keys, ``box.status``, ``box.id``,
        ``box.election``...) on one instance of ``mode``, picked when the
        block is entered: its current value first, then each new one (see
        :meth:`Connection.watch`; it survives reconnects to that instance).
        Iteration ends when the pool is closed. To follow every instance, use
        :meth:`watch_all`. Raises :class:`NotSupportedError` when the server
        has no watchers (Tarantool < 2.10).
        """
        unit = await self._pin(mode)
        async with unit.conn.watch(key) as values:
            yield values

    @asynccontextmanager
    async def watch_all(self, key: str) -> AsyncIterator[AsyncIterator[tuple[str, Any]]]:
        """``async with pool.watch_all(key) as events: async for instance, value in events:``.

        Watches ``key`` on every instance of the pool and yields
        ``(instance_key, value)`` pairs (``instance_key`` is ``"host:port"``,
        as in :meth:`statistics`): each instance's current value once it is
        reachable, then each of its changes, the latest when changes come
        faster than they are read. An instance that is down is watched from
        its next successful probe on. Iteration ends when the pool is closed.
        Raises :class:`NotSupportedError` (from iteration) when an instance's
        server has no watchers.
        """
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"watch_all(): key must be a non-empty string, got {key!r}")
        if self._closed or not self._connected:
            raise self._closed_error()
        send, receive = trio.open_memory_channel[outcome.Outcome[tuple[str, Any]]](math.inf)
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            done = [0]

            async def follow(unit: PoolUnit) -> None:
                try:
                    await self._follow_key(unit, key, send)
                except NotSupportedError as exc:
                    send.send_nowait(outcome.Error(exc))
                finally:
                    done[0] += 1
                    if done[0] == len(self._units):
                        send.close()

            for unit in self._units:
                nursery.start_soon(follow, unit)
            try:
                yield _PairIterator(receive)
            except BaseException as exc:
                error = exc
            finally:
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _follow_key(self, unit: PoolUnit, key: str,
                          send: trio.MemorySendChannel[outcome.Outcome[tuple[str, Any]]]) -> None:
        """Send ``(unit.key, value)`` for every value of ``key`` on ``unit`` until close."""
        while not self._closed:
            await unit.connected.wait()
            try:
                async with unit.conn.watch(key) as values:
                    async for value in values:
                        send.send_nowait(outcome.Value((unit.key, value)))
                return
            except NotSupportedError:
                raise
            except Error:
                await self._health._next_probe(unit)

    # -- box API ----------------------------------------------------------------------------
    # Every box method (and the crud calls) goes straight to a ready
    # instance's connection when they can (:meth:`_take`); a failure
    # there continues in :meth:`_send` (retry, naming, statistics) as if it had
    # made the attempt.

    def _direct_failed(self, unit: PoolUnit, exc: BaseException,
                       deadline: float) -> tuple[PoolUnit, ServerError | NetworkError, float]:
        """What :meth:`_send` goes on from after a direct attempt raised ``exc``
        (anything but a server's or the network's error is raised as it is)."""
        if isinstance(exc, ServerError | NetworkError):
            return unit, exc, deadline
        if isinstance(exc, ConfigurationError):
            self._refused(unit)
        raise exc

    async def _routed(self, mode: Mode | None, method_name: str, args: tuple[Any, ...],
                      options: dict[str, Any], on_push: PushCallback | None = None,
                      on_push_ctx: Any = None, *, idempotent: bool = False,
                      pushes: bool = True) -> Any:
        """A box request off the hottest path (update, upsert, delete, eval,
        execute): straight to a ready instance's connection method like the
        others (:meth:`_take`), at the cost of this one coroutine frame, else
        :meth:`_send`. ``options``: the connection method's keyword arguments;
        ``pushes``: whether the method takes ``on_push``."""
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = (self._take(mode) if on_push is None and type(idempotent) is bool
                          else _NOT_TAKEN)
        if deadline is not None:
            try:
                return await getattr(unit.conn, method_name)(*args, **options)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        kwargs = {**options, "on_push": on_push, "on_push_ctx": on_push_ctx} if pushes else options
        return await self._send(mode, method_name, args, kwargs, idempotent=idempotent,
                                picked=unit, failed=failed)

    async def ping(self, notime: bool = False, *, mode: Mode | None = None) -> float | str:
        """PING an instance of ``mode``: RTT in seconds, or "Success" with ``notime``."""
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = self._take(mode)
        if deadline is not None:
            try:
                return await unit.conn.ping(notime)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        return cast(float | str, await self._send(mode, "ping", (notime,), picked=unit, failed=failed))

    async def select(self, space_name: str | int, key: Any = None, *, offset: int = 0,
                     limit: int = _ALL_ROWS, index: str | int = 0, iterator: Any = None,
                     mode: Mode = Mode.ANY, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """SELECT on an instance of ``mode`` (ANY by default)."""
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = self._take(mode) if on_push is None else _NOT_TAKEN
        if deadline is not None:
            try:
                return await unit.conn.select(space_name, key, offset=offset, limit=limit,
                                              index=index, iterator=iterator)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        kwargs = {"offset": offset, "limit": limit, "index": index, "iterator": iterator,
                  "on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "select", (space_name, key), kwargs,
                                               picked=unit, failed=failed))

    async def insert(self, space_name: str | int, values: Sequence[Any], *, mode: Mode = Mode.RW,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """INSERT on an instance of ``mode`` (RW by default)."""
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = self._take(mode) if on_push is None else _NOT_TAKEN
        if deadline is not None:
            try:
                return await unit.conn.insert(space_name, values)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "insert", (space_name, values), kwargs,
                                               picked=unit, failed=failed))

    async def replace(self, space_name: str | int, values: Sequence[Any], *, mode: Mode = Mode.RW,
                      on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """REPLACE on an instance of ``mode`` (RW by default)."""
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = self._take(mode) if on_push is None else _NOT_TAKEN
        if deadline is not None:
            try:
                return await unit.conn.replace(space_name, values)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "replace", (space_name, values), kwargs,
                                               picked=unit, failed=failed))

    async def update(self, space_name: str | int, key: Any, op_list: Sequence[Any], *,
                     index: str | int = 0, mode: Mode = Mode.RW,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """UPDATE on an instance of ``mode`` (RW by default)."""
        return cast(Response, await self._routed(
            mode, "update", (space_name, key, op_list), {"index": index}, on_push, on_push_ctx))

    async def upsert(self, space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
                     index: str | int = 0, mode: Mode = Mode.RW,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """UPSERT on an instance of ``mode`` (RW by default)."""
        return cast(Response, await self._routed(
            mode, "upsert", (space_name, tuple_value, op_list), {"index": index}, on_push, on_push_ctx))

    async def delete(self, space_name: str | int, key: Any, *, index: str | int = 0,
                     mode: Mode = Mode.RW, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """DELETE on an instance of ``mode`` (RW by default)."""
        return cast(Response, await self._routed(
            mode, "delete", (space_name, key), {"index": index}, on_push, on_push_ctx))

    async def call(self, func_name: str, *args: Any, mode: Mode | None = None,
                   on_push: PushCallback | None = None, on_push_ctx: Any = None,
                   idempotent: bool = False) -> Response:
        """CALL a stored function on an instance of ``mode`` (required).

        A CALL refused with ``ER_READONLY``/``ER_LOADING`` is not retried (the
        refusal may come after part of the function ran) and its error says
        ``may_have_executed=True``; pass ``idempotent=True`` when running the
        function twice is harmless, and it is retried like a DML request.
        """
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = self._take(mode) if on_push is None and type(idempotent) is bool else _NOT_TAKEN
        if deadline is not None:
            try:
                return await unit.conn.call(func_name, *args)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "call", (func_name, *args), kwargs,
                                               idempotent=idempotent, picked=unit, failed=failed))

    async def eval(self, expr: str, *args: Any, mode: Mode | None = None,
                   on_push: PushCallback | None = None, on_push_ctx: Any = None,
                   idempotent: bool = False) -> Response:
        """EVAL a Lua chunk on an instance of ``mode`` (required); ``idempotent`` as for :meth:`call`."""
        return cast(Response, await self._routed(
            mode, "eval", (expr, *args), {}, on_push, on_push_ctx, idempotent=idempotent))

    async def execute(self, query: str | int, params: Any = None, *, mode: Mode | None = None,
                      idempotent: bool = False) -> Response:
        """Run SQL on an instance of ``mode`` (required); ``idempotent`` as for :meth:`call`."""
        return cast(Response, await self._routed(
            mode, "execute", (query, params), {}, idempotent=idempotent, pushes=False))

    async def _crud_call_in(self, func_name: str, args: tuple[Any, ...], mode: Mode | None) -> Response:
        """A crud.* CALL: the reads are retried like selects, the writes like any CALL."""
        kind = Kind.READ if func_name in CRUD_READS else Kind.CODE
        if mode is None:
            mode = Mode.ANY
        failed = None
        unit: PoolUnit  # (or None: see _take)
        unit, deadline = self._take(mode)
        if deadline is not None:
            try:
                return await unit.conn.call(func_name, *args)
            except BaseException as exc:
                failed = self._direct_failed(unit, exc, deadline)
            finally:
                self._release(unit)
        return cast(Response, await self._send(mode, "call", (func_name, *args), kind=kind,
                                               picked=unit, failed=failed))


class _PairIterator(AsyncIterator[tuple[str, Any]]):
    """The ``(instance_key, value)`` pairs of :meth:`ConnectionPool.watch_all`."""

    def __init__(self, receive: trio.MemoryReceiveChannel[outcome.Outcome[tuple[str, Any]]]) -> None:
        self._receive = receive

    def __aiter__(self) -> _PairIterator:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        try:
            result = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        return result.unwrap()


@asynccontextmanager
async def open_pool(
    addrs: Sequence[Mapping[str, Any]],
    *,
    user: str | None = None,
    password: str | None = None,
    socket_timeout: float | None = None,
    reconnect_max_attempts: int = 0,
    reconnect_delay: float = 0,
    connect_now: bool = True,
    encoding: str | None = "utf-8",
    call_16: bool = False,
    connection_timeout: float | None = None,
    strategy_class: Callable[[list[PoolUnit]], StrategyInterface[PoolUnit]] = RoundRobinStrategy,
    refresh_delay: float = 1,
    fetch_schema: bool = True,
    probe_timeout: float | None = None,
    retry_not_executed: bool = True,
    status_events: bool = True,
    hedge_after: float | str | None = None,
    discover: bool | int = False,
) -> AsyncIterator[ConnectionPool]:
    """Open a :class:`ConnectionPool`; it is closed and its tasks gone when the block exits."""
    pool = ConnectionPool(
        addrs, user=user, password=password, socket_timeout=socket_timeout,
        reconnect_max_attempts=reconnect_max_attempts, reconnect_delay=reconnect_delay,
        connect_now=connect_now, encoding=encoding, call_16=call_16,
        connection_timeout=connection_timeout, strategy_class=strategy_class,
        refresh_delay=refresh_delay, fetch_schema=fetch_schema, probe_timeout=probe_timeout,
        retry_not_executed=retry_not_executed, status_events=status_events,
        hedge_after=hedge_after, discover=discover,
    )
    async with pool:
        yield pool
