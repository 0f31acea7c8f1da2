"""ConnectionPool on modern Tarantool: transactions, watchers, graceful shutdown, box.status events.

The 3.x-only tests are marked ``min_server_version``; the ones that run on
both servers say what each one does (2.6 has no streams nor watchers).
"""

from __future__ import annotations

import itertools
import math
import os
import signal
from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.real._servers import Replicaset, TarantoolBinary, TarantoolInstance
from trio_tarantool import Mode, Status, open_pool
from trio_tarantool import _request as _rq

pytestmark = pytest.mark.timeout(120)

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
HANG = 20
_keys = itertools.count(5_000_000)


def row(inst: TarantoolInstance, space: str, key: int) -> Any:
    """The row ``key`` of ``space`` as the server itself has it (admin console)."""
    found = inst.admin_eval(f"return box.space.{space}:get({key})")
    return found[0] if found else None


def unit_of(pool: tt.ConnectionPool, inst: TarantoolInstance) -> tt.PoolUnit:
    return next(u for u in pool._units if u.key == inst.listen)


# -- transactions -------------------------------------------------------------------------
async def test_transaction_needs_streams(replicaset: Replicaset, server_kind: TarantoolBinary) -> None:
    """2.6: NotSupportedError before anything is sent; 3.x: the block commits on the master."""
    key = next(_keys)
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, **USER) as pool:
            if server_kind.version < (2, 10):
                sent = [u.conn.statistics().requests_sent for u in pool._units]
                with pytest.raises(tt.NotSupportedError, match=r"begin|stream"):
                    async with pool.transaction():
                        raise AssertionError("the block must not run")
                with pytest.raises(tt.NotSupportedError):
                    await pool.stream(mode=Mode.RW)
                assert [u.conn.statistics().requests_sent for u in pool._units] == sent
                return
            async with pool.transaction(isolation="read-committed") as tx:
                await tx.insert("tester", [key, "a"])
                await tx.insert("tester", [key + 1, "b"])
                # Not committed yet: another client does not see it.
                assert (await pool.select("tester", key, mode=Mode.RW)).data == []
            assert row(replicaset.master, "tester", key) == [key, "a"]
            assert row(replicaset.master, "tester", key + 1) == [key + 1, "b"]


@pytest.mark.min_server_version(3, 0)
async def test_transaction_rolls_back_on_an_error_and_on_cancel(replicaset: Replicaset) -> None:
    key = next(_keys)
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, **USER) as pool:
            with pytest.raises(KeyError):
                async with pool.transaction() as tx:
                    await tx.insert("tester", [key, "a"])
                    raise KeyError("application error")
            with trio.move_on_after(0.2):
                async with pool.transaction() as tx:
                    await tx.insert("tester", [key + 1, "b"])
                    await trio.sleep_forever()
            assert row(replicaset.master, "tester", key) is None
            assert row(replicaset.master, "tester", key + 1) is None
            # The connection is still usable and nothing is left open on it.
            async with pool.transaction() as tx:
                await tx.insert("tester", [key + 2, "c"])
            assert row(replicaset.master, "tester", key + 2) == [key + 2, "c"]
            assert all(s.in_flight == 0 for s in pool.statistics())


@pytest.mark.min_server_version(3, 0)
async def test_transaction_pins_the_instance_of_its_mode(replicaset: Replicaset) -> None:
    """A RO transaction reads on a replica; its stream's requests all go there."""
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, **USER) as pool:
            async with pool.transaction(mode=Mode.RO) as tx:
                first = (await tx.call("whoami")).data[0]
                again = [(await tx.call("whoami")).data[0][2] for _ in range(4)]
            assert first[3] is True  # read-only
            assert set(again) == {first[2]}
            stream = await pool.stream(mode=Mode.RW)
            assert (await stream.call("whoami")).data[0][2] == replicaset.master.listen


@pytest.mark.min_server_version(3, 0)
async def test_transaction_whose_commit_is_in_flight_when_the_connection_dies_may_have_executed(
        replicaset_factory: Any) -> None:
    """A COMMIT waiting for the synchronous quorum when the leader dies: may have committed."""
    rs: Replicaset = replicaset_factory(3, election=True)
    leader = rs.leader()
    key = next(_keys)
    with trio.fail_after(HANG):
        async with open_pool(rs.addrs, probe_timeout=5, **USER) as pool:
            for follower in rs.replicas:
                follower.freeze()  # no quorum: the COMMIT waits in the leader's queue
            errors: list[BaseException] = []

            async def run_transaction() -> None:
                try:
                    async with pool.transaction() as tx:
                        await tx.replace("sync_w", [key, "in doubt"])
                    # leaving the block sends COMMIT
                except tt.Error as exc:
                    errors.append(exc)

            def kill_once_committing() -> None:
                while leader.admin_eval("return box.info.synchro.queue.len")[0] < 1:
                    pass  # the admin round trip paces this
                leader.kill()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_transaction)
                await trio.to_thread.run_sync(kill_once_committing)
            for follower in rs.replicas:
                follower.thaw()
            assert len(errors) == 1 and isinstance(errors[0], tt.NetworkError), errors
            assert errors[0].may_have_executed is True


