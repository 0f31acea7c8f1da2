"""ConnectionPool against real Tarantool: failures, failover, role switches under load."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from tests.real._servers import Replicaset, TarantoolInstance
from trio_tarantool._errors import (
    DatabaseError,
    ErrorCode,
    NetworkError,
    PoolTopologyError,
    TarantoolTimeoutError,
)
from trio_tarantool._pool import ConnectionPool, open_pool
from trio_tarantool._strategy import Mode, Status

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
_keys = itertools.count(2_000_000)


async def who(pool: ConnectionPool, mode: Mode) -> str:
    return str((await pool.call("whoami", mode=mode))[0][2])


def status_of(pool: ConnectionPool, inst: TarantoolInstance) -> Status:
    return next(s.status for s in pool.statistics() if s.addr == inst.listen)


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll ``check`` until it is true; return how long it took."""
    start = trio.current_time()
    with trio.move_on_after(within):
        while True:
            try:
                if await check():
                    return trio.current_time() - start
            except (NetworkError, PoolTopologyError, DatabaseError):
                pass
            await trio.sleep(0.02)
    raise AssertionError(f"not within {within}s: {what}")


async def test_kill_master_then_promote_replica(replicaset: Replicaset) -> None:
    async with open_pool(replicaset.addrs, refresh_delay=0.2, **USER) as pool:
        old = replicaset.master
        assert await who(pool, Mode.RW) == old.listen
        replicaset.kill_master()

        async def old_is_down() -> bool:
            return status_of(pool, old) == Status.UNHEALTHY

        # The disconnect watcher sees the lost connection at once, no poll needed.
        took = await eventually(old_is_down, 1.0, "killed master marked UNHEALTHY")
        assert took < 0.5
        with pytest.raises(PoolTopologyError, match="rw instance"):
            await pool.call("whoami", mode=Mode.RW)
        # Reads go on meanwhile.
        assert {await who(pool, Mode.ANY) for _ in range(4)} == {r.listen for r in replicaset.replicas}

        new = replicaset.replicas[0]
        replicaset.promote(new)

        async def rw_is_new() -> bool:
            return await who(pool, Mode.RW) == new.listen

        await eventually(rw_is_new, 2.0, "promoted replica serves RW")
        key = next(_keys)
        await pool.insert("tester", [key, "after failover"])
        assert new.admin_eval(f"return box.space.tester:get({key})")[0] == [key, "after failover"]


async def test_instances_dead_at_start_then_revived(replicaset: Replicaset) -> None:
    down = replicaset.replicas[1]
    down.stop()
    start = trio.current_time()
    async with open_pool(replicaset.addrs, refresh_delay=0.2, **USER) as pool:
        assert trio.current_time() - start < 2.0  # a dead instance does not block connect
        assert status_of(pool, down) == Status.UNHEALTHY
        assert "connect" in (next(s for s in pool.statistics() if s.addr == down.listen).last_error_message or "")
        alive = {i.listen for i in replicaset.instances if i is not down}
        assert {await who(pool, Mode.ANY) for _ in range(6)} == alive
        await trio.to_thread.run_sync(down.start)

        async def back() -> bool:
            return {await who(pool, Mode.ANY) for _ in range(6)} == alive | {down.listen}

        await eventually(back, 3.0, "revived instance back in rotation")


