"""Pool membership on real replicasets (both server kinds): add, remove, discover, wait_for.

Which instance ran what is counted on the server (``counter_get()`` through the
admin console, not through the library); requests are held in flight with the
server-side gates of ``lua/common.lua``, not with sleeps. Blocking admin calls
run in a thread (``trio.to_thread.run_sync``) so the pool keeps running.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from tests.real._servers import REPLICATOR_PASSWORD, Replicaset, TarantoolInstance
from trio_tarantool import (
    ConfigurationError,
    ConnectionClosedError,
    Mode,
    PoolTopologyError,
    TarantoolTimeoutError,
    open_pool,
)

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
#: Every wait of these tests ends by then, whatever happens.
LIMIT = 60


def addr(inst: TarantoolInstance) -> dict[str, Any]:
    return {"host": inst.host, "port": inst.port}


async def first_event(events: Any, kind: str) -> Any:
    """The first event of ``kind`` a subscriber has (or gets)."""
    async for event in events:
        if event.kind == kind:
            return event
    raise AssertionError(f"no {kind!r} event before the pool closed")


def counter(inst: TarantoolInstance) -> int:
    (value,) = inst.admin_eval("return counter_get()")
    return int(value)


async def test_add_a_fresh_replica_under_traffic(replicaset: Replicaset) -> None:
    """A replica added while 50 tasks read takes its share; nothing fails meanwhile."""
    first, second, fresh = replicaset.instances
    served: dict[str, int] = {}
    errors: list[BaseException] = []
    with trio.fail_after(LIMIT):
        async with open_pool([addr(first), addr(second)], refresh_delay=0.2, **USER) as pool:
            async with pool.events() as events:
                added = trio.Event()

                async def worker() -> None:
                    while not added.is_set() or served.get(fresh.listen, 0) < 50:
                        try:
                            listen = (await pool.call("whoami", mode=Mode.ANY)).data[0][2]
                        except Exception as exc:  # counted, then the test fails
                            errors.append(exc)
                            return
                        served[listen] = served.get(listen, 0) + 1

                async with trio.open_nursery() as nursery:
                    for _ in range(50):
                        nursery.start_soon(worker)
                    await pool.add(addr(fresh))
                    added.set()
                    # Returned after its first probe: it fits already.
                    await pool.wait_for(Mode.ANY, timeout=0)
                    assert [s.addr for s in pool.statistics()] == [
                        first.listen, second.listen, fresh.listen]
                    assert pool.addrs[2] == addr(fresh)
                event = await first_event(events, "added")
                assert event.instance == fresh.listen and event.discovered is False
            assert not errors, errors[:3]
            assert served[fresh.listen] >= 50 and served[first.listen] and served[second.listen]
            with pytest.raises(ConfigurationError, match=r"addrs\[3\]: .* duplicates addrs\[2\]"):
                await pool.add(addr(fresh))
            with pytest.raises(ConfigurationError, match=r"addrs\[3\]: port 70000 is outside 1..65535"):
                await pool.add({"host": "127.0.0.1", "port": 70000})
        with pytest.raises(ConnectionClosedError, match="closed"):
            await pool.add({"host": "127.0.0.1", "port": 1})


async def test_remove_under_traffic_routes_nothing_there_and_lets_in_flight_finish(
        replicaset: Replicaset) -> None:
    """remove() under 50 tasks of traffic: the requests held on the instance finish;
    nothing is routed there after the call (counted on the server); its tasks end."""
    master, kept, target = replicaset.instances
    gate = "membership-remove"
    with trio.fail_after(LIMIT):
        async with open_pool(replicaset.addrs, refresh_delay=0.2, socket_timeout=30, **USER) as pool:
            unit = pool.pool[target.listen]
            held: list[Any] = []

            async def hold() -> None:
                held.append((await pool.call("gate_wait", gate, "done", mode=Mode.RO)).data)

            async with trio.open_nursery() as holders:
                for _ in range(10):  # round robin over the two replicas: 5 held on target
                    holders.start_soon(hold)
                await trio.testing.wait_all_tasks_blocked()
                on_target = unit.in_flight
                assert on_target == 5, pool
                await trio.to_thread.run_sync(target.gate_arrivals, gate, on_target)

                removed = trio.Event()

                async def do_remove() -> None:
                    await pool.remove(addr(target))
                    removed.set()

                holders.start_soon(do_remove)
                await trio.testing.wait_all_tasks_blocked()  # remove() is waiting for the drain
                assert target.listen not in pool.pool and not removed.is_set()
                assert counter(target) == 0

                done = trio.Event()
                busy = trio.Event()  # plenty of traffic went while remove() drains
                calls = [0]
                errors: list[BaseException] = []

                async def traffic() -> None:
                    while not done.is_set():
                        try:
                            await pool.call("counter_inc", mode=Mode.ANY)
                        except Exception as exc:
                            errors.append(exc)
                            busy.set()
                            return
                        calls[0] += 1
                        if calls[0] >= 500:
                            busy.set()

                async with trio.open_nursery() as load:
                    for _ in range(50):
                        load.start_soon(traffic)
                    await busy.wait()
                    assert not removed.is_set()  # still draining: the held requests are there
                    await trio.to_thread.run_sync(target.gate_open, gate)
                    await trio.to_thread.run_sync(kept.gate_open, gate)
                    await removed.wait()
                    done.set()
            assert not errors, errors[:3]
            assert held == [["done"]] * 10  # every held request completed with its answer
            # Zero requests routed to the removed instance after the call, counted there.
            assert counter(target) == 0
            assert counter(master) + counter(kept) == calls[0] >= 500
            assert counter(kept) > 0
            # Its tasks and socket are gone; the pool lists it no more.
            assert unit.task is None and unit.conn.is_closed() and unit.ended.is_set()
            assert [s.addr for s in pool.statistics()] == [master.listen, kept.listen]
            assert pool.addrs == [addr(master), addr(kept)]
            with pytest.raises(ConfigurationError, match=f"remove\\(\\): {target.listen} is not in the pool"):
                await pool.remove(addr(target))


async def test_remove_timeout_fails_what_is_left_saying_it_was_written(replicaset: Replicaset) -> None:
    """Past remove()'s timeout, a request still held there fails with ConnectionClosedError,
    may_have_executed=True (it was written); remove() returns; the rest keeps working."""
    master, _, target = replicaset.instances
    gate = "membership-timeout"
    with trio.fail_after(LIMIT):
        async with open_pool([addr(master), addr(target)], refresh_delay=0.2, **USER) as pool:
            outcome: list[ConnectionClosedError] = []

            async def hold() -> None:
                try:
                    await pool.call("gate_wait", gate, mode=Mode.RO)
                except ConnectionClosedError as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold)
                await trio.to_thread.run_sync(target.gate_arrivals, gate, 1)
                async with pool.events() as events:
                    await pool.remove(addr(target), timeout=0.1)
                    event = await first_event(events, "removed")
            assert event.instance == target.listen and event.abandoned == 1
            assert len(outcome) == 1 and outcome[0].may_have_executed is True, outcome
            target.gate_open(gate)
            # The last instance may go too: requests then find none.
            await pool.remove(master.listen)
            with pytest.raises(PoolTopologyError):
                await pool.ping(mode=Mode.ANY)
            await pool.add(addr(master))
            await pool.ping(mode=Mode.ANY)


async def test_discovery_finds_the_other_members_from_one_address(replicaset: Replicaset) -> None:
    """Given only the master, discover=True adds the two replicas before connect() returns;
    no replication password reaches the pool."""
    master, r1, r2 = replicaset.instances
    with trio.fail_after(LIMIT):
        async with open_pool([addr(master)], discover=True, refresh_delay=0.2, **USER) as pool:
            keys = sorted(s.addr for s in pool.statistics())
            assert keys == sorted([master.listen, r1.listen, r2.listen])
            await pool.wait_for(Mode.RO, timeout=LIMIT)
            answered = {(await pool.call("whoami", mode=Mode.RO)).data[0][2] for _ in range(4)}
            assert answered == {r1.listen, r2.listen}
            assert await pool.discover() == []  # nothing new; never removes
            assert REPLICATOR_PASSWORD not in repr(pool.addrs) + repr(pool.statistics())
        # And on demand, from a replica's view.
        async with open_pool([addr(r2)], refresh_delay=0.2, **USER) as pool:
            found = await pool.discover()
            assert sorted(found) == sorted([master.listen, r1.listen])
            await pool.wait_for(Mode.RW, timeout=LIMIT)
            assert (await pool.call("whoami", mode=Mode.RW)).data[0][2] == master.listen


async def test_wait_for_wakes_on_a_role_change_and_ends_by_timeout_or_close(
        replicaset: Replicaset) -> None:
    master, replica, _ = replicaset.instances
    with trio.fail_after(LIMIT):
        async with open_pool([addr(replica)], refresh_delay=0.1, **USER) as pool:
            await pool.wait_for(Mode.RO)  # fits now: returns at once
            with pytest.raises(TarantoolTimeoutError, match="no instance fits mode RW") as info:
                await pool.wait_for(Mode.RW, timeout=0.3)
            assert info.value.may_have_executed is False
            async with trio.open_nursery() as nursery:
                woke = trio.Event()

                async def waiter() -> None:
                    await pool.wait_for(Mode.RW)
                    woke.set()

                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert not woke.is_set()
                await trio.to_thread.run_sync(replicaset.switch_master, replica)
                await woke.wait()
            assert pool.statistics()[0].read_only is False
            # Closing the pool ends a wait with ConnectionClosedError.
            ended: list[BaseException] = []

            async def closed_waiter() -> None:
                try:
                    await pool.wait_for(Mode.RW, timeout=LIMIT)  # master is ro now: none fits
                except ConnectionClosedError as exc:
                    ended.append(exc)

            async with trio.open_nursery() as nursery:
                await trio.to_thread.run_sync(replicaset.demote, replica)
                await pool.wait_for(Mode.RO, timeout=LIMIT)  # the pool saw it: RW fits no more
                nursery.start_soon(closed_waiter)
                await trio.testing.wait_all_tasks_blocked()
                pool.close()
            assert len(ended) == 1 and "closed" in str(ended[0])
        del master
