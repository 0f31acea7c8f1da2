"""Fault schedules for a simulated replicaset, and the Hypothesis strategy that draws them.

A schedule is a short list of timed fault steps (:class:`Fault`): wait
``after`` virtual seconds, then apply one fault to the world. It is plain
data, so Hypothesis shrinks it (fewer steps, gaps of 0, lower instance
numbers, the simpler fault kinds first), and it prints as one line that
:meth:`Schedule.parse` reads back: the replay line of a failing example.

Hypothesis is imported only when :func:`fault_schedules` is called, so this
module (and ``run_schedule`` with a hand-written schedule) works without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["FAULT_KINDS", "Fault", "Schedule", "fault_schedules"]

#: Every fault kind and what the runner does for it (``i`` is ``Fault.target``):
#:
#: ``crash``      ``rs.crash(i)``: connections reset, new ones refused (data kept).
#: ``restart``    ``rs.restart(i)`` (only if it is down).
#: ``pause``      ``rs.pause(i)``: SIGSTOP, connections accepted, nothing answered.
#: ``resume``     ``rs.resume(i)`` (only if it is paused).
#: ``partition``  ``rs.partition(i)``: the link stalls, replication stops.
#: ``heal``       ``rs.heal()``: every partition and link fault lifted.
#: ``delay``      ``rs.link(i).set(delay=value)``: one-way latency on i's link.
#: ``switch``     planned switch-over to i: every other instance made read-only,
#:                then i writable (no outage); with elections, ``promote``.
#: ``failover``   the master crashes and a replica is promoted after a drawn
#:                no-master window (with elections: a new term, drawn winner).
#: ``promote``    elections only: ``box.ctl.promote()`` on i (a new term i wins).
#: ``election``   elections only: a new term without a crash (drawn winner).
FAULT_KINDS = ("crash", "restart", "pause", "resume", "partition", "heal", "delay",
               "switch", "failover", "promote", "election")
#: Kinds that take no instance.
_GLOBAL_KINDS = frozenset({"heal", "failover", "election"})
#: Kinds only a replicaset with elections (3.x, ``election=True``) can play.
ELECTION_KINDS = frozenset({"promote", "election"})
#: What :func:`fault_schedules` draws by default, simplest first (Hypothesis
#: shrinks a ``sampled_from`` towards its first element).
DEFAULT_KINDS = ("crash", "restart", "pause", "resume", "partition", "heal", "delay",
                 "switch", "failover")
#: Gaps between steps (virtual seconds), shortest first, and link delays:
#: from nothing to well past a typical ``socket_timeout``.
DEFAULT_GAPS = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0)
DEFAULT_DELAYS = (0.01, 0.1, 0.6, 2.0)

_STEP = re.compile(r"^\+(?P<after>[0-9.eE+-]+)\s+(?P<kind>[a-z]+)(?:\((?P<args>[^)]*)\))?$")


@dataclass(frozen=True)
class Fault:
    """One step of a schedule: wait ``after`` virtual seconds, then apply ``kind``.

    The kinds, and what the runner does (``i`` is ``target``):

    * ``crash``: ``rs.crash(i)``: connections reset, new ones refused (data kept);
    * ``restart``: ``rs.restart(i)`` (a no-op unless it is down);
    * ``pause`` / ``resume``: SIGSTOP (connections accepted, nothing answered) / SIGCONT;
    * ``partition``: ``rs.partition(i)``: the link stalls, replication stops;
    * ``heal``: every partition and link fault lifted;
    * ``delay``: ``value`` seconds of one-way latency on i's link;
    * ``switch``: planned switch-over to i (the others made read-only, then i
      writable, no outage); with elections, ``promote``;
    * ``failover``: the master crashes, a replica is promoted after a drawn
      no-master window (with elections: a new term with a drawn winner);
    * ``promote`` (elections only): ``box.ctl.promote()`` on i;
    * ``election`` (elections only): a new term, no crash, a drawn winner.

    A step that cannot apply (restart an instance that is up, a failover
    while one runs) is played as a no-op, and the history says so.

    Attributes:
        after: Seconds since the previous step (or the start of the app).
        kind: One of the kinds above.
        target: The instance's index (None for ``heal``, ``failover``, ``election``).
        value: The ``delay`` kind's one-way latency in seconds (else None).
    """

    after: float
    kind: str
    target: int | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault.kind: {self.kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if not self.after >= 0:
            raise ValueError(f"Fault.after: {self.after!r} must be a number of seconds >= 0")
        if (self.kind in _GLOBAL_KINDS) != (self.target is None):
            need = "no target" if self.kind in _GLOBAL_KINDS else "a target instance index"
            raise ValueError(f"Fault {self.kind!r}: needs {need}, got target={self.target!r}")
        if self.target is not None and self.target < 0:
            raise ValueError(f"Fault {self.kind!r}: target {self.target} is negative")
        if (self.kind == "delay") != (self.value is not None):
            raise ValueError(f"Fault {self.kind!r}: value= is for 'delay' (its latency) only")
        if self.value is not None and not self.value >= 0:
            raise ValueError(f"Fault 'delay': value {self.value!r} must be seconds >= 0")

    def __str__(self) -> str:
        args = [] if self.target is None else [str(self.target)]
        if self.value is not None:
            args.append(repr(self.value))
        call = f"{self.kind}({', '.join(args)})" if args else self.kind
        return f"+{self.after!r} {call}"


@dataclass(frozen=True)
class Schedule:
    """An ordered list of :class:`Fault` steps; ``str()`` is its replay text."""

    steps: tuple[Fault, ...] = ()

    def __str__(self) -> str:
        return "; ".join(str(step) for step in self.steps)

    def __repr__(self) -> str:
        return f"Schedule.parse({str(self)!r})"

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def duration(self) -> float:
        """Virtual seconds from the first gap to the last step."""
        return sum(step.after for step in self.steps)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Read a schedule back from its ``str()``: ``"+0.5 crash(0); +1.0 heal"``."""
        steps: list[Fault] = []
        for n, part in enumerate(p.strip() for p in text.split(";")):
            if not part:
                continue
            match = _STEP.match(part)
            if match is None:
                raise ValueError(f"Schedule.parse: step {n} {part!r} is not '+<seconds> <kind>[(<args>)]'")
            args = [a.strip() for a in (match.group("args") or "").split(",") if a.strip()]
            target = int(args[0]) if args else None
            value = float(args[1]) if len(args) > 1 else None
            steps.append(Fault(float(match.group("after")), match.group("kind"), target, value))
        return cls(tuple(steps))


