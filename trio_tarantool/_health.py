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
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._errors import DatabaseError, ErrorCode, NetworkError, TarantoolTimeoutError
from ._strategy import InstanceState, Status

if TYPE_CHECKING:
    from ._pool import PoolUnit

__all__ = ["PROBE_LUA", "Health", "Pacer"]

#: The probe: two values, whatever the connection's call_16 setting.
PROBE_LUA = "return box.info.ro, box.info.status"
#: Shortest gap between two probes of one instance when woken early.
MIN_GAP = 0.01
#: First step of the failure backoff.
BACKOFF_BASE = 0.05


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


def _info_value(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class Health:
    """Probe loops and disconnect watchers of the pool's instances.

    Args:
        units: The pool's units, in address order.
        on_change: Called after any unit's state changed (the strategy's update).
        refresh_delay, probe_timeout: The pool's options.
    """

    def __init__(self, units: Sequence[PoolUnit], on_change: Callable[[], None],
                 refresh_delay: float, probe_timeout: float) -> None:
        self.units = units
        self.on_change = on_change
        self.refresh_delay = refresh_delay
        self.probe_timeout = probe_timeout
        self.pacers: Mapping[int, Pacer] = {id(u): Pacer(refresh_delay, u.key) for u in units}
        #: Set by the pool's close(): probes stop changing states.
        self.closed = False
        #: When the last role signal (refusal, lost connection) happened.
        self.role_signal_at = -math.inf
        self._probe_done = trio.Event()

    def pacer(self, unit: PoolUnit) -> Pacer:
        return self.pacers[id(unit)]

    def close(self) -> None:
        """Stop: waits for a refresh end at once."""
        self.closed = True
        self._probe_done.set()

    # -- states and signals ------------------------------------------------------------
    def set_state(self, unit: PoolUnit, state: InstanceState) -> None:
        if state != unit.state:
            unit.state = state
            self.on_change()

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

    def lost(self, unit: PoolUnit, reason: str) -> None:
        """``unit``'s connection is gone: UNHEALTHY now; a new problem wakes everyone."""
        unit.last_error = reason
        if unit.state.status != Status.HEALTHY:
            unit.wake.set()  # already known (the failing request or the watcher was first)
            return
        self.set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
        if self.pacer(unit).failed(trio.current_time()):
            self.wake_all()
        else:
            unit.wake.set()  # its own pace (backoff) decides when it is probed

    def note_failure(self, unit: PoolUnit, exc: BaseException) -> None:
        """Update ``unit`` from a request's failure."""
        if self.closed:
            return
        if isinstance(exc, DatabaseError):
            if exc.code == ErrorCode.ER_READONLY:
                unit.last_error = str(exc)
                self.set_state(unit, InstanceState(unit.state.status, True))
                self.wake_all()
            elif exc.code == ErrorCode.ER_LOADING:
                unit.last_error = str(exc)
                self.set_state(unit, InstanceState(Status.UNHEALTHY, unit.state.read_only))
                self.wake_all()
        elif isinstance(exc, TarantoolTimeoutError):
            unit.last_error = str(exc)
            unit.wake.set()  # a probe tells a slow request from a frozen instance
        elif isinstance(exc, NetworkError):
            if not unit.conn.is_connected():
                self.lost(unit, str(exc))
            else:
                unit.last_error = str(exc)
                unit.wake.set()

    async def refresh_all(self, deadline: float) -> None:
        """Wake every probe and wait until each finished one (or ``deadline``, or close)."""
        before = [u.probes for u in self.units]
        self.wake_all(role_signal=False)
        with trio.move_on_at(deadline):
            while not self.closed and any(u.probes <= n for u, n in zip(self.units, before, strict=True)):
                await self._probe_done.wait()

    # -- the tasks -----------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Probe and watch every instance; ``started`` once each was probed once."""
        async with trio.open_nursery() as nursery:
            first_round = [trio.Event() for _ in self.units]
            for unit, first in zip(self.units, first_round, strict=True):
                nursery.start_soon(self._probe_loop, unit, first)
                nursery.start_soon(self._watch_disconnect, unit)
            for first in first_round:
                await first.wait()
            task_status.started()

    async def _probe_loop(self, unit: PoolUnit, first: trio.Event) -> None:
        pacer = self.pacer(unit)
        while True:
            started = trio.current_time()
            await self.probe(unit)
            first.set()
            early = False
            with trio.move_on_at(started + self.refresh_delay):
                await unit.wake.wait()
                await trio.sleep_until(started + pacer.early_wait())
                early = True
            pacer.after_wait(early=early)
            unit.wake = trio.Event()

    async def probe(self, unit: PoolUnit) -> None:
        """One probe; any failure makes the unit UNHEALTHY, nothing raises."""
        error: str | None = None
        new = InstanceState(Status.UNHEALTHY, unit.state.read_only)
        try:
            with trio.fail_after(self.probe_timeout):
                response = await unit.conn.eval(PROBE_LUA)
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
        except trio.TooSlowError:
            error = f"box.info probe took longer than probe_timeout={self.probe_timeout}s"
        except (KeyError, IndexError, TypeError):
            error = "box.info probe: the answer is not (ro, status)"
        except Exception as exc:  # never let a probe error end the loop
            error = f"box.info probe failed: {exc}" if isinstance(exc, NetworkError | DatabaseError) \
                else f"box.info probe failed: {exc!r}"
        if self.closed:
            return
        now = trio.current_time()
        if new.status == Status.HEALTHY and not unit.conn.is_connected():
            # The answer came, then the connection dropped before we got here:
            # the disconnect watcher is not armed for it, so decide now.
            new = InstanceState(Status.UNHEALTHY, new.read_only)
            error = "connection lost right after the probe"
            unit.wake.set()
        pacer = self.pacer(unit)
        if error is not None:
            unit.last_error = error
            pacer.failed(now)
        else:
            pacer.succeeded(now)
        self.set_state(unit, new)
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
            if self.closed:
                return
            error = unit.conn.last_error
            self.lost(unit, f"connection lost: {error}" if error is not None else "connection lost")
