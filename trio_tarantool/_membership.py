"""Pool membership: add and remove instances while the pool runs, discover them, wait for one.

The pool (``_pool.py``) inherits :class:`PoolMembershipMixin`; this module
holds its membership methods and the pure helpers behind them, so the
request path in ``_pool.py`` knows nothing of membership.

Theory of operation
-------------------
The pool's list of units (``pool._units``) is the one list the strategy
(``strategy.pool``) and the health runner (``health.units``) read. Membership
changes mutate that list in place, between two checkpoints, and then tell the
strategy (``update()``), so every decision after the change sees the new set.

* :meth:`~PoolMembershipMixin.add`: the address is validated with the
  constructor's validator (its messages name the index it will have,
  ``addrs[3]``; a duplicate is refused); its unit is built with the pool's
  connection options; its instance task and health loops start in the pool's
  nursery (``nursery.start``: start-up errors reach the caller); it returns
  after the first probe, like :meth:`connect`.
* :meth:`~PoolMembershipMixin.remove`: the unit leaves the list at once, so
  from the call on the strategy never returns it (**no new request is routed
  there**). Its health loops stop (no state change, warning or event about an
  instance that left). Requests already on it finish; the wait is bounded by
  ``timeout``, after which its connection is closed and whatever is still
  there fails with :class:`~trio_tarantool.ConnectionClosedError` whose
  ``may_have_executed`` says whether it was written (one not written may be
  re-sent elsewhere by the retry policy, as for any request that surely did
  not run). Then the connection and the instance task end. The request path
  of the removed unit signals its last request's end (``unit.drained``, one
  attribute check per request on the others).
* :meth:`~PoolMembershipMixin.discover`: reads the replication URIs a healthy
  instance knows (``box.info.replication[*].upstream.peer`` and
  ``box.cfg.replication``; the same on 2.6 and 3.x), drops their credentials,
  maps loopback hosts to the host the pool reaches that instance by, and adds
  the members the pool lacks. It never removes one: a member missing from
  one instance's view is not proof that it left (an anonymous replica, a
  peer being re-joined, a partial ``box.cfg.replication``), the user's own
  addresses must stay, and losing capacity silently is worse than probing a
  dead address, which the health checks already make harmless. Removal is an
  operator's decision: :meth:`~PoolMembershipMixin.remove`.
* :meth:`~PoolMembershipMixin.wait_for`: waits on the health runner's change
  signal (every probe end, state change, membership change, close), with no
  polling of its own.

Invariants (tests/real/test_pool_membership.py, tests/sim/test_pool_membership.py):
no request is routed to a unit after ``remove()`` was called for it; every
request in flight there ends with one outcome; when ``remove()`` returns, the
unit's tasks and socket are gone.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ._addrs import Address, validate_addrs
from ._connection import Connection
from ._errors import (
    ConfigurationError,
    ConnectionClosedError,
    PoolTopologyError,
    TarantoolTimeoutError,
)
from ._observe import PoolEvent, format_error, logger
from ._options import connection_options
from ._strategy import HasState, Mode, Status
from ._tls import MASK

if TYPE_CHECKING:
    from ._health import Health
    from ._observe import EventHub
    from ._pool import PoolUnit
    from ._strategy import StrategyInterface

__all__ = [
    "DISCOVER_LUA",
    "InstanceAddedEvent",
    "InstanceRemovedEvent",
    "PoolMembershipMixin",
    "SharedOptions",
    "fits",
    "member_addresses",
    "parse_uri",
]

#: Lua run on one instance by :meth:`PoolMembershipMixin.discover`: the
#: replication URIs it knows, credentials stripped on the server (the password
#: in ``box.cfg.replication`` never crosses the wire).
DISCOVER_LUA = """
local uris, seen = {}, {}
local function add(u)
    if type(u) == 'table' then u = u.uri or u[1] end
    if type(u) == 'number' then u = tostring(u) end
    if type(u) ~= 'string' then return end
    u = u:gsub('^[^@/]*@', '')
    if not seen[u] then seen[u] = true; table.insert(uris, u) end
