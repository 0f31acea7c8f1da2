"""The simulator playing Tarantool 3.8: ID, watchers, streams and transactions,
elections, graceful shutdown, and the real client and pool on it.

Each expectation about the server was checked against the real 3.8 binary
(codes, messages, error fields, event shapes); the differential
``test_txn_fidelity.py`` pins the transaction rules on generated sequences.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

import trio_tarantool as tt
from trio_tarantool import sim

pytestmark = pytest.mark.trio

USERS = {"u": "p"}


def _schema(rs: sim.Replicaset) -> None:
    rs.create_space("t", [("id", "unsigned"), ("v", "string")],
                    indexes=[("primary", [("id", "unsigned")], True)])


async def test_id_announces_protocol_10_and_only_the_implemented_features(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs, tt.connect(**rs.addrs[0]) as conn:
        assert conn.protocol_version == 10
        assert sorted(conn.features) == [0, 1, 2, 3, 6]
        status = await conn.watch_once("box.status")
        assert status == {"is_ro": False, "is_ro_cfg": False, "status": "running", "dd_version": "3.8.0"}
        assert await conn.watch_once("nothing.here") is None


async def test_watch_events_follow_changes_and_user_broadcasts(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs, tt.connect(**rs.addrs[0]) as conn:
        async with conn.watch("box.status") as status, conn.watch("app.key") as app:
            seen = [await status.__anext__()]
            assert await app.__anext__() is None
            rs.set_ro(0, True)
            seen.append(await status.__anext__())
            await conn.call("box.broadcast", "app.key", {"v": 1})
            assert await app.__anext__() == {"v": 1}
        assert [s["is_ro"] for s in seen] == [False, True]


async def test_uncommitted_rows_are_seen_only_by_their_stream(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[0]) as conn, tt.connect(**rs.addrs[0]) as other:
            tx, reader = await conn.stream(), await other.stream()
            await tx.begin(isolation="read-committed")
            await tx.insert("t", [1, "a"])
            assert (await tx.select("t", 1)).data == [[1, "a"]]
            assert (await reader.select("t", 1)).data == []
            assert (await other.select("t", 1)).data == []
            await tx.commit()
            assert (await other.select("t", 1)).data == [[1, "a"]]


async def test_a_conflicting_transaction_is_aborted_with_97(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[0]) as conn:
            a, b = await conn.stream(), await conn.stream()
            await a.begin()
            await b.begin()
            await a.insert("t", [1, "a"])
            await b.insert("t", [1, "b"])
            await a.commit()
            with pytest.raises(tt.DatabaseError) as info:
                await b.commit()
            assert info.value.code == 97
            assert (await conn.select("t")).data == [[1, "a"]]


async def test_transaction_errors_have_3_8s_codes(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[0]) as conn:
            s = await conn.stream()
            await s.commit()  # nothing open: 3.8 answers OK
            await s.rollback()
            await s.begin(timeout=0.5)
            await s.insert("t", [1, "a"])
            await trio.sleep(1)
            with pytest.raises(tt.DatabaseError) as info:
                await s.select("t")
            assert info.value.code == 231
            with pytest.raises(tt.DatabaseError) as info:
                await s.commit()
            assert info.value.code == 231
            assert (await conn.select("t")).data == []


async def test_closing_the_connection_rolls_its_transaction_back(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[0]) as conn:
            s = await conn.stream()
            await s.begin()
            await s.insert("t", [1, "a"])
        async with tt.connect(**rs.addrs[0]) as conn:
            assert (await conn.select("t")).data == []
        assert rs[0].txns.open == []


async def test_a_cancelled_transaction_is_rolled_back(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, version=(3, 8)) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[0]) as conn:
            with trio.move_on_after(1):
                async with conn.transaction() as tx:
                    await tx.insert("t", [1, "a"])
                    await tx.insert("t", [2, "b"])
                    await trio.sleep_forever()
            assert (await conn.select("t")).data == []
            assert rs[0].txns.open == []


async def test_followers_refuse_writes_with_3x_readonly_fields(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3, version=(3, 8), election=True) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[1]) as conn:
            assert await conn.watch_once("box.election") == {"term": 2, "role": "follower", "is_ro": True, "leader": 1}
            with pytest.raises(tt.DatabaseError) as info:
                await conn.insert("t", [1, "a"])
            assert info.value.code == 7
            extra = getattr(info.value, "extra_info", None)  # the server's error (BoxError)
            assert extra is not None
            fields = extra.fields
            assert fields["reason"] == "synchro"
            assert (fields["state"], fields["term"], fields["leader_id"]) == ("follower", 2, 1)
            assert fields["leader_uuid"] == uuid.UUID(rs[0].uuid)


async def test_box_ctl_promote_moves_the_leadership_with_events(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3, seed=4, version=(3, 8), election=True) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[2]) as conn, conn.watch("box.election") as events:
            assert (await events.__anext__())["role"] == "follower"
            await conn.eval("box.ctl.promote()")
            values = [await events.__anext__()]
            while values[-1]["role"] != "leader":
                values.append(await events.__anext__())
            assert values[-1] == {"term": 3, "role": "leader", "is_ro": False, "leader": 3}
            await conn.insert("t", [1, "a"])
        assert rs.roles() == ["ro", "ro", "rw"] and rs.master == 2


async def test_graceful_shutdown_waits_for_clients_to_leave(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2, version=(3, 8)) as rs:
        _schema(rs)
        async with tt.connect(**rs.addrs[1], reconnect_max_attempts=0) as conn:
            await conn.ping()
            start = trio.current_time()
            assert await rs.shutdown(1, grace=3.0) is True  # the client let go on box.shutdown
            assert trio.current_time() - start < 3.0
            assert not rs[1].up


async def test_the_pool_follows_a_promote_at_once(autojump_clock: Any) -> None:
    """With refresh_delay far away the pool still finds the new leader at once
    (its box.status events, or the refusal of the old leader), not at the next poll."""
    async with sim.open_replicaset(n=3, seed=2, version=(3, 8), election=True) as rs:
        _schema(rs)
        async with tt.open_pool(rs.addrs, refresh_delay=1000, socket_timeout=2) as pool:
            await pool.insert("t", [1, "a"])
            await rs.promote(1)
            start = trio.current_time()
            await pool.insert("t", [2, "b"])
            assert trio.current_time() - start < 1
            assert rs[1].requests["INSERT"] >= 1


async def test_pool_transaction_is_all_or_nothing_for_readers(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3, version=(3, 8), lag=0.01) as rs:
        _schema(rs)
        async with tt.open_pool(rs.addrs, socket_timeout=2) as pool:
            async with pool.transaction() as tx:
                await tx.insert("t", [1, "a"])
                assert (await pool.select("t", mode=tt.Mode.RW)).data == []
                await tx.insert("t", [2, "b"])
            assert (await pool.select("t", mode=tt.Mode.RW)).data == [[1, "a"], [2, "b"]]
            with pytest.raises(tt.DatabaseError):
                async with pool.transaction() as tx:
                    await tx.insert("t", [3, "c"])
                    await tx.insert("t", [1, "dup"])
            assert (await pool.select("t", mode=tt.Mode.RW)).data == [[1, "a"], [2, "b"]]


async def test_a_replica_applies_a_committed_transaction_at_once(autojump_clock: Any) -> None:
    """Replication keeps a transaction's boundary (as Tarantool's applier does): a reader
    on a replica sees all of its rows or none, whatever the lag's jitter."""
    async with sim.open_replicaset(n=2, seed=3, version=(3, 8), lag=0.01, lag_jitter=0.02) as rs:
        _schema(rs)
        seen: set[int] = set()

        async def read_replica() -> None:
            while True:
                seen.add(len(rs[1].db.space_by_name("t")))
                await trio.sleep(0.0005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_replica)
            async with tt.connect(**rs.addrs[0]) as conn, conn.transaction() as tx:
                for k in range(5):
                    await tx.insert("t", [k, "x"])
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert seen == {0, 5}
