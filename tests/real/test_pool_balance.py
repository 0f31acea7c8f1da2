"""Balancing, breakers and hedged reads of the pool on a real replicaset.

One replica is slowed server-side: the test sets a global on it through the
admin console, and the Lua chunk the requests run (``SLOW``) sleeps that long
in a fiber before answering with its ``box.cfg.listen``. Its ``box.info``
probes stay fast, so the health checks keep it HEALTHY: only the strategy
can steer around it. Assertions are about which instance answered and how
requests ended, never about durations.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import trio

from tests.real._servers import Replicaset, TarantoolInstance
from trio_tarantool import (
    CircuitBreaker,
    LatencyAwareStrategy,
    LeastOutstandingStrategy,
    Mode,
    RoundRobinStrategy,
    TarantoolTimeoutError,
    open_pool,
)

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
#: Sleeps ``balance_delay`` seconds (a global, 0 if unset) and answers its listen address.
SLOW = ("local d = rawget(_G, 'balance_delay') or 0 "
        "if d > 0 then require('fiber').sleep(d) end return box.cfg.listen")


def slow_down(inst: TarantoolInstance, seconds: float) -> None:
    inst.admin(f"rawset(_G, 'balance_delay', {seconds})")


async def ro_load(replicaset: Replicaset, strategy: Any) -> Counter[str]:
    """20 tasks x 10 RO reads with one replica slowed by 50 ms: answers per instance."""
    slow_down(replicaset.replicas[1], 0.05)
    answered: Counter[str] = Counter()
    async with open_pool(replicaset.addrs, strategy_class=strategy, **USER) as pool:

        async def worker() -> None:
            for _ in range(10):
                answered[(await pool.eval(SLOW, mode=Mode.RO, idempotent=True)).data[0]] += 1

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(worker)
    return answered


async def test_least_outstanding_and_latency_aware_avoid_the_slow_replica(replicaset: Replicaset) -> None:
    fast, slow = (r.listen for r in replicaset.replicas)
    control = await ro_load(replicaset, RoundRobinStrategy)
    assert abs(control[fast] - control[slow]) <= 2, control  # round robin: half each
    for strategy in (LeastOutstandingStrategy, functools.partial(LatencyAwareStrategy, seed=1)):
        answered = await ro_load(replicaset, strategy)
        assert sum(answered.values()) == 200 and set(answered) <= {fast, slow}, answered
        assert answered[slow] * 3 < answered[fast], (strategy, answered)


async def timeouts(replicaset: Replicaset, strategy: Any) -> int:
    """20 RO reads (socket_timeout 0.2 s), one replica answering after 1 s: how many failed."""
    slow_down(replicaset.replicas[1], 1.0)
    errors = 0
    async with open_pool(replicaset.addrs, strategy_class=strategy, socket_timeout=0.2, **USER) as pool:
        for _ in range(20):
            try:
                await pool.eval(SLOW, mode=Mode.RO, idempotent=True)
            except TarantoolTimeoutError as exc:
                assert exc.may_have_executed
                errors += 1
    return errors


async def test_breaker_stops_sending_to_a_replica_that_times_out(replicaset: Replicaset) -> None:
    assert await timeouts(replicaset, RoundRobinStrategy) == 10  # control: health keeps it
    breaker = functools.partial(CircuitBreaker, failures=2, backoff=60.0, max_backoff=60.0)
    assert await timeouts(replicaset, breaker) == 2


async def test_hedged_reads_are_answered_by_the_fast_replica(replicaset: Replicaset) -> None:
    fast, slow = (r.listen for r in replicaset.replicas)
    slow_down(replicaset.replicas[1], 0.5)
    for hedge_after, expected in ((None, {fast: 5, slow: 5}), (0.02, {fast: 10})):
        async with open_pool(replicaset.addrs, hedge_after=hedge_after, **USER) as pool:
            answered = Counter([(await pool.eval(SLOW, mode=Mode.RO, idempotent=True)).data[0]
                                for _ in range(10)])
            assert answered == expected, (hedge_after, answered)
            # The cancelled copies left the slow replica's connection in sync.
            slow_conn = pool._units[2].conn
            assert (await slow_conn.eval("return 'in sync'")).data == ["in sync"]
            assert sum(u.in_flight for u in pool._units) == 0


async def test_no_write_or_non_idempotent_call_is_hedged(replicaset: Replicaset) -> None:
    """hedge_after=0, every member answering after 50 ms: the counter runs once per
    write or plain call, twice per idempotent read (hedged at once)."""
    # Counted on arrival, answered 50 ms later: a losing copy, written at once,
    # has been counted by the time the winner answers.
    bump = ("local n = counter_inc() local d = rawget(_G, 'balance_delay') or 0 "
            "if d > 0 then require('fiber').sleep(d) end return n")
    for inst in replicaset.instances:
        inst.admin("counter_reset()")
        slow_down(inst, 0.05)
    async with open_pool(replicaset.addrs, hedge_after=0.0, **USER) as pool:
        for _ in range(6):
            await pool.eval(bump, mode=Mode.ANY)
            await pool.eval(bump, mode=Mode.PREFER_RO)
            await pool.eval(bump, mode=Mode.RW, idempotent=True)  # RW is never hedged
            await pool.call("counter_inc", mode=Mode.RO)
        plain = sum(inst.admin_eval("return counter_get()")[0] for inst in replicaset.instances)
        assert plain == 24
        for _ in range(6):
            await pool.eval(bump, mode=Mode.ANY, idempotent=True)
        # Control: the idempotent ones in ANY are hedged (the losing copy was
        # written before it was cancelled, and ran all the same).
        total = sum(inst.admin_eval("return counter_get()")[0] for inst in replicaset.instances)
        assert total - plain == 12