async def test_all_dead_at_start(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    insts = [tarantool_factory(start=False) for _ in range(2)]
    addrs = [{"host": i.host, "port": i.port} for i in insts]
    with trio.fail_after(5):
        async with open_pool(addrs, refresh_delay=0.2, **USER) as pool:
            assert all(s.status == Status.UNHEALTHY for s in pool.statistics())
            with pytest.raises(PoolTopologyError, match="Can't find healthy instance in pool"):
                await pool.call("whoami", mode=Mode.ANY)
            await trio.to_thread.run_sync(insts[0].start)

            async def served() -> bool:
                return await who(pool, Mode.RW) == insts[0].listen

            await eventually(served, 3.0, "first instance started late serves RW")


async def test_frozen_master_while_ro_traffic_continues(replicaset: Replicaset) -> None:
    master = replicaset.master
    async with open_pool(replicaset.addrs, refresh_delay=0.2, probe_timeout=0.5, **USER) as pool:
        assert await who(pool, Mode.RW) == master.listen
        master.freeze()
        try:
            frozen_at = trio.current_time()
            worst = 0.0
            served = 0
            while trio.current_time() - frozen_at < 2.0:
                t0 = trio.current_time()
                assert await who(pool, Mode.RO) != master.listen
                worst = max(worst, trio.current_time() - t0)
                served += 1
                await trio.sleep(0.01)
            assert worst < 0.2, f"an RO request took {worst:.3f}s while the master was frozen"
            assert served > 50
            # The probe timed out: the frozen master is no longer HEALTHY.
            assert status_of(pool, master) == Status.UNHEALTHY
            stats = next(s for s in pool.statistics() if s.addr == master.listen)
            assert "probe_timeout" in (stats.last_error_message or "")
            with pytest.raises(PoolTopologyError):
                await pool.call("whoami", mode=Mode.RW)
        finally:
            master.thaw()

        async def master_back() -> bool:
            return await who(pool, Mode.RW) == master.listen

        await eventually(master_back, 3.0, "thawed master serves RW again")


async def test_planned_switch_under_write_load(replicaset: Replicaset) -> None:
    """Promote a replica, then demote the master, while 8 writers insert: 0 failed writes."""
    old = replicaset.master
    new = replicaset.replicas[0]
    base = next(_keys) * 10
    for _ in range(100_000):
        next(_keys)
    written: list[int] = []
    failures: list[BaseException] = []
    stop = trio.Event()

    async with open_pool(replicaset.addrs, refresh_delay=0.5, **USER) as pool:

        async def writer(w: int) -> None:
            for i in itertools.count():
                if stop.is_set():
                    return
                key = base + w * 10_000 + i
                try:
                    await pool.insert("tester", [key, f"w{w}"])
                    written.append(key)
                except Exception as exc:
                    failures.append(exc)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(writer, w)
                await trio.sleep(0.5)
                await trio.to_thread.run_sync(replicaset.promote, new)
                await trio.to_thread.run_sync(replicaset.demote, old)
                await trio.sleep(1.0)
                stop.set()
        assert failures == []
        assert len(written) > 100
        assert await who(pool, Mode.RW) == new.listen
    # Every acknowledged write is on the new master (replicated or written there).
    await trio.to_thread.run_sync(replicaset.wait_replicated)
    count = new.admin_eval(
        f"return box.space.tester.index.primary:count({base}, {{iterator = 'GE'}})"
    )[0]
    assert count == len(written)


async def test_master_sigkill_under_load(replicaset: Replicaset) -> None:
    """Every request either succeeds or fails saying whether it may have executed."""
    old = replicaset.master
    new = replicaset.replicas[0]
    base = next(_keys) * 10
    for _ in range(100_000):
        next(_keys)
    outcomes: list[tuple[int, BaseException | None]] = []
    stop = trio.Event()

    async with open_pool(replicaset.addrs, refresh_delay=0.2, socket_timeout=2.0, **USER) as pool:

        async def writer(w: int) -> None:
            for i in itertools.count():
                if stop.is_set():
                    return
                key = base + w * 10_000 + i
                try:
                    await pool.insert("tester", [key, f"w{w}"])
                    outcomes.append((key, None))
                except (NetworkError, PoolTopologyError, DatabaseError) as exc:
                    outcomes.append((key, exc))
                    await trio.sleep(0.01)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(writer, w)
                await trio.sleep(0.5)
                old.kill()
                await trio.sleep(0.3)
                await trio.to_thread.run_sync(replicaset.promote, new)
                await trio.sleep(1.0)
                stop.set()

    errors = [(k, e) for k, e in outcomes if e is not None]
    ok = [k for k, e in outcomes if e is None]
    assert len(ok) > 100
    for _key, exc in errors:
        if isinstance(exc, NetworkError):
            continue  # may_have_executed is set either way; checked below when False
        if isinstance(exc, DatabaseError):
            assert exc.code == ErrorCode.ER_READONLY, exc
        # PoolTopologyError: never sent.
    not_executed = [k for k, e in errors if not getattr(e, "may_have_executed", False)]
    if not_executed:
        # Those really did not run anywhere that survived.
        found = new.admin_eval(
            "local n = 0 for _, k in ipairs({" + ",".join(map(str, not_executed)) + "}) do "
            "if box.space.tester:get(k) ~= nil then n = n + 1 end end return n"
        )[0]
        assert found == 0
    # The writes acknowledged after the promotion are on the new master.
    late = [k for k, e in outcomes[-50:] if e is None]
    assert late, "no write succeeded after the failover"
    found_late = new.admin_eval(
        "local n = 0 for _, k in ipairs({" + ",".join(map(str, late)) + "}) do "
        "if box.space.tester:get(k) ~= nil then n = n + 1 end end return n"
    )[0]
    assert found_late == len(late)


async def test_readonly_reply_reroutes_at_once(replicaset: Replicaset) -> None:
    """A write refused with ER_READONLY is re-sent to the real master, not failed."""
    old = replicaset.master
    new = replicaset.replicas[0]
    # A long refresh_delay: only the ER_READONLY reply can tell the pool.
    async with open_pool(replicaset.addrs, refresh_delay=30, **USER) as pool:
        assert await who(pool, Mode.RW) == old.listen
        replicaset.promote(new)
        replicaset.demote(old)
        key = next(_keys)
        await pool.insert("tester", [key, "rerouted"])
        assert new.admin_eval(f"return box.space.tester:get({key})")[0] == [key, "rerouted"]
        assert await who(pool, Mode.RW) == new.listen


async def test_retry_can_be_disabled(replicaset: Replicaset) -> None:
    old = replicaset.master
    new = replicaset.replicas[0]
    async with open_pool(replicaset.addrs, refresh_delay=30, retry_not_executed=False, **USER) as pool:
        assert await who(pool, Mode.RW) == old.listen
        replicaset.promote(new)
        replicaset.demote(old)
        with pytest.raises(DatabaseError) as info:
            await pool.insert("tester", [next(_keys), "x"])
        assert info.value.code == ErrorCode.ER_READONLY
        assert info.value.may_have_executed is False


async def test_timeout_says_may_have_executed_and_is_not_resent(replicaset: Replicaset) -> None:
    """A request stuck on a frozen master times out, says it may have run, and ran once."""
    master = replicaset.master
    async with open_pool(replicaset.addrs, refresh_delay=0.2, probe_timeout=0.5,
                         socket_timeout=0.3, **USER) as pool:
        assert await who(pool, Mode.RW) == master.listen
        master.freeze()
        try:
            start = trio.current_time()
            with pytest.raises(TarantoolTimeoutError) as info:
                await pool.call("counter_inc", mode=Mode.RW)
            assert trio.current_time() - start < 1.0
            assert info.value.may_have_executed is True
            assert "may have been executed" in str(info.value)
            assert master.listen in str(info.value)
            assert isinstance(info.value, TimeoutError)
        finally:
            master.thaw()

        async def master_back() -> bool:
            return await who(pool, Mode.RW) == master.listen

        await eventually(master_back, 3.0, "thawed master serves RW again")
        # The request reached the master's socket before the timeout: it ran there
        # once after the thaw, and was never re-sent to anyone else.
        assert (await pool.call("counter_get", mode=Mode.RW))[0] == 1
        for replica in replicaset.replicas:
            assert replica.admin_eval("return counter_get()")[0] == 0


#: A Lua gate: ``gate_wait()`` blocks until the admin console runs ``gate:put(true)``.
GATE_LUA = (
    "rawset(_G, 'gate', require('fiber').channel(1)) "
    "rawset(_G, 'gate_wait', function() return gate:get(30) end)"
)


async def test_in_flight_statistics(replicaset: Replicaset) -> None:
    master = replicaset.master
    master.admin(GATE_LUA)
    async with open_pool(replicaset.addrs, **USER) as pool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: pool.call("gate_wait", mode=Mode.RW))

            async def one_in_flight() -> bool:
                return sum(s.in_flight for s in pool.statistics()) == 1

            # The request is held on the server until the gate opens.
            await eventually(one_in_flight, 5.0, "the held request counted in flight")
            stats = {s.addr: s.in_flight for s in pool.statistics()}
            assert stats[master.listen] == 1
            assert "in_flight=1" in repr(pool)
            await trio.to_thread.run_sync(master.admin, "gate:put(true)")
        assert all(s.in_flight == 0 for s in pool.statistics())