def fault_schedules(
    *,
    n: int = 3,
    max_steps: int = 6,
    election: bool = False,
    kinds: Sequence[str] | None = None,
    gaps: Sequence[float] = DEFAULT_GAPS,
    delays: Sequence[float] = DEFAULT_DELAYS,
) -> SearchStrategy[Schedule]:
    """A Hypothesis strategy drawing fault schedules for an ``n``-instance replicaset.

    Args:
        n: Instances of the replicaset the schedule is for (targets are 0..n-1).
        max_steps: At most this many steps (from 0: the empty schedule is the
            simplest, and Hypothesis shrinks towards it).
        election: Draw for a 3.x replicaset with Raft elections: ``promote``
            and ``election`` join the default kinds.
        kinds: The fault kinds to draw from, simplest first (default: crash,
            restart, pause, resume, partition, heal, delay, switch, failover;
            plus promote and election with ``election``).
        gaps: The waits between steps to draw from, shortest first.
        delays: The link latencies of ``delay`` steps to draw from.

    Steps are drawn independently: a ``restart`` of an instance that is up,
    or a ``resume`` of one not paused, is a no-op when played, which keeps
    every schedule valid and lets steps be shrunk away one by one.
    """
    from hypothesis import strategies as st

    if n < 1:
        raise ValueError(f"fault_schedules: n={n} must be at least 1")
    if max_steps < 0:
        raise ValueError(f"fault_schedules: max_steps={max_steps} must be >= 0")
    chosen = tuple(kinds) if kinds is not None else (
        DEFAULT_KINDS + tuple(k for k in FAULT_KINDS if k in ELECTION_KINDS) if election else DEFAULT_KINDS)
    for kind in chosen:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault_schedules: kinds has {kind!r}, not one of {', '.join(FAULT_KINDS)}")
        if kind in ELECTION_KINDS and not election:
            raise ValueError(f"fault_schedules: kind {kind!r} needs election=True (a 3.x replicaset)")
    if not chosen or not gaps or not delays:
        raise ValueError("fault_schedules: kinds, gaps and delays must not be empty")

    @st.composite
    def step(draw: st.DrawFn) -> Fault:
        after = draw(st.sampled_from(list(gaps)))
        kind = draw(st.sampled_from(list(chosen)))
        target = None if kind in _GLOBAL_KINDS else draw(st.integers(0, n - 1))
        value = draw(st.sampled_from(list(delays))) if kind == "delay" else None
        return Fault(after, kind, target, value)

    return st.lists(step(), max_size=max_steps).map(lambda steps: Schedule(tuple(steps)))
