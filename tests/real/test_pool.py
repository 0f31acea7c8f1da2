"""ConnectionPool against real Tarantool: routing, defaults, API surface, lifecycle."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.real._servers import Replicaset, TarantoolInstance
from tests.real.test_connection_tls import _make_cert, _tls_proxy
from trio_tarantool._errors import (
    ConfigurationError,
    ConnectionClosedError,
    DatabaseError,
    ErrorCode,
    PoolTopologyError,
)
from trio_tarantool._pool import ConnectionPool, InstanceStatistics, PoolUnit, open_pool
from trio_tarantool._strategy import Mode, Status, StrategyInterface

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
_keys = itertools.count(1_000_000)


def addrs_of(instances: list[TarantoolInstance]) -> list[dict[str, Any]]:
    return [{"host": i.host, "port": i.port} for i in instances]


async def who(pool: ConnectionPool, mode: Mode) -> str:
    """The ``box.cfg.listen`` of the instance that served a CALL in ``mode``."""
    return str((await pool.call("whoami", mode=mode))[0][2])


@pytest.fixture
async def rs_pool(replicaset: Replicaset) -> AsyncIterator[tuple[Replicaset, ConnectionPool]]:
    with trio.fail_after(20):
        async with open_pool(replicaset.addrs, refresh_delay=0.2, **USER) as pool:
            yield replicaset, pool


# -- routing ---------------------------------------------------------------------------
async def test_every_mode_covers_exactly_its_set(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    rs, pool = rs_pool
    master = rs.master.listen
    replicas = {r.listen for r in rs.replicas}
    expected = {
        Mode.ANY: replicas | {master},
        Mode.RW: {master},
        Mode.RO: replicas,
        Mode.PREFER_RW: {master},
        Mode.PREFER_RO: replicas,
    }
    for mode, members in expected.items():
        seen = Counter([await who(pool, mode) for _ in range(3 * len(members))])
        assert set(seen) == members, mode
        # Round robin: an exact, even spread over a stable view.
        assert set(seen.values()) == {3}, (mode, seen)


async def test_all_ro_cluster(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    instances = [tarantool_factory(read_only=True) for _ in range(2)]
    async with open_pool(addrs_of(instances), **USER) as pool:
        listens = {i.listen for i in instances}
        assert {await who(pool, Mode.ANY) for _ in range(4)} == listens
        assert {await who(pool, Mode.RO) for _ in range(4)} == listens
        assert {await who(pool, Mode.PREFER_RW) for _ in range(4)} == listens
        with pytest.raises(PoolTopologyError, match="Can't find healthy rw instance in pool"):
            await pool.call("whoami", mode=Mode.RW)
        with pytest.raises(PoolTopologyError):
            await pool.insert("tester", [next(_keys), "x"])


async def test_all_rw_cluster(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    instances = [tarantool_factory() for _ in range(2)]
    async with open_pool(addrs_of(instances), **USER) as pool:
        listens = {i.listen for i in instances}
        assert {await who(pool, Mode.RW) for _ in range(4)} == listens
        assert {await who(pool, Mode.PREFER_RO) for _ in range(4)} == listens
        with pytest.raises(PoolTopologyError, match="Can't find healthy ro instance in pool"):
            await pool.call("whoami", mode=Mode.RO)


# -- defaults --------------------------------------------------------------------------
async def test_dml_defaults_land_on_master(replicaset: Replicaset) -> None:
    rs = replicaset
    key = next(_keys)
    # No retry: a DML routed to a replica would fail with ER_READONLY, not be re-sent.
    async with open_pool(rs.addrs, retry_not_executed=False, **USER) as pool:
        for _ in range(3):  # three DML rounds: round robin would hit a replica at least once
            await pool.insert("tester", [key, "a"])
            await pool.replace("tester", [key, "b"])
            assert (await pool.update("tester", key, [["=", 1, "c"]]))[0] == [key, "c"]
            await pool.upsert("tester", [key, "x"], [["=", 1, "d"]])
            assert (await pool.delete("tester", key))[0] == [key, "d"]
        # No DML reached a replica (a misrouted one would have left ER_READONLY
        # behind); other probe hiccups of a loaded machine are not the point here.
        assert not any("ER_READONLY" in (s.last_error_message or "") for s in pool.statistics())
        # Explicit RO on DML is honoured and refused by the replica.
        with pytest.raises(DatabaseError) as info:
            await pool.insert("tester", [key, "a"], mode=Mode.RO)
        assert info.value.code == ErrorCode.ER_READONLY
    assert rs.master.admin_eval(f"return box.space.tester:get({key})") in ([None], [])


async def test_select_in_every_mode_and_by_secondary_index(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    rs, pool = rs_pool
    key = next(_keys)
    name = f"name-{key}"
    await pool.insert("tester", [key, name])
    await trio.to_thread.run_sync(rs.wait_replicated)
    for mode in Mode:
        for _ in range(3):  # every member of the mode's set
            assert await pool.select("tester", key, mode=mode) == [[key, name]]
            assert await pool.select("tester", name, index="name_idx", mode=mode) == [[key, name]]
    assert await pool.select("tester", [key], limit=1) == [[key, name]]
    rows = await pool.select("tester", [key], iterator="GE", limit=1)
    assert rows == [[key, name]]


@pytest.mark.parametrize("method", ["call", "eval", "execute", "ping"])
async def test_mode_is_required(rs_pool: tuple[Replicaset, ConnectionPool], method: str) -> None:
    _, pool = rs_pool
    args = {"call": ("whoami",), "eval": ("return 1",), "execute": ("SELECT 1",), "ping": ()}[method]
    with pytest.raises(ValueError, match=r"^Please, specify 'mode' keyword argument$"):
        await getattr(pool, method)(*args)
    with pytest.raises(ValueError, match="Mode"):
        await getattr(pool, method)(*args, mode="rw")
    with pytest.raises(ValueError, match="Mode"):
        await pool.select("tester", 1, mode=2)  # type: ignore[arg-type]
    assert (await getattr(pool, method)(*args, mode=Mode.ANY)) is not None


async def test_call_eval_execute_ping(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    _, pool = rs_pool
    assert await pool.call("echo", 1, "two", mode=Mode.ANY) == [1, "two"]
    assert await pool.eval("return box.info.ro", mode=Mode.RW) == [False]
    assert await pool.eval("return box.info.ro", mode=Mode.RO) == [True]
    resp = await pool.execute("VALUES (?, ?)", [1, "x"], mode=Mode.PREFER_RO)
    assert resp == [[1, "x"]]
    assert isinstance(await pool.ping(mode=Mode.RO), float)
    assert await pool.ping(notime=True, mode=Mode.RW) == "Success"


async def test_server_errors_and_sql_writes_through_the_pool(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    """The reference suite's exception and execute cases: a DatabaseError comes through
    as it is; SQL writes with positional and named parameters go to the master."""
    rs, pool = rs_pool
    with pytest.raises(DatabaseError) as info:
        await pool.call("non_existing_procedure", mode=Mode.ANY)
    assert info.value.code == ErrorCode.ER_NO_SUCH_PROC
    key = next(_keys)
    resp = await pool.execute('INSERT INTO "tester" VALUES (?, ?)', [key, "sql-1"], mode=Mode.RW)
    assert resp.affected_row_count == 1 and resp.data == []
    resp = await pool.execute('INSERT INTO "tester" VALUES (:id, :name)', {"id": key + 1, "name": "sql-2"},
                              mode=Mode.RW)
    assert resp.affected_row_count == 1
    rows = rs.master.admin_eval(f"return box.space.tester:select({key}, {{iterator = 'GE', limit = 2}})")
    assert rows == [[[key, "sql-1"], [key + 1, "sql-2"]]]


async def test_push_through_the_pool(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    _, pool = rs_pool
    pushed: list[tuple[Any, Any]] = []
    resp = await pool.call("push_n", 3, mode=Mode.RO, on_push=lambda d, c: pushed.append((d, c)),
                           on_push_ctx="ctx")
    assert resp == ["done"]
    assert pushed == [([1], "ctx"), ([2], "ctx"), ([3], "ctx")]  # the DATA array, as the reference


async def test_fetch_schema_false(replicaset: Replicaset) -> None:
    async with open_pool(replicaset.addrs, fetch_schema=False, **USER) as pool:
        space_id = (await pool.eval("return box.space.tester.id", mode=Mode.RW))[0]
        key = next(_keys)
        await pool.insert(space_id, [key, "n"])
        assert await pool.select(space_id, key, mode=Mode.RW) == [[key, "n"]]


# -- concurrency -----------------------------------------------------------------------
async def test_concurrent_callers_get_their_own_answers(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    """8 tasks x 500 mixed requests: every answer is the caller's own."""
    _, pool = rs_pool
    base = next(_keys) * 10
    for _ in range(10_000):
        next(_keys)  # reserve the key range used below
    errors: list[str] = []

    async def worker(w: int) -> None:
        for i in range(500):
            token = f"w{w}-{i}"
            kind = i % 4
            if kind == 0:
                got = await pool.call("echo", token, mode=Mode.ANY)
                if got != [token]:
                    errors.append(f"{token}: echo {got}")
            elif kind == 1:
                got = await pool.eval("return ...", token, i, mode=Mode.PREFER_RO)
                if got != [token, i]:
                    errors.append(f"{token}: eval {got}")
            elif kind == 2:
                key = base + w * 1000 + i
                got = await pool.insert("tester", [key, token])
                if got != [[key, token]]:
                    errors.append(f"{token}: insert {got}")
            else:
                key = base + w * 1000 + i - 1
                got = await pool.select("tester", key, mode=Mode.RW)
                if got != [[key, f"w{w}-{i - 1}"]]:
                    errors.append(f"{token}: select {got}")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(worker, w)
    assert errors == []
    assert all(s.in_flight == 0 for s in pool.statistics())


