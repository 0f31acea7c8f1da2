"""Balancing strategies that learn from outcomes: least-outstanding, latency-aware, breaker.

Like :mod:`trio_tarantool._strategy`, this module is pure: no I/O, no trio, no
clock. Time comes in as the ``now`` argument of :meth:`Feedback.on_result`
(the pool passes ``trio.current_time()``), randomness from a seeded
:class:`random.Random` owned by the strategy, so a strategy's choices are a
function of what it was told. ``tests/unit/test_balance.py`` checks them with
hypothesis, without a server.

Every strategy here routes by mode exactly as
:class:`~trio_tarantool.RoundRobinStrategy`: only HEALTHY instances, RW only to
an instance whose ``read_only`` is False, RO only to the others, PREFER_* to the
other kind only when none of the preferred kind is healthy, and the
reference's :class:`~trio_tarantool.PoolTopologyError` messages. They differ
only in *which* fitting instance they return.

Feedback (the optional interface, :class:`Feedback`)
----------------------------------------------------
A strategy with an ``on_result(unit, rtt, ok, now)`` method is told the
outcome of every attempt the pool sent through it. The pool looks the method
up once, when it builds the strategy: a strategy without it (round robin)
costs nothing per request. ``ok`` is True when the instance answered (a
result, or an error reply: the server is alive), False when the attempt
failed on the network or timed out, None when the attempt was abandoned
(cancelled by its caller, or the losing copy of a hedged read): that says
nothing certain about the instance, except that its reply took at least
``rtt``.

Avoiding instances (:func:`pick_avoiding`)
-------------------------------------------
The breaker must skip instances whose breaker is open, and the pool's hedged
reads need "another fitting instance than the first". Strategies here have
``getnext_avoiding(mode, avoid)``; for any other strategy,
:func:`pick_avoiding` asks ``getnext`` again, up to once per instance (a
rotation such as round robin meets every fitting instance within that many
calls).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._errors import ConfigurationError, PoolTopologyError
from ._strategy import HasState, Mode, RoundRobinStrategy, StrategyInterface, split_by_role

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Feedback",
    "HedgePolicy",
    "LatencyAwareStrategy",
    "LeastOutstandingStrategy",
    "pick_avoiding",
]

#: The reference's messages, per requested mode (as in ``_strategy``).
_NO_ANY = "Can't find healthy instance in pool"
_NO_RW = "Can't find healthy rw instance in pool"
_NO_RO = "Can't find healthy ro instance in pool"


class HasLoad(HasState, Protocol):
    """A unit whose requests in flight are counted (the pool's ``PoolUnit.in_flight``)."""

    @property
    def in_flight(self) -> int: ...


UnitT = TypeVar("UnitT", bound=HasState)
LoadT = TypeVar("LoadT", bound=HasLoad)
UnitT_contra = TypeVar("UnitT_contra", bound=HasState, contravariant=True)


class Feedback(Protocol[UnitT_contra]):
    """The optional interface of a strategy that learns from outcomes.

    The pool calls :meth:`on_result` after every attempt of a request routed by
    the strategy, with the time the attempt took. It must be cheap and must
    not raise.
    """

    def on_result(self, unit: UnitT_contra, rtt: float, ok: bool | None, now: float) -> None:
        """Note that an attempt on ``unit`` ended at ``now`` after ``rtt`` seconds.

        Args:
            unit: The instance the attempt went to.
            rtt: Seconds from sending to the outcome.
            ok: True: the instance answered (a result or an error reply);
                False: a network failure or a timeout; None: abandoned (the
                caller was cancelled, or a hedged copy lost), ``rtt`` is then
                a lower bound.
            now: The pool's clock (``trio.current_time()``) at the outcome.
        """


def _require(name: str, value: Any, *, minimum: float = 0.0, above: bool = True,
             maximum: float = math.inf) -> float:
    """``value`` as a float, or a ConfigurationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if (value <= minimum if above else value < minimum) or value > maximum:
        low = f"> {minimum}" if above else f">= {minimum}"
        high = "" if maximum == math.inf else f" and <= {maximum}"
        raise ConfigurationError(f"{name} must be {low}{high}, got {value!r}")
    return float(value)


def pick_avoiding(strategy: StrategyInterface[UnitT], mode: Mode,
                  avoid: Sequence[UnitT]) -> UnitT | None:
    """A unit for ``mode`` that is not (by identity) in ``avoid``, or None.

    Uses the strategy's ``getnext_avoiding`` when it has one, else asks
    :meth:`StrategyInterface.getnext` up to once per unit of the pool (plus
    one). None when no other unit fits ``mode``.
    """
    avoiding = getattr(strategy, "getnext_avoiding", None)
    try:
        if avoiding is not None:
            unit: UnitT = avoiding(mode, avoid)
            return unit
        for _ in range(len(strategy.pool) + 1):
            unit = strategy.getnext(mode)
            if not any(unit is other for other in avoid):
                return unit
    except PoolTopologyError:
        return None
    return None


class _Fitting(StrategyInterface[UnitT]):
    """The mode fitting of round robin, shared by the strategies of this module.

    Keeps the healthy units in address order, split into rw and ro lists, rebuilt
    lazily after :meth:`update`; subclasses only choose among :meth:`candidates`.
    """

    def __init__(self, pool: Sequence[UnitT]) -> None:
        super().__init__(pool)
        self._lists: dict[str, list[UnitT]] = {"any": [], "rw": [], "ro": []}
        self._rebuild_needed = True

    def update(self) -> None:
        """Mark the lists stale; they are rebuilt on the next choice."""
        self._rebuild_needed = True

    def _build(self) -> None:
        any_list, rw_list, ro_list = split_by_role(self.pool)
        self._lists = {"any": any_list, "rw": rw_list, "ro": ro_list}
        self._rebuild_needed = False

    def candidates(self, mode: Mode) -> tuple[str, list[UnitT]]:
        """The name and the units of the list ``mode`` routes to (round robin's rules).

        Raises:
            PoolTopologyError: No healthy instance fits ``mode``.
            ValueError: ``mode`` is not a :class:`Mode`.
        """
        if self._rebuild_needed:
            self._build()
        lists = self._lists
        if mode == Mode.ANY:
            if lists["any"]:
                return "any", lists["any"]
            raise PoolTopologyError(_NO_ANY)
        if mode == Mode.RW:
            if lists["rw"]:
                return "rw", lists["rw"]
            raise PoolTopologyError(_NO_RW)
        if mode == Mode.RO:
            if lists["ro"]:
                return "ro", lists["ro"]
            raise PoolTopologyError(_NO_RO)
        if mode in (Mode.PREFER_RW, Mode.PREFER_RO):
            first, second = ("rw", "ro") if mode == Mode.PREFER_RW else ("ro", "rw")
            if lists[first]:
                return first, lists[first]
            if lists[second]:
                return second, lists[second]
            raise PoolTopologyError(_NO_ANY)
        raise ValueError(f"Unexpected mode {mode!r}: mode must be a trio_tarantool.Mode")

    def _choose(self, name: str, units: list[UnitT]) -> UnitT:
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def getnext(self, mode: Mode) -> UnitT:
        """The unit the next request of ``mode`` goes to.

        Raises:
            PoolTopologyError: No healthy instance fits ``mode``.
            ValueError: ``mode`` is not a :class:`Mode`.
        """
        name, units = self.candidates(mode)
        return self._choose(name, units)

    def getnext_avoiding(self, mode: Mode, avoid: Sequence[UnitT]) -> UnitT:
        """As :meth:`getnext`, among the fitting units not in ``avoid`` (by identity).

        Raises:
            PoolTopologyError: Every fitting unit is avoided, or none fits.
        """
        name, units = self.candidates(mode)
        if avoid:
            units = [u for u in units if not any(u is other for other in avoid)]
            if not units:
                raise PoolTopologyError(f"{_NO_ANY} (every fitting instance is avoided)")
        return self._choose(name, units)


class LeastOutstandingStrategy(_Fitting[LoadT]):
    """The fitting instance with the fewest requests in flight; ties in rotation.

    A slow instance accumulates requests in flight, so it gets fewer new ones,
    without any timing. With sequential requests (nothing in flight) it is
    exactly round robin. Reads ``unit.in_flight`` (``PoolUnit`` has it).
    """

    def __init__(self, pool: Sequence[LoadT]) -> None:
        super().__init__(pool)
        self._pos: dict[str, int] = {"any": 0, "rw": 0, "ro": 0}

    def _choose(self, name: str, units: list[LoadT]) -> LoadT:
        n = len(units)
        start = self._pos[name] % n
        best = start
        best_load = units[start].in_flight
        for step in range(1, n):
            k = (start + step) % n
            load = units[k].in_flight
            if load < best_load:
                best, best_load = k, load
        self._pos[name] = best + 1
        return units[best]


@dataclass
class _Latency:
    """What the latency-aware strategy knows about one unit."""

    ewma: float = 0.0
    samples: int = 0
    last: float = 0.0


class LatencyAwareStrategy(_Fitting[LoadT]):
    """Power of two choices over an EWMA of each instance's observed round trips.

    For each request, two distinct fitting instances are drawn (from the
    strategy's own ``random.Random(seed)``) and the one with the lower cost
    wins; cost = the EWMA of its RTTs x (1 + its requests in flight). An
    instance never measured costs 0, so each is tried. The EWMA of an instance
    not measured for a while fades (halved every ``half_life`` seconds of the
    pool's clock), so an instance once slow is tried again later and its EWMA
    follows its recovery. A failed attempt counts as at least ``failure_rtt``
    seconds; an abandoned one only raises the EWMA (its RTT is a lower bound).

    Args:
        pool: The units.
        seed: Seed of the strategy's random draws (choices are deterministic
            given the seed and the feedback).
        alpha: Weight of a new sample in the EWMA, in (0, 1].
        half_life: Seconds after which an unrefreshed EWMA counts half.
        failure_rtt: The RTT a failed attempt counts as, at least.
    """

    def __init__(self, pool: Sequence[LoadT], *, seed: int = 0, alpha: float = 0.3,
                 half_life: float = 10.0, failure_rtt: float = 1.0) -> None:
        super().__init__(pool)
        self.alpha = _require("alpha", alpha, maximum=1.0)
        self.half_life = _require("half_life", half_life)
        self.failure_rtt = _require("failure_rtt", failure_rtt, above=False)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigurationError(f"seed must be an int, got {seed!r}")
        self._random = random.Random(seed)
        self._stats: dict[int, _Latency] = {}
        self._now = 0.0

    def _latency(self, unit: LoadT) -> _Latency:
        stats = self._stats.get(id(unit))
        if stats is None:
            stats = self._stats[id(unit)] = _Latency()
        return stats

    def estimate(self, unit: LoadT) -> float:
        """The unit's current RTT estimate (seconds; 0 if never measured), faded by age."""
        stats = self._latency(unit)
        if not stats.samples:
            return 0.0
        age = self._now - stats.last
        if age <= 0:
            return stats.ewma
        return stats.ewma * math.exp(-math.log(2) * age / self.half_life)

    def _cost(self, unit: LoadT) -> float:
        return self.estimate(unit) * (1 + unit.in_flight)

    def _choose(self, name: str, units: list[LoadT]) -> LoadT:
        n = len(units)
        if n == 1:
            return units[0]
        i, j = self._random.sample(range(n), 2)
        a, b = units[i], units[j]
        return b if self._cost(b) < self._cost(a) else a

    def on_result(self, unit: LoadT, rtt: float, ok: bool | None, now: float) -> None:
        """Fold the attempt's ``rtt`` into ``unit``'s EWMA (see the class docstring)."""
        self._now = max(self._now, now)
        stats = self._latency(unit)
        current = self.estimate(unit)
        if ok is False:
            rtt = max(rtt, self.failure_rtt)
        elif ok is None and (not stats.samples or rtt <= current):
            return  # abandoned early: nothing learned
        stats.ewma = rtt if not stats.samples else current + self.alpha * (rtt - current)
        stats.samples += 1
        stats.last = self._now


class BreakerState(enum.Enum):
    """Where one instance's circuit breaker stands."""

    #: Requests flow; consecutive failures are counted.
    CLOSED = "closed"
    #: Skipped until its backoff ends.
    OPEN = "open"
    #: Backoff over: the next request is a trial, its outcome closes or reopens it.
    HALF_OPEN = "half-open"


@dataclass
class _Breaker:
    """One instance's breaker."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    #: When an OPEN breaker's backoff ends.
    until: float = 0.0
    #: The backoff of the next opening.
    backoff: float = 0.0
    #: HALF_OPEN: the trial request was dispatched and has no outcome yet.
    trial: bool = False


class CircuitBreaker(StrategyInterface[UnitT]):
    """A per-instance circuit breaker around any strategy.

    ``failures`` consecutive failed attempts (``ok=False``: network failures
    and timeouts; an error reply is an answer, not a failure) open an
    instance's breaker: the inner strategy's choices skip it for ``backoff``
    seconds. Then it is *half-open*: one request goes there as a trial; its
    success closes the breaker, its failure reopens it for twice the previous
    backoff (at most ``max_backoff``); an abandoned trial lets the next
    request try again. A success while closed resets the count and the
    backoff. Outcomes of requests sent before the breaker opened are ignored
    while it is open.

    The breaker steers; it never refuses: when every instance fitting a mode
    is open (or half-open with its trial in flight), the inner strategy's
    choice is used as it is, and the pool's health checks decide. Time is the
    latest ``now`` given to :meth:`on_result`: a backoff ends at the first
    outcome reported after it (with traffic on the other instances, at once).

    Use as ``strategy_class=CircuitBreaker`` (round robin inside) or
    ``functools.partial(CircuitBreaker, inner=LatencyAwareStrategy)``.

    Args:
        pool: The units.
        inner: The strategy class to wrap, built on ``pool``.
        failures: Consecutive failures that open a breaker.
        backoff: Seconds of the first opening.
        max_backoff: The longest opening.
    """

    def __init__(self, pool: Sequence[UnitT], *,
                 inner: Callable[[Sequence[UnitT]], StrategyInterface[UnitT]] = RoundRobinStrategy,
                 failures: int = 5, backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        super().__init__(pool)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ConfigurationError(f"failures must be an int >= 1, got {failures!r}")
        self.failures = failures
        self.backoff = _require("backoff", backoff)
        self.max_backoff = _require("max_backoff", max_backoff, minimum=self.backoff, above=False)
        if not callable(inner):
            raise ConfigurationError(f"inner must be a strategy class, got {inner!r}")
        #: The wrapped strategy.
        self.inner: StrategyInterface[UnitT] = inner(pool)
        self._inner_on_result: Callable[[UnitT, float, bool | None, float], None] | None = getattr(
            self.inner, "on_result", None)
        self._breakers: dict[int, _Breaker] = {}
        self._now = 0.0

    def _breaker(self, unit: UnitT) -> _Breaker:
        breaker = self._breakers.get(id(unit))
        if breaker is None:
            breaker = self._breakers[id(unit)] = _Breaker(backoff=self.backoff)
        return breaker

    def state_of(self, unit: UnitT) -> BreakerState:
        """The breaker state of ``unit`` (OPEN turns HALF_OPEN once its backoff ended)."""
        breaker = self._breaker(unit)
        if breaker.state == BreakerState.OPEN and self._now >= breaker.until:
            breaker.state = BreakerState.HALF_OPEN
            breaker.trial = False
        return breaker.state

    def _blocked(self, unit: UnitT) -> bool:
        state = self.state_of(unit)
        if state == BreakerState.CLOSED:
            return False
        return state == BreakerState.OPEN or self._breaker(unit).trial

    def update(self) -> None:
        """Pass the state change to the inner strategy."""
        self.inner.update()

    def _dispatch(self, unit: UnitT) -> UnitT:
        breaker = self._breaker(unit)
        if breaker.state == BreakerState.HALF_OPEN:
            breaker.trial = True
        return unit

    def getnext(self, mode: Mode) -> UnitT:
        """The inner strategy's choice among instances whose breaker lets a request through.

        Raises:
            PoolTopologyError: No healthy instance fits ``mode`` (from the inner strategy).
        """
        return self.getnext_avoiding(mode, ())

    def getnext_avoiding(self, mode: Mode, avoid: Sequence[UnitT]) -> UnitT:
        """As :meth:`getnext`, never returning a unit in ``avoid`` (by identity).

        Raises:
            PoolTopologyError: No fitting unit outside ``avoid``.
        """
        first = self.inner.getnext(mode) if not avoid else pick_avoiding(self.inner, mode, avoid)
        if first is None:
            raise PoolTopologyError(f"{_NO_ANY} (every fitting instance is avoided)")
        if not self._blocked(first):
            return self._dispatch(first)
        blocked = [*avoid, first]
        while True:
            other = pick_avoiding(self.inner, mode, blocked)
            if other is None:
                return first  # every fitting instance is blocked: steer, never refuse
            if not self._blocked(other):
                return self._dispatch(other)
            blocked.append(other)

    def on_result(self, unit: UnitT, rtt: float, ok: bool | None, now: float) -> None:
        """Move ``unit``'s breaker by the attempt's outcome; tell the inner strategy too."""
        self._now = max(self._now, now)
        if self._inner_on_result is not None:
            self._inner_on_result(unit, rtt, ok, now)
        breaker = self._breaker(unit)
        state = self.state_of(unit)
        if state == BreakerState.OPEN:
            return
        if state == BreakerState.HALF_OPEN:
            if ok is None:
                breaker.trial = False
            elif ok:
                breaker.state, breaker.failures, breaker.backoff = BreakerState.CLOSED, 0, self.backoff
            else:
                self._open(breaker, min(breaker.backoff * 2, self.max_backoff))
            return
        if ok:
            breaker.failures = 0
            breaker.backoff = self.backoff
        elif ok is False:
            breaker.failures += 1
            if breaker.failures >= self.failures:
                self._open(breaker, breaker.backoff)

    def _open(self, breaker: _Breaker, backoff: float) -> None:
        breaker.state = BreakerState.OPEN
        breaker.backoff = backoff
        breaker.until = self._now + backoff
        breaker.failures = 0
        breaker.trial = False


class HedgePolicy:
    """When a hedged read sends its second copy: a fixed delay, or a percentile of recent RTTs.

    The pool's ``hedge_after=`` option: a number of seconds (``0.05``), or a
    string ``"pNN"`` (``"p95"``, ``"p99.9"``): the NN-th percentile (nearest
    rank) of the last ``window`` successful RTTs of hedgeable requests. With a
    percentile, nothing is hedged until ``min_samples`` RTTs were seen (a
    percentile of three samples says little). The percentile is recomputed
    every ``window // 16`` samples, not per request.

    Args:
        after: The option's value (see above).
        window: How many recent RTTs the percentile is taken over.
        min_samples: RTTs needed before a percentile delay exists.
    """

    def __init__(self, after: float | str, *, window: int = 256, min_samples: int = 20) -> None:
        self.fixed: float | None = None
        self.percentile: float | None = None
        if isinstance(after, str):
            text = after.strip().lower()
            try:
                value = float(text[1:]) if text.startswith("p") else math.nan
            except ValueError:
                value = math.nan
            if not 0 < value < 100:
                raise ConfigurationError(
                    f"hedge_after must be seconds >= 0 or a percentile 'p1'..'p99.9', got {after!r}")
            self.percentile = value
        else:
            self.fixed = _require("hedge_after", after, above=False)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigurationError(f"window must be an int >= 1, got {window!r}")
        self.window = window
        self.min_samples = max(1, min(min_samples, window))
        self._samples: list[float] = []
        self._next = 0
        self._since = 0
        self._cached: float | None = None

    def delay(self) -> float | None:
        """Seconds to wait before the second copy; None: do not hedge (yet)."""
        if self.fixed is not None:
            return self.fixed
        return self._cached

    def record(self, rtt: float) -> None:
        """Note the RTT of a successful hedgeable attempt."""
        if self.fixed is not None:
            return
        samples = self._samples
        if len(samples) < self.window:
            samples.append(rtt)
        else:
            samples[self._next] = rtt
            self._next = (self._next + 1) % self.window
        self._since += 1
        if len(samples) >= self.min_samples and (
                self._cached is None or self._since >= max(1, self.window // 16)):
            self._since = 0
            ordered = sorted(samples)
            assert self.percentile is not None
            rank = math.ceil(self.percentile / 100 * len(ordered))
            self._cached = ordered[max(rank, 1) - 1]
