"""Drive the real ConnectionPool through a scenario on the simulator and check it.

A *scenario* is a :class:`PoolConfig` plus a list of steps (plain tuples, so
Hypothesis can draw and shrink them and a failure can be replayed from its
JSON text). :func:`run_scenario` runs it in one ``sim.run`` (virtual time,
seeded scheduler) against a 3-instance simulated replicaset through
``trio_tarantool.open_pool``, and returns a :class:`ScenarioResult` with every
invariant violation and a readable trace.

What is observed, and how:

* **Dispatch decisions**: the pool gets a :class:`RecordingStrategy` (a
  :class:`RoundRobinStrategy` subclass, through ``strategy_class=``) which
  notes, for each ``getnext``, the virtual time, the mode, the chosen
  instance, the pool's view of every instance (its ``InstanceState``) at that
  moment and the request (by the trio task that asked: each request runs in
  its own task).
* **What really ran where**: every simulated instance's ``handle`` is wrapped
  (on the instance object only) so each request carrying a scenario id is
  matched with the ``sim.RequestRecord`` the instance logged for it
  (executed or refused, read-only at the time).
* **What Lua bodies ran**: the scenario's Lua functions (``echo``, ``bump``
  and the ``EVAL_EXPR`` chunk) are Python handlers of the harness; each
  notes a :class:`BodyRun` (instance, virtual time, outcome) under its token
  argument, the request id, the moment its body starts. ``bump`` and the
  chunk then bump a counter (a side effect that needs no write) and replace
  ``[id, ...]`` in ``kv``: on a read-only instance they fail with
  ER_READONLY *after* having run, as a real Lua function does. The sim's
  ``request_log`` counts such a CALL/EVAL as executed too; the two oracles
  must agree.
* **When each request was written**: the simulator stamps every request it
  handles with the world-wide number of the client write that carried it
  (``RequestRecord.written_seq``); the harness reads the network's write
  count right after ``close()`` returns (same task, no checkpoint between).
* **Ground truth**: ``rs.roles()``.

Each request carries a unique id the reply must echo: ``select`` reads a row
keyed by the id (put on every instance just before), ``replace`` writes
``[id, "v<id>"]`` (its reply is the tuple), ``echo`` calls a read-only Lua
function ``echo(id)``, ``call``/``eval`` (and ``call_idem``/``eval_idem``,
sent with ``idempotent=True`` when the pool takes it) run the writing body
above with the id as token, returning it.

Invariants (checked after every step, and at the end):

R1  RW goes only to an instance the pool sees healthy and rw; RO only to a
    healthy one it does not know as rw; ANY to a healthy one.
R2  PREFER_RW/PREFER_RO use the other kind only when the pool sees no
    healthy instance of the preferred kind.
R3  A PoolTopologyError from the strategy means no healthy instance of the
    view fits the mode.
R4  Round robin: while the view is unchanged, the picks from each rotation
    list (rw, ro, any) spread within +-1 over the instances of that list.
    (RW and PREFER_RW share the rw rotation, as do RO and PREFER_RO the ro
    one, so the spread is checked per list, not per mode.)
O1  Every request ends with exactly one outcome, and a result is its own
    (echoes its id).
O2  A success executed exactly once; a failure with may_have_executed False
    (and a PoolTopologyError) executed zero times; no request executes twice
    (automatic retries never repeat a write); a request executes only on an
    instance the strategy chose for it; at most two picks per request (one
    retry), one with retry_not_executed=False.
    (O2 covers DML and select; B1-B3 take over for Lua requests.)
O3  No write executed on an instance that was read-only then (sim truth).
B1  A Lua body runs at most once per dispatch of its request to an instance;
    a call/eval not sent as idempotent runs at most once in all (a body that
    failed with ER_READONLY has run: re-sending it is running it twice).
B2  A Lua request that succeeded: not idempotent, its body ran exactly once
    and completed; idempotent, its body completed at least once (it may also
    have run, and been refused, elsewhere first; it is not promised to have
    completed only once: an idempotent request whose reply was lost may be
    re-sent after it completed, which is what ``idempotent`` allows).
B3  A Lua request that failed saying ``may_have_executed=False`` never ran
    its body anywhere (nor later: checked again after the drain below). A
    failure saying True may have run it once or not at all: the body ran
    implies the error says so, not the other way round.
T1  No request lasts longer than the pool's documented bound,
    ``2 * socket_timeout + 0.05`` s (theory of operation, rule 6).
U1  An instance that has been down, paused, partitioned or not ``running``
    for longer than ``W = probe_timeout + refresh_delay + 4 RTT + 0.02`` s
    is UNHEALTHY in the pool's view (rule 2: a frozen instance turns
    UNHEALTHY within probe_timeout of a probe).
U2  An instance that has been up, running, reachable over a clean link and
    in the same role for longer than ``W`` is HEALTHY in the pool's view,
    with that role (probes every refresh_delay; a probe in flight when it
    became reachable may first wait out its probe_timeout).
    U1 and U2 are checked after every step and every 10 ms of virtual time.
C1  ``close()`` under a burst of requests in every state (written and
    executing on a slow link, dispatched, just being issued): at a drawn step
    (``("close", "close")``: ``pool.close()``; ``("close", "exit")``: leaving
    the ``async with``), or at the end when the config says
    ``close_in_flight``: each pending request ends at once (within 1 ms of
    virtual time), a request started after close() fails with
    ConnectionClosedError, and no request that ended after close() fails
    with anything but ConnectionClosedError or a server's own answer. The
    steps after a close still run (faults, time, requests that must fail).
C2  No request is written after close() returned (or the ``async with``
    exited): once every byte written before is through (the longest link
    delay, slow links included), no instance has handled a request (pool
    probes included) whose client write came after that moment. A request
    written before may still be handled after it; its error must then say
    ``may_have_executed=True`` (O2/B3).
L1  After the pool closes, none of its tasks lives.
L2  Liveness: once everything is healed and exactly one master exists, the
    pool's view (``pool.statistics()``) equals the truth (``rs.roles()``)
    within ``W`` (see U1), and an RW request succeeds. (The tighter
    ``refresh_delay + RTT`` does not hold when a probe is in flight at the
    moment of healing: it first waits out its probe_timeout.)

On a 3.x server (``PoolConfig.server``: ``"3.8"``, ``"3.8-election"``), where
the pool follows ``box.status`` events (:mod:`tests.sim._pool_3x` has the
proofs of the bounds):

E1  A change of an instance's ``ro`` or ``status`` shows in the pool's view
    within one event delivery, ``3 * link_delay + EPS``, when the instance
    stays up, unpaused and reachable over a clean link, was running and seen
    HEALTHY, and its server had handled the pool's WATCH on ``box.status``.
E2  With elections, an acknowledged write (or Lua body) ran on the leader of
    the term at that moment.
E3  With elections and a background writer (an RW write every ``period``):
    a new leader writable at ``t`` and, at ``t + E1``, the only writable
    instance of the view acknowledges a write by ``t + E1 + period +
    6 * link_delay + EPS`` (one round trip, plus two for the schema where the
    pool's connection to it has not loaded it yet), unless anything else
    changed meanwhile.
X1  Every reader of the ``tx`` space through the pool, and every instance's
    data at the end (world healed, replication settled), sees all of a
    transaction's rows or none.
X2  A transaction block that ended before its commit (raised, cancelled,
    failed) was never committed and left no rows.
X3  A commit that returned was applied exactly once and its rows are on
    every instance at the end; a commit that failed saying
    ``may_have_executed=False`` was not applied; none is applied twice.
X4  Once a transaction block ended, its transaction is not open on any
    server.
"""