async def test_requests_to_one_instance_are_pipelined(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    """10 concurrent 0.3 s sleeps on the single rw instance finish in about 0.3 s."""
    _, pool = rs_pool
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(lambda: pool.call("sleep", 0.3, mode=Mode.RW))
    assert trio.current_time() - start < 1.5


# -- lifecycle -------------------------------------------------------------------------
async def test_close_makes_requests_fail_fast(replicaset: Replicaset) -> None:
    master = replicaset.master
    async with open_pool(replicaset.addrs, **USER) as pool:
        assert not pool.is_closed()
        slow_result: list[ConnectionClosedError] = []

        async def slow() -> None:
            try:
                await pool.call("gate_wait", "pool-close", mode=Mode.RW)
            except ConnectionClosedError as exc:
                slow_result.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            # Held on the master (sent, not answered) when the pool closes.
            await trio.to_thread.run_sync(master.gate_arrivals, "pool-close", 1)
            with trio.fail_after(1):
                await pool.aclose()
        assert len(slow_result) == 1
        assert slow_result[0].may_have_executed
        assert pool.is_closed()
        with trio.fail_after(0.5):
            for mode in Mode:
                with pytest.raises(ConnectionClosedError, match="the pool is closed") as info:
                    await pool.call("whoami", mode=mode)
                assert info.value.may_have_executed is False
            with pytest.raises(ConnectionClosedError):
                await pool.select("tester", 1)
            with pytest.raises(ConnectionClosedError):
                await pool.crud_get("tester", 1)
    assert pool.is_closed()


async def test_no_task_left_after_exit(replicaset: Replicaset) -> None:
    before = trio.lowlevel.current_statistics().tasks_living
    async with open_pool(replicaset.addrs, **USER) as pool:
        await pool.call("whoami", mode=Mode.ANY)
        assert trio.lowlevel.current_statistics().tasks_living > before
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_close_before_connect_and_connect_later(replicaset: Replicaset) -> None:
    pool = ConnectionPool(replicaset.addrs, connect_now=False, **USER)
    assert pool.is_closed()
    pool.close()  # before anything: fine
    with pytest.raises(ConnectionClosedError):
        await pool.call("whoami", mode=Mode.ANY)

    pool = ConnectionPool(replicaset.addrs, connect_now=False, **USER)
    with pytest.raises(RuntimeError, match="async with"):
        await pool.connect()
    async with pool:
        assert pool.is_closed()
        with pytest.raises(ConnectionClosedError, match="not connected"):
            await pool.call("whoami", mode=Mode.ANY)
        await pool.connect()
        await pool.connect()  # idempotent
        assert not pool.is_closed()
        assert await who(pool, Mode.RW) == replicaset.master.listen
    assert pool.is_closed()


async def test_body_exception_is_not_wrapped(replicaset: Replicaset) -> None:
    with pytest.raises(KeyError, match="boom"):
        async with open_pool(replicaset.addrs, **USER):
            raise KeyError("boom")


async def test_repr_and_statistics(rs_pool: tuple[Replicaset, ConnectionPool]) -> None:
    rs, pool = rs_pool
    text = repr(pool)
    assert "\n" not in text
    assert f"{rs.master.listen} rw" in text
    for replica in rs.replicas:
        assert f"{replica.listen} ro" in text
    stats = pool.statistics()
    assert [s.addr for s in stats] == [i.listen for i in rs.instances]
    first = stats[0]
    assert isinstance(first, InstanceStatistics)
    assert (first.addr, first.status, first.read_only, first.last_error, first.in_flight) == (
        rs.master.listen, Status.HEALTHY, False, None, 0)
    assert first.probes >= 1 and first.last_probe_ok_at is not None
    with pytest.raises(AttributeError):
        stats[0].in_flight = 3  # type: ignore[misc]


def test_configuration_errors_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"addrs\[1\]: port 70000 is outside 1..65535"):
        ConnectionPool([{"host": "127.0.0.1", "port": 1}, {"host": "127.0.0.1", "port": 70000}])
    with pytest.raises(ConfigurationError, match="refresh_delay"):
        ConnectionPool([{"host": "127.0.0.1", "port": 1}], refresh_delay=-1)
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        ConnectionPool([{"host": "127.0.0.1", "port": 1}], socket_timeout=-1)


