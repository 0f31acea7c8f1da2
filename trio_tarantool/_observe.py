"""Observing a pool: its statistics records, its events, and the helpers behind its logs.

The pool (``_pool.py``) and its health runner (``_health.py``) report what
happens in three ways, each for a different reader:

* **logs** on the ``trio_tarantool.pool`` logger (stdlib :mod:`logging`),
  for operators: state changes at INFO, detail at DEBUG, repeated probe
  failures rate-limited by :class:`Throttle`. The library adds no handler
  (stdlib practice: the application configures logging; with none, the
  records below WARNING go nowhere and the rare WARNING ones reach Python's
  last-resort handler on stderr);
* **warnings** (:func:`emit_warning`), the reference connector's
  ``ClusterConnectWarning``/``PoolTopologyWarning``/``NetworkWarning``, for
  code ported from it, once per problem;
* **statistics** (:class:`PoolStatistics`, frozen snapshots with counters)
  and **events** (:class:`PoolEvent` records on per-subscriber trio memory
  channels, :class:`PoolEvents`), for dashboards and tests.

Nothing here does I/O; the clock is the caller's (``now`` arguments).
"""

from __future__ import annotations

import logging
import math
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import trio

from ._errors import Error
from ._strategy import Status

__all__ = [
    "EWMA_WEIGHT",
    "EventHub",
    "InstanceDownEvent",
    "InstanceStatistics",
    "InstanceUpEvent",
    "PoolClosedEvent",
    "PoolEvent",
    "PoolEvents",
    "PoolStatistics",
    "RetryEvent",
    "RoleChangeEvent",
    "Throttle",
    "emit_warning",
    "logger",
    "role_name",
]

#: The pool's logger (the connection logs on ``trio_tarantool.connection``).
logger = logging.getLogger("trio_tarantool.pool")

#: Weight of the newest sample in the probe RTT's moving average.
EWMA_WEIGHT = 0.2


def role_name(read_only: bool | None) -> str:
    """``rw``, ``ro`` or ``unknown`` for a ``box.info.ro`` value, as logs and events say it."""
    if read_only is None:
        return "unknown"
    return "ro" if read_only else "rw"


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class InstanceStatistics:
    """A snapshot of one pool instance (see :meth:`ConnectionPool.statistics`).

    Attributes:
        addr: ``host:port`` (or the socket path).
        status: HEALTHY or UNHEALTHY.
        read_only: ``box.info.ro`` as last known, None if never known.
        last_error: The exception behind the last problem seen on this
            instance (a probe's or a request's :class:`NetworkError` or
            :class:`ServerError`, a :class:`TarantoolTimeoutError` for a
            probe slower than ``probe_timeout``, or a
            :class:`PoolTopologyError` describing an unusable state such as a
            status other than ``running``); None if there was none.
        in_flight: Requests routed here and not finished.
        last_error_message: ``last_error`` as one line, with its context
            (e.g. ``box.info probe failed: ...``), as the logs say it.
        requests: Attempts sent to this instance (a retried request counts
            on each instance it was sent to).
        probes: Probes completed, successful or not.
        probe_failures: Probes that failed.
        probe_rtt: Seconds the last successful probe took (trio clock), None
            before the first one.
        probe_rtt_ewma: Moving average of ``probe_rtt`` (newest weighs
            :data:`EWMA_WEIGHT`).
        last_probe_ok_at: ``trio.current_time()`` when the last successful
            probe ended, None before the first one.
        role_changes: How often its ``box.info.ro`` flipped while known.
    """

    addr: str
    status: Status
    read_only: bool | None
    last_error: BaseException | None
    in_flight: int
    last_error_message: str | None = None
    requests: int = 0
    probes: int = 0
    probe_failures: int = 0
    probe_rtt: float | None = None
    probe_rtt_ewma: float | None = None
    last_probe_ok_at: float | None = None
    role_changes: int = 0


