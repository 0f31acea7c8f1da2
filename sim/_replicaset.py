"""A simulated replicaset: ground-truth roles, replication lag, failover, faults.

One instance is normally the master (``read_only=False``); the others are
read-only replicas. A committed write on any instance is shipped, row by row
and in order, to every other instance after the configured lag, through one
applier per (source, destination) pair. An applier holds its rows while the
source or destination is down, paused or partitioned, and delivers them once
both can talk again, as Tarantool's replication does after a reconnect.

A failover makes the old master read-only (or crashes it), waits a no-master
window drawn from the seed, then promotes one of the live replicas (also drawn
from the seed unless given). Every change of ground truth is a trace line.

With ``election=True`` (Tarantool 3.x) roles come from Raft instead of
``box.cfg.read_only``: every instance is configured writable, and the leader
of the current term is the only one that is not read-only. A failover (or
:meth:`Replicaset.promote`, or ``box.ctl.promote()`` called on an instance)
starts a new term: every reachable instance learns the term and loses its
leader (followers refuse writes with 3.x's ER_READONLY: reason ``synchro``
while the old leader still owns the synchronous queue), and after the drawn
window the winner becomes leader, claims the queue, and every reachable
instance follows it. Each change is a ``box.election`` and ``box.status``
event. Down or partitioned instances catch up when they return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ._instance import ElectionState, FakeInstance, Handler, InstanceConfig
from ._net import Link
from ._spaces import Change, Field
from ._world import World


@dataclass
class ReplicasetConfig:
    """Timing of replication and failover (virtual seconds)."""

    #: Replication lag: each row reaches a replica this long after commit...
    lag: float = 0.0
    #: ...plus a seeded uniform draw in [0, lag_jitter].
    lag_jitter: float = 0.0
    #: The no-master window of a failover is drawn uniformly from this range.
    failover_window: tuple[float, float] = (0.5, 2.0)
    #: The no-leader window of a planned ``promote`` (elections), drawn likewise.
    promote_window: tuple[float, float] = (0.001, 0.05)


class Replicaset:
    """Ground truth and fault injection for ``n`` simulated instances.

    ``addrs`` is the list a connection pool takes; ``instances[i]`` is the
    :class:`FakeInstance` behind ``addrs[i]``; ``master`` is the index of the
    instance that is writable (None during a failover window).
    """

    def __init__(
        self,
        world: World,
        n: int,
        *,
        config: ReplicasetConfig | None = None,
        instance_config: InstanceConfig | None = None,
        master: int | None = 0,
        port: int = 3301,
        election: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError("a replicaset needs at least one instance")
        self.world = world
        self.config = config or ReplicasetConfig()
        self.instances: list[FakeInstance] = []
        for i in range(n):
            inst = world.add_instance(
                f"tt{i + 1}", f"tt{i + 1}.sim", port, config=instance_config, start=False
            )
            inst.read_only = i != master and not election
            inst.on_change = self._on_change
            self.instances.append(inst)
        self.master: int | None = master
        #: Raft elections decide the leader (see the module docstring).
        self.election = election
        #: The current term and its leader's index (elections only).
        self.term = 2 if master is not None else 1
        if election:
            for inst in self.instances:
                inst.on_promote = self._box_ctl_promote
                inst.election = ElectionState()
        self.partitioned: set[int] = set()
        self._queues: dict[tuple[int, int], tuple[trio.MemorySendChannel[tuple[float, Change | tuple[Change, ...]]], Any]] = {}
        for i in range(n):
            for j in range(n):
                if i != j:
                    send, recv = trio.open_memory_channel[tuple[float, Change | tuple[Change, ...]]](math.inf)
                    self._queues[(i, j)] = (send, recv)
                    world.nursery.start_soon(self._applier, i, j, recv)
        for inst in self.instances:
            inst.start()
        if election:
            self._sync_elections()

    def __repr__(self) -> str:
        roles = " ".join(
            f"{inst.name}:{'down' if not inst.up else 'paused' if inst.paused else 'ro' if inst.ro else 'rw'}"
            for inst in self.instances
        )
        return f"<Replicaset {roles} master={self.master}>"

    # -- addresses and trace ----------------------------------------------------
    @property
    def addrs(self) -> list[dict[str, Any]]:
        """Addresses as a pool expects them: ``[{"host": ..., "port": ...}, ...]``."""
        return [inst.address for inst in self.instances]

    @property
    def trace(self) -> list[str]:
        return self.world.trace

    def record(self, event: str) -> None:
        self.world.record("rs", event)

    def __getitem__(self, i: int) -> FakeInstance:
        return self.instances[i]

    def __len__(self) -> int:
        return len(self.instances)

    def link(self, i: int) -> Link:
        """The network link from the client to instance ``i`` (for custom faults)."""
        inst = self.instances[i]
        return self.world.network.link((inst.host, inst.port))

    def roles(self) -> list[str]:
        """Ground truth per instance: ``rw``, ``ro``, ``down`` or ``paused``."""
        out = []
        for inst in self.instances:
            if not inst.up:
                out.append("down")
            elif inst.paused:
                out.append("paused")
            else:
                out.append("ro" if inst.ro else "rw")
        return out

    # -- schema and handlers (applied on every instance, like replicated DDL) ----
    def create_space(
        self,
        name: str,
        format: Sequence[Field | tuple[str, str] | tuple[str, str, bool]] = (),
        *,
        indexes: Sequence[tuple[str, Sequence[Any], bool]] = (),
        id: int | None = None,
    ) -> None:
        """Create a space (and its indexes: (name, parts, unique)) everywhere."""
        for inst in self.instances:
            sp = inst.create_space(name, format, id=id)
            for iname, parts, unique in indexes:
                sp.create_index(iname, parts, unique=unique)

    def register_function(self, name: str, handler: Handler) -> None:
        for inst in self.instances:
            inst.register_function(name, handler)

    def register_eval(self, expr: str, handler: Handler) -> None:
        for inst in self.instances:
            inst.register_eval(expr, handler)

    # -- faults -------------------------------------------------------------------
    def crash(self, i: int) -> None:
        """Kill instance ``i``: its connections close (FIN, or RST with unread bytes), new ones are refused."""
        self.instances[i].crash()
        if self.master == i:
            self.record(f"master {self.instances[i].name} crashed")
        self.world.changed()

    def restart(self, i: int) -> None:
        """Start a crashed instance again (with its data and read_only setting)."""
        self.instances[i].start()
        if self.election:
            self._sync_election(i)
        self.world.changed()

    async def shutdown(self, i: int, grace: float = 3.0) -> bool:
        """Stop instance ``i`` gracefully (3.x ``box.shutdown``, see :meth:`FakeInstance.shutdown`).

        Returns True if every client watching ``box.shutdown`` closed within
        ``grace``. The master stays the master of record (as after
        :meth:`crash`): call :meth:`failover` to move the role.
        """
        clean = await self.instances[i].shutdown(grace)
        if self.master == i:
            self.record(f"master {self.instances[i].name} shut down")
        self.world.changed()
        return clean

    def pause(self, i: int) -> None:
        """Freeze instance ``i``: it accepts connections but never answers."""
        self.instances[i].pause()
        self.world.changed()

    def resume(self, i: int) -> None:
        self.instances[i].resume()
        self.world.changed()

    def partition(self, i: int) -> None:
        """Cut instance ``i`` off: connections stall, connects hang, replication stops."""
        self.partitioned.add(i)
        self.link(i).set(stall=True, blackhole=True)
        self.record(f"partition {self.instances[i].name}")
        self.world.changed()

    def unpartition(self, i: int) -> None:
        """Heal one instance's partition (other faults stay)."""
        if i in self.partitioned:
            self.partitioned.discard(i)
            self.link(i).set(stall=False, blackhole=False)
            self.record(f"heal {self.instances[i].name}")
            if self.election:
                self._sync_election(i)
            self.world.changed()

    def heal(self) -> None:
        """Remove every partition and link fault."""
        healed = sorted(self.partitioned)
        for i in healed:
            self.record(f"heal {self.instances[i].name}")
        self.partitioned.clear()
        if self.election:
            for i in healed:
                self._sync_election(i)
        for i in range(len(self.instances)):
            link = self.link(i)
            if link.faults != type(link.faults)():
                link.clear()
        self.world.changed()

    def set_ro(self, i: int, flag: bool) -> None:
        """Planned role switch of one instance (``box.cfg{read_only=flag}``).

        With elections only the configuration changes: a leader with
        ``read_only`` set refuses writes (reason ``config``), a follower stays
        read-only whatever the flag.
        """
        self.instances[i].set_read_only(flag)
        if self.election:
            self.world.changed()
            return
        if not flag:
            self.master = i
        elif self.master == i:
            self.master = None
        self.world.changed()

    def set_status(self, i: int, status: str) -> None:
        """Force ``box.info.status`` (``running``/``loading``/``orphan``)."""
        self.instances[i].set_status(status)
        self.world.changed()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass."""
        await trio.sleep(seconds)

    # -- failover -----------------------------------------------------------------
    async def failover(self, new_master: int | None = None, *, crash_old: bool = False) -> int | None:
        """Demote (or crash) the master, wait the drawn window, promote a replica.

        Returns the index of the new master, or None if no instance could be
        promoted (all down or cut off). With elections this is a new term
        (see the module docstring).
        """
        if self.election:
            return await self._elect(new_master, crash_old=crash_old, window=self.config.failover_window)
        old = self.master
        window = self.world.rng.uniform(*self.config.failover_window)
        self.record(f"failover begin old={old} window={window:.6f}")
        if old is not None:
            # The old master is reconfigured read-only even when it is dead,
            # so a restart cannot bring back a second master.
            self.instances[old].set_read_only(True)
            if crash_old:
                self.crash(old)
        self.master = None
        self.world.changed()
        await trio.sleep(window)
        if new_master is None:
            candidates = [
                i for i, inst in enumerate(self.instances)
                if inst.up and i != old and i not in self.partitioned and inst.status == "running"
            ]
            if not candidates and old is not None and self.instances[old].up:
                candidates = [old]
            if not candidates:
                self.record("failover end: no candidate")
                return None
            new_master = self.world.rng.choice(candidates)
        self.instances[new_master].set_read_only(False)
        self.master = new_master
        self.record(f"failover end new={new_master}")
        self.world.changed()
        return new_master

    # -- elections (Tarantool 3.x) ---------------------------------------------------
    async def promote(self, i: int) -> int | None:
        """``box.ctl.promote()`` on instance ``i``: a new term that ``i`` wins.

        Takes the drawn ``promote_window`` (a few milliseconds, as on a real
        3.8 replicaset). Returns ``i`` (None if it is down or cut off then).
        """
        if not self.election:
            raise ValueError("promote() needs a replicaset opened with election=True")
        return await self._elect(i, crash_old=False, window=self.config.promote_window)

    async def _box_ctl_promote(self, inst: FakeInstance) -> None:
        await self.promote(self.instances.index(inst))

    def _reachable(self, i: int) -> bool:
        inst = self.instances[i]
        return inst.up and i not in self.partitioned

    async def _elect(self, new_master: int | None, *, crash_old: bool, window: tuple[float, float]) -> int | None:
        old = self.master
        pause = self.world.rng.uniform(*window)
        self.term += 1
        self.record(f"election begin term={self.term} old={old} window={pause:.6f}")
        if old is not None and crash_old:
            self.crash(old)
        self.master = None
        for i, inst in enumerate(self.instances):
            if self._reachable(i):
                inst.set_election(term=self.term, role="follower", leader_id=0)
        self.world.changed()
        await trio.sleep(pause)
        term = self.term
        if new_master is None:
            candidates = [
                i for i, inst in enumerate(self.instances)
                if self._reachable(i) and i != old and inst.status == "running"
            ]
            if not candidates and old is not None and self._reachable(old):
                candidates = [old]
            if not candidates:
                self.record(f"election term={term}: no candidate")
                return None
            new_master = self.world.rng.choice(candidates)
        if not self._reachable(new_master):
            self.record(f"election term={term}: {self.instances[new_master].name} unreachable")
            return None
        self.master = new_master
        self._sync_elections()
        self.record(f"election end term={term} leader={self.instances[new_master].name}")
        self.world.changed()
        return new_master

    def _sync_elections(self) -> None:
        for i in range(len(self.instances)):
            if self._reachable(i):
                self._sync_election(i)

    def _sync_election(self, i: int) -> None:
        """Instance ``i`` learns the current term and leader (after a restart or a heal)."""
        inst = self.instances[i]
        if self.master is None:
            inst.set_election(term=self.term, role="follower", leader_id=0)
            return
        leader = self.instances[self.master]
        inst.set_election(term=self.term, role="leader" if i == self.master else "follower",
                          leader_id=leader.id, queue=(leader.id, leader.uuid, self.term))

    def start_failover(self, new_master: int | None = None, *, crash_old: bool = False) -> None:
        """Begin a failover in the background (returns at once)."""

        async def run() -> None:
            await self.failover(new_master, crash_old=crash_old)

        self.world.nursery.start_soon(run)

    async def chaos(
        self,
        duration: float,
        *,
        mean_interval: float = 60.0,
        outage: tuple[float, float] = (1.0, 20.0),
        kinds: Sequence[str] = ("failover", "crash_master", "crash", "partition", "pause"),
    ) -> int:
        """Inject seeded faults for ``duration`` virtual seconds; returns how many.

        Faults arrive at exponentially distributed intervals (mean
        ``mean_interval``). Each is one of ``kinds``: a planned ``failover``,
        ``crash_master`` (failover with the master crashed), or a ``crash``,
        ``partition`` or ``pause`` of a random instance lasting a drawn
        ``outage``. Everything is healed and restarted at the end, and a master
        is elected if none is left.
        """
        rng = self.world.rng
        end = trio.current_time() + duration
        count = 0
        async with trio.open_nursery() as nursery:
            while True:
                wait = rng.expovariate(1.0 / mean_interval)
                if trio.current_time() + wait >= end:
                    await trio.sleep_until(end)
                    break
                await trio.sleep(wait)
                kind = rng.choice(list(kinds))
                count += 1
                self.record(f"chaos #{count} {kind}")
                if kind == "failover":
                    await self.failover()
                elif kind == "crash_master":
                    old = self.master
                    await self.failover(crash_old=True)
                    if old is not None:
                        nursery.start_soon(self._later, rng.uniform(*outage), self.restart, old)
                else:
                    i = rng.randrange(len(self.instances))
                    hold = rng.uniform(*outage)
                    if kind == "crash":
                        self.crash(i)
                        nursery.start_soon(self._later, hold, self.restart, i)
                    elif kind == "partition":
                        self.partition(i)
                        nursery.start_soon(self._later, hold, self.unpartition, i)
                    elif kind == "pause":
                        self.pause(i)
                        nursery.start_soon(self._later, hold, self.resume, i)
                    else:
                        raise ValueError(f"unknown chaos kind {kind!r}")
            nursery.cancel_scope.cancel()
        self.heal()
        for i, inst in enumerate(self.instances):
            if not inst.up:
                self.restart(i)
            if inst.paused:
                self.resume(i)
        if self.master is None or not self.instances[self.master].up:
            await self.failover()
        return count

    @staticmethod
    async def _later(delay: float, fn: Any, arg: int) -> None:
        await trio.sleep(delay)
        fn(arg)

    # -- replication ----------------------------------------------------------------
    def _on_change(self, source: FakeInstance, change: Change | tuple[Change, ...]) -> None:
        """Ship one committed row, or a committed transaction's rows as one unit, to every replica."""
        i = self.instances.index(source)
        now = trio.current_time()
        for j in range(len(self.instances)):
            if j == i:
                continue
            delay = self.config.lag
            if self.config.lag_jitter > 0:
                delay += self.world.rng.uniform(0, self.config.lag_jitter)
            send, _ = self._queues[(i, j)]
            send.send_nowait((now + delay, change))

    def _can_replicate(self, i: int, j: int) -> bool:
        a, b = self.instances[i], self.instances[j]
        return (
            a.up and b.up and not a.paused and not b.paused
            and i not in self.partitioned and j not in self.partitioned
        )

    async def _applier(self, i: int, j: int,
                       recv: trio.MemoryReceiveChannel[tuple[float, Change | tuple[Change, ...]]]) -> None:
        last = -math.inf
        async for apply_at, change in recv:
            last = max(last, apply_at)  # rows arrive in commit order
            await trio.sleep_until(last)
            while not self._can_replicate(i, j):
                await self.world.wait_changed()
            # A transaction's rows are applied together, with no checkpoint in
            # between: a reader on a replica sees all of them or none.
            for row in change if isinstance(change, tuple) else (change,):
                self.instances[j].apply_change(row)