from __future__ import annotations

import inspect
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.lowlevel

import trio_tarantool as tt
from tests.sim._pool_3x import TX_SPACE, EventOracle, TxnOracle
from trio_tarantool import sim
from trio_tarantool._iproto import _constants as C
from trio_tarantool._pool import PoolUnit
from trio_tarantool._strategy import InstanceState, Mode, RoundRobinStrategy, Status

__all__ = [
    "EPS",
    "PoolConfig",
    "ScenarioResult",
    "Step",
    "run_scenario",
    "scenario_from_json",
    "scenario_to_json",
]

#: The epsilon of the boundary time steps (virtual seconds).
EPS = 0.001
#: The pool's slack over 2 * socket_timeout (``_TIMEOUT_GRACE`` in _pool.py, rule 6).
POOL_GRACE = 0.05
N = 3
MODES = ("ANY", "RW", "RO", "PREFER_RW", "PREFER_RO")
#: Request kinds. ``echo`` calls a read-only Lua function; ``call``/``eval``
#: run a Lua body that bumps a counter, then writes (so on a read-only
#: instance it has run, with a side effect, before failing with ER_READONLY);
#: the ``_idem`` variants pass ``idempotent=True`` when the pool takes it.
KINDS = ("select", "replace", "echo", "call", "eval", "call_idem", "eval_idem")
#: Kinds whose Lua body the oracle watches (see :class:`BodyRun`).
LUA_KINDS = frozenset({"echo", "call", "eval", "call_idem", "eval_idem"})
#: The Lua chunk of the ``eval`` kinds (the simulator matches eval text exactly).
EVAL_EXPR = ("local token = ...; counter = (counter or 0) + 1; "
             "box.space.kv:replace{token, 'e' .. token}; return token")
#: Whether ``ConnectionPool.call``/``eval`` take ``idempotent=`` (the retry
#: policy of issue 8); without it the ``_idem`` kinds are sent as plain ones
#: and checked as such.
POOL_IDEMPOTENT = ("idempotent" in inspect.signature(tt.ConnectionPool.call).parameters
                   and "idempotent" in inspect.signature(tt.ConnectionPool.eval).parameters)
#: Symbolic time steps, resolved against the scenario's configuration.
TIME_STEPS = ("0", "tiny", "small", "refresh-", "refresh+", "socket-", "socket+", "probe-", "probe+", "window+")
#: Scenario ids start here (far from anything else in the spaces).
FIRST_ID = 1000

Step = tuple[Any, ...]

_POOL_DIR = os.path.dirname(tt.__file__) + os.sep
#: The simulator is installed inside the package (trio_tarantool/sim): its tasks are the world's.
_SIM_DIR = _POOL_DIR + "sim" + os.sep


@dataclass(frozen=True)
class PoolConfig:
    """Settings of one scenario: world seed, pool timings, link latency."""

    seed: int = 0
    refresh_delay: float = 0.5
    socket_timeout: float = 0.5
    probe_timeout: float | None = None
    connection_timeout: float | None = None
    #: One-way latency of every client link (virtual seconds).
    link_delay: float = 0.0005
    retry_not_executed: bool = True
    #: Seconds of ER_LOADING (status "loading") after every restart.
    loading_time: float = 0.0
    #: A fault in place before the pool opens: (kind, instance) with kind
    #: crash, pause or partition (the pool must open anyway, rule 7).
    start_fault: tuple[str, int] | None = None
    #: End by closing the pool under a burst of requests (C1) instead of the
    #: liveness phase.
    close_in_flight: bool = False
    #: The server the replicaset plays: ``"2.6"`` (no watchers: the pool polls
    #: ``box.info``), ``"3.8"`` (``box.status`` events drive the pool's view,
    #: probes stay for liveness; streams and transactions) or ``"3.8-election"``
    #: (3.8 with Raft: the leader of the term is the only writable instance;
    #: ``switch`` is ``box.ctl.promote()``, ``failover``/``failover_crash`` an
    #: election with a drawn no-leader window).
    server: str = "2.6"
    #: The pool's ``status_events`` option (3.8: follow ``box.status`` events).
    status_events: bool = True

    @property
    def events(self) -> bool:
        """The pool's view is event-driven (a 3.8 server and ``status_events``)."""
        return self.server != "2.6" and self.status_events

    @property
    def election(self) -> bool:
        return self.server == "3.8-election"


def scenario_to_json(config: PoolConfig, steps: Sequence[Step]) -> str:
    """The scenario as one line of JSON (what ``tests/sim/soak.py --replay`` takes)."""
    return json.dumps({"config": config.__dict__, "steps": [list(s) for s in steps]},
                      separators=(",", ":"))


def scenario_from_json(text: str) -> tuple[PoolConfig, list[Step]]:
    data = json.loads(text)
    config = data["config"]
    if config.get("start_fault") is not None:
        config["start_fault"] = tuple(config["start_fault"])
    return PoolConfig(**config), [tuple(s) for s in data["steps"]]


# --- records ----------------------------------------------------------------------------


@dataclass
class Pick:
    """One ``getnext`` of the strategy."""

    time: float
    mode: Mode
    #: Index of the chosen instance, None when PoolTopologyError was raised.
    chosen: int | None
    view: tuple[InstanceState, ...]
    request: int | None


@dataclass
class Execution:
    """One scenario request as an instance handled it (from its request_log)."""

    instance: int
    time: float
    executed: bool
    read_only: bool
    outcome: str
    #: With elections: the instance was the leader of the current term then.
    leader: bool | None = None


@dataclass
class BodyRun:
    """One run of a scenario request's Lua body on an instance (the handler saw it start).

    ``outcome`` is ``"running"`` until the body ends, then ``"ok"`` (it
    completed: its write committed) or ``"error N"`` (e.g. 7: it bumped the
    counter, then its write was refused on a read-only instance).
    """

    instance: int
    time: float
    outcome: str = "running"