@dataclass(frozen=True)
class PoolStatistics(Sequence[InstanceStatistics]):
    """A snapshot of a pool: counters, and one :class:`InstanceStatistics` per address.

    It is also the sequence of its instances (in address order), so
    ``pool.statistics()[0]``, ``for s in pool.statistics()`` and
    ``(only,) = pool.statistics()`` read the instances as they always did.

    Attributes:
        instances: One record per address, in address order.
        requests: Requests the pool accepted (each counts once, however many
            attempts it took).
        retries: Requests sent a second time (the retry policy allowed it).
        failovers: Retries that went to another instance than the first attempt.
        role_changes: ``box.info.ro`` flips seen on any instance.
        errors: Failed attempts and "no instance fits" by exception class
            name, e.g. ``{"ServerError": 2, "PoolTopologyError": 1}`` (a
            retried attempt's error counts too).
        events_dropped: Events that :meth:`ConnectionPool.events` subscribers
            lost because they read too slowly (the oldest are dropped).
    """

    instances: tuple[InstanceStatistics, ...]
    requests: int = 0
    retries: int = 0
    failovers: int = 0
    role_changes: int = 0
    errors: Mapping[str, int] = field(default_factory=lambda: types.MappingProxyType({}))
    events_dropped: int = 0

    @overload
    def __getitem__(self, index: int) -> InstanceStatistics: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[InstanceStatistics, ...]: ...

    def __getitem__(self, index: int | slice) -> InstanceStatistics | tuple[InstanceStatistics, ...]:
        return self.instances[index]

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[InstanceStatistics]:
        return iter(self.instances)


# -- events ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PoolEvent:
    """A change of a pool's state (see :meth:`ConnectionPool.events`).

    Attributes:
        kind: ``"up"``, ``"down"``, ``"role"``, ``"retry"`` or ``"close"``
            (one per subclass).
        time: ``trio.current_time()`` when it happened.
    """

    kind: str = field(init=False, default="")
    time: float


@dataclass(frozen=True, kw_only=True)
class InstanceUpEvent(PoolEvent):
    """An instance became HEALTHY (a probe, or an event on its connection, found it usable).

    Attributes:
        instance: ``host:port``.
        role: ``"rw"`` or ``"ro"``.
    """

    kind: str = field(init=False, default="up")
    instance: str
    role: str


@dataclass(frozen=True, kw_only=True)
class InstanceDownEvent(PoolEvent):
    """An instance became UNHEALTHY.

    Attributes:
        instance: ``host:port``.
        role: Its role until then (``"rw"``, ``"ro"`` or ``"unknown"``).
        reason: Why, as one line (``InstanceStatistics.last_error_message``).
        error: The exception behind it (``InstanceStatistics.last_error``).
    """

    kind: str = field(init=False, default="down")
    instance: str
    role: str
    reason: str
    error: BaseException | None = None


@dataclass(frozen=True, kw_only=True)
class RoleChangeEvent(PoolEvent):
    """An instance's ``box.info.ro`` flipped (a switch-over, an election, ``ER_READONLY``).

    Attributes:
        instance: ``host:port``.
        old: ``"rw"`` or ``"ro"`` before.
        new: ``"rw"`` or ``"ro"`` now.
    """

    kind: str = field(init=False, default="role")
    instance: str
    old: str
    new: str


@dataclass(frozen=True, kw_only=True)
class RetryEvent(PoolEvent):
    """A failed request was sent once more (or the retry found no instance).

    Attributes:
        method: The pool method (``"insert"``, ``"call"``...).
        request_kind: ``"read"``, ``"write"`` or ``"code"`` (the retry policy's kind).
        from_instance: Where the first attempt failed.
        to_instance: Where the retry went; None if no instance fitted.
        mode: The retry's mode name (``"RW"``...).
        reason: The first attempt's error, as one line.
        error: That error.
    """

    kind: str = field(init=False, default="retry")
    method: str
    request_kind: str
    from_instance: str
    to_instance: str | None
    mode: str
    reason: str
    error: BaseException | None = None

    @property
    def failover(self) -> bool:
        """True when the retry went to another instance."""
        return self.to_instance is not None and self.to_instance != self.from_instance


@dataclass(frozen=True, kw_only=True)
class PoolClosedEvent(PoolEvent):
    """The pool was closed; it is the last event, then iteration ends."""

    kind: str = field(init=False, default="close")