async def test_custom_strategy(replicaset: Replicaset) -> None:
    """strategy_class receives the units and decides alone."""

    updates: list[list[str]] = []

    class LastOnly(StrategyInterface[PoolUnit]):
        def getnext(self, mode: Mode) -> PoolUnit:
            return self.pool[-1]

        def update(self) -> None:
            updates.append([u.role() for u in self.pool])

    async with open_pool(replicaset.addrs, strategy_class=LastOnly, **USER) as pool:
        assert {await who(pool, Mode.RW) for _ in range(3)} == {replicaset.instances[-1].listen}
    # update() is called on every state change; units expose the reference's addr dict.
    assert updates[-1] == ["rw", "ro", "ro"]
    last = replicaset.instances[-1]
    unit = LastOnly(pool._units).getnext(Mode.ANY)
    assert unit.addr == {"host": last.host, "port": last.port}


async def test_encoding_none(replicaset: Replicaset) -> None:
    """With encoding=None the probe reads box.info's bytes keys; strings come back as bytes."""
    async with open_pool(replicaset.addrs, encoding=None, **USER) as pool:
        assert all(s.status == Status.HEALTHY for s in pool.statistics())
        assert (await pool.call("whoami", mode=Mode.RW))[0][2] == replicaset.master.listen.encode()