# -- watchers -----------------------------------------------------------------------------
@pytest.mark.min_server_version(3, 0)
async def test_watch_one_instance_of_a_mode_and_every_instance(replicaset: Replicaset) -> None:
    for n, inst in enumerate(replicaset.instances):
        inst.admin(f"box.broadcast('pool.key', {n})")
    master_n = replicaset.instances.index(replicaset.master)
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, **USER) as pool:
            async with pool.watch("pool.key", mode=Mode.RW) as values:
                assert await values.__anext__() == master_n
                replicaset.master.admin("box.broadcast('pool.key', 'changed')")
                assert await values.__anext__() == "changed"
            async with pool.watch("box.status", mode=Mode.RO) as values:
                assert (await values.__anext__())["is_ro"] is True
            seen: dict[str, Any] = {}
            async with pool.watch_all("pool.key") as events:
                async for instance, value in events:
                    seen[instance] = value
                    if len(seen) == 3:
                        break
                assert seen == {replicaset.master.listen: "changed",
                                **{i.listen: replicaset.instances.index(i) for i in replicaset.replicas}}
                replica = replicaset.replicas[0]
                replica.admin("box.broadcast('pool.key', 'later')")
                async for instance, value in events:
                    if value == "later":
                        assert instance == replica.listen
                        break


async def test_watch_needs_watchers(replicaset: Replicaset, server_kind: TarantoolBinary) -> None:
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, **USER) as pool:
            if server_kind.version >= (2, 10):
                async with pool.watch("box.id", mode=Mode.ANY) as values:
                    assert "id" in await values.__anext__()
                return
            with pytest.raises(tt.NotSupportedError, match="watch"):
                async with pool.watch("box.id"):
                    pass
            with pytest.raises(tt.NotSupportedError, match="watch"):
                async with pool.watch_all("box.id") as events:
                    async for _ in events:
                        pass


# -- box.status events --------------------------------------------------------------------
@pytest.mark.min_server_version(3, 0)
async def test_a_role_change_is_applied_from_the_event_without_a_probe(replicaset: Replicaset) -> None:
    """With probes an hour apart, the box.status events alone carry a switch-over."""
    old, new = replicaset.master, replicaset.replicas[0]
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, refresh_delay=3600, **USER) as pool:
            probes = sum(u.probes for u in pool._units)
            await trio.to_thread.run_sync(replicaset.switch_master, new)
            while unit_of(pool, new).state.read_only is not False or \
                    unit_of(pool, old).state.read_only is not True:
                await pool._health._probe_done.wait()  # set on every state change
            assert sum(u.probes for u in pool._units) == probes  # no probe ran
            assert (await pool.call("whoami", mode=Mode.RW)).data[0][2] == new.listen


@pytest.mark.min_server_version(3, 0)
async def test_without_status_events_the_role_waits_for_a_probe(replicaset: Replicaset) -> None:
    """The control of the test above: status_events=False leaves only the probes."""
    new = replicaset.replicas[0]
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, refresh_delay=3600, status_events=False, **USER) as pool:
            await trio.to_thread.run_sync(replicaset.switch_master, new)
            await trio.sleep(0.5)
            assert unit_of(pool, new).state.read_only is True
            assert pool._health.events == 0


# -- graceful shutdown --------------------------------------------------------------------
@pytest.mark.min_server_version(3, 0)
@pytest.mark.parametrize("mode", [Mode.PREFER_RO, Mode.ANY])
async def test_sigterm_to_a_replica_under_load_fails_no_request(replicaset: Replicaset, mode: Mode) -> None:
    """100 tasks of reads; a replica stops gracefully (SIGTERM): not one request fails."""
    victim = replicaset.replicas[0]
    failures: list[BaseException] = []
    done = [0]
    stopped = trio.Event()
    reached: dict[int, trio.Event] = {}

    async def until_done(count: int) -> None:
        if done[0] < count:
            await reached.setdefault(count, trio.Event()).wait()
    with trio.fail_after(60):
        async with open_pool(replicaset.addrs, **USER) as pool:

            async def reader() -> None:
                while True:
                    try:
                        await pool.select("tester", 1, mode=mode)
                        done[0] += 1
                        if done[0] in reached:
                            reached[done[0]].set()
                    except tt.Error as exc:
                        failures.append(exc)
                    if stopped.is_set():
                        return

            async def stop_victim() -> None:
                await until_done(2000)  # traffic on every instance first
                await trio.to_thread.run_sync(victim.stop)
                await until_done(done[0] + 2000)  # and well after it is gone
                stopped.set()

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(reader)
                nursery.start_soon(stop_victim)
            assert unit_of(pool, victim).state.status == Status.UNHEALTHY
    assert failures == [], failures[:3]
    print(f"{mode.name}: {done[0]} reads, {len(failures)} failed")


@pytest.mark.min_server_version(3, 0)
async def test_a_draining_replica_takes_no_new_request(replicaset: Replicaset) -> None:
    """While a replica drains a slow request after SIGTERM, reads go elsewhere at once.

    Without the box.shutdown event the replica stays HEALTHY until its socket
    closes, and requests routed to it wait for the drain (here 2 s, past
    their socket_timeout).
    """
    victim = replicaset.replicas[0]
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, socket_timeout=0.5, **USER) as pool:
            conn = unit_of(pool, victim).conn
            async with trio.open_nursery() as nursery:
                # Held on the server (no client deadline): a long drain.
                nursery.start_soon(conn.perform, _rq.call("sleep", 2), math.inf)
                while conn.in_flight < 1:
                    await trio.lowlevel.checkpoint()
                assert victim.pid is not None
                os.kill(victim.pid, signal.SIGTERM)
                while unit_of(pool, victim).state.status != Status.UNHEALTHY:
                    await pool._health._probe_done.wait()  # set on every state change
                assert conn.draining  # it is the shutdown notice, not a lost connection
                served = [(await pool.call("whoami", mode=Mode.PREFER_RO)).data[0][2] for _ in range(50)]
                assert victim.listen not in served
                assert conn.draining  # all of that while the slow request was still draining
