"""The 3.x part of the pool proofs: transactions, box.status events, elections.

Used by :mod:`tests.sim._pool_harness` (one :class:`TxnOracle` and one
:class:`EventOracle` per scenario run); the invariants are listed in the
harness docstring (X1-X4, E1-E3).

Transactions
------------
A ``("txn", api, n, end, at)`` step runs, in the background, one interactive
transaction of ``n`` replaces of distinct keys in the ``tx`` space (rows
``[key, txn id]``, keys ``txn id * 10 + j``): through ``pool.transaction()``
(``api == "pool"``) or ``conn.transaction()`` on the pool's connection to the
instance its view has as writable, else the true master (``"conn"``: the
pool's ``close()`` covers it too). ``end`` says how the block ends: ``"commit"``
(normally), ``"raise"`` (the block raises before write ``at``, or before the
commit when ``at == n``), ``"cancel"`` (a cancel scope expires 1.5 one-way
link delays after write ``at`` starts, that is while it is on the server, or
while the COMMIT is when ``at == n``) or ``"cancel0"`` (the scope is cancelled
as write ``at``, or the commit, starts: before it is written). ``("txread", mode)`` reads the whole
``tx`` space through the pool.

What really happened on the servers: every instance's ``handle`` (already
wrapped by the harness) reports each COMMIT to :meth:`TxnOracle.on_request`,
which looks the stream's open transaction up before it runs and notes the
commit if it was applied. The sim replicates a committed transaction's rows
as one unit (a replica applies them with no checkpoint between), so
"all or nothing" holds on replicas too, as in Tarantool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

import trio_tarantool as tt
from trio_tarantool._iproto import _constants as C
from trio_tarantool._strategy import Mode, Status

if TYPE_CHECKING:
    from tests.sim._pool_harness import ScenarioRun

__all__ = ["TX_SPACE", "EventOracle", "Txn", "TxnOracle"]

#: The space the transactions write: ``[key, txn id]``.
TX_SPACE = "tx"
#: Keys of transaction ``t`` are ``t * KEYS_PER + j``.
KEYS_PER = 10


class _Raised(Exception):
    """The exception a ``"raise"`` transaction's block raises (the application's own)."""


@dataclass
class Txn:
    """One scenario transaction: what was asked, how its block ended, what the servers did."""

    id: int
    api: str
    n: int
    end_how: str
    at: int
    start: float
    #: ``running``, then ``committed`` (the block returned), ``raised``,
    #: ``cancelled`` or ``failed`` (a library error, in ``error``).
    outcome: str = "running"
    end: float | None = None
    error: BaseException | None = None
    #: The block had reached its commit (the exit of ``async with``) when it ended.
    in_commit: bool = False
    #: The stream its transaction ran on (once begun), to find it on the server.
    stream_id: int | None = None
    #: COMMITs that applied its rows: (instance index, virtual time).
    commits: list[tuple[int, float]] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def keys(self) -> list[int]:
        return [self.id * KEYS_PER + j for j in range(self.n)]

    def describe(self) -> str:
        return f"txn#{self.id} {self.api} {self.n} writes, {self.end_how}@{self.at}"


class TxnOracle:
    """Runs the transaction steps and checks X1-X4."""

    def __init__(self, run: ScenarioRun) -> None:
        self.run = run
        self.txns: dict[int, Txn] = {}
        self.next_id = 1
        self.tx_space = -1

    # -- what the servers did -----------------------------------------------------------
    def on_request(self, index: int, inst: Any, conn: Any, header: dict[int, Any]) -> Callable[[str], None] | None:
        """Before ``inst`` handles a request: for a COMMIT, a callback taking its outcome."""
        if header.get(C.REQUEST_TYPE) != C.COMMIT:
            return None
        open_txn = inst.txns.find(conn, header.get(C.STREAM_ID, 0))
        if open_txn is None:
            return None
        ids = {pk[0] // KEYS_PER for (sid, _), (pk, _) in open_txn.writes.items() if sid == self.tx_space}

        def done(outcome: str) -> None:
            if outcome != "ok":
                return
            for tid in sorted(ids):
                txn = self.txns.get(tid)
                if txn is None:
                    self.run.violation(f"{inst.name} committed rows of unknown transaction {tid}")
                    continue
                txn.commits.append((index, trio.current_time()))
                self.run.log(f"{inst.name} COMMITTED {txn.describe()}")

        return done

    # -- the steps ------------------------------------------------------------------------
    def start(self, api: str, n: int, end_how: str, at: int, nursery: trio.Nursery) -> None:
        txn = Txn(self.next_id, api, n, end_how, min(at, n), trio.current_time())
        self.next_id += 1
        self.txns[txn.id] = txn
        nursery.start_soon(self.perform, txn)

    async def perform(self, txn: Txn) -> None:
        run = self.run
        pool, rs = run.pool, run.rs
        assert pool is not None and rs is not None
        run.log(f"start {txn.describe()}")
        try:
            with trio.CancelScope() as scope:
                if txn.api == "pool":
                    await self._block(txn, pool.transaction(mode=Mode.RW, isolation="read-committed", timeout=30),
                                      scope)
                else:  # the pool's own connection (close() covers it too) to a writable instance
                    rw = [k for k, u in enumerate(pool._units)
                          if u.state.status == Status.HEALTHY and u.state.read_only is False]
                    conn = pool._units[rw[0] if rw else rs.master if rs.master is not None else 0].conn
                    await self._block(txn, conn.transaction(), scope)  # its socket_timeout bounds each request
            txn.outcome = "cancelled" if scope.cancelled_caught else "committed"
        except _Raised:
            txn.outcome = "raised"
        except Exception as exc:
            txn.outcome, txn.error = "failed", exc
            if not isinstance(exc, tt.Error):
                run.violation(f"{txn.describe()} failed with a non-trio_tarantool exception {exc!r}")
        txn.end = trio.current_time()
        txn.done.set()
        error = "" if txn.error is None else (
            f": {type(txn.error).__name__}({getattr(txn.error, 'may_have_executed', None)}) {txn.error}")
        run.log(f"end {txn.describe()}: {txn.outcome}{' in commit' if txn.in_commit else ''}{error}"[:200])

    async def _block(self, txn: Txn, cm: Any, scope: trio.CancelScope) -> None:
        cancel_after = 1.5 * max(self.run.config.link_delay, 1e-4)
        async with cm as tx:
            txn.stream_id = tx.stream_id
            for j, key in enumerate(txn.keys):
                if j == txn.at:
                    if txn.end_how == "raise":
                        raise _Raised
                    if txn.end_how.startswith("cancel"):
                        scope.deadline = trio.current_time() + (cancel_after if txn.end_how == "cancel" else 0)
                await tx.replace(TX_SPACE, [key, txn.id])
            if txn.at == txn.n:
                if txn.end_how == "raise":
                    raise _Raised
                if txn.end_how.startswith("cancel"):
                    scope.deadline = trio.current_time() + (cancel_after if txn.end_how == "cancel" else 0)
            txn.in_commit = True  # leaving the block commits

    async def read(self, mode: Mode) -> None:
        """X1 through the pool: a reader sees each transaction whole or not at all."""
        pool = self.run.pool
        assert pool is not None
        try:
            rows = list(await pool.select(TX_SPACE, mode=mode))
        except tt.Error as exc:
            self.run.log(f"txread {mode.name}: {type(exc).__name__}")
            return
        self.check_rows(rows, f"a {mode.name} reader")

    def check_rows(self, rows: list[Any], who: str) -> None:
        seen: dict[int, set[int]] = {}
        for row in rows:
            seen.setdefault(int(row[1]), set()).add(int(row[0]))
        for tid, keys in sorted(seen.items()):
            txn = self.txns.get(tid)
            if txn is None:
                self.run.violation(f"X1: {who} saw rows of unknown transaction {tid}")
            elif keys != set(txn.keys):
                self.run.violation(f"X1: {who} saw {len(keys)} of the {txn.n} rows of {txn.describe()} "
                                   f"({sorted(keys)})")

    # -- invariants -------------------------------------------------------------------------
    def check(self) -> None:
        """X2-X4 on what the servers did so far (at most one commit; none for an unfinished block;
        nothing left open once the block ended, allowing the request bound for a reset's FIN)."""
        rs, now = self.run.rs, trio.current_time()
        if rs is not None:
            ended = {t.stream_id: t for t in self.txns.values()
                     if t.end is not None and t.stream_id is not None and now - t.end > self.run.bound}
            for inst in rs.instances if ended else ():
                for open_txn in inst.txns.open:
                    left = ended.get(open_txn.stream_id)
                    if left is not None:
                        self.run.violation(f"X4: {left.describe()} ended ({left.outcome}) at {left.end:.6f} "
                                           f"but its transaction is still open on {inst.name}")
        for txn in self.txns.values():
            if len(txn.commits) > 1:
                self.run.violation(f"X3: {txn.describe()} was committed {len(txn.commits)} times: {txn.commits}")
            if txn.end is not None and txn.commits and not txn.in_commit:
                self.run.violation(f"X2: {txn.describe()} ended ({txn.outcome}) before its commit, "
                                   f"but the server committed it: {txn.commits}")
            if txn.outcome == "committed" and len(txn.commits) != 1:
                self.run.violation(f"X3: {txn.describe()} returned from its commit, but the servers committed "
                                   f"it {len(txn.commits)} times")
            if (txn.outcome == "failed" and txn.in_commit and txn.commits
                    and not getattr(txn.error, "may_have_executed", True)):
                self.run.violation(f"X3: {txn.describe()} failed saying it was not executed ({txn.error}) "
                                   f"but was committed: {txn.commits}")

    async def final(self) -> None:
        """X1-X4 against the ground truth at the very end: every instance, world healed."""
        run, rs = self.run, self.run.rs
        assert rs is not None
        if not self.txns:
            return
        with trio.move_on_after(60):
            for txn in self.txns.values():
                await txn.done.wait()
        for txn in self.txns.values():
            if txn.end is None:
                run.violation(f"{txn.describe()} never ended")
        # Heal the world (the pool may have been closed before its liveness phase) and let replication settle.
        rs.heal()
        for i, inst in enumerate(rs.instances):
            if not inst.up:
                rs.restart(i)
            if inst.paused:
                rs.resume(i)
        await trio.sleep(0.05)
        self.check()
        for inst in rs.instances:
            rows = inst.db.space_by_name(TX_SPACE).select(0, 2, [], 0, 0xFFFFFFFF)
            self.check_rows(rows, f"{inst.name}'s data at the end")
            present = {int(r[1]) for r in rows}
            for txn in self.txns.values():
                if txn.outcome == "committed" and txn.id not in present:
                    run.violation(f"X3: {txn.describe()} returned from its commit but {inst.name} lacks its rows")
                elif txn.id in present and not txn.commits:
                    run.violation(f"X2: {inst.name} has the rows of {txn.describe()} ({txn.outcome}), "
                                  "which no server committed")


class EventOracle:
    """E1 and E3: the event-driven view follows role changes within one event delivery.

    E1's bound, ``3 * link_delay + EPS``: a change on the server is sent to
    a watching connection at once, unless the previous event of the key is
    not yet acknowledged; that one was sent at most one round trip
    (``2 * link_delay``) before, so its acknowledgement arrives, and the new
    value leaves, within ``2 * link_delay`` of the change, and arrives one
    ``link_delay`` later. Replies and events share the connection, in order,
    so no older answer (a probe, an ER_READONLY) can overtake the event.
    """

    def __init__(self, run: ScenarioRun) -> None:
        self.run = run
        #: The harness's nursery (set when the pool opens).
        self.nursery: trio.Nursery | None = None
        #: Background writer: (period, until) while one runs.
        self.writer: tuple[float, float] | None = None
        self.writer_from = 0.0
        #: Bumped when a writer starts (E3 holds only while the same writer ran throughout).
        self.writer_generation = 0

    @property
    def e1_bound(self) -> float:
        from tests.sim._pool_harness import EPS
        return 3 * self.run.config.link_delay + EPS

    def e3_bound(self, period: float) -> float:
        """E3: the view follows (E1), the writer's next write starts within ``period``, and it
        takes one round trip, plus two more where the connection has not loaded the schema yet
        (a replica that never served a request by space name: ``_vspace``, then ``_vindex``)."""
        from tests.sim._pool_harness import EPS
        return self.e1_bound + period + 3 * 2 * self.run.config.link_delay + EPS

    def on_change(self, i: int, old: tuple[Any, ...], new: tuple[Any, ...]) -> None:
        """Instance ``i``'s ground truth changed from ``old`` to ``new`` (now)."""
        run = self.run
        pool = run.pool
        if not run.config.events or pool is None or pool.is_closed() or self.nursery is None or not old:
            return
        now = trio.current_time()
        # (up, paused, cut, status, ro, clean_link, delay, jitter): only status/ro changed, on an
        # instance up, running, reachable over a clean link, seen HEALTHY, whose server already
        # has the pool's box.status watch (the WATCH was handled: the event will be sent).
        same_reach = old[:3] == new[:3] and old[5:] == new[5:]
        good = old[0] and not old[1] and not old[2] and old[5] and old[3] == "running"
        inst = run.rs[i] if run.rs is not None else None
        watched = inst is not None and any("box.status" in c.watches for c in inst.connections)
        if not (same_reach and good and watched and pool._units[i].state.status == Status.HEALTHY):
            return
        self.nursery.start_soon(self._e1, i, new, now)
        if new[4] is False and self.writer is not None:
            period, until = self.writer
            if self.writer_from <= now - period and now + self.e3_bound(period) < until:
                self.nursery.start_soon(self._e3, i, new, now, period)

    def _unchanged_since(self, i: int, key: tuple[Any, ...], at: float) -> bool:
        return self.run.truth_since[i][0] == key and self.run.truth_changed_at[i] <= at

    async def _e1(self, i: int, key: tuple[Any, ...], at: float) -> None:
        from tests.sim._pool_harness import rs_name
        run = self.run
        await trio.sleep_until(at + self.e1_bound)
        run.observe()
        pool = run.pool
        if pool is None or pool.is_closed() or not self._unchanged_since(i, key, at):
            return
        state = pool._units[i].state
        want = (Status.HEALTHY if key[3] == "running" else Status.UNHEALTHY, key[4])
        run.log(f"E1 check {rs_name(i)}: {state.status.name} ro={state.read_only}")
        if (state.status, state.read_only) != want:
            run.violation(f"E1: {rs_name(i)} became {'ro' if key[4] else 'rw'}/{key[3]} at {at:.6f}; "
                          f"{self.e1_bound:.4f}s later (one event delivery) the pool sees "
                          f"{state.status.name} ro={state.read_only}")

    async def _e3(self, i: int, key: tuple[Any, ...], at: float, period: float) -> None:
        from tests.sim._pool_harness import rs_name
        run = self.run
        await trio.sleep_until(at + self.e1_bound)
        pool, rs = run.pool, run.rs
        assert rs is not None
        if pool is None or pool.is_closed():
            return
        view = [u.state for u in pool._units]
        rw = [j for j, s in enumerate(view) if s.status == Status.HEALTHY and s.read_only is False]
        keys = [k for k, _ in run.truth_since]
        if rw != [i]:
            return  # E1 says why, or another instance is still believed writable (a cut-off old leader)
        bound = self.e3_bound(period)
        generation = self.writer_generation
        await trio.sleep_until(at + bound)
        run.observe()
        if self.writer is None or self.writer_generation != generation:
            return  # the writer stopped (the liveness phase, a close)
        if pool.is_closed() or any(run.truth_since[j][0] != keys[j] or run.truth_changed_at[j] > at
                                   for j in range(len(rs))):
            return  # the world changed meanwhile: the bound does not apply
        acked = [r for r in run.requests.values() if r.kind == "replace" and r.mode == Mode.RW
                 and r.error is None and r.end is not None and r.end <= at + bound
                 and any(e.instance == i and e.executed and e.time >= at for e in r.executions)]
        run.log(f"E3 check {rs_name(i)}: {len(acked)} writes acknowledged in time")
        if not acked:
            run.violation(f"E3: {rs_name(i)} became the writable leader at {at:.6f}, writes every {period}s, "
                          f"but no write was acknowledged by it within {bound:.4f}s")

    def start_writer(self, period: float, duration: float) -> None:
        """Start the background writer (one at a time): an RW replace every ``period`` for ``duration``."""
        if self.writer is not None or self.nursery is None:
            return
        self.writer_from = trio.current_time()
        self.writer = (period, self.writer_from + duration)
        self.writer_generation += 1
        self.nursery.start_soon(self._write_every, period, self.writer_from + duration)

    async def _write_every(self, period: float, until: float) -> None:
        run = self.run
        assert self.nursery is not None
        try:
            while trio.current_time() + period <= until:
                pool = run.pool
                if pool is None or pool.is_closed() or run.closed_marker is not None or run.healing:
                    return
                req = run.new_request(Mode.RW, "replace")
                self.nursery.start_soon(run.perform, req)
                await trio.sleep(period)
        finally:
            self.writer = None