async def test_cancelled_from_outside_closes_everything(replicaset: Replicaset) -> None:
    """A deadline around the whole pool: it ends, with no task and no socket left."""
    before = trio.lowlevel.current_statistics().tasks_living
    with trio.move_on_after(0.5) as scope:
        async with open_pool(replicaset.addrs, **USER) as pool:
            await pool.call("sleep", 5, mode=Mode.RW)
    assert scope.cancelled_caught
    assert pool.is_closed()
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_tls_and_plain_addresses_in_one_pool(
        tmp_path: Path, tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    """transport/ssl_* are per address: one instance behind TLS, one plain."""
    server_key, server_cert = _make_cert(tmp_path, "server")
    certs = {"server_key": server_key, "server_cert": server_cert}
    behind_tls, plain = tarantool_factory(), tarantool_factory()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: _tls_proxy(
            certs, behind_tls, require_client_cert=False, task_status=task_status))
        addrs = [
            {"host": "127.0.0.1", "port": port, "transport": "ssl",
             "ssl_ca_file": str(certs["server_cert"])},
            {"host": plain.host, "port": plain.port},
        ]
        with trio.fail_after(10):
            async with open_pool(addrs, **USER) as pool:
                assert all(s.status == Status.HEALTHY for s in pool.statistics())
                assert {await who(pool, Mode.ANY) for _ in range(4)} == {behind_tls.listen, plain.listen}
        nursery.cancel_scope.cancel()
