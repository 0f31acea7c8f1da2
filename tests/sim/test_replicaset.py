"""Replicaset ground truth: replication lag, failover, crash, partition, pause."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_tarantool as tt
from trio_tarantool import sim

FORMAT = [("id", "unsigned"), ("v", "string")]
INDEXES = [("primary", [("id", "unsigned")], True)]


async def _rows(host: str, space: str = "t") -> list[Any]:
    async with tt.connect(host, 3301) as c:
        return list(await c.select(space))


async def test_replication_lag_is_virtual_time(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3, lag=0.5) as rs:
        rs.create_space("t", FORMAT, indexes=INDEXES)
        async with tt.connect("tt1.sim", 3301) as c:
            await c.insert("t", [1, "a"])
            await c.update("t", 1, [("=", 1, "b")])
        assert await _rows("tt2.sim") == []
        await rs.advance(0.5)
        assert await _rows("tt2.sim") == [[1, "b"]]
        assert await _rows("tt3.sim") == [[1, "b"]]
        assert rs[1].lsn == rs[0].lsn == 2


async def test_failover_has_a_no_master_window(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3, seed=11, failover_window=(1.0, 3.0)) as rs:
        assert rs.roles() == ["rw", "ro", "ro"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rs.failover)
            await trio.sleep(0.5)
            assert rs.roles() == ["ro", "ro", "ro"] and rs.master is None
            async with tt.connect("tt1.sim", 3301) as c:
                assert (await c.call("box.info"))[0]["ro"] is True
        assert rs.master in (1, 2)
        assert rs.roles().count("rw") == 1
        begin = next(line for line in rs.trace if "failover begin" in line)
        end = next(line for line in rs.trace if "failover end" in line)
        window = float(end.split()[0]) - float(begin.split()[0])
        assert 1.0 <= window <= 3.0


async def test_crash_master_failover_and_old_master_returns_read_only(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3, seed=2) as rs:
        new = await rs.failover(crash_old=True)
        assert new in (1, 2) and rs.roles()[0] == "down"
        rs.restart(0)
        assert rs.roles()[0] == "ro"
        assert rs.roles().count("rw") == 1


async def test_partitioned_replica_catches_up_after_heal(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2, lag=0.1) as rs:
        rs.create_space("t", FORMAT, indexes=INDEXES)
        rs.partition(1)
        rs[0].insert(512, [1, "a"])
        await rs.advance(5)
        assert rs[1].db.space(512).select(0, 0, [], 0, 10) == []
        with pytest.raises(tt.TarantoolTimeoutError):
            async with tt.connect("tt2.sim", 3301, connection_timeout=1):
                pass
        rs.heal()
        await rs.advance(0.2)
        assert await _rows("tt2.sim") == [[1, "a"]]


async def test_writes_wait_for_a_down_replica(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        rs.create_space("t", FORMAT, indexes=INDEXES)
        rs.crash(1)
        rs[0].insert(512, [1, "a"])
        rs[0].insert(512, [2, "b"])
        rs[0].delete(512, 0, [1])
        await rs.advance(1)
        rs.restart(1)
        await rs.advance(0)
        assert await _rows("tt2.sim") == [[2, "b"]]


async def test_loading_then_running_after_restart(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, loading_time=3) as rs:
        rs.create_space("t", FORMAT, indexes=INDEXES)
        await rs.advance(3)
        rs.crash(0)
        rs.restart(0)
        async with tt.connect("tt1.sim", 3301) as c:
            with pytest.raises(tt.DatabaseError) as e:
                await c.select("t")
            assert e.value.code == 116 and e.value.may_have_executed is False
            await trio.sleep(3)
            assert list(await c.select("t")) == []
            info = (await c.call("box.info"))[0]
            assert info["status"] == "running"


async def test_orphan_is_read_only(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        rs.create_space("t", FORMAT, indexes=INDEXES)
        rs.set_status(0, "orphan")
        async with tt.connect("tt1.sim", 3301) as c:
            info = (await c.call("box.info"))[0]
            assert (info["status"], info["ro"]) == ("orphan", True)
            with pytest.raises(tt.DatabaseError) as e:
                await c.insert("t", [1, "a"])
            assert e.value.code == 7


async def test_planned_switch_with_set_ro(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        rs.set_ro(0, True)
        rs.set_ro(1, False)
        assert rs.roles() == ["ro", "rw"] and rs.master == 1
        assert "rw" in repr(rs)


async def test_errors_escape_unwrapped_and_the_network_is_uninstalled(autojump_clock: Any) -> None:
    with pytest.raises(ValueError, match="boom"):
        async with sim.open_replicaset(n=1):
            raise ValueError("boom")
    sock = trio.socket.socket()
    try:
        assert not isinstance(sock, sim.FakeSocket)  # real sockets again
    finally:
        sock.close()


async def test_repr_roles_and_counters(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=3) as rs:
        rs.crash(2)
        rs.pause(1)
        assert rs.roles() == ["rw", "paused", "down"]
        assert repr(rs) == "<Replicaset tt1:rw tt2:paused tt3:down master=0>"
        assert "tt1.sim:3301 up" in repr(rs[0])
        async with tt.connect("tt1.sim", 3301) as c:
            await c.ping()
        assert rs[0].requests["PING"] == 1 and rs[0].requests["ID"] == 1
