"""The real trio_tarantool client, unchanged, against simulated instances."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_tarantool as tt
from trio_tarantool import sim

DEMO_FORMAT: list[tuple[str, str] | tuple[str, str, bool]] = [("id", "unsigned"), ("name", "string"), ("n", "unsigned", True)]
DEMO_INDEXES = [
    ("primary", [("id", "unsigned")], True),
    ("byname", [("name", "string")], False),
]


def _demo(rs: sim.Replicaset) -> None:
    rs.create_space("demo", DEMO_FORMAT, indexes=DEMO_INDEXES)


async def test_every_request_type(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, users={"u": "p"}) as rs:
        _demo(rs)
        pushed: list[Any] = []

        def pusher(ctx: sim.CallContext, n: int) -> list[Any]:
            for i in range(n):
                ctx.push(["push", i])
            return [n * 10]

        rs.register_function("pusher", pusher)
        rs.register_eval("return 1 + ...", lambda ctx, x: [1 + x])
        async with tt.connect("tt1.sim", 3301, user="u", password="p") as c:
            assert await c.ping(notime=True) == "Success"
            assert list(await c.insert("demo", [1, "a", 1])) == [[1, "a", 1]]
            assert list(await c.insert("demo", (2, "b"))) == [[2, "b"]]
            assert list(await c.replace("demo", [3, "b", 3])) == [[3, "b", 3]]
            assert list(await c.select("demo")) == [[1, "a", 1], [2, "b"], [3, "b", 3]]
            assert list(await c.select("demo", "b", index="byname")) == [[2, "b"], [3, "b", 3]]
            assert list(await c.select("demo", 2, iterator="GE", limit=1)) == [[2, "b"]]
            assert list(await c.select("demo", 2, iterator=tt.Iterator.LT)) == [[1, "a", 1]]
            assert list(await c.select("demo", None, offset=1, limit=1)) == [[2, "b"]]
            assert list(await c.update("demo", 1, [("+", 2, 5), ("=", 1, "z")])) == [[1, "z", 6]]
            assert list(await c.upsert("demo", [4, "d"], [("=", 1, "x")])) == []
            assert list(await c.upsert("demo", [4, "d"], [("=", 1, "x")])) == []
            assert list(await c.select("demo", 4)) == [[4, "x"]]
            assert list(await c.delete("demo", 4)) == [[4, "x"]]
            assert list(await c.delete("demo", 4)) == []
            r = await c.call("pusher", 2, on_push=lambda data, ctx: ctx.append(data), on_push_ctx=pushed)
            assert list(r) == [20]
            assert len(pushed) == 2 and "push" in repr(pushed[0])
            assert list(await c.eval("return 1 + ...", 41)) == [42]
            info = (await c.call("box.info"))[0]
            assert info["ro"] is False and info["status"] == "running"
            with pytest.raises(tt.DatabaseError) as e:
                await c.insert("demo", [1, "dup"])
            assert e.value.code == 3
            assert e.value.message == "Duplicate key exists in unique index 'primary' in space 'demo'"
            with pytest.raises(tt.DatabaseError) as e:
                await c.call("nope")
            assert (e.value.code, e.value.message) == (33, "Procedure 'nope' is not defined")
            with pytest.raises(tt.DatabaseError) as e:
                await c.select(600)
            assert e.value.code == 36
        assert rs[0].requests["INSERT"] == 3
        assert rs[0].requests["CALL"] == 3


async def test_schema_change_is_seen_by_the_client(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        _demo(rs)
        async with tt.connect("tt1.sim", 3301) as c:
            await c.insert("demo", [1, "a"])
            rs.create_space("later", [("k", "string")], indexes=[("primary", [("k", "string")], True)])
            await c.ping()  # carries the new schema_version
            await c.insert("later", ["x"])
            assert list(await c.select("later")) == [["x"]]


async def test_wrong_password_and_unknown_user(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, users={"u": "p"}) as rs:
        with pytest.raises(tt.DatabaseError) as e:
            async with tt.connect(rs[0].host, rs[0].port, user="u", password="x"):
                pass
        assert e.value.code == 47
        with pytest.raises(tt.DatabaseError) as e:
            async with tt.connect(rs[0].host, rs[0].port, user="who", password="x"):
                pass
        assert (e.value.code, e.value.message) == (45, "User 'who' is not found")


async def test_refused_connect_is_a_network_error(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        rs.link(0).set(refuse=True)
        with pytest.raises(tt.NetworkError) as e:
            async with tt.connect("tt1.sim", 3301):
                pass
        assert e.value.may_have_executed is False
        rs.crash(1)
        with pytest.raises(tt.NetworkError):
            async with tt.connect("tt2.sim", 3301):
                pass


async def test_unknown_host_is_a_network_error(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1):
        with pytest.raises(tt.NetworkError):
            async with tt.connect("nowhere.sim", 3301):
                pass


async def test_blackhole_with_connection_timeout(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        rs.link(0).set(blackhole=True)
        t0 = trio.current_time()
        with pytest.raises(tt.TarantoolTimeoutError):
            async with tt.connect("tt1.sim", 3301, connection_timeout=2.5):
                pass
        assert trio.current_time() - t0 == pytest.approx(2.5)


async def test_crash_fails_in_flight_request_and_restart_recovers(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        _demo(rs)

        async def slow(ctx: sim.CallContext) -> list[Any]:
            await trio.sleep(5)
            return ["late"]

        rs.register_function("slow", slow)
        async with tt.connect("tt1.sim", 3301, reconnect_max_attempts=0) as c:
            await c.insert("demo", [1, "a"])
            rs.world.call_later(1.0, lambda: rs.crash(0))
            with pytest.raises(tt.NetworkError) as e:
                await c.call("slow")
            assert e.value.may_have_executed is True
            assert trio.current_time() == pytest.approx(1.0)
            with pytest.raises(tt.NetworkError):
                await c.ping()  # refused while down
            rs.restart(0)
            assert list(await c.select("demo")) == [[1, "a"]]  # data survived


async def test_reset_mid_response(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        _demo(rs)
        for i in range(200):
            rs[0].insert(512, [i, "x" * 100])
        rs.link(0).set(reset_after=4000)
        async with tt.connect("tt1.sim", 3301, reconnect_max_attempts=0) as c:
            with pytest.raises(tt.NetworkError) as e:
                await c.select("demo")
            assert e.value.may_have_executed is True
        assert any("reset (reset_after)" in line for line in rs.trace)


async def test_small_chunks_and_latency_keep_replies_correct(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, seed=5) as rs:
        _demo(rs)
        rs.link(0).set(chunk_size=1, delay=0.01, jitter=0.005)
        async with tt.connect("tt1.sim", 3301) as c:
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(c.insert, "demo", [i, f"n{i}"])
            rows = list(await c.select("demo"))
            assert rows == [[i, f"n{i}"] for i in range(20)]
            rtt = await c.ping()
            assert isinstance(rtt, float)
            assert 0.01 <= rtt <= 0.03


async def test_stall_and_pause_hit_socket_timeout(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        async with tt.connect("tt1.sim", 3301, socket_timeout=1.0) as c:
            await c.ping()
            rs.link(0).set(stall=True)
            with pytest.raises(tt.TarantoolTimeoutError):
                await c.ping()
            rs.link(0).clear()
            await c.ping()
        async with tt.connect("tt2.sim", 3301, socket_timeout=1.0) as c:
            rs.pause(1)
            with pytest.raises(tt.TarantoolTimeoutError):
                await c.ping()
            rs.resume(1)
            await c.ping()


async def test_paused_instance_accepts_but_never_greets(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        rs.pause(0)
        with pytest.raises(tt.TarantoolTimeoutError):
            async with tt.connect("tt1.sim", 3301, connection_timeout=3):
                pass
        assert any("accept" in line for line in rs.trace)


async def test_sql_is_reported_unsupported(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs, tt.connect("tt1.sim", 3301) as c:
        with pytest.raises(tt.DatabaseError) as e:
            await c.execute("SELECT 1")
        assert e.value.code == 5
        assert rs[0].requests["EXECUTE"] == 1


async def test_crud_on_master_and_read_only_replica(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2, crud=True, lag=0.01) as rs:
        rs.create_space("c", [("id", "unsigned"), ("bucket_id", "unsigned"), ("name", "string")],
                        indexes=[("id", [("id", "unsigned")], True)])
        async with tt.connect("tt1.sim", 3301) as m, tt.connect("tt2.sim", 3301) as r:
            res = await m.crud_insert("c", [1, None, "a"])
            assert res.rows[0][0] == 1 and isinstance(res.rows[0][1], int)
            await rs.advance(0.01)
            assert (await r.crud_get("c", 1)).rows == res.rows  # replicated
            with pytest.raises(tt.CrudModuleError) as e:
                await r.crud_insert("c", [2, None, "b"])
            assert e.value.extra_info_error.fields["err"] == (
                "Can't modify data because this instance is in read-only mode."
            )
            info = await r.crud_storage_info()
            assert info == {rs[1].uuid: {"status": "running", "is_master": False}}
            assert await m.crud_len("c") == 1


async def test_request_log_says_what_ran_where(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2, users={"u": "p"}) as rs:
        _demo(rs)

        async def slow(ctx: sim.CallContext) -> list[Any]:
            await trio.sleep(1)
            raise sim.BoxError(32, "boom")

        rs.register_function("slow", slow)
        async with tt.connect("tt2.sim", 3301, user="u", password="p") as c:
            with pytest.raises(tt.DatabaseError):
                await c.insert("demo", [1, "a"])
            with pytest.raises(tt.DatabaseError):
                await c.call("slow")
        log = [(r.name, r.target, r.outcome, r.executed, r.read_only) for r in rs[1].request_log]
        assert ("INSERT", "512", "error 7", False, True) in log
        assert ("CALL", "slow", "error 32", True, True) in log
        assert all(r.time <= trio.current_time() for r in rs[1].request_log)


async def test_client_against_a_210_server(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, protocol_version=4, version="2.11.1") as rs:
        _demo(rs)
        async with tt.connect("tt1.sim", 3301) as c:
            assert c.protocol_version == 4
            assert 3 in c.features  # watchers
            await c.insert("demo", [1, "a"])
            assert list(await c.select("demo")) == [[1, "a"]]
        assert rs[0].requests["ID"] == 1
