"""Request modes, instance health, and the routing strategies of the pool.

This module is the pool's pure decision core: it never does I/O, never
sleeps, and never imports trio.  The pool (``_pool.py``) keeps one
:class:`InstanceState` per instance up to date and asks a strategy which
instance a request of a given :class:`Mode` goes to.  Because the strategy is
a plain function of the states it was given, it is tested exhaustively
without a server (``tests/unit/test_strategy.py`` runs a hypothesis state
machine over it).

Routing rules (the reference connector's, kept for compatibility):

* only ``HEALTHY`` instances are candidates, taken in address order;
* an instance whose ``read_only`` is ``False`` is *rw*; any other healthy
  instance is *ro* (a healthy instance always has a known role in practice,
  because health is only granted after ``box.info.ro`` was read);
* ``ANY`` rotates over every candidate, ``RW`` over rw ones, ``RO`` over ro
  ones; ``PREFER_RW``/``PREFER_RO`` use the other list only when the preferred
  one is empty;
* an empty list raises :class:`~trio_tarantool.PoolTopologyError` with the
  reference's message.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ._errors import PoolTopologyError

__all__ = [
    "InstanceState",
    "Mode",
    "RoundRobinStrategy",
    "Status",
    "StrategyInterface",
]


class Mode(enum.IntEnum):
    """Which kind of instance a pool request may be sent to."""

    #: Send the request to any healthy instance.
    ANY = 1
    #: Send the request to a read-write instance.
    RW = 2
    #: Send the request to a read-only instance.
    RO = 3
    #: Send the request to a read-write instance if there is one, else to a read-only one.
    PREFER_RW = 4
    #: Send the request to a read-only instance if there is one, else to a read-write one.
    PREFER_RO = 5


class Status(enum.IntEnum):
    """Health of one pool instance, as the pool last saw it."""

    #: Connected, ``box.info`` is callable and ``box.info.status`` is ``'running'``.
    HEALTHY = 1
    #: Not connected, ``box.info`` failed, or the status is not ``'running'``.
    UNHEALTHY = 2


@dataclass(frozen=True)
class InstanceState:
    """What the pool knows about one instance: its health and its role.

    Frozen so that a state can be compared and shared without copying; the pool
    replaces the whole record when something changes.

    Attributes:
        status: Health of the instance.
        read_only: ``box.info.ro`` from the last successful probe, None if unknown.
    """

    status: Status = Status.UNHEALTHY
    read_only: bool | None = None


class HasState(Protocol):
    """Anything a strategy can route to: it only needs a current :class:`InstanceState`."""

    @property
    def state(self) -> InstanceState: ...


UnitT = TypeVar("UnitT", bound=HasState)

#: Messages of the reference connector, per requested mode.
_NO_ANY = "Can't find healthy instance in pool"
_NO_RW = "Can't find healthy rw instance in pool"
_NO_RO = "Can't find healthy ro instance in pool"
#: Round robin's lists for each mode, in order of preference, and what it
#: says when none has an instance (a dict hit, not a comparison per mode).
_ROUTES: dict[Mode, tuple[tuple[str, ...], str]] = {
    Mode.ANY: (("any",), _NO_ANY),
    Mode.RW: (("rw",), _NO_RW),
    Mode.RO: (("ro",), _NO_RO),
    Mode.PREFER_RW: (("rw", "ro"), _NO_ANY),
    Mode.PREFER_RO: (("ro", "rw"), _NO_ANY),
}


class StrategyInterface(abc.ABC, Generic[UnitT]):
    """Chooses a pool instance for a request mode.

    A strategy is built on the pool's list of units (in address order) and reads
    their ``state`` attributes.  The pool calls :meth:`update` whenever any state
    changes, and :meth:`getnext` for every request.  Implementations must be
    cheap and must not block: they run inside the pool's event loop.
    """

    def __init__(self, pool: Sequence[UnitT]) -> None:
        self.pool = pool

    @abc.abstractmethod
    def getnext(self, mode: Mode) -> UnitT:
        """Return the unit the next request of ``mode`` goes to.

        Raises:
            PoolTopologyError: No healthy instance fits ``mode``.
        """

    @abc.abstractmethod
    def update(self) -> None:
        """Note that some instance state changed; the next choice must see it."""


def split_by_role(units: Iterable[UnitT]) -> tuple[list[UnitT], list[UnitT], list[UnitT]]:
    """The healthy units, in order: all of them, the writable ones, the others.

    The lists every mode routes by (an instance not known writable counts as
    read-only), shared by all the strategies.
    """
    any_list: list[UnitT] = []
    rw_list: list[UnitT] = []
    ro_list: list[UnitT] = []
    for unit in units:
        state = unit.state
        if state.status != Status.HEALTHY:
            continue
        any_list.append(unit)
        (rw_list if state.read_only is False else ro_list).append(unit)
    return any_list, rw_list, ro_list


class RoundRobinStrategy(StrategyInterface[UnitT]):
    """Round-robin over healthy instances, separately for any/rw/ro lists.

    The rotation position of each list survives rebuilds (taken modulo the new
    length), so frequent role refreshes do not pile traffic onto the first
    instance of a list as restarting every rotation would.
    """

    def __init__(self, pool: Sequence[UnitT]) -> None:
        super().__init__(pool)
        #: The healthy units by role ("any", "rw", "ro"): see split_by_role.
        self._lists: dict[str, list[UnitT]] = {"any": [], "rw": [], "ro": []}
        self._pos: dict[str, int] = {"any": 0, "rw": 0, "ro": 0}
        #: Per mode, the list it takes from until the next rebuild (the first
        #: non-empty one of its route), None when every one is empty.
        self._chosen: dict[Mode, str | None] = dict.fromkeys(_ROUTES)
        self._rebuild_needed = True

    def build(self) -> None:
        """(Re)compute the any/rw/ro lists from the current unit states."""
        any_list, rw_list, ro_list = split_by_role(self.pool)
        self._lists = lists = {"any": any_list, "rw": rw_list, "ro": ro_list}
        self._chosen = {mode: next((name for name in names if lists[name]), None)
                        for mode, (names, _) in _ROUTES.items()}
        self._rebuild_needed = False

    def update(self) -> None:
        """Mark the lists stale; they are rebuilt on the next :meth:`getnext`."""
        self._rebuild_needed = True

    def getnext(self, mode: Mode) -> UnitT:
        """Return the next unit for ``mode`` in rotation.

        Raises:
            PoolTopologyError: No healthy instance fits ``mode``.
            ValueError: ``mode`` is not a :class:`Mode`.
        """
        if self._rebuild_needed:
            self.build()
        try:
            name = self._chosen[mode]
        except (KeyError, TypeError):  # (unhashable: not a Mode either)
            raise ValueError(f"Unexpected mode {mode!r}: mode must be a trio_tarantool.Mode") from None
        if name is None:
            raise PoolTopologyError(_ROUTES[mode][1])
        units = self._lists[name]
        pos = self._pos[name] % len(units)
        self._pos[name] = pos + 1
        return units[pos]