async def test_dead_replica_leaves_rotation_without_a_poll(replicaset: Replicaset) -> None:
    victim = replicaset.replicas[1]
    # refresh_delay=30: only the disconnect watcher can notice the death in time.
    async with open_pool(replicaset.addrs, refresh_delay=30, **USER) as pool:
        victim.kill()

        async def victim_down() -> bool:
            return status_of(pool, victim) == Status.UNHEALTHY

        # Well before the 30 s poll: the lost connection itself tells the pool.
        await eventually(victim_down, 5.0, "killed replica marked UNHEALTHY")
        alive = {i.listen for i in replicaset.instances if i is not victim}
        assert {await who(pool, Mode.ANY) for _ in range(30)} == alive
        assert {await who(pool, Mode.RO) for _ in range(4)} == {replicaset.replicas[0].listen}


async def test_full_cluster_restart(replicaset: Replicaset) -> None:
    """Every member stops and comes back: the pool recovers by itself."""
    async with open_pool(replicaset.addrs, refresh_delay=0.2, **USER) as pool:
        everyone = {i.listen for i in replicaset.instances}
        assert {await who(pool, Mode.ANY) for _ in range(3)} == everyone
        for inst in replicaset.instances:
            await trio.to_thread.run_sync(inst.stop)

        async def all_down() -> bool:
            return all(s.status == Status.UNHEALTHY for s in pool.statistics())

        await eventually(all_down, 2.0, "every member UNHEALTHY")
        with pytest.raises(PoolTopologyError):
            await pool.call("whoami", mode=Mode.ANY)
        for inst in replicaset.instances:
            inst.spawn()
        for inst in replicaset.instances:
            await trio.to_thread.run_sync(inst.wait_ready)

        async def all_back() -> bool:
            return {await who(pool, Mode.ANY) for _ in range(3)} == everyone

        await eventually(all_back, 5.0, "every member back in rotation")
        assert await who(pool, Mode.RW) == replicaset.master.listen