end
for _, member in pairs(box.info.replication) do
    if type(member) == 'table' and member.upstream ~= nil then add(member.upstream.peer) end
end
local cfg = box.cfg.replication
if type(cfg) == 'table' and cfg.uri == nil then
    for _, u in ipairs(cfg) do add(u) end
elseif cfg ~= nil then
    add(cfg)
end
return uris
"""
#: ``discover=True``: look for new members every this many ``refresh_delay`` periods.
DEFAULT_DISCOVER_EVERY = 10
#: remove()'s bound when the pool has no socket_timeout (seconds).
DEFAULT_REMOVE_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class InstanceAddedEvent(PoolEvent):
    """An instance joined the pool (:meth:`ConnectionPool.add` or discovery).

    Attributes:
        instance: ``host:port``.
        discovered: True when discovery found it.
    """

    kind: str = field(init=False, default="added")
    instance: str
    discovered: bool = False


@dataclass(frozen=True, kw_only=True)
class InstanceRemovedEvent(PoolEvent):
    """An instance left the pool (:meth:`ConnectionPool.remove` returned).

    Attributes:
        instance: ``host:port``.
        abandoned: Requests still in flight there at the timeout (they failed
            with :class:`ConnectionClosedError`); 0 after a clean drain.
    """

    kind: str = field(init=False, default="removed")
    instance: str
    abandoned: int = 0


class SharedOptions(dict[str, Any]):
    """The pool's connection options kept for the instances it adds later.

    A plain dict whose repr and str mask the ``password`` (as
    :class:`~._addrs.MaskedDict` masks ``ssl_password``): the pool holds it,
    nothing that prints the pool shows it.
    """

    def __repr__(self) -> str:
        items = ", ".join(
            f"{key!r}: {MASK if key == 'password' and value is not None else repr(value)}"
            for key, value in self.items())
        return "{" + items + "}"

    __str__ = __repr__


def fits(units: Sequence[HasState], mode: Mode) -> bool:
    """True when some unit fits ``mode`` by the strategies' routing rules.

    The rules of :mod:`._strategy`: HEALTHY units only; RW needs
    ``read_only is False``, RO any other healthy unit, PREFER_* and ANY any
    healthy unit. Pure, and unlike ``strategy.getnext`` it moves no rotation.
    """
    for unit in units:
        state = unit.state
        if state.status != Status.HEALTHY:
            continue
        if mode == Mode.RW and state.read_only is not False:
            continue
        if mode == Mode.RO and state.read_only is False:
            continue
        return True
    return False


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_uri(uri: str, origin: Address) -> dict[str, Any] | None:
    """The pool address (``{"host", "port"}``) of a Tarantool URI read from ``origin``.

    Credentials (``user:password@``) and a ``tcp://`` scheme are dropped. A
    URI is relative to the instance it was read from, so a bare port or a
    loopback host (``localhost``, ``127.0.0.1``, ``::1``) means ``origin``'s
    host; ``unix/:/path`` is a unix socket (``host`` None), kept only when
    ``origin`` is one too (a path means nothing on another machine). None for
    anything else (an empty or unparsable URI).
    """
    text = uri.strip()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if text.startswith("tcp://"):
        text = text[len("tcp://"):]
    if text.startswith("unix/:"):
        path = text[len("unix/:"):]
        return {"host": None, "port": path} if path and origin.host is None else None
    if text.isdigit():
        host, port = "", text
    elif text.startswith("["):
        head, sep, port = text[1:].partition("]:")
        host = head if sep else ""
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    if origin.host is None:
        return None  # a TCP member of an instance reached over a unix socket: no host to use
    if host in ("", "0.0.0.0", "::") or _is_loopback(host):
        host = origin.host
    return {"host": host, "port": int(port)}


def member_addresses(uris: Any, origin: Address) -> list[dict[str, Any]]:
    """The distinct addresses in ``uris`` (the answer of :data:`DISCOVER_LUA`), sorted.

    Sorted by ``host:port`` so that discovery adds members in an order that
    does not depend on the server's table iteration.
    """
    found: dict[tuple[str | None, int | str], dict[str, Any]] = {}
    if not isinstance(uris, list | tuple):
        return []
    for uri in uris:
        if isinstance(uri, bytes):
            uri = uri.decode(errors="replace")
        if not isinstance(uri, str):
            continue
        addr = parse_uri(uri, origin)
        if addr is None:
            continue
        host = addr["host"]
        found.setdefault((host.lower() if host else None, addr["port"]), addr)
    return [found[key] for key in sorted(found, key=lambda k: (str(k[0]), str(k[1])))]


def _ident(address: Address) -> tuple[str | None, int | str]:
    """What makes two addresses the same instance (as validate_addrs compares them)."""
    return (address.host.lower() if address.host else None, address.port)


class PoolMembershipMixin:
    """:meth:`add`, :meth:`remove`, :meth:`discover` and :meth:`wait_for` of the pool."""

    if TYPE_CHECKING:  # defined by ConnectionPool
        addrs: list[dict[str, Any]]
        socket_timeout: float | None
        refresh_delay: float
        probe_timeout: float
        strategy: StrategyInterface[PoolUnit]
        _units: list[PoolUnit]
        _nursery: trio.Nursery | None
        _health: Health
        _hub: EventHub
        _closed: bool
        _connected: bool
        _conn_options: dict[str, Any]
        _discover_every: int

        def _scope(self) -> trio.CancelScope: ...
        async def _instance_task(self, unit: PoolUnit, *, task_status: Any = ...) -> None: ...
        def _closed_error(self) -> ConnectionClosedError: ...

    _membership_lock: trio.Lock | None = None

    def _lock(self) -> trio.Lock:
        """One membership change at a time (two add() of one address must not both pass)."""
        if self._membership_lock is None:
            self._membership_lock = trio.Lock()
        return self._membership_lock

    def _new_unit(self, address: Address, where: str) -> PoolUnit:
        """A unit for ``address`` with the pool's connection options (as the constructor builds them)."""
        from ._pool import PoolUnit, queue_factory

        conn = Connection.from_options(connection_options(
            address.host, address.port, where=where, **self._conn_options, **address.options))
        send, receive = queue_factory()
        return PoolUnit(address, conn, send, receive)

    def _find(self, addr: Any, what: str) -> PoolUnit:
        """The unit of ``addr`` (a dict as in ``addrs``, or ``"host:port"``), or ConfigurationError."""
        if isinstance(addr, str):
            for unit in self._units:
                if unit.key == addr:
                    return unit
            shown = addr
        else:
            if not isinstance(addr, Mapping) or "host" not in addr or "port" not in addr:
                raise ConfigurationError(
                    f"{what}: addr must be a dict with 'host' and 'port' or a 'host:port' string, "
                    f"got {addr!r}")
            try:
                wanted = validate_addrs([addr])[0]
            except ConfigurationError as exc:
                raise ConfigurationError(f"{what}: {exc}") from None
            for unit in self._units:
                if _ident(unit.address) == _ident(wanted):
                    return unit
            shown = wanted.key
        known = ", ".join(u.key for u in self._units) or "none"
        raise ConfigurationError(f"{what}: {shown} is not in the pool (its instances: {known})")

    # -- add ---------------------------------------------------------------------------------
    async def add(self, addr: Mapping[str, Any]) -> None:
        """Add the instance at ``addr`` (a dict as in ``addrs``) to the running pool.

        Validated like the constructor's ``addrs`` (same messages, naming the
        index it gets, ``addrs[3]``); an address already in the pool is
        refused. The instance gets the pool's connection options, its
        instance task and health checks start, and the call returns once it
        was probed (reachable or not, within ``probe_timeout``): it takes
        requests from its first successful probe on. Before :meth:`connect`
        (``connect_now=False``) it is only recorded; ``connect()`` starts it.

        Raises:
            ConfigurationError: A bad or duplicate address.
            ConnectionClosedError: The pool is closed.
        """
        await self._add(addr, discovered=False)

    async def _add(self, addr: Mapping[str, Any], *, discovered: bool) -> PoolUnit:
        if self._closed:
            raise ConnectionClosedError("add(): the pool is closed", may_have_executed=False)
        async with self._lock():
            if self._closed:
                raise ConnectionClosedError("add(): the pool is closed", may_have_executed=False)
            number = len(self.addrs)
            # The constructor's validator on the whole list: same checks, same messages.
            address = validate_addrs([*self.addrs, addr])[number]
            unit = self._new_unit(address, f"addrs[{number}]")
            if not self._connected:
                self._units.append(unit)
                self.addrs.append(address.as_dict())
                self.strategy.update()
                await trio.lowlevel.checkpoint()
                return unit
            nursery = self._nursery
            assert nursery is not None
            await nursery.start(self._instance_task, unit)
            self._units.append(unit)
            self.addrs.append(address.as_dict())
            self._health.changed()
            logger.info("%s added to the pool%s", unit.key, " (discovered)" if discovered else "")
            self._hub.publish(InstanceAddedEvent(time=trio.current_time(), instance=unit.key,
                                                 discovered=discovered))
            await nursery.start(self._unit_health, unit)
            return unit

    async def _unit_health(self, unit: PoolUnit, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The health loops of an added unit, under a scope the pool's close() cancels."""
        with self._scope():
            await self._health.run_unit(unit, task_status=task_status)

    # -- remove ------------------------------------------------------------------------------
    async def remove(self, addr: Mapping[str, Any] | str, *,
                     timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Take an instance out of the pool; return when it is gone.

        From the call on, no new request is routed there (the strategy no
        longer sees it). Requests already there finish, for at most
        ``timeout`` seconds (default: ``socket_timeout``, or 10 s without
        one); then its connection is closed and those still there fail with
        :class:`ConnectionClosedError`, ``may_have_executed`` True only for
        the ones written (one not written may be re-sent elsewhere, as the
        retry policy allows). Streams and watchers opened on it end there too.
        When it returns, the instance's tasks and socket are gone. Removing
        the last instance is allowed: requests then fail with
        :class:`PoolTopologyError` until one is added.

        Args:
            addr: The instance: a dict as in ``addrs`` or ``"host:port"``.
            timeout: Seconds to let its requests finish.

        Raises:
            ConfigurationError: ``addr`` is not in the pool, or a bad timeout.
            ConnectionClosedError: The pool is closed.
        """
        if timeout is None:
            timeout = self.socket_timeout if self.socket_timeout is not None else DEFAULT_REMOVE_TIMEOUT
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise ConfigurationError(f"remove(): timeout must be a number >= 0, got {timeout!r}")
        if self._closed:
            raise ConnectionClosedError("remove(): the pool is closed", may_have_executed=False)
        # 1. Out of the routing before the first checkpoint: from the call on.
        unit = self._find(addr, "remove()")
        deadline = trio.current_time() + timeout
        index = self._units.index(unit)
        del self._units[index]
        del self.addrs[index]
        self._health.changed()
        logger.info("%s removed from the pool (%d request(s) in flight)", unit.key, unit.in_flight)
        abandoned = 0
        try:
            # 2. No more probes, events or warnings about it.
            await self._health.stop_unit(unit)
            self._health.forget(unit)  # failures of its last requests change nothing now
            # 3. Let its requests finish, until the deadline (or the pool's close,
            #    which closes every connection: its requests end at once).
            if unit.in_flight:
                unit.drained = trio.Event()
                with trio.move_on_at(deadline):
                    await unit.drained.wait()
            abandoned = unit.in_flight
            if abandoned:
                logger.info("%s: %d request(s) still in flight after remove()'s timeout=%ss: closing",
                            unit.key, abandoned, timeout)
        finally:
            # 4. Its connection and instance task end (requests left fail, saying
            #    whether each was written), also when the caller was cancelled.
            self._health.forget(unit)
            running = unit.task is not None
            unit.request_processing_enabled = False
            unit.send_channel.close()
            unit.conn.close()
        await unit.conn.aclose()
        if running:
            await unit.ended.wait()  # the instance task, after its connection's tasks
        self._hub.publish(InstanceRemovedEvent(time=trio.current_time(), instance=unit.key,
                                               abandoned=abandoned))

    # -- wait_for ----------------------------------------------------------------------------
    async def wait_for(self, mode: Mode, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Return once an instance fits ``mode`` (at once if one does).

        Woken by every probe, state change and membership change (no polling).

        Raises:
            TarantoolTimeoutError: None fits after ``timeout`` seconds
                (``may_have_executed`` False: nothing was sent).
            ConnectionClosedError: The pool is closed (or closes meanwhile),
                or not connected.
            ConfigurationError: ``mode`` is not a Mode, or a bad timeout.
        """
        if not isinstance(mode, Mode):
            raise ConfigurationError(f"wait_for(): mode must be a trio_tarantool.Mode, got {mode!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or not timeout >= 0):
            raise ConfigurationError(f"wait_for(): timeout must be a number >= 0 or None, got {timeout!r}")
        if self._closed or not self._connected:
            raise self._closed_error()
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        await trio.lowlevel.checkpoint()
        with trio.move_on_at(deadline):
            while True:
                if self._closed:
                    raise self._closed_error()
                if fits(self._units, mode):
                    return
                await self._health.wait_change()
        raise TarantoolTimeoutError(
            f"wait_for(): no instance fits mode {mode.name} after timeout={timeout}s",
            may_have_executed=False)

    # -- discovery ---------------------------------------------------------------------------
    async def discover(self) -> list[str]:
        """Add the replicaset members the pool lacks; return their ``host:port`` keys.

        Asks the first healthy instance (in address order, rw first) for the
        replication URIs it knows (``box.info.replication`` upstream peers and
        ``box.cfg.replication``), under ``probe_timeout``. Members are added
        with :meth:`add` (the pool's options; the per-address options of the
        instance they were read from, e.g. TLS); none is ever removed (see
        the module notes). A URI with a loopback host or a bare port means
        the host the pool reaches the answering instance by.

        Raises:
            PoolTopologyError: No healthy instance to ask.
            ConnectionClosedError: The pool is closed or not connected.
            NetworkError, DatabaseError: The question failed.
        """
        if self._closed or not self._connected:
            raise self._closed_error()
        healthy = [u for u in self._units if u.state.status == Status.HEALTHY]
        healthy.sort(key=lambda u: u.state.read_only is not False)  # stable: rw first
        if not healthy:
            raise PoolTopologyError("discover(): no healthy instance to read box.info.replication from")
        source = healthy[0]
        with trio.fail_after(self.probe_timeout):
            response = await source.conn.eval(DISCOVER_LUA)
        data = response.data
        uris = data[0] if isinstance(data, list | tuple) and data else []
        known = {_ident(u.address) for u in self._units}
        added: list[str] = []
        for member in member_addresses(uris, source.address):
            full = {**source.address.options, **member}
            try:
                if _ident(validate_addrs([full])[0]) in known:
                    continue
                unit = await self._add(full, discovered=True)
            except ConfigurationError as exc:  # unusable, or added meanwhile by someone else
                logger.debug("discover(): %s not added: %s", member, exc)
                continue
            known.add(_ident(unit.address))
            added.append(unit.key)
        return added

    async def _discovery_loop(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """``discover=``: discover once (``connect()`` waits for it), then every N refreshes."""
        with self._scope():
            period = max(self.refresh_delay, 0.01) * self._discover_every
            first = True
            while not self._closed:
                try:
                    found = await self.discover()
                    if found:
                        logger.info("discovered %s", ", ".join(found))
                except (trio.TooSlowError, Exception) as exc:  # never ends the loop
                    if self._closed:
                        break
                    logger.info("discovery failed: %s", format_error(exc))
                if first:
                    first = False
                    task_status.started()
                await trio.sleep(period)
            if first:
                task_status.started()
