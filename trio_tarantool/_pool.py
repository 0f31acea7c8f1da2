"""A pool of connections to the instances of one Tarantool replicaset.

Theory of operation
-------------------
``async with ConnectionPool(addrs, ...) as pool`` (or ``open_pool``) opens one
nursery that owns everything the pool runs:

* one **instance task** per address (:meth:`ConnectionPool._instance_task`).
  It owns that instance's :class:`~trio_tarantool.Connection` (whose reader and
  writer tasks run in the instance task's own nursery) and the receiving end
  of a trio memory channel.  Every request routed to the instance arrives as a
  :class:`PoolTask`; the instance task starts one handler per task at once,
  so requests to one instance are pipelined on its connection, never handled
  one at a time;
* one **health scanner** (:meth:`ConnectionPool._scanner`), which runs a probe
  loop and a disconnect watcher per instance.  A probe calls ``box.info`` on
  the instance's connection (pipelined with requests, so it never blocks them)
  under its own ``probe_timeout``, so a frozen instance turns UNHEALTHY within
  that time and never delays the probes of the others.

A request (``pool.select(...)``) validates its mode, asks the strategy for an
instance (:mod:`trio_tarantool._strategy`, pure), sends a :class:`PoolTask`
to that instance and waits for the task's outcome.

Invariants (checked by the tests in tests/real/test_pool*.py and, through
the simulator, by tests/sim):

1. **Routing.** A request goes only to an instance the strategy returns for
   its mode: RW only to an instance whose last known ``read_only`` is False,
   RO never to one known rw, PREFER_* to the other kind only when no
   preferred instance is healthy.
2. **Health.** An instance is HEALTHY only after a probe saw it connected,
   ``box.info`` callable and ``box.info.status == 'running'``.  Connection
   loss makes it UNHEALTHY at once (the disconnect watcher, or the failing
   request), and an ``ER_READONLY`` reply marks it read-only at once.  Any
   probe error marks it UNHEALTHY and is remembered in ``last_error``; it
   never ends the probe loop.  Unreachable instances are probed again every
   ``refresh_delay``, forever, in the background.
3. **Fast convergence.** ``ER_READONLY``/``ER_LOADING`` replies, lost
   connections and "no instance fits" errors wake every probe loop, so the
   pool does not wait out ``refresh_delay`` to see a role change.  Within
   ``probe_timeout`` of such a role signal, a request that finds no fitting
   instance keeps refreshing the probes and trying again until one fits or
   ``probe_timeout`` has passed since the signal, instead of failing with
   :class:`PoolTopologyError` at once (a planned switch-over delays writes,
   it does not fail them); in a stable topology the error is immediate, as
   in the reference connector.
4. **At most once.** A request that surely did not execute (refused with
   ``ER_READONLY``/``ER_LOADING``, or a :class:`NetworkError` with
   ``may_have_executed`` False) is re-dispatched once to an instance fitting
   its mode (``retry_not_executed=False`` turns that off; a write refused as
   read-only under ANY or PREFER_RW is re-sent as RW).  A request that
   may have executed is never re-sent; its exception says so.
5. **One outcome.** Every request ends with exactly one result or exception,
   its own: replies are matched by the connection's sync ids, and each
   :class:`PoolTask` carries its own outcome slot.
6. **Bounded time.** With ``socket_timeout`` set, each attempt's reply is
   awaited at most ``socket_timeout`` (by the connection, which knows whether
   the request was sent), and a whole request, queueing and one retry
   included, at most ``2 * socket_timeout`` before it fails with
   :class:`TarantoolTimeoutError`; cancelling a caller cancels its handler.
7. **Lifecycle.** ``connect()`` returns when every instance was probed once,
   whatever the outcome; dead instances never make it fail.  After
   ``close()`` every request fails at once with
   :class:`ConnectionClosedError`; ``close()`` before ``connect()`` is fine;
   when ``async with`` exits, no task of the pool is left.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import outcome
import trio

from ._addrs import Address, validate_addrs
from ._connection import Connection
from ._crud import CrudMixin
from ._errors import (
    ConfigurationError,
    ConnectionClosedError,
    DatabaseError,
    ErrorCode,
    NetworkError,
    PoolTopologyError,
    TarantoolTimeoutError,
)
from ._request import BUILDERS, Request
from ._response import Response
from ._strategy import InstanceState, Mode, RoundRobinStrategy, Status, StrategyInterface

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
#: Replies that mean "refused before executing" and say something about the role.
_REFRESH_CODES = frozenset({ErrorCode.ER_READONLY, ErrorCode.ER_LOADING})
#: Extra time the pool-level deadline gives the connection's own socket_timeout,
#: so the connection's error (which knows if the request was sent) wins.
_TIMEOUT_GRACE = 0.05
#: Shortest time between two probes of one instance when errors wake them early.
_MIN_PROBE_GAP = 0.01


_QUEUED, _SUBMITTED, _DONE = 0, 1, 2


class _Slow:
    """Sent to a caller whose request the instance task could not queue at once."""


_SLOW = _Slow()


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
    #: The connection's waiter once queued on the connection.
    waiter: Any = field(default=None, repr=False)
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
    #: The last error seen while probing or executing on this instance.
    last_error: str | None = None
    #: Requests routed here and not finished yet.
    in_flight: int = 0
    #: Completed probes, successful or not.
    probes: int = 0
    #: Set to cut the probe loop's wait short.
    wake: trio.Event = field(default_factory=trio.Event)
    #: Set while a successful probe left the connection up (disconnect watcher).
    connected: trio.Event = field(default_factory=trio.Event)

    @property
    def addr(self) -> dict[str, Any]:
        """The address as the reference gives it: ``{"host": ..., "port": ..., ...}``."""
        return self.address.as_dict()

    @property
    def key(self) -> str:
        """``host:port`` of the instance."""
        return self.address.key

    def role(self) -> str:
        """``rw``, ``ro`` or ``down``, for repr and logs."""
        if self.state.status != Status.HEALTHY:
            return "down"
        return "rw" if self.state.read_only is False else "ro"


@dataclass(frozen=True)
class InstanceStatistics:
    """A snapshot of one pool instance (see :meth:`ConnectionPool.statistics`)."""

    addr: str
    status: Status
    read_only: bool | None
    last_error: str | None
    in_flight: int


def _check_number(name: str, value: Any, *, allow_none: bool = False, positive: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigurationError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")


def _info_field(info: Any, name: str) -> Any:
    """``info[name]`` for str- or bytes-keyed maps (encoding=None gives bytes)."""
    if not isinstance(info, Mapping):
        raise KeyError(name)
    if name in info:
        return info[name]
    return info[name.encode()]


def _naming(exc: NetworkError, where: str) -> NetworkError:
    """The same kind of error, its message prefixed with the instance it came from."""
    try:
        return type(exc)(f"{where}: {exc.message}", may_have_executed=exc.may_have_executed)
    except TypeError:  # a subclass with another constructor: keep it as it is
        return exc


class ConnectionPool(CrudMixin):
    """A pool of connections to a Tarantool replicaset, routing by request mode.

    Use it as ``async with ConnectionPool(addrs, ...) as pool:``; its API is the
    single :class:`~trio_tarantool.Connection`'s plus a ``mode`` keyword
    (:class:`~trio_tarantool.Mode`).  DML defaults to ``Mode.RW``, ``select``
    and ``crud_*`` to ``Mode.ANY``; ``call``, ``eval``, ``execute`` and
    ``ping`` require ``mode``.  Every user must be allowed to call ``box.info``.

    Args:
        addrs: ``[{"host": ..., "port": ...}, ...]`` (see the seed API).
        user, password, socket_timeout, reconnect_max_attempts, reconnect_delay,
            encoding, call_16, connection_timeout, fetch_schema: passed to every
            connection.
        connect_now: Connect when entering ``async with`` (else call
            :meth:`connect`).
        strategy_class: Chooses instances by mode (round robin by default).
        refresh_delay: Seconds between two ``box.info`` probes of an instance.
        probe_timeout: How long a probe (reconnect included) may take before the
            instance counts as UNHEALTHY; default ``max(1.0, refresh_delay)``,
            or ``connection_timeout`` if larger.
        retry_not_executed: Re-dispatch, once, a request that surely did not
            execute (True by default).
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
    ) -> None:
        addresses = validate_addrs(addrs)
        _check_number("refresh_delay", refresh_delay, positive=True)
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
        for address in addresses:
            opt = address.options
            conn = Connection(
                address.host, address.port, user=user, password=password,
                socket_timeout=socket_timeout, connection_timeout=connection_timeout,
                reconnect_max_attempts=reconnect_max_attempts, reconnect_delay=reconnect_delay,
                encoding=encoding, call_16=call_16, fetch_schema=fetch_schema,
                # Per-instance options of the address:
                auth_type=opt.get("auth_type"), transport=opt.get("transport", ""),
                ssl_key_file=opt.get("ssl_key_file"), ssl_cert_file=opt.get("ssl_cert_file"),
                ssl_ca_file=opt.get("ssl_ca_file"), ssl_ciphers=opt.get("ssl_ciphers"),
                ssl_password=opt.get("ssl_password"),
                ssl_password_file=opt.get("ssl_password_file"),
            )
            send, receive = queue_factory()
            self._units.append(PoolUnit(address, conn, send, receive))
        self.strategy = strategy_class(self._units)
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._scopes: list[trio.CancelScope] = []
        self._connected = False
        self._closed = False
        self._probe_done = trio.Event()
        self._role_signal_at = -math.inf

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
        for unit in self._units:
            await self._nursery.start(self._instance_task, unit)
        await self._nursery.start(self._scanner)

    def close(self) -> None:
        """Stop request processing and close every connection; idempotent.

        Pending requests fail with :class:`ConnectionClosedError`, later ones
        fail at once.  Safe before :meth:`connect`.  The tasks are gone once the
        ``async with`` block has exited.
        """
        if self._closed:
            return
        self._closed = True
        self._probe_done.set()  # requests waiting for a refresh give up at once
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
    def statistics(self) -> tuple[InstanceStatistics, ...]:
        """A frozen snapshot per instance, in address order."""
        return tuple(
            InstanceStatistics(u.key, u.state.status, u.state.read_only, u.last_error, u.in_flight)
            for u in self._units
        )

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
            waiter = unit.conn._try_submit(ptask.request, ptask.caller)
        except Exception as exc:  # e.g. the socket failed on a direct write
            self._wake(ptask, outcome.Error(exc))
            return
        if waiter is None:
            # Not possible without waiting (reconnect, schema load, too many in
            # flight): the caller performs it on the connection itself.
            self._wake(ptask, outcome.Value(_SLOW))
        else:
            ptask.waiter = waiter
            ptask.state = _SUBMITTED

    # -- health --------------------------------------------------------------------------
    async def _scanner(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Probe every instance every ``refresh_delay``; started once all were probed."""
        with self._scope():
            async with trio.open_nursery() as nursery:
                first_round = [trio.Event() for _ in self._units]
                for unit, first in zip(self._units, first_round, strict=True):
                    nursery.start_soon(self._probe_loop, unit, first)
                    nursery.start_soon(self._watch_disconnect, unit)
                for first in first_round:
                    await first.wait()
                task_status.started()

    async def _probe_loop(self, unit: PoolUnit, first: trio.Event) -> None:
        while True:
            started = trio.current_time()
            await self._probe(unit)
            first.set()
            with trio.move_on_after(self.refresh_delay):
                await unit.wake.wait()
                # Woken early: still leave a small gap, so a burst of errors
                # (say, every RW request while there is no master) cannot turn
                # probing into a busy loop.
                await trio.sleep_until(started + min(_MIN_PROBE_GAP, self.refresh_delay))
            unit.wake = trio.Event()

    async def _probe(self, unit: PoolUnit) -> None:
        """One ``box.info`` probe; any failure makes the unit UNHEALTHY, nothing raises."""
        error: str | None = None
        new = InstanceState(Status.UNHEALTHY, unit.state.read_only)
        try:
            with trio.fail_after(self.probe_timeout):
                response = await unit.conn.call("box.info")
            info = response.data[0] if response.data else None
            read_only = _info_field(info, "ro")
            status = _info_field(info, "status")
            if isinstance(status, bytes):
                status = status.decode()
            if not isinstance(read_only, bool):
                error = f"box.info.ro is {read_only!r}, not a boolean"
            elif status != "running":
                error = f"box.info.status is {status!r}, not 'running'"
                new = InstanceState(Status.UNHEALTHY, read_only)
            else:
                new = InstanceState(Status.HEALTHY, read_only)
        except trio.TooSlowError:
            error = f"box.info probe took longer than probe_timeout={self.probe_timeout}s"
        except (KeyError, IndexError, TypeError):
            error = "box.info answer has no 'ro'/'status' fields"
        except Exception as exc:  # never let a probe error end the loop
            error = f"box.info probe failed: {exc!r}" if not isinstance(exc, NetworkError | DatabaseError) \
                else f"box.info probe failed: {exc}"
        if self._closed:
            return
        if new.status == Status.HEALTHY and not unit.conn.is_connected():
            # The answer came, then the connection dropped before we got here:
            # the disconnect watcher is not armed for it, so decide now.
            new = InstanceState(Status.UNHEALTHY, new.read_only)
            error = "connection lost right after the probe"
            unit.wake.set()
        if error is not None:
            unit.last_error = error
        self._set_state(unit, new)
        if new.status == Status.HEALTHY:
            unit.connected.set()
        unit.probes += 1
        self._probe_done.set()
        self._probe_done = trio.Event()

    async def _watch_disconnect(self, unit: PoolUnit) -> None:
        """Mark the unit UNHEALTHY the moment its connection drops."""
        while True:
            await unit.connected.wait()
            await unit.conn.wait_disconnected()
            unit.connected = trio.Event()
            if self._closed:
                return
            error = unit.conn.last_error
            unit.last_error = f"connection lost: {error}" if error is not None else "connection lost"
            self._set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
            self._wake_all()

    def _set_state(self, unit: PoolUnit, state: InstanceState) -> None:
        if state != unit.state:
            unit.state = state
            self.strategy.update()

    def _wake_all(self, *, role_signal: bool = True) -> None:
        """Cut every probe loop's wait short.

        ``role_signal`` says the cause hints at a role change (a refusal, a lost
        connection); for ``probe_timeout`` after one, a request finding no
        fitting instance waits for the refresh rather than failing at once.
        """
        if role_signal:
            self._role_signal_at = trio.current_time()
        for unit in self._units:
            unit.wake.set()

    async def _refresh_all(self) -> None:
        """Wake every probe and wait (up to ``probe_timeout``) until each finished one."""
        before = [u.probes for u in self._units]
        self._wake_all(role_signal=False)
        with trio.move_on_after(self.probe_timeout + _TIMEOUT_GRACE):
            while not self._closed and any(u.probes <= n for u, n in zip(self._units, before, strict=True)):
                await self._probe_done.wait()

    # -- the request path ----------------------------------------------------------------
    def _closed_error(self) -> ConnectionClosedError:
        if self._closed:
            return ConnectionClosedError("the pool is closed", may_have_executed=False)
        return ConnectionClosedError(
            "the pool is not connected: use 'async with ConnectionPool(...)' "
            "(and connect() if connect_now=False)", may_have_executed=False,
        )

    @staticmethod
    def _raise_closed_during(unit: PoolUnit, exc: DatabaseError | NetworkError) -> NoReturn:
        """Re-raise a failure of a request the pool's close() overtook."""
        if isinstance(exc, NetworkError):
            raise ConnectionClosedError(
                f"{unit.key}: the pool was closed while the request was in flight",
                may_have_executed=exc.may_have_executed,
            ) from exc
        raise exc  # a real answer from the server

    async def _dispatch(self, unit: PoolUnit, method_name: str, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
        """Send one PoolTask to ``unit`` and wait for its outcome."""
        conn = unit.conn
        request = BUILDERS[method_name](*args, **kwargs)  # bad arguments fail here, unsent
        ptask = PoolTask(method_name, args, kwargs, request, trio.lowlevel.current_task())
        start = trio.current_time()
        try:
            unit.send_channel.send_nowait(ptask)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self._closed_error() from None

        def abort(_: Any) -> trio.lowlevel.Abort:
            if ptask.state == _SUBMITTED:
                conn._forget(ptask.waiter)
            ptask.state = _DONE
            return trio.lowlevel.Abort.SUCCEEDED

        unit.in_flight += 1
        try:
            if self.socket_timeout is None:
                reply = await trio.lowlevel.wait_task_rescheduled(abort)
            else:
                with trio.fail_after(self.socket_timeout):
                    reply = await trio.lowlevel.wait_task_rescheduled(abort)
            if reply is _SLOW or reply.code == _WRONG_SCHEMA:
                return await conn._perform(request)
        except trio.TooSlowError:
            written = ptask.waiter is not None and ptask.waiter.written
            raise TarantoolTimeoutError(
                f"no reply within socket_timeout={self.socket_timeout}s", may_have_executed=written
            ) from None
        finally:
            unit.in_flight -= 1
        if ptask.waiter.push_error is not None:
            raise ptask.waiter.push_error
        return conn._result(request, reply, start)

    def _note_failure(self, unit: PoolUnit, exc: Exception) -> None:
        """Update the unit's state from a request error (rule 2 and 3)."""
        if isinstance(exc, DatabaseError) and exc.code in _REFRESH_CODES:
            unit.last_error = str(exc)
            if exc.code == ErrorCode.ER_READONLY:
                self._set_state(unit, InstanceState(unit.state.status, True))
            else:
                self._set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
            self._wake_all()
        elif isinstance(exc, TarantoolTimeoutError):
            unit.last_error = str(exc)
            unit.wake.set()  # a probe tells a slow request from a frozen instance
        elif isinstance(exc, NetworkError) and not self._closed:
            unit.last_error = str(exc)
            if not unit.conn.is_connected():
                self._set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
            self._wake_all()

    async def _send(self, mode: Mode | None, method_name: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any] | None = None) -> Any:
        """Route one request by ``mode``, with failover (theory of operation, rule 4)."""
        if mode is None:
            raise ConfigurationError("Please, specify 'mode' keyword argument")
        if not isinstance(mode, Mode):
            raise ConfigurationError(f"mode must be a trio_tarantool.Mode, got {mode!r}")
        if self._closed or not self._connected:
            raise self._closed_error()
        kwargs = kwargs or {}
        if self.socket_timeout is None:
            return await self._send_with_retry(mode, method_name, args, kwargs)
        deadline = self.socket_timeout * 2 + _TIMEOUT_GRACE
        with trio.move_on_after(deadline) as scope:
            return await self._send_with_retry(mode, method_name, args, kwargs)
        assert scope.cancelled_caught
        raise TarantoolTimeoutError(
            f"no reply from the pool within {deadline:.3g}s (socket_timeout={self.socket_timeout}s, "
            f"retry included)", may_have_executed=True,
        )

    async def _pick(self, mode: Mode) -> PoolUnit:
        """The strategy's instance for ``mode``, waiting out a role change.

        Within ``probe_timeout`` of a role signal (a refusal, a lost
        connection), finding no fitting instance is taken as a switch-over in
        progress: the probes are refreshed until one fits or that time is up,
        so a planned switch delays requests instead of failing them. In a
        stable topology the PoolTopologyError is immediate.
        """
        while True:
            if self._closed:
                raise self._closed_error()
            try:
                return self.strategy.getnext(mode)
            except PoolTopologyError:
                if trio.current_time() - self._role_signal_at > self.probe_timeout:
                    self._wake_all(role_signal=False)
                    raise
                await self._refresh_all()

    async def _send_with_retry(self, mode: Mode, method_name: str, args: tuple[Any, ...],
                               kwargs: dict[str, Any]) -> Any:
        try:
            unit = self.strategy.getnext(mode)
        except PoolTopologyError:
            unit = await self._pick(mode)
        try:
            return await self._dispatch(unit, method_name, args, kwargs)
        except (DatabaseError, NetworkError) as exc:
            if self._closed:
                self._raise_closed_during(unit, exc)
            self._note_failure(unit, exc)
            if not (self.retry_not_executed and not exc.may_have_executed
                    and (isinstance(exc, NetworkError) or exc.code in _REFRESH_CODES)):
                named = _naming(exc, unit.key) if isinstance(exc, NetworkError) else exc
                if named is exc:
                    raise
                raise named from exc
            first = exc
        # The request surely did not run: send it once more, elsewhere if possible.
        # A write refused as read-only under ANY or PREFER_RW goes to the master
        # (waiting for one during a switch-over): another replica would refuse it too.
        retry_mode = mode
        if (isinstance(first, DatabaseError) and first.code == ErrorCode.ER_READONLY
                and mode in (Mode.ANY, Mode.PREFER_RW)):
            retry_mode = Mode.RW
        try:
            retry_unit = await self._pick(retry_mode)  # e.g. a planned switch-over in progress
        except PoolTopologyError:
            raise first from None
        try:
            return await self._dispatch(retry_unit, method_name, args, kwargs)
        except (DatabaseError, NetworkError) as exc:
            if self._closed:
                self._raise_closed_during(retry_unit, exc)
            self._note_failure(retry_unit, exc)
            exc.__context__ = first
            named = _naming(exc, f"{retry_unit.key} (after a retry)") if isinstance(exc, NetworkError) else exc
            if named is exc:
                raise
            raise named from exc

    # -- box API ----------------------------------------------------------------------------
    async def ping(self, notime: bool = False, *, mode: Mode | None = None) -> float | str:
        """PING an instance of ``mode``: RTT in seconds, or "Success" with ``notime``."""
        return cast(float | str, await self._send(mode, "ping", (notime,)))

    async def select(self, space_name: str | int, key: Any = None, *, offset: int = 0,
                     limit: int = 0xFFFFFFFF, index: str | int = 0, iterator: Any = None,
                     mode: Mode = Mode.ANY, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """SELECT on an instance of ``mode`` (ANY by default)."""
        kwargs = {"offset": offset, "limit": limit, "index": index, "iterator": iterator,
                  "on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "select", (space_name, key), kwargs))

    async def insert(self, space_name: str | int, values: Sequence[Any], *, mode: Mode = Mode.RW,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """INSERT on an instance of ``mode`` (RW by default)."""
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "insert", (space_name, values), kwargs))

    async def replace(self, space_name: str | int, values: Sequence[Any], *, mode: Mode = Mode.RW,
                      on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """REPLACE on an instance of ``mode`` (RW by default)."""
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "replace", (space_name, values), kwargs))

    async def update(self, space_name: str | int, key: Any, op_list: Sequence[Any], *,
                     index: str | int = 0, mode: Mode = Mode.RW,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """UPDATE on an instance of ``mode`` (RW by default)."""
        kwargs = {"index": index, "on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "update", (space_name, key, op_list), kwargs))

    async def upsert(self, space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
                     index: str | int = 0, mode: Mode = Mode.RW,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """UPSERT on an instance of ``mode`` (RW by default)."""
        kwargs = {"index": index, "on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "upsert", (space_name, tuple_value, op_list), kwargs))

    async def delete(self, space_name: str | int, key: Any, *, index: str | int = 0,
                     mode: Mode = Mode.RW, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """DELETE on an instance of ``mode`` (RW by default)."""
        kwargs = {"index": index, "on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "delete", (space_name, key), kwargs))

    async def call(self, func_name: str, *args: Any, mode: Mode | None = None,
                   on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """CALL a stored function on an instance of ``mode`` (required)."""
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "call", (func_name, *args), kwargs))

    async def eval(self, expr: str, *args: Any, mode: Mode | None = None,
                   on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """EVAL a Lua chunk on an instance of ``mode`` (required)."""
        kwargs = {"on_push": on_push, "on_push_ctx": on_push_ctx}
        return cast(Response, await self._send(mode, "eval", (expr, *args), kwargs))

    async def execute(self, query: str | int, params: Any = None, *, mode: Mode | None = None) -> Response:
        """Run SQL on an instance of ``mode`` (required)."""
        return cast(Response, await self._send(mode, "execute", (query, params)))

    async def _crud_call(self, func_name: str, args: tuple[Any, ...], mode: Mode | None) -> Response:
        return cast(Response, await self._send(Mode.ANY if mode is None else mode, "call",
                                               (func_name, *args)))


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
) -> AsyncIterator[ConnectionPool]:
    """Open a :class:`ConnectionPool`; it is closed and its tasks gone when the block exits."""
    pool = ConnectionPool(
        addrs, user=user, password=password, socket_timeout=socket_timeout,
        reconnect_max_attempts=reconnect_max_attempts, reconnect_delay=reconnect_delay,
        connect_now=connect_now, encoding=encoding, call_16=call_16,
        connection_timeout=connection_timeout, strategy_class=strategy_class,
        refresh_delay=refresh_delay, fetch_schema=fetch_schema, probe_timeout=probe_timeout,
        retry_not_executed=retry_not_executed,
    )
    async with pool:
        yield pool
