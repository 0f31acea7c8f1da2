"""Balancing, breakers and hedged reads of the real pool on the simulator (virtual time).

One replica is slowed by link delay (or stalled); what each instance really
handled is read from the simulator's request logs. The assertions are about
where requests went and how they ended, never about how long they took.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import trio_tarantool as tt
from trio_tarantool import sim

Main = Callable[[sim.Replicaset], Awaitable[Any]]
#: One-way delay of every link, and of the slowed replica's.
FAST, SLOW = 0.0005, 0.02


def run_on_replicaset(main: Main, *, seed: int = 1) -> Any:
    """Run ``main(rs)`` on a fresh 3-instance replicaset (tt1 master) with a ``kv`` space."""

    async def body() -> Any:
        async with sim.open_replicaset(3, seed=seed) as rs:
            rs.create_space("kv", [("id", "unsigned"), ("v", "string")],
                            indexes=[("primary", [("id", "unsigned")], True)])
            for i in range(3):
                rs.link(i).set(delay=FAST)
            return await main(rs)

    return sim.run(body, seed=seed)


def handled(rs: sim.Replicaset, i: int, name: str = "SELECT") -> int:
    """How many requests of type ``name`` on ``kv`` (or calls of function ``name``) instance ``i`` handled."""
    target = str(rs[i].db.space_by_name("kv").id) if name == "SELECT" else name
    kind = "SELECT" if name == "SELECT" else "CALL"
    return sum(1 for rec in rs[i].request_log if rec.name == kind and rec.target == target)


def register_lookup(rs: sim.Replicaset, slow: list[bool]) -> None:
    """``lookup(key)``: returns ``[key]`` at once, or after 1 s on replica 2 while ``slow[0]``.

    A server-side slowness: the instance answers its probes (``box.info``)
    quickly, so the health checks keep it HEALTHY while its requests time out.
    """
    slowed = rs[2]

    def lookup(ctx: sim.CallContext, key: Any) -> Any:
        if ctx.instance is slowed and slow[0]:
            async def later() -> list[Any]:
                await trio.sleep(1.0)
                return [key]
            return later()
        return [key]

    rs.register_function("lookup", lookup)


async def put_row(rs: sim.Replicaset, pool: tt.ConnectionPool) -> None:
    await pool.replace("kv", [1, "one"])
    await rs.advance(0.1)  # replicated to both replicas


async def ro_load(rs: sim.Replicaset, strategy: Any) -> list[int]:
    """30 tasks x 20 RO selects with replica 2 slowed: selects handled per instance."""
    async with tt.open_pool(rs.addrs, strategy_class=strategy, refresh_delay=5) as pool:
        await put_row(rs, pool)
        rs.link(2).set(delay=SLOW)
        before = [handled(rs, i) for i in range(3)]

        async def worker() -> None:
            for _ in range(20):
                assert (await pool.select("kv", 1, mode=tt.Mode.RO)).data == [[1, "one"]]

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(worker)
        await rs.advance(1.0)
        return [handled(rs, i) - before[i] for i in range(3)]


def test_round_robin_sends_the_slow_replica_its_share() -> None:
    """The control: round robin ignores speed, both replicas get half."""
    counts = run_on_replicaset(lambda rs: ro_load(rs, tt.RoundRobinStrategy))
    assert counts[0] == 0 and abs(counts[1] - counts[2]) <= 1, counts


def test_least_outstanding_sends_the_slow_replica_fewer_requests() -> None:
    counts = run_on_replicaset(lambda rs: ro_load(rs, tt.LeastOutstandingStrategy))
    assert counts[0] == 0 and sum(counts) == 600, counts
    assert counts[2] * 3 < counts[1], counts


def test_latency_aware_sends_the_slow_replica_fewer_requests() -> None:
    counts = run_on_replicaset(lambda rs: ro_load(rs, functools.partial(tt.LatencyAwareStrategy, seed=3)))
    assert counts[0] == 0 and sum(counts) == 600, counts
    assert counts[2] * 3 < counts[1], counts


async def slow_replica_errors(rs: sim.Replicaset, strategy: Any) -> int:
    """40 RO lookups (socket_timeout 0.1 s) with replica 2 slow server-side: how many failed."""
    register_lookup(rs, [True])
    async with tt.open_pool(rs.addrs, strategy_class=strategy, socket_timeout=0.1) as pool:
        errors = 0
        for k in range(40):
            try:
                assert (await pool.call("lookup", k, mode=tt.Mode.RO, idempotent=True)).data == [k]
            except tt.TarantoolTimeoutError as exc:
                assert exc.may_have_executed  # it was written: it may have run
                errors += 1
        return errors


def test_breaker_stops_sending_to_a_replica_that_times_out() -> None:
    # Control: the replica answers its probes, so health keeps it and round
    # robin sends it every other request.
    assert run_on_replicaset(lambda rs: slow_replica_errors(rs, tt.RoundRobinStrategy)) == 20
    breaker = functools.partial(tt.CircuitBreaker, failures=2, backoff=60.0, max_backoff=60.0)
    assert run_on_replicaset(lambda rs: slow_replica_errors(rs, breaker)) == 2


def test_breaker_half_open_trial_closes_after_recovery() -> None:
    async def main(rs: sim.Replicaset) -> tuple[list[tt.BreakerState], int]:
        breaker = functools.partial(tt.CircuitBreaker, failures=1, backoff=1.0)
        slow = [True]
        register_lookup(rs, slow)
        async with tt.open_pool(rs.addrs, strategy_class=breaker, socket_timeout=0.1) as pool:
            strategy = pool.strategy
            assert isinstance(strategy, tt.CircuitBreaker)
            slowed = pool._units[2]
            states = []
            for k in range(4):
                try:
                    await pool.call("lookup", k, mode=tt.Mode.RO)
                except tt.TarantoolTimeoutError:
                    pass
            states.append(strategy.state_of(slowed))
            slow[0] = False
            await rs.advance(1.5)
            before = handled(rs, 2, "lookup")
            for k in range(6):  # the backoff is over: one trial, then round robin again
                assert (await pool.call("lookup", k, mode=tt.Mode.RO)).data == [k]
            states.append(strategy.state_of(slowed))
            return states, handled(rs, 2, "lookup") - before

    states, trial_and_after = run_on_replicaset(main)
    assert states == [tt.BreakerState.OPEN, tt.BreakerState.CLOSED]
    assert trial_and_after >= 3  # the trial, then its share again


async def hedged_reads(rs: sim.Replicaset, hedge_after: float | None) -> tuple[list[int], int, int]:
    """20 sequential RO selects (round robin) with replica 2's link slow.

    Returns the selects each instance handled, how many of replica 2's arrived
    after every read had returned, and the requests left in flight.
    """
    async with tt.open_pool(rs.addrs, refresh_delay=30, hedge_after=hedge_after) as pool:
        await put_row(rs, pool)
        for _ in range(2):  # each replica's connection has loaded the schema
            await pool.select("kv", 1, mode=tt.Mode.RO)
        rs.link(2).set(delay=1.0)
        before = [handled(rs, i) for i in range(3)]
        for _ in range(20):
            assert (await pool.select("kv", 1, mode=tt.Mode.RO)).data == [[1, "one"]]
        slow_at_return = handled(rs, 2)
        # The slow replica's connection is still in sync after the cancelled copies.
        rs.link(2).set(delay=FAST)
        await rs.advance(3.0)
        await pool.replace("kv", [2, "two"])
        await rs.advance(0.1)
        slow_conn = pool._units[2].conn
        assert (await slow_conn.select("kv", 2)).data == [[2, "two"]]
        assert (await slow_conn.select("kv", 1)).data == [[1, "one"]]
        counts = [handled(rs, i) - before[i] - (2 if i == 2 else 0) for i in range(3)]
        late = handled(rs, 2) - 2 - slow_at_return
        return counts, late, sum(u.in_flight for u in pool._units)


def test_hedged_reads_complete_from_the_fast_replica() -> None:
    # Control: without hedging each replica answers its half, each read
    # waiting for its reply.
    counts, late, in_flight = run_on_replicaset(lambda rs: hedged_reads(rs, None))
    assert counts == [0, 10, 10] and late == 0 and in_flight == 0
    # Hedged after 10 ms: every read sent to the slow replica is sent to the
    # fast one too (it sees all 20 reads), and each returned before its copy
    # even reached the slow replica (the hedge consumes a round robin turn, so
    # the slow one is tried first more often than not).
    counts, late, in_flight = run_on_replicaset(lambda rs: hedged_reads(rs, 0.01))
    assert counts[0] == 0 and counts[1] == 20 and counts[2] >= 10, counts
    assert late == counts[2] and in_flight == 0


def test_no_write_or_non_idempotent_code_is_ever_hedged() -> None:
    """hedge_after=0 with a slow master: writes and plain calls run once; idempotent reads twice."""

    async def main(rs: sim.Replicaset) -> dict[str, int]:
        runs: dict[str, int] = {}

        def note(ctx: Any, token: str) -> list[Any]:
            runs[token] = runs.get(token, 0) + 1
            return [token]

        rs.register_function("note", note)
        async with tt.open_pool(rs.addrs, refresh_delay=30, hedge_after=0.0) as pool:
            await put_row(rs, pool)
            rs.link(0).set(delay=0.2)
            # ANY rotates over m, r1, r2: each kind gets a turn on the slow master.
            for k in range(3):
                await pool.replace("kv", [10 + k, "w"], mode=tt.Mode.RW)
                await pool.call("note", f"call{k}", mode=tt.Mode.ANY)
                await pool.eval("return ...", f"eval{k}", mode=tt.Mode.ANY)
                await pool.call("note", f"idem{k}", mode=tt.Mode.ANY, idempotent=True)
                await pool.call("note", f"rw{k}", mode=tt.Mode.RW, idempotent=True)
            rs.link(0).set(delay=FAST)
            await rs.advance(1.0)
        return runs

    runs = run_on_replicaset(main)
    for k in range(3):
        assert runs[f"call{k}"] == 1 and runs[f"rw{k}"] == 1, runs
    # Control: idempotent calls in ANY are hedged (each ran twice: on its
    # instance and, hedge_after=0, at once on another).
    assert [runs[f"idem{k}"] for k in range(3)] == [2, 2, 2], runs