async def test_probe_errors_never_stop_probing(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    """box.info refused (no rights) keeps the instance UNHEALTHY, and probing goes on."""
    inst = tarantool_factory()
    inst.admin("box.schema.user.create('limited', {password = 'pw', if_not_exists = true})")
    addrs = [{"host": inst.host, "port": inst.port}]
    async with open_pool(addrs, user="limited", password="pw", refresh_delay=0.1) as pool:
        (stats,) = pool.statistics()
        assert stats.status == Status.UNHEALTHY
        assert "ER_ACCESS_DENIED" in (stats.last_error_message or ""), stats.last_error_message
        await trio.sleep(0.3)  # several failed probes in a row
        inst.admin("box.schema.user.grant('limited', 'execute', 'universe')")

        async def healthy() -> bool:
            return pool.statistics()[0].status == Status.HEALTHY

        await eventually(healthy, 2.0, "instance HEALTHY once box.info is allowed")
        assert await pool.ping(notime=True, mode=Mode.RW) == "Success"


FAKE_LOADING = (
    "rawset(_G, 'fake_loading', function() "
    "if not box.info.ro then box.error({code = 116, reason = 'fake loading'}) end "
    "return box.cfg.listen end)"
)


async def test_loading_reply_is_retried_elsewhere(replicaset: Replicaset) -> None:
    """ER_LOADING of an idempotent CALL: the request goes once more, to another instance.

    (A CALL not marked idempotent is not retried: the refusal may come from
    inside its code, as here; tests/real/test_pool_retry.py.)
    """
    for inst in replicaset.instances:
        inst.admin(FAKE_LOADING)
    master = replicaset.master
    async with open_pool(replicaset.addrs, refresh_delay=30, **USER) as pool:
        served = [(await pool.call("fake_loading", mode=Mode.ANY, idempotent=True))[0]
                  for _ in range(6)]
        assert set(served) == {r.listen for r in replicaset.replicas}
        stats = next(s for s in pool.statistics() if s.addr == master.listen)
        assert "fake loading" in (stats.last_error_message or "")

    async with open_pool(replicaset.addrs, refresh_delay=30, retry_not_executed=False, **USER) as pool:
        with pytest.raises(DatabaseError) as info:
            for _ in range(3):  # one of three ANY requests lands on the master
                await pool.call("fake_loading", mode=Mode.ANY, idempotent=True)
        assert info.value.code == ErrorCode.ER_LOADING
        assert info.value.may_have_executed is True  # a CALL's refusal may come from its code


async def test_frozen_instance_at_start_costs_at_most_probe_timeout(replicaset: Replicaset) -> None:
    frozen = replicaset.replicas[0]
    frozen.freeze()
    try:
        start = trio.current_time()
        async with open_pool(replicaset.addrs, refresh_delay=0.2, probe_timeout=0.5, **USER) as pool:
            took = trio.current_time() - start
            assert 0.4 < took < 1.5, took
            assert status_of(pool, frozen) == Status.UNHEALTHY
            assert await who(pool, Mode.RO) == replicaset.replicas[1].listen
            frozen.thaw()

            async def back() -> bool:
                return status_of(pool, frozen) == Status.HEALTHY

            await eventually(back, 3.0, "thawed replica HEALTHY")
    finally:
        frozen.thaw()
