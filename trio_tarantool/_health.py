"""Health of the pool's instances: probe loops, disconnect watchers, pacing.

The pool (``_pool.py``) owns one :class:`Health`; it runs, per instance, a
probe loop and a disconnect watcher in one nursery (:meth:`Health.run`), and
is told about request failures (:meth:`Health.note_failure`).

Probes
------
A probe is one ``EVAL "return box.info.ro, box.info.status"`` on the
instance's own connection (pipelined with the requests, never blocking them),
under ``probe_timeout``. EVAL, not ``CALL box.info``: a connection opened with
``call_16=True`` sends CALL as CALL_16, which wraps the answer differently.
An instance is HEALTHY only after a probe read a boolean ``ro`` and the status
``running``; anything else (including any exception) makes it UNHEALTHY with
the reason in ``last_error``, and never ends the loop.

When probes run (:class:`Pacer`, pure)
--------------------------------------
* every ``refresh_delay`` after the previous probe started (the cadence);
* earlier when woken (a role signal: ``ER_READONLY``/``ER_LOADING``, a lost
  connection, a request finding no fitting instance), but never sooner than
  the instance's *early gap* after its previous probe. The gap starts at
  10 ms and doubles with each early probe, up to ``refresh_delay``; one probe
  on the plain cadence (a quiet period) resets it. So a switch-over is seen
  within milliseconds, while a storm of signals costs each instance at most
  ``log2(refresh_delay / 10 ms)`` extra probes before it is back to the
  cadence;
* an instance whose probes fail or whose connection keeps dropping backs off
  exponentially (50 ms, 100 ms, ... up to ``refresh_delay``, with jitter):
  woken early, it waits that long since its previous probe, so a flapping
  instance costs about one connect per ``refresh_delay``. The jitter comes
  from a :class:`random.Random` seeded with the instance's address, so runs
  (and the simulator) stay reproducible. The backoff ends once the instance
  has answered probes for ``refresh_delay`` without a failure.
* The loss of a connection that was stable wakes every instance (the master
  may be gone); further losses of an instance in backoff wake nobody: a
  flapping instance costs its neighbours no extra probes.

Events (Tarantool >= 2.10: IPROTO watchers)
-------------------------------------------
Where the server announces watchers (``conn.features``), each instance's
connection also watches two keys, and the pool applies what they say the
moment it arrives, between probes:

* ``box.status`` (``{is_ro, is_ro_cfg, status, ...}``): the role
  (``is_ro`` is ``box.info.ro``) and the status. An event can change the role
  and make the instance UNHEALTHY (a status other than ``running``); it makes
  it HEALTHY again only while the last probe succeeded on the same
  connection (``unit.connected``): liveness stays the probes' job.
* ``box.shutdown``: the server is stopping gracefully; its connection drains
  (no new request is sent there). The instance is UNHEALTHY at once, so new
  requests go to the other instances that fit; a probe brings it back once it
  answers again.

Probes keep running every ``refresh_delay`` for liveness, and remain the only
source on servers without watchers (2.6, the simulator) or with
``status_events=False``.

Leader hints (Tarantool 3.x elections)
--------------------------------------
An ``ER_READONLY`` from 3.x names the current leader in its error fields
(``leader_uuid``, matched against each instance's greeting). That instance
is then probed every :data:`MIN_GAP` (not on the doubling early gap) until it
answers ``ro == false`` or ``probe_timeout`` has passed: a new leader that
still has to claim the synchronous queue is seen writable within about one
round trip of the moment it is, and the refused write is sent there.

What it reports (:mod:`._observe`)
----------------------------------
Every change of an instance's state goes through :meth:`Health.set_state`,
which logs it at INFO on ``trio_tarantool.pool`` ("10.0.0.1:3301 became rw
(was ro)", "... is UNHEALTHY (was rw): <reason>", "... is up (ro)"), counts
role changes and publishes an event (:class:`~._observe.InstanceUpEvent`,
:class:`~._observe.InstanceDownEvent`, :class:`~._observe.RoleChangeEvent`).
A failing probe that changes nothing (a dead instance, polled every
``refresh_delay``) is logged at INFO when its error is new or
:data:`PROBE_LOG_INTERVAL` after the last such record, else at DEBUG. The
reference's warnings: a :class:`~._errors.NetworkWarning` once per lost
connection (the disconnect watcher), a :class:`~._errors.PoolTopologyWarning`
once per topology problem (no rw instance, or several, for longer than
``probe_timeout``; an instance that answers but is unusable, once per
reason). ``last_error`` is the exception behind the problem,
``last_error_message`` its one-line form.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._connection import ShutdownDrained
from ._errors import (
    Error,
    ErrorCode,
    NetworkError,
    NetworkWarning,
    PoolTopologyError,
    PoolTopologyWarning,
    ServerError,
    TarantoolTimeoutError,
)
from ._iproto import _constants as C
from ._observe import (
    EventHub,
    InstanceDownEvent,
    InstanceUpEvent,
    RoleChangeEvent,
    Throttle,
    emit_warning,
    ewma,
    format_error,
    logger,
    role_name,
)
from ._retry import Failure, classify
from ._strategy import InstanceState, Status

if TYPE_CHECKING:
    from ._pool import PoolUnit

__all__ = ["PROBE_LUA", "STATUS_KEY", "Health", "Pacer"]

#: The probe: two values, whatever the connection's call_16 setting.
PROBE_LUA = "return box.info.ro, box.info.status"
#: The watched key that carries the role and status (Tarantool >= 2.10).
STATUS_KEY = "box.status"
#: The key a server sets to true when it starts a graceful shutdown.
SHUTDOWN_KEY = "box.shutdown"
#: Shortest gap between two probes of one instance when woken early.
MIN_GAP = 0.01
#: First step of the failure backoff.
BACKOFF_BASE = 0.05
#: A probe failure that repeats is logged at INFO at most this often (seconds).
PROBE_LOG_INTERVAL = 60.0
#: Topology problems the pool warns about (keys of ``Health._problems``).
_NO_RW, _SEVERAL_RW = "no rw", "several rw"


class Pacer:
    """When one instance may be probed next: pure bookkeeping, no I/O, no clock.

    Args:
        refresh_delay: The pool's cadence (also the cap of every gap).
        seed: Seeds the jitter (the instance's ``host:port``): deterministic.
    """

    def __init__(self, refresh_delay: float, seed: str) -> None:
        self.refresh_delay = refresh_delay
        self._rng = random.Random(seed)
        #: Consecutive failures (failed probes, lost connections).
        self.failures = 0
        #: When the last failure happened.
        self.failed_at = -math.inf
        #: Current minimum gap between probes when woken early.
        self.early_gap = min(MIN_GAP, refresh_delay)

    def backoff(self) -> float:
        """The failure backoff for the next early probe (0 when healthy), jittered in [d/2, d]."""
        if self.failures == 0:
            return 0.0
        exponent = min(self.failures - 1, 30)
        delay = min(self.refresh_delay, BACKOFF_BASE * 2.0 ** exponent)
        return delay * (0.5 + 0.5 * self._rng.random())

    def early_wait(self) -> float:
        """Seconds after the previous probe's start before an early probe may start."""
        return min(self.refresh_delay, max(self.early_gap, self.backoff()))

    def after_wait(self, *, early: bool) -> None:
        """Note whether the probe about to start was woken early or is on the cadence."""
        if early:
            self.early_gap = min(self.refresh_delay, self.early_gap * 2)
        else:
            self.early_gap = min(MIN_GAP, self.refresh_delay)

    def failed(self, now: float) -> bool:
        """Note a failure; True if the instance was stable until now (a new problem)."""
        was_stable = self.failures == 0
        self.failures += 1
        self.failed_at = now
        return was_stable

    def succeeded(self, now: float) -> None:
        """Note a successful probe: the backoff ends after ``refresh_delay`` without failures."""
        if self.failures and now - self.failed_at >= self.refresh_delay:
            self.failures = 0


class _Loops:
    """One unit's running health loops: their cancel scope, first probe, and end."""

    __slots__ = ("done", "first", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        #: Set after the unit's first probe (or when its loops end without one).
        self.first = trio.Event()
        #: Set once every loop of the unit has ended.
        self.done = trio.Event()


def _info_value(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class Health:
    """Probe loops and disconnect watchers of the pool's instances.

    Args:
        units: The pool's units, in address order.
        on_change: Called after any unit's state changed (the strategy's update).
        refresh_delay, probe_timeout: The pool's options.
        status_events: Follow ``box.status``/``box.shutdown`` events where
            the server has watchers (the pool's ``status_events``).
        hub: Where state-change events go (the pool's :meth:`events` subscribers).
    """

    def __init__(self, units: Sequence[PoolUnit], on_change: Callable[[], None],
                 refresh_delay: float, probe_timeout: float, *, status_events: bool = True,
                 hub: EventHub | None = None) -> None:
        self.units = units
        self.on_change = on_change
        self.refresh_delay = refresh_delay
        self.probe_timeout = probe_timeout
        self.pacers: dict[int, Pacer] = {id(u): Pacer(refresh_delay, u.key) for u in units}
        #: Set by the pool's close(): probes stop changing states.
        self.closed = False
        #: When the last role signal (refusal, lost connection) happened.
        self.role_signal_at = -math.inf
        self.status_events = status_events
        #: Bumped on every change of any unit's state.
        self.changes = 0
        #: Events applied (box.status and box.shutdown), for statistics and tests.
        self.events = 0
        #: id(unit) -> until when it is probed at MIN_GAP (a leader hint).
        self._hints: dict[int, float] = {}
        self._probe_done = trio.Event()
        self.hub = hub if hub is not None else EventHub()
        #: Flips of ``read_only`` seen on any instance.
        self.role_changes = 0
        #: Rate limit of repeated probe-failure records, per instance.
        self.throttle = Throttle(PROBE_LOG_INTERVAL)
        #: Topology problem -> [since when, warned yet].
        self._problems: dict[str, list[Any]] = {}
        #: id(unit) -> the unusable-state reason last warned about.
        self._unusable: dict[int, str] = {}
        #: id(unit) -> its running loops (membership: a unit's loops stop alone).
        self._loops: dict[int, _Loops] = {}

    def pacer(self, unit: PoolUnit) -> Pacer:
        return self.pacers[id(unit)]

    def close(self) -> None:
        """Stop: waits for a refresh end at once."""
        self.closed = True
        self._probe_done.set()

    # -- states and signals ------------------------------------------------------------
    def set_state(self, unit: PoolUnit, state: InstanceState) -> None:
        """Replace ``unit``'s state; a change is logged, counted and published."""
        old = unit.state
        if state != old:
            unit.state = state
            self.changes += 1
            self._report(unit, old, state)
            self.on_change()
            self._progress()

    @staticmethod
    def fail(unit: PoolUnit, error: BaseException, message: str) -> None:
        """Note the problem behind ``unit``'s next state: the exception and its one line."""
        unit.last_error = error
        unit.last_error_message = message

    def _report(self, unit: PoolUnit, old: InstanceState, new: InstanceState) -> None:
        """Log, count and publish the change from ``old`` to ``new`` (INFO: production level)."""
        now = trio.current_time()
        key = unit.key
        if old.read_only is not None and new.read_only is not None and old.read_only != new.read_only:
            unit.role_changes += 1
            self.role_changes += 1
            before, after = role_name(old.read_only), role_name(new.read_only)
            logger.info("%s became %s (was %s)", key, after, before)
            self.hub.publish(RoleChangeEvent(time=now, instance=key, old=before, new=after))
        if old.status != new.status:
            if new.status == Status.HEALTHY:
                self.throttle.reset(key)
                self._unusable.pop(id(unit), None)
                logger.info("%s is up (%s)", key, role_name(new.read_only))
                self.hub.publish(InstanceUpEvent(time=now, instance=key, role=role_name(new.read_only)))
            else:
                reason = unit.last_error_message or "unknown reason"
                self.throttle.due(key, reason, now)  # reported here: the probe need not repeat it
                logger.info("%s is UNHEALTHY (was %s): %s", key, role_name(old.read_only), reason)
                self.hub.publish(InstanceDownEvent(time=now, instance=key, role=role_name(old.read_only),
                                                   reason=reason, error=unit.last_error))
        self.check_topology(now)

    def check_topology(self, now: float) -> None:
        """Warn once per topology problem lasting longer than ``probe_timeout``.

        The problems: no healthy rw instance, or several. One that ends is
        logged at INFO; if it comes back it is a new problem.
        """
        if self.closed:
            return
        rw = [u.key for u in self.units if u.state.status == Status.HEALTHY and u.state.read_only is False]
        self._track(_NO_RW, not rw, now, "no healthy rw instance in the pool")
        self._track(_SEVERAL_RW, len(rw) > 1, now, f"several rw instances in the pool: {', '.join(rw)}")

    def _track(self, problem: str, present: bool, now: float, description: str) -> None:
        state = self._problems.get(problem)
        if not present:
            if state is not None:
                del self._problems[problem]
                if state[1]:
                    logger.info("topology: %s no more", problem)
            return
        if state is None:
            self._problems[problem] = state = [now, False]
        if not state[1] and now - state[0] > self.probe_timeout:
            state[1] = True
            message = f"{description} for more than probe_timeout={self.probe_timeout}s"
            logger.warning("topology: %s", message)
            emit_warning(message, PoolTopologyWarning, background=True)

    def _progress(self) -> None:
        """Wake whoever waits in :meth:`refresh_all` (a probe ended or a state changed)."""
        self._probe_done.set()
        self._probe_done = trio.Event()

    def wake_all(self, *, role_signal: bool = True) -> None:
        """Cut every probe loop's wait short (each still keeps its pace).

        ``role_signal`` says the cause hints at a role change; for
        ``probe_timeout`` after one, a request finding no fitting instance
        waits for the refresh rather than failing at once.
        """
        if role_signal:
            self.role_signal_at = trio.current_time()
        for unit in self.units:
            unit.wake.set()

    def lost(self, unit: PoolUnit, error: BaseException, reason: str) -> None:
        """``unit``'s connection is gone: UNHEALTHY now; a new problem wakes everyone."""
        if id(unit) not in self.pacers:
            return  # removed from the pool (a request still in flight there failed)
        self.fail(unit, error, reason)
        if unit.state.status != Status.HEALTHY:
            unit.wake.set()  # already known (the failing request or the watcher was first)
            return
        self.set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
        if self.pacer(unit).failed(trio.current_time()):
            self.wake_all()
        else:
            unit.wake.set()  # its own pace (backoff) decides when it is probed

    def note_failure(self, unit: PoolUnit, exc: BaseException, epoch: int | None = None) -> None:
        """Update ``unit`` from a request's failure (none once it left the pool).

        ``epoch``: ``unit.role_epoch`` when the request started, if its failure
        may be noted late (a transaction's, after its rollback): a read-only
        refusal older than a sighting of the instance writable then only wakes
        the probes instead of marking it read-only again.
        """
        if self.closed or id(unit) not in self.pacers:
            return
        if isinstance(exc, ServerError):
            if classify(exc) == Failure.READONLY:
                self.fail(unit, exc, str(exc))
                if epoch is not None and epoch != unit.role_epoch and unit.state.read_only is False:
                    self.wake_all()  # stale: a probe confirms the newer sighting
                    return
                self.set_state(unit, InstanceState(unit.state.status, True))
                self._hint_leader(unit, exc)
                self.wake_all()
            elif exc.code == ErrorCode.ER_LOADING:
                self.fail(unit, exc, str(exc))
                self.set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
                self.wake_all()
        elif isinstance(exc, TarantoolTimeoutError):
            self.fail(unit, exc, str(exc))
            unit.wake.set()  # a probe tells a slow request from a frozen instance
        elif isinstance(exc, NetworkError):
            if not unit.conn.is_connected():
                self.lost(unit, exc, str(exc))
            else:
                self.fail(unit, exc, str(exc))
                unit.wake.set()

    def _hint_leader(self, unit: PoolUnit, exc: ServerError) -> None:
        """Probe the leader a 3.x ER_READONLY names every MIN_GAP until it is writable."""
        fields = exc.extra_info.fields if exc.extra_info is not None else {}
        leader = fields.get("leader_uuid")
        if leader is None:
            return
        for candidate in self.units:
            greeting = candidate.conn.greeting
            if greeting is not None and greeting.uuid is not None and str(greeting.uuid) == str(leader):
                self._hints[id(candidate)] = trio.current_time() + self.probe_timeout
                candidate.wake.set()
                return

    def _hinted(self, unit: PoolUnit) -> bool:
        until = self._hints.get(id(unit))
        if until is None:
            return False
        if unit.state.read_only is False or trio.current_time() > until:
            del self._hints[id(unit)]
            return False
        return True

    async def refresh_all(self, deadline: float) -> None:
        """Wake every probe and wait until each finished one, or any state changed
        (an event, a probe), or ``deadline``, or close."""
        units = list(self.units)  # membership may change meanwhile
        before = [u.probes for u in units]
        changes = self.changes
        self.wake_all(role_signal=False)
        with trio.move_on_at(deadline):
            while not self.closed and self.changes == changes and any(
                    u.probes <= n and id(u) in self._loops for u, n in zip(units, before, strict=True)):
                await self._probe_done.wait()

    # -- events ----------------------------------------------------------------------------
    def apply_status(self, unit: PoolUnit, value: Any) -> None:
        """Apply a ``box.status`` event (``{is_ro, status, ...}``) to ``unit``."""
        if self.closed or not isinstance(value, Mapping):
            return
        conn = unit.conn
        read_only, status = value.get("is_ro"), _info_value(value.get("status"))
        if not isinstance(read_only, bool) or not conn.is_connected() or conn.draining:
            return  # not a role we can use; or liveness is the probes' and the watcher's
        self.events += 1
        unit.role_epoch += 1
        if status != "running":
            message = f"box.status event: status is {status!r}, not 'running'"
            self.fail(unit, PoolTopologyError(f"{unit.key}: {message}"), message)
            self.set_state(unit, InstanceState(Status.UNHEALTHY, read_only))
        elif unit.connected.is_set():
            self.set_state(unit, InstanceState(Status.HEALTHY, read_only))
        else:  # not probed on this connection yet: note the role, the probe decides health
            self.set_state(unit, InstanceState(unit.state.status, read_only))

    def apply_shutdown(self, unit: PoolUnit, value: Any) -> None:
        """Apply a ``box.shutdown`` event: a shutting-down instance takes no new request."""
        if self.closed or value is not True:
            return
        self.events += 1
        message = "the server is shutting down (box.shutdown)"
        self.fail(unit, PoolTopologyError(f"{unit.key}: {message}"), message)
        self.set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
        self.wake_all()  # it may have been the master

    # -- the tasks -----------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Probe and watch every instance; ``started`` once each was probed once."""
        async with trio.open_nursery() as nursery:
            first_round: list[trio.Event] = []
            for unit in list(self.units):  # a snapshot: add() starts the units it adds itself
                loops = self._loops.get(id(unit))
                if loops is None:
                    loops = self._register(unit)
                    nursery.start_soon(self._unit_loops, unit, loops)
                first_round.append(loops.first)
            for first in first_round:
                await first.wait()
            task_status.started()

    # -- membership (the pool's add()/remove()) --------------------------------------------
    def _register(self, unit: PoolUnit) -> _Loops:
        self.pacers.setdefault(id(unit), Pacer(self.refresh_delay, unit.key))
        loops = self._loops[id(unit)] = _Loops()
        return loops

    async def run_unit(self, unit: PoolUnit, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Probe and watch one unit (one the pool added): ``started`` after its first probe.

        Runs until :meth:`stop_unit` (or the pool's close, which cancels it).
        A unit whose loops already run (started by :meth:`run`) is not
        started twice: this waits for its first probe and returns.
        """
        loops = self._loops.get(id(unit))
        if loops is not None:
            await loops.first.wait()
            task_status.started()
            return
        await self._unit_loops(unit, self._register(unit), task_status=task_status)

    async def _unit_loops(self, unit: PoolUnit, loops: _Loops, *,
                          task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The probe loop, disconnect watcher and event followers of ``unit``, in their own scope."""
        try:
            with loops.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._probe_loop, unit, loops.first)
                    nursery.start_soon(self._watch_disconnect, unit)
                    if self.status_events:
                        nursery.start_soon(self._follow, unit, STATUS_KEY, self.apply_status)
                        nursery.start_soon(self._follow, unit, SHUTDOWN_KEY, self.apply_shutdown)
                    await loops.first.wait()
                    task_status.started()
        finally:
            loops.first.set()  # nobody waits for a first probe that will never come
            if self._loops.get(id(unit)) is loops:
                del self._loops[id(unit)]
            loops.done.set()

    async def stop_unit(self, unit: PoolUnit) -> None:
        """End ``unit``'s loops (it is leaving the pool) and wait until they are gone.

        Its state is no longer updated from then on, and request failures
        there are ignored once :meth:`forget` ran.
        """
        loops = self._loops.get(id(unit))
        if loops is None:
            await trio.lowlevel.checkpoint()
            return
        loops.scope.cancel()
        await loops.done.wait()

    def forget(self, unit: PoolUnit) -> None:
        """Drop what is kept about a unit that left the pool."""
        self.pacers.pop(id(unit), None)
        self._hints.pop(id(unit), None)
        self._unusable.pop(id(unit), None)

    def changed(self) -> None:
        """The set of units changed: re-check the topology and wake whoever waits for a change."""
        self.changes += 1
        self.on_change()
        self.check_topology(trio.current_time())
        self._progress()

    async def wait_change(self) -> None:
        """Return at the next probe end, state change, membership change or close."""
        if self.closed:
            await trio.lowlevel.checkpoint()
            return
        await self._probe_done.wait()

    async def _probe_loop(self, unit: PoolUnit, first: trio.Event) -> None:
        pacer = self.pacer(unit)
        while True:
            started = trio.current_time()
            await self.probe(unit)
            first.set()
            early = False
            with trio.move_on_at(started + self.refresh_delay):
                await unit.wake.wait()
                gap = MIN_GAP if self._hinted(unit) else pacer.early_wait()
                await trio.sleep_until(started + gap)
                early = True
            pacer.after_wait(early=early)
            unit.wake = trio.Event()

    async def probe(self, unit: PoolUnit) -> None:
        """One probe; any failure makes the unit UNHEALTHY, nothing raises."""
        error: str | None = None
        #: The exception behind ``error``; None: an unusable state (a PoolTopologyError).
        cause: BaseException | None = None
        rtt: float | None = None
        new = InstanceState(Status.UNHEALTHY, unit.state.read_only)
        started = trio.current_time()
        try:
            with trio.fail_after(self.probe_timeout):
                response = await unit.conn.eval(PROBE_LUA)
            rtt = trio.current_time() - started
            data = response.data
            if not isinstance(data, list | tuple) or len(data) < 2:
                raise TypeError(data)
            read_only, status = data[0], _info_value(data[1])
            if not isinstance(read_only, bool):
                error = f"box.info.ro is {read_only!r}, not a boolean"
            elif status != "running":
                error = f"box.info.status is {status!r}, not 'running'"
                new = InstanceState(Status.UNHEALTHY, read_only)
            else:
                new = InstanceState(Status.HEALTHY, read_only)
            if isinstance(read_only, bool):
                unit.role_epoch += 1
        except trio.TooSlowError:
            error = f"box.info probe took longer than probe_timeout={self.probe_timeout}s"
            cause = TarantoolTimeoutError(f"{unit.key}: {error}", may_have_executed=True)
        except (KeyError, IndexError, TypeError):
            error = "box.info probe: the answer is not (ro, status)"
        except Exception as exc:  # never let a probe error end the loop
            error = f"box.info probe failed: {format_error(exc)}"
            cause = exc
        if self.closed:
            return
        now = trio.current_time()
        if new.status == Status.HEALTHY and not unit.conn.is_connected():
            # The answer came, then the connection dropped before we got here:
            # the disconnect watcher is not armed for it, so decide now.
            new = InstanceState(Status.UNHEALTHY, new.read_only)
            error = "connection lost right after the probe"
            cause = unit.conn.last_error or NetworkError(f"{unit.key}: {error}", may_have_executed=False)
            unit.wake.set()
        elif new.status == Status.HEALTHY and unit.conn.draining:
            new = InstanceState(Status.UNHEALTHY, new.read_only)
            error = "the server is shutting down (box.shutdown)"
        pacer = self.pacer(unit)
        if rtt is not None:
            unit.probe_rtt = rtt
            unit.probe_rtt_ewma = ewma(unit.probe_rtt_ewma, rtt)
        if error is not None:
            unusable = cause is None or (isinstance(cause, ServerError) and unit.conn.is_connected())
            if cause is None:
                cause = PoolTopologyError(f"{unit.key}: {error}")
            self.fail(unit, cause, error)
            unit.probe_failures += 1
            pacer.failed(now)
        else:
            unusable = False
            unit.last_probe_ok_at = now
            pacer.succeeded(now)
        self.set_state(unit, new)
        if error is not None:
            self._report_probe_failure(unit, error, now, unusable=unusable)
        else:
            self.check_topology(now)
        if new.status == Status.HEALTHY:
            unit.connected.set()
            if new.read_only is not False and self._hinted(unit):
                unit.wake.set()  # the named leader: probe again after MIN_GAP
        unit.probes += 1
        self._progress()

    def _report_probe_failure(self, unit: PoolUnit, error: str, now: float, *, unusable: bool) -> None:
        """Log a failed probe (rate-limited: never once per poll); warn once about an unusable instance.

        ``unusable``: the instance answered but cannot be used (a status
        other than ``running``, an odd answer, the probe refused by the
        server): a :class:`PoolTopologyWarning`, once per instance and reason.
        Unreachable instances have their own warnings (ClusterConnectWarning
        at connect(), NetworkWarning when a connection is lost).
        """
        if self.throttle.due(unit.key, error, now):
            logger.info("%s: %s", unit.key, error)
        else:
            logger.debug("%s: %s (again)", unit.key, error)
        if unusable and self._unusable.get(id(unit)) != error:
            self._unusable[id(unit)] = error
            emit_warning(f"{unit.key} cannot be used: {error}", PoolTopologyWarning, background=True)
        self.check_topology(now)

    async def _follow(self, unit: PoolUnit, key: str, apply: Callable[[PoolUnit, Any], None]) -> None:
        """Apply every value of ``key`` on ``unit``'s connection, where it has watchers.

        Starts once a probe connected; the connection's watcher survives
        reconnects (it subscribes again). Without watchers (2.6, the
        simulator) it waits for the next connection, whose server may have
        them; nothing is sent.
        """
        conn = unit.conn
        while not self.closed:
            await unit.connected.wait()
            if C.FEATURE_WATCHERS not in conn.features:
                await conn.wait_disconnected()
                await self._next_probe(unit)
                continue
            try:
                async with conn.watch(key) as values:
                    async for value in values:
                        apply(unit, value)
                return  # the connection was closed
            except Error:
                # Lost before it subscribed: try again after the next probe.
                await self._next_probe(unit)

    async def _next_probe(self, unit: PoolUnit) -> None:
        probes = unit.probes
        while unit.probes == probes and not self.closed:
            await self._probe_done.wait()

    async def _watch_disconnect(self, unit: PoolUnit) -> None:
        """Mark the unit UNHEALTHY the moment its connection drops."""
        while True:
            await unit.connected.wait()
            await unit.conn.wait_disconnected()
            unit.connected = trio.Event()
            if self.closed:
                return
            error = unit.conn.last_error
            message = f"connection lost: {error}" if error is not None else "connection lost"
            if not isinstance(error, ShutdownDrained):  # a planned stop is no network trouble
                emit_warning(f"{unit.key}: {message}", NetworkWarning, background=True)
            if error is None:
                error = NetworkError(f"{unit.key}: connection lost", may_have_executed=False)
            self.lost(unit, error, message)