@dataclass
class Req:
    """One scenario request: what was asked, what came back, what really ran."""

    id: int
    mode: Mode
    kind: str
    start: float
    end: float | None = None
    #: ScenarioRun.seq when it ended.
    end_seq: int = 0
    outcomes: list[str] = field(default_factory=list)
    #: None: success; else the exception.
    error: BaseException | None = None
    picks: list[Pick] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    #: Runs of its Lua body (the ``LUA_KINDS`` only).
    body_runs: list[BodyRun] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    def describe(self) -> str:
        return f"#{self.id} {self.mode.name} {self.kind}"

    @property
    def idempotent(self) -> bool:
        """Sent with ``idempotent=True`` (the pool may run it more than once)."""
        return POOL_IDEMPOTENT and self.kind.endswith("_idem")


def _view_text(view: Sequence[InstanceState]) -> str:
    out = []
    for st in view:
        if st.status != Status.HEALTHY:
            out.append("--")
        else:
            out.append("rw" if st.read_only is False else "ro" if st.read_only else "r?")
    return " ".join(out)


_TRUTH_ABBR = {"rw": "rw", "ro": "ro", "down": "dn", "paused": "pz"}


class RecordingStrategy(RoundRobinStrategy[PoolUnit]):
    """The default strategy, recording every decision with the view it was made on."""

    def __init__(self, units: Sequence[PoolUnit], run: ScenarioRun) -> None:
        super().__init__(units)
        self.run = run

    def getnext(self, mode: Mode) -> PoolUnit:
        view = tuple(u.state for u in self.pool)
        try:
            unit = super().getnext(mode)
        except tt.PoolTopologyError:
            self.run.on_pick(mode, None, view)
            raise
        self.run.on_pick(mode, list(self.pool).index(unit), view)
        return unit

    def update(self) -> None:
        super().update()
        self.run.on_view_change(tuple(u.state for u in self.pool))


# --- the run -----------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    config: PoolConfig
    steps: list[Step]
    violations: list[str]
    trace: list[str]
    requests: int
    outcomes: Counter[str]
    #: (mode name, kind, outcome text) of every request, in id order.
    records: list[tuple[str, str, str]] = field(default_factory=list)
    #: Seconds from healing to the pool's view matching the truth for good.
    converged_after: float | None = None
    #: The simulator's trace (only with ``run_scenario(..., world_trace=True)``).
    world_trace: list[str] = field(default_factory=list)

    def report(self, tail: int = 400) -> str:
        lines = [f"{len(self.violations)} invariant violation(s):"]
        lines += [f"  ! {v}" for v in self.violations[:30]]
        lines.append(f"config: {self.config}")
        lines.append("steps:")
        lines += [f"  {i:3d}. {s}" for i, s in enumerate(self.steps)]
        shown = self.trace[-tail:]
        lines.append(f"trace ({len(self.trace)} events{', last ' + str(tail) if len(self.trace) > tail else ''}; "
                     "time | truth tt1 tt2 tt3 | pool view | event):")
        lines += shown
        lines.append("replay (prints the full trace):")
        lines.append(f"  .venv/bin/python -m tests.sim.soak --replay '{scenario_to_json(self.config, self.steps)}'")
        return "\n".join(lines)