class PoolEvents:
    """One subscriber's events: ``async with pool.events() as events: async for e in events:``.

    Subscribed when :meth:`ConnectionPool.events` returns (nothing published
    after that is missed). Each subscriber has its own bounded buffer; when it
    is full, the **oldest** event is dropped (a dashboard wants the latest
    state; the pool never waits for a reader) and counted in :attr:`dropped`
    and in ``PoolStatistics.events_dropped``. Iteration ends after the
    :class:`PoolClosedEvent`; leaving ``async with`` (or :meth:`aclose`)
    unsubscribes.
    """

    def __init__(self, hub: EventHub, max_buffer: int) -> None:
        self._hub = hub
        self._send, self._receive = trio.open_memory_channel[PoolEvent](max_buffer)
        #: Events this subscriber lost because its buffer was full.
        self.dropped = 0

    def _offer(self, event: PoolEvent) -> bool:
        """Queue ``event`` without waiting (dropping the oldest if full); False once closed."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            try:
                self._receive.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                pass
            self.dropped += 1
            self._hub.dropped += 1
            try:
                self._send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def _end(self) -> None:
        self._send.close()

    def __aiter__(self) -> PoolEvents:
        return self

    async def __anext__(self) -> PoolEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> PoolEvents:
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe: no more events are queued, iteration ends."""
        self._hub.unsubscribe(self)
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()


class EventHub:
    """The pool's subscribers: every published event goes to each of them, never waiting."""

    def __init__(self) -> None:
        self._subscribers: list[PoolEvents] = []
        #: Events dropped over all subscribers (slow readers).
        self.dropped = 0
        self.closed = False

    def subscribe(self, max_buffer: int) -> PoolEvents:
        """A new subscriber; already ended if the hub is closed."""
        events = PoolEvents(self, max_buffer)
        if self.closed:
            events._end()
        else:
            self._subscribers.append(events)
        return events

    def unsubscribe(self, events: PoolEvents) -> None:
        if events in self._subscribers:
            self._subscribers.remove(events)

    def publish(self, event: PoolEvent) -> None:
        """Queue ``event`` for every subscriber (cheap when there is none)."""
        if not self._subscribers:
            return
        for events in list(self._subscribers):
            if not events._offer(event):
                self.unsubscribe(events)

    def close(self, event: PoolEvent) -> None:
        """Publish the last event and end every subscriber's iteration."""
        if self.closed:
            return
        self.publish(event)
        self.closed = True
        for events in self._subscribers:
            events._end()
        self._subscribers.clear()


# -- logs and warnings -----------------------------------------------------------------------
class Throttle:
    """Whether a repeated report (a failing probe) is due: pure, the clock is the caller's.

    A report is due when its message differs from the last one reported for
    the same key, or ``interval`` seconds after that report; :meth:`reset`
    (the instance is healthy again) makes the next one due at once. So a dead
    instance logs its failure when it goes down, then at most once per
    ``interval`` or when the error changes, never once per probe.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, tuple[str, float]] = {}

    def due(self, key: str, message: str, now: float) -> bool:
        """True if ``message`` for ``key`` should be reported at ``now`` (and note it as reported)."""
        last = self._last.get(key)
        if last is not None and last[0] == message and now - last[1] < self.interval:
            return False
        self._last[key] = (message, now)
        return True

    def reset(self, key: str) -> None:
        self._last.pop(key, None)


def emit_warning(message: str, category: type[Warning], *, background: bool) -> None:
    """``warnings.warn(message, category)``, safe in the pool's background tasks.

    Where warnings are turned into errors (``-W error``, pytest's
    ``filterwarnings = error``), :func:`warnings.warn` raises. In the caller's
    task (``background=False``, e.g. ``connect()``) that exception propagates,
    as the filter asks; in a background task (a probe loop) it would tear the
    whole pool down, so it is logged at WARNING instead.
    """
    try:
        warnings.warn(message, category, stacklevel=3)
    except Warning:
        if not background:
            raise
        logger.warning("%s: %s (a warning filtered as an error; not raised in the pool's "
                       "background task)", category.__name__, message)


def ewma(previous: float | None, sample: float) -> float:
    """The moving average after ``sample`` (the first sample is the average)."""
    if previous is None or math.isnan(previous):
        return sample
    return previous + EWMA_WEIGHT * (sample - previous)


def format_error(exc: BaseException) -> str:
    """One line for a log: the library's errors by their message, others with their type."""
    return str(exc) if isinstance(exc, Error) else repr(exc)


def frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only copy of a counter mapping, sorted by name (stable reprs)."""
    return types.MappingProxyType(dict(sorted(counts.items())))