class ScenarioRun:
    """State of one scenario while it runs (one ``trio.run``)."""

    def __init__(self, config: PoolConfig, steps: Sequence[Step]) -> None:
        self.config = config
        self.steps = list(steps)
        self.trace: list[str] = []
        self.violations: list[str] = []
        self.requests: dict[int, Req] = {}
        self.by_task: dict[trio.lowlevel.Task, Req] = {}
        self.next_id = FIRST_ID
        #: Events logged so far (orders events of one virtual instant).
        self.seq = 0
        #: Seconds from healing until the pool's view equalled the truth (for good).
        self.converged_after: float | None = None
        #: One event per failover started by a step, set when it ends.
        self.failovers: list[trio.Event] = []
        self.rs: sim.Replicaset | None = None
        self.pool: tt.ConnectionPool | None = None
        self.view: tuple[InstanceState, ...] = ()
        #: Until when bytes sent over a since-cleared slow link may still be in flight.
        self.slow_until = 0.0
        #: Network writes so far when the pool's close() (or its ``async with``
        #: exit) returned; None while open. Read right after it returns.
        self.closed_marker: int | None = None
        #: ``seq`` and virtual time of that moment (0 while open).
        self.closed_seq = 0
        self.closed_at = 0.0
        #: Per instance: Lua bodies run (the side effect of the scenario functions).
        self.lua_counter: dict[int, int] = {}
        #: Per instance: (truth key, virtual time it has held since), for U1/U2.
        self.truth_since: list[tuple[tuple[Any, ...], float]] = []
        #: Per instance: when its truth key last changed (the moment itself, for E1/E3).
        self.truth_changed_at: list[float] = []
        # Round-robin windows: list name -> Counter of picks, reset on a view change.
        self._rr_view: tuple[InstanceState, ...] | None = None
        self._rr: dict[str, Counter[int]] = {}
        #: Transactions (X1-X4) and the event-driven view (E1, E3).
        self.tx = TxnOracle(self)
        self.events = EventOracle(self)
        #: Set when the liveness phase starts healing (background writers stop).
        self.healing = False

    # -- trace -----------------------------------------------------------------------
    def log(self, event: str) -> None:
        self.seq += 1
        truth = " ".join(_TRUTH_ABBR[r] for r in self.rs.roles()) if self.rs is not None else "?"
        if self.pool is not None:
            view = _view_text([u.state for u in self.pool._units])
        else:
            view = "?"
        self.trace.append(f"{trio.current_time():11.6f} | {truth} | {view} | {event}")

    def mark_closed(self, event: str) -> None:
        """Note the moment the pool's close returned (call with no checkpoint in between)."""
        assert self.rs is not None
        self.closed_marker = self.rs.world.network.write_count
        self.closed_at = trio.current_time()
        self.log(f"{event} (network writes so far: {self.closed_marker})")
        self.closed_seq = self.seq

    def violation(self, text: str) -> None:
        self.violations.append(f"t={trio.current_time():.6f}: {text}")
        self.log(f"VIOLATION {text}")

    @property
    def probe_timeout(self) -> float:
        assert self.pool is not None
        return self.pool.probe_timeout

    @property
    def bound(self) -> float:
        """The pool's documented upper bound on a request's duration (rule 6)."""
        return 2 * self.config.socket_timeout + POOL_GRACE

    def resolve_time(self, symbol: str) -> float:
        c = self.config
        return {
            "0": 0.0, "tiny": EPS, "small": 0.01,
            "refresh-": c.refresh_delay - EPS, "refresh+": c.refresh_delay + EPS,
            "socket-": c.socket_timeout - EPS, "socket+": c.socket_timeout + EPS,
            "probe-": self.probe_timeout - EPS, "probe+": self.probe_timeout + EPS,
            "window+": self.window + EPS,
        }[symbol]

    # -- strategy hooks (synchronous, inside the pool) ----------------------------------
    def on_view_change(self, view: tuple[InstanceState, ...]) -> None:
        if view != self.view:
            self.view = view
            self.log("view changed")

    def on_pick(self, mode: Mode, chosen: int | None, view: tuple[InstanceState, ...]) -> None:
        req = self.by_task.get(trio.lowlevel.current_task())
        self.view = view
        pick = Pick(trio.current_time(), mode, chosen, view, req.id if req is not None else None)
        who = req.describe() if req is not None else f"(no scenario request) {mode.name}"
        if req is not None:
            req.picks.append(pick)
        self.log(f"pick {who} -> {'PoolTopologyError' if chosen is None else rs_name(chosen)}")
        healthy = [i for i, s in enumerate(view) if s.status == Status.HEALTHY]
        rw = [i for i in healthy if view[i].read_only is False]
        ro = [i for i in healthy if view[i].read_only is not False]
        fits = {Mode.ANY: healthy, Mode.RW: rw, Mode.RO: ro,
                Mode.PREFER_RW: rw or ro, Mode.PREFER_RO: ro or rw}[mode]
        if chosen is None:
            if fits:  # R3
                self.violation(f"{who}: PoolTopologyError although {[rs_name(i) for i in fits]} fit the view")
            return
        if chosen not in fits:  # R1, R2
            self.violation(f"{who} sent to {rs_name(chosen)} whose view is {_view_text(view).split()[chosen]}"
                           f" (fitting: {[rs_name(i) for i in fits]})")
            return
        # R4: the rotation list the pick came from.
        listname = "any" if mode == Mode.ANY else ("rw" if chosen in rw else "ro")
        members = {"any": healthy, "rw": rw, "ro": ro}[listname]
        if view != self._rr_view:
            self._rr_view = view
            self._rr = {}
        counts = self._rr.setdefault(listname, Counter())
        counts[chosen] += 1
        spread = [counts[i] for i in members]
        if max(spread) - min(spread) > 1:
            self.violation(f"round robin over the {listname} list {[rs_name(i) for i in members]} is uneven "
                           f"while the view is unchanged: picks {dict((rs_name(i), counts[i]) for i in members)}")

    # -- execution oracle -------------------------------------------------------------
    def wrap_instance(self, index: int, inst: sim.FakeInstance, ids_space: int, kv_space: int) -> None:
        original = inst.handle

        def handle(conn: Any, header: dict[int, Any], body: dict[int, Any]) -> Any:
            rid = _request_id(header, body, ids_space, kv_space)
            at = len(inst.request_log)
            commit = self.tx.on_request(index, inst, conn, header)
            leader = None if inst.election is None else inst.election.role == "leader"
            result = original(conn, header, body)
            if commit is not None:
                commit(inst.request_log[at].outcome)
            if rid is not None:
                rec = inst.request_log[at]
                req = self.requests.get(rid)
                ex = Execution(index, rec.time, rec.executed, rec.read_only, rec.outcome, leader)
                if req is None:
                    self.violation(f"{inst.name} got a request with unknown id {rid}")
                else:
                    req.executions.append(ex)
                    self.log(f"{inst.name} {'EXECUTED' if rec.executed else 'refused'} {req.describe()} "
                             f"({rec.outcome}, ro={rec.read_only})")
                    # O3: a write never runs on a read-only instance.
                    if rec.executed and req.kind == "replace" and rec.read_only:
                        self.violation(f"{req.describe()} executed on read-only {inst.name}")
            return result

        inst.handle = handle  # type: ignore[method-assign]

    def lua_body(self, prefix: str, writes: bool) -> Any:
        """The handler of a scenario Lua function: note the run, bump a counter, then write.

        The run is noted (with its token, the request id) the moment the body
        starts: whatever happens next, the function has had a side effect.
        """
        def body(ctx: sim.CallContext, token: int) -> list[Any]:
            index = self.rs.instances.index(ctx.instance) if self.rs is not None else -1
            run = BodyRun(index, trio.current_time())
            req = self.requests.get(token)
            if req is None:
                self.violation(f"{ctx.instance.name} ran a Lua body for unknown token {token}")
            else:
                req.body_runs.append(run)
                self.log(f"{ctx.instance.name} body of {req.describe()} runs (ro={ctx.instance.ro})")
            self.lua_counter[index] = self.lua_counter.get(index, 0) + 1  # the side effect
            if writes:
                space = ctx.instance.db.space_by_name("kv").id
                try:
                    ctx.instance.replace(space, [token, f"{prefix}{token}"])
                except sim.BoxError as exc:
                    run.outcome = f"error {exc.code}"
                    raise
            run.outcome = "ok"
            return [token]

        return body

    # -- requests ---------------------------------------------------------------------
    def new_request(self, mode: Mode, kind: str) -> Req:
        rid = self.next_id
        self.next_id += 1
        req = Req(rid, mode, kind, trio.current_time())
        self.requests[rid] = req
        if kind == "select":
            assert self.rs is not None
            for inst in self.rs.instances:  # the row the select must echo, everywhere
                inst.db.space_by_name("ids").replace([rid, f"r{rid}"])
        return req

    async def perform(self, req: Req) -> None:
        pool = self.pool
        assert pool is not None
        self.by_task[trio.lowlevel.current_task()] = req
        self.log(f"start {req.describe()}")
        expected: list[Any]
        try:
            if req.kind == "select":
                got = list(await pool.select("ids", req.id, mode=req.mode))
                expected = [[req.id, f"r{req.id}"]]
            elif req.kind == "replace":
                got = list(await pool.replace("kv", [req.id, f"v{req.id}"], mode=req.mode))
                expected = [[req.id, f"v{req.id}"]]
            elif req.kind == "echo":
                got = list(await pool.call("echo", req.id, mode=req.mode))
                expected = [req.id]
            else:
                extra: dict[str, Any] = {"idempotent": True} if req.idempotent else {}
                if req.kind.startswith("call"):
                    got = list(await pool.call("bump", req.id, mode=req.mode, **extra))
                else:
                    got = list(await pool.eval(EVAL_EXPR, req.id, mode=req.mode, **extra))
                expected = [req.id]
        except Exception as exc:  # any outcome is recorded; unexpected kinds are violations
            self.finish(req, exc)
        else:
            self.finish(req, None)
            if got != expected:  # O1: its own reply
                self.violation(f"{req.describe()} got {got!r}, not its own reply {expected!r}")
        finally:
            del self.by_task[trio.lowlevel.current_task()]

    def finish(self, req: Req, error: BaseException | None) -> None:
        now = trio.current_time()
        text = "ok" if error is None else f"{type(error).__name__}({_may(error)}): {error}"
        req.outcomes.append(text)
        if len(req.outcomes) > 1:  # O1
            self.violation(f"{req.describe()} ended twice: {req.outcomes}")
            return
        req.end = now
        req.error = error
        req.done.set()
        self.log(f"end {req.describe()} after {now - req.start:.6f}s: {text[:160]}")
        req.end_seq = self.seq
        if error is not None and not isinstance(error, tt.Error):
            self.violation(f"{req.describe()} failed with a non-trio_tarantool exception {error!r}")

    # -- invariants -------------------------------------------------------------------
    @property
    def window(self) -> float:
        """W: how long a stable truth may take to show in the pool's view."""
        assert self.pool is not None
        return self.pool.probe_timeout + self.config.refresh_delay + 4 * 2 * self.config.link_delay + 0.02

    def observe(self) -> None:
        """U1/U2: compare the view with truth that has been stable for longer than W."""
        rs, pool = self.rs, self.pool
        if rs is None or pool is None or pool.is_closed():
            return
        now = trio.current_time()
        if not self.truth_since:
            self.truth_since = [((), now) for _ in rs.instances]
            self.truth_changed_at = [now for _ in rs.instances]
        states = [u.state for u in pool._units]
        for i, inst in enumerate(rs.instances):
            faults = rs.link(i).faults
            clean_link = faults in (sim.LinkFaults(), sim.LinkFaults(delay=self.config.link_delay))
            # Reachability is the client link's (a "link clear" step lifts a
            # partition for clients while replication stays cut).
            cut = faults.stall
            bad = not inst.up or inst.paused or cut or inst.status != "running"
            key = (inst.up, inst.paused, cut, inst.status, inst.ro, clean_link, faults.delay, faults.jitter)
            if key != self.truth_since[i][0]:
                # Bytes sent before a slow link was cleared still take the old
                # delay (the link keeps order, so later ones queue behind them).
                old = self.truth_since[i][0]
                self.events.on_change(i, old, key)  # E1, E3
                self.truth_changed_at[i] = now
                in_flight = 2 * (old[6] + old[7]) if old else 0.0
                # (A "since" still in the future keeps waiting for those bytes.)
                self.truth_since[i] = (key, max(now + in_flight, self.truth_since[i][1]))
                self.slow_until = max(self.slow_until, now + in_flight)
                continue
            if now - self.truth_since[i][1] <= self.window:
                continue
            state = states[i]
            held = f"for {now - self.truth_since[i][1]:.4f}s > W={self.window:.4f}s"
            if bad and state.status == Status.HEALTHY:
                self.violation(f"U1: {rs_name(i)} is {rs.roles()[i]}/{inst.status}"
                               f"{' cut off' if cut else ''} {held}, "
                               f"but the pool sees it HEALTHY")
                self.truth_since[i] = (key, now)  # report once per period
            elif not bad and clean_link and (state.status != Status.HEALTHY or state.read_only != inst.ro):
                self.violation(f"U2: {rs_name(i)} is {'ro' if inst.ro else 'rw'} and reachable {held}, "
                               f"but the pool sees {_view_text([state])} "
                               f"(last error: {pool._units[i].last_error_message})")
                self.truth_since[i] = (key, now)

    async def monitor(self) -> None:
        """Run :meth:`observe` on every ground-truth change and every 10 ms."""
        assert self.rs is not None
        while True:
            self.observe()
            with trio.move_on_after(0.01):
                await self.rs.world.wait_changed()

    def check(self, final: bool = False) -> None:
        now = trio.current_time()
        self.tx.check()
        for req in self.requests.values():
            executed = [e for e in req.executions if e.executed]
            lua = req.kind in LUA_KINDS
            if lua:
                self.check_body(req, executed)
            elif len(executed) > 1:
                self.violation(f"{req.describe()} executed {len(executed)} times: {executed}")
            picked = {p.chosen for p in req.picks if p.chosen is not None}
            for e in req.executions:
                if e.instance not in picked:
                    self.violation(f"{req.describe()} reached {rs_name(e.instance)}, never chosen for it "
                                   f"(chosen: {sorted(map(rs_name, picked))})")
            successful_picks = sum(p.chosen is not None for p in req.picks)
            limit = 2 if self.config.retry_not_executed else 1
            if successful_picks > limit:
                self.violation(f"{req.describe()} was dispatched {successful_picks} times (limit {limit})")
            if req.end is None:
                if now - req.start > self.bound + 1e-9:  # T1, still running
                    self.violation(f"{req.describe()} still running after {now - req.start:.6f}s "
                                   f"(bound {self.bound:.6f}s)")
                elif final:
                    self.violation(f"{req.describe()} never ended")
                continue
            if req.end - req.start > self.bound + 1e-9:  # T1
                self.violation(f"{req.describe()} took {req.end - req.start:.6f}s (bound {self.bound:.6f}s)")
            if req.error is None and req.kind != "select" and req.kind != "echo":
                # E2: with elections, an acknowledged write ran on the leader of the term.
                followers = [rs_name(e.instance) for e in executed if e.leader is False and e.outcome == "ok"]
                if followers:
                    self.violation(f"E2: {req.describe()} was acknowledged, executed by non-leader {followers}")
            if lua:
                continue  # B1-B3 (check_body) say what a Lua request's outcome means
            if req.error is None:
                # O2: a success ran exactly once (an async reply is logged before it is sent).
                if len(executed) != 1:
                    self.violation(f"{req.describe()} succeeded but executed {len(executed)} times")
            elif not _may(req.error) and executed:
                self.violation(f"{req.describe()} failed as not executed ({req.outcomes[0][:120]}) "
                               f"but executed on {[rs_name(e.instance) for e in executed]}")

    def check_body(self, req: Req, executed: list[Execution]) -> None:
        """B1-B3 for one Lua request: what its body runs allow its outcome to say."""
        runs = req.body_runs
        text = [f"{rs_name(r.instance)}@{r.time:.6f} {r.outcome}" for r in runs]
        if len(executed) != len(runs):  # the two oracles must agree
            self.violation(f"{req.describe()}: the instances logged {len(executed)} executions "
                           f"but its body ran {len(runs)} times: {text}")
        picks = Counter(p.chosen for p in req.picks if p.chosen is not None)
        for i, n in Counter(r.instance for r in runs).items():
            if n > picks[i]:  # B1: one run per dispatch at most
                self.violation(f"B1: the body of {req.describe()} ran {n} times on {rs_name(i)}, "
                               f"dispatched there {picks[i]} times: {text}")
        if not req.idempotent and len(runs) > 1:  # B1: at most once
            self.violation(f"B1: the body of {req.describe()} (not sent as idempotent) ran {len(runs)} times: {text}")
        if req.end is None:
            return
        if req.error is None:  # B2
            completed = [r for r in runs if r.outcome == "ok"]
            if req.idempotent:
                if not completed:
                    self.violation(f"B2: {req.describe()} succeeded but its body never completed: {text}")
            elif len(runs) != 1 or not completed:
                self.violation(f"B2: {req.describe()} succeeded but its body ran {len(runs)} times "
                               f"({len(completed)} completed): {text}")
        elif runs and not _may(req.error):  # B3
            self.violation(f"B3: {req.describe()} failed saying it was not executed "
                           f"({(req.outcomes[0] if req.outcomes else repr(req.error))[:120]}) "
                           f"but its body ran: {text}")

    def dedupe(self) -> None:
        seen: set[str] = set()
        out = []
        for v in self.violations:
            key = v.split(": ", 1)[1] if ": " in v else v
            if key not in seen:
                seen.add(key)
                out.append(v)
        self.violations = out


def rs_name(i: int) -> str:
    return f"tt{i + 1}"


def _may(error: BaseException) -> bool:
    """may_have_executed of an outcome (PoolTopologyError: never dispatched)."""
    if isinstance(error, tt.PoolTopologyError):
        return False
    return bool(getattr(error, "may_have_executed", True))


def _request_id(header: dict[int, Any], body: dict[int, Any], ids_space: int, kv_space: int) -> int | None:
    rtype = header.get(C.REQUEST_TYPE)
    try:
        if rtype == C.SELECT and body.get(C.SPACE_ID) == ids_space:
            return int(body[C.KEY][0])
        if rtype == C.REPLACE and body.get(C.SPACE_ID) == kv_space:
            return int(body[C.TUPLE][0])
        if rtype == C.CALL and body.get(C.FUNCTION_NAME) in ("echo", "bump"):
            return int(body[C.TUPLE][0])
        if rtype == C.EVAL and body.get(C.EXPR) == EVAL_EXPR:
            return int(body[C.TUPLE][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None


def _pool_tasks() -> list[str]:
    """Names of living tasks whose code is trio_tarantool's."""
    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        code = getattr(task.coro, "cr_code", None)
        if (code is not None and code.co_filename.startswith(_POOL_DIR)
                and not code.co_filename.startswith(_SIM_DIR)):
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


# --- steps ------------------------------------------------------------------------------


async def _apply(run: ScenarioRun, step: Step, nursery: trio.Nursery) -> None:
    rs = run.rs
    assert rs is not None
    kind = step[0]
    run.log(f"step {list(step)}")
    if kind == "req":
        req = run.new_request(Mode[step[1]], step[2])
        nursery.start_soon(run.perform, req)
    elif kind == "burst":
        for _ in range(step[3]):
            req = run.new_request(Mode[step[1]], step[2])
            nursery.start_soon(run.perform, req)
    elif kind == "advance":
        await trio.sleep(run.resolve_time(step[1]))
    elif kind in ("crash", "restart", "partition", "unpartition", "pause", "resume"):
        getattr(rs, kind)(step[1])
    elif kind == "set_ro":
        rs.set_ro(step[1], bool(step[2]))
    elif kind == "switch" and run.config.election:  # box.ctl.promote() on an instance
        _background_election(run, nursery, step, lambda: rs.promote(step[1]))
    elif kind in ("failover", "failover_crash") and run.config.election:  # an election, drawn window
        _background_election(run, nursery, step, lambda: rs.failover(crash_old=kind == "failover_crash"))
    elif kind == "txn":  # ("txn", api, n, end, at): an interactive transaction in the background
        run.tx.start(step[1], int(step[2]), step[3], int(step[4]), nursery)
    elif kind == "txread":  # ("txread", mode): X1 through the pool
        nursery.start_soon(run.tx.read, Mode[step[1]])
    elif kind == "writer":  # ("writer", period, duration): an RW write every period
        if run.closed_marker is None:
            run.events.start_writer(float(step[1]), float(step[2]))
    elif kind == "switch":  # planned switch-over: demote every master, promote one
        for i in range(len(rs)):
            if i != step[1]:
                rs.set_ro(i, True)
        rs.set_ro(step[1], False)
    elif kind == "heal":
        rs.heal()
    elif kind == "close":  # close() under a burst (the "exit" variant is run_scenario's)
        pool = run.pool
        assert pool is not None
        if run.closed_marker is None:
            await _close_burst(run, nursery)
            pool.close()
            run.mark_closed("close() returned")
            await _after_close(run, "close()")
    elif kind == "status":  # box.info.status: "orphan" (ro, unhealthy) or "running"
        rs.set_status(step[1], step[2])
    elif kind == "link":  # a link fault short of a partition
        link = rs.link(step[1])
        if step[2] == "slow":  # replies take most of socket_timeout, with jitter
            link.set(delay=run.config.socket_timeout * 0.4, jitter=run.config.socket_timeout * 0.2)
        elif step[2] == "reset":  # new connections die after the greeting
            link.set(reset_after=150)
        elif step[2] == "refuse":
            link.set(refuse=True)
        else:
            link.clear()
    elif kind in ("failover", "failover_crash"):
        ended = trio.Event()
        run.failovers.append(ended)  # now, not when the task starts: liveness waits for it

        async def failover() -> None:
            try:
                new = await rs.failover(crash_old=kind == "failover_crash")
                run.log(f"failover ended: new master {rs_name(new) if new is not None else None}")
            finally:
                ended.set()

        nursery.start_soon(failover)
    else:
        raise ValueError(f"unknown step {step!r}")


def _background_election(run: ScenarioRun, nursery: trio.Nursery, step: Step, elect: Any) -> None:
    """Run a promote or an election failover in the background (liveness waits for it)."""
    ended = trio.Event()
    run.failovers.append(ended)

    async def election() -> None:
        try:
            new = await elect()
            run.log(f"{step[0]} ended: leader {rs_name(new) if new is not None else None}")
        finally:
            ended.set()

    nursery.start_soon(election)


async def _liveness(run: ScenarioRun, nursery: trio.Nursery) -> None:
    """L2: heal everything, one master; the view must equal the truth in time; RW works."""
    rs, pool = run.rs, run.pool
    assert rs is not None and pool is not None
    for ended in run.failovers:
        await ended.wait()
    run.log("liveness: heal everything")
    run.healing = True
    # Bytes already on a slow link keep its delay after the heal (and the link
    # keeps order): the convergence budget starts when they are through.
    in_flight = max(2 * (rs.link(i).faults.delay + rs.link(i).faults.jitter) for i in range(len(rs)))
    rs.heal()
    for i, inst in enumerate(rs.instances):
        if not inst.up:
            rs.restart(i)
        if inst.paused:
            rs.resume(i)
        if inst.status != "running":
            rs.set_status(i, "running")
    masters = [i for i, inst in enumerate(rs.instances) if not inst.read_only]
    if run.config.election:  # every instance writable by configuration; Raft picks the leader
        for i in range(len(rs)):
            rs.set_ro(i, False)
        if rs.master is None:
            await rs.promote(0)
    elif len(masters) != 1:
        keep = masters[0] if masters else 0
        for i in range(len(rs)):
            rs.set_ro(i, i != keep)
    # A restarted instance loads for loading_time first (ER_LOADING, unhealthy).
    loading = [inst.started_at + run.config.loading_time for inst in rs.instances if inst.status == "loading"]
    if loading:
        await trio.sleep_until(max(loading))
    assert all(inst.status == "running" for inst in rs.instances), rs.instances
    run.observe()
    healed_at = max(trio.current_time() + in_flight, run.slow_until)
    await trio.sleep_until(healed_at)
    # A probe that was in flight when the world healed may still wait out its
    # probe_timeout (nothing tells the pool the network is back), and the next
    # one comes refresh_delay later; it takes a few round trips (connect,
    # greeting, ID, box.info) plus the pool's 10 ms minimum probe gap.
    budget = run.window
    truth = [(Status.HEALTHY, role == "ro") for role in rs.roles()]
    # The view must equal the truth at the end of the budget (an early match
    # proves nothing: the pool may not even have seen a crash-and-restart yet).
    first_match: float | None = None
    deadline = healed_at + budget
    while True:
        view = [(s.status, s.read_only) for s in pool.statistics()]
        if view == truth and first_match is None:
            first_match = trio.current_time()
        elif view != truth:
            first_match = None
        if trio.current_time() >= deadline:
            break
        await trio.sleep_until(min(trio.current_time() + 0.005, deadline))
    if first_match is None:
        view_text = [f"{s.addr} {s.status.name} ro={s.read_only} ({s.last_error_message})" for s in pool.statistics()]
        run.violation(f"liveness: the pool's view {view_text} did not reach the truth {rs.roles()} "
                      f"within {budget:.4f}s of healing")
        return
    run.converged_after = first_match - healed_at
    run.log(f"liveness: view equals the truth since {run.converged_after:.6f}s after healing")
    req = run.new_request(Mode.RW, "replace")
    await run.perform(req)
    if req.error is not None:
        run.violation(f"liveness: the RW request after convergence failed: {req.outcomes[0]}")


#: Virtual seconds a scenario may take at most (steps, liveness and closing included).
VIRTUAL_LIMIT = 600.0


class ScenarioHung(Exception):
    """The scenario did not finish within VIRTUAL_LIMIT virtual seconds."""


async def _watchdog(run: ScenarioRun, scope: trio.CancelScope) -> None:
    """Fail a scenario that hangs (in virtual time) with the task tree of the moment."""
    await trio.sleep(VIRTUAL_LIMIT)
    root = trio.lowlevel.current_root_task()
    assert root is not None
    dump = _task_tree(root)
    run.violation(f"the scenario did not finish within {VIRTUAL_LIMIT} virtual seconds; tasks:\n{dump}")
    raise ScenarioHung("\n".join(run.trace[-200:]) + "\n" + dump)


def _task_tree(task: trio.lowlevel.Task, depth: int = 0) -> str:
    pad = "  " * depth
    lines = [f"{pad}- {task.name}"]
    for frame, lineno in task.iter_await_frames():
        code = frame.f_code
        if "/trio/" in code.co_filename:
            continue
        lines.append(f"{pad}    {code.co_filename}:{lineno} {code.co_name}")
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            lines.append(_task_tree(child, depth + 1))
    return "\n".join(lines)


#: The requests of the burst a close step puts in flight: (mode, kind).
_CLOSE_BURST = (("RW", "replace"), ("ANY", "select"), ("PREFER_RO", "call"), ("RO", "echo"),
                ("ANY", "eval"), ("PREFER_RW", "call_idem"), ("RW", "call"), ("PREFER_RO", "eval_idem"))


async def _close_burst(run: ScenarioRun, nursery: trio.Nursery) -> None:
    """Put requests in every state just before a close.

    The first three have had one link delay: written, maybe executing, their
    replies on the way. The next three have had a checkpoint: dispatched,
    maybe not written. The last two are started but have not run yet when the
    caller closes the pool, as requests being issued concurrently with close().
    """
    burst = [run.new_request(Mode[mode], kind) for mode, kind in _CLOSE_BURST]
    for req in burst[:3]:
        nursery.start_soon(run.perform, req)
    # One-way latency: these are written and reach their instance, replies on the way back.
    await trio.sleep(run.config.link_delay)
    for req in burst[3:6]:
        nursery.start_soon(run.perform, req)
    await trio.lowlevel.checkpoint()  # these are dispatched, maybe not written yet
    for req in burst[6:]:
        nursery.start_soon(run.perform, req)


async def _after_close(run: ScenarioRun, what: str) -> None:
    """C1 right after ``what`` returned: late requests fail at once, pending ones end at once."""
    late = run.new_request(Mode.ANY, "call")
    await run.perform(late)
    if not isinstance(late.error, tt.ConnectionClosedError):
        run.violation(f"C1: a request after {what} ended with {late.outcomes[0]}, not ConnectionClosedError")
    with trio.move_on_after(EPS):
        for req in run.requests.values():
            await req.done.wait()
    for req in run.requests.values():
        if req.end is None:
            run.violation(f"C1: {req.describe()} still pending {EPS}s after {what}")
        elif req.end_seq > run.closed_seq and req.error is not None and not isinstance(
                req.error, tt.ConnectionClosedError | tt.DatabaseError):
            run.violation(f"C1: {req.describe()} ended after {what} with {req.outcomes[0]}, "
                          "not ConnectionClosedError")


async def _close_in_flight(run: ScenarioRun, nursery: trio.Nursery) -> None:
    """C1: close() with requests in every state; each ends at once, none is left behind.

    Rule 7 and ``close()``'s docstring: pending requests fail with
    ConnectionClosedError, later ones fail at once. A request whose reply
    already came may still succeed; one that fails as not executed must not
    have run (checked by O2/B3 as usual).
    """
    pool = run.pool
    assert pool is not None
    await _close_burst(run, nursery)
    run.log("closing the pool with requests in flight")
    pool.close()
    run.mark_closed("close() returned")
    await _after_close(run, "close()")


async def _drain_and_check_closed(run: ScenarioRun) -> None:
    """C2: once every byte written before the close is through, no request was written after it.

    Link delay means an instance may *handle* a request after close()
    returned although the client wrote it before; the simulator stamps each
    handled request with the world-wide number of the client write that
    carried it (``RequestRecord.written_seq``), compared here with the
    number of writes when close() returned (``run.closed_marker``).
    """
    rs = run.rs
    assert rs is not None and run.closed_marker is not None
    in_flight = max(2 * (rs.link(i).faults.delay + rs.link(i).faults.jitter) for i in range(len(rs)))
    await trio.sleep_until(max(trio.current_time() + in_flight, run.slow_until) + 0.01)
    for inst in rs.instances:
        for rec in inst.request_log:
            if rec.written_seq > run.closed_marker:
                run.violation(f"C2: {inst.name} got {rec.name} {rec.target} (sync {rec.sync}, {rec.conn}) "
                              f"written at {rec.written_at:.6f}, after the pool's close returned "
                              f"at {run.closed_at:.6f} (write #{rec.written_seq} > #{run.closed_marker})")


def run_scenario(config: PoolConfig, steps: Sequence[Step], *, world_trace: bool = False) -> ScenarioResult:
    """Run one scenario in its own ``trio.run`` and return what was seen.

    ``world_trace`` also keeps the simulator's own trace (every request each
    instance handled, every ground-truth change) in ``result.world_trace``.
    """
    run = ScenarioRun(config, steps)
    world: list[list[str]] = []  # the simulator's live trace list, once it exists

    async def main() -> None:
        async with sim.open_replicaset(n=N, seed=config.seed, failover_window=(0.05, 1.0),
                                       loading_time=config.loading_time, trace_requests=world_trace,
                                       version="2.6.0" if config.server == "2.6" else (3, 8),
                                       election=config.election) as rs:
            world.append(rs.trace)
            run.rs = rs
            rs.create_space("ids", [("id", "unsigned"), ("v", "string")],
                            indexes=[("primary", [("id", "unsigned")], True)])
            rs.create_space("kv", [("id", "unsigned"), ("v", "string")],
                            indexes=[("primary", [("id", "unsigned")], True)])
            rs.create_space(TX_SPACE, [("id", "unsigned"), ("txn", "unsigned")],
                            indexes=[("primary", [("id", "unsigned")], True)])
            run.tx.tx_space = rs[0].db.space_by_name(TX_SPACE).id
            rs.register_function("echo", run.lua_body("x", writes=False))
            rs.register_function("bump", run.lua_body("c", writes=True))
            rs.register_eval(EVAL_EXPR, run.lua_body("e", writes=True))
            ids_space = rs[0].db.space_by_name("ids").id
            kv_space = rs[0].db.space_by_name("kv").id
            for i, inst in enumerate(rs.instances):
                run.wrap_instance(i, inst, ids_space, kv_space)
                if config.link_delay > 0:
                    rs.link(i).set(delay=config.link_delay)

            def strategy(units: list[PoolUnit]) -> RecordingStrategy:
                return RecordingStrategy(units, run)

            if config.start_fault is not None:
                kind, index = config.start_fault
                getattr(rs, kind)(index)
                run.log(f"before the pool opens: {kind} {rs_name(index)}")
            async with trio.open_nursery() as nursery:
                rest: list[Step] = []
                exited = False
                async with tt.open_pool(
                    rs.addrs, refresh_delay=config.refresh_delay, socket_timeout=config.socket_timeout,
                    probe_timeout=config.probe_timeout, connection_timeout=config.connection_timeout,
                    strategy_class=strategy, retry_not_executed=config.retry_not_executed,
                    status_events=config.status_events,
                ) as pool:
                    run.pool = pool
                    run.events.nursery = nursery
                    run.view = tuple(u.state for u in pool._units)
                    run.log(f"pool open (probe_timeout={pool.probe_timeout}, bound={run.bound})")
                    run.observe()
                    nursery.start_soon(run.monitor)
                    for k, step in enumerate(steps):
                        if list(step) == ["close", "exit"] and run.closed_marker is None:
                            run.log(f"step {list(step)}")
                            await _close_burst(run, nursery)
                            run.log("leaving the pool's async with, requests in flight")
                            rest, exited = list(steps[k + 1:]), True
                            break
                        await _apply(run, step, nursery)
                        run.observe()
                        run.check()
                    if run.closed_marker is None and not exited:
                        if config.close_in_flight:
                            await _close_in_flight(run, nursery)
                        else:
                            await _liveness(run, nursery)
                    if run.closed_marker is None and not exited:
                        # Every request ends within its bound; then close.
                        with trio.move_on_after(run.bound + 0.01):
                            for req in run.requests.values():
                                await req.done.wait()
                        run.check(final=True)
                        run.log("closing the pool")
                if exited:
                    run.mark_closed("the pool's async with exited")
                leaked = _pool_tasks()
                if leaked:  # L1
                    run.violation(f"tasks of the pool alive after it closed: {leaked}")
                run.log("pool closed")
                if exited:
                    await _after_close(run, "the async with exit")
                    for step in rest:  # the world goes on; requests fail at once
                        await _apply(run, step, nursery)
                        run.check()
                if run.closed_seq:  # closed by a step (or C1): every byte through, then judge
                    await _drain_and_check_closed(run)
                    run.check(final=True)
                await run.tx.final()  # X1-X4 on the ground truth, the world healed
                nursery.cancel_scope.cancel()

    async def guarded() -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(_watchdog, run, outer.cancel_scope)
            await main()
            outer.cancel_scope.cancel()

    sim.run(guarded, seed=config.seed)
    run.dedupe()
    outcomes = Counter(
        "ok" if r.error is None else type(r.error).__name__ for r in run.requests.values()
    )
    records = [(r.mode.name, r.kind, r.outcomes[0] if r.outcomes else "none") for r in run.requests.values()]
    result = ScenarioResult(config, list(steps), run.violations, run.trace, len(run.requests), outcomes, records)
    result.converged_after = run.converged_after
    stats_file = os.environ.get("POOL_SIM_STATS")
    if stats_file:  # one line per scenario, for measuring what a run covered
        with open(stats_file, "a") as f:
            f.write(f"{len(steps)} {result.requests} {len(result.violations)}\n")
    if world_trace and world:
        result.world_trace = list(world[0])
    return result
