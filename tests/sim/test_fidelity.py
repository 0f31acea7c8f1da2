"""Fidelity: the same request sequence against the simulator and a real 2.6.

Sequences are drawn from a seeded generator over a small key space, so they
hit duplicates, missing keys, partial keys, bad types and every update op.
Each sequence runs twice with the real client: once against a real Tarantool
(its own ``trio.run``, real sockets), once against a simulated instance (its
own ``trio.run`` with the fake network). Data and error codes must match;
a divergence is a bug in the simulator first.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_tarantool as tt
from tests.real._servers import ServerManager
from trio_tarantool import sim

pytestmark = pytest.mark.real

SPACE = "fid"
CREATE_LUA = """
local s = box.schema.space.create('fid', {format = {
    {name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'},
    {name = 'n', type = 'unsigned', is_nullable = true}}})
s:create_index('primary', {parts = {'id'}})
s:create_index('byname', {parts = {'name'}, unique = false})
return true
"""

Op = tuple[str, tuple[Any, ...], dict[str, Any]]


def _requests(seed: int, count: int) -> list[Op]:
    """A seeded mix of valid and invalid requests."""
    r = random.Random(seed)
    names = ["a", "b", "c"]

    def key() -> int:
        return r.randrange(6)

    def value() -> Any:
        return r.choice([r.randrange(10), r.choice(names), None, -1, 2.5])

    out: list[Op] = []
    for _ in range(count):
        kind = r.choice(["insert", "insert", "replace", "select", "select", "update", "upsert", "delete"])
        if kind in ("insert", "replace"):
            tup: list[Any] = [key(), r.choice(names)]
            if r.random() < 0.5:
                tup.append(r.choice([r.randrange(5), None, "x"]))
            if r.random() < 0.1:
                tup[r.randrange(len(tup))] = value()
            out.append((kind, (SPACE, tup), {}))
        elif kind == "select":
            index = r.choice([0, 0, 1, 1, 5])
            it = r.choice(["EQ", "REQ", "ALL", "LT", "LE", "GE", "GT", "EQ", "GE", "BITS_ALL_SET"])
            k: Any = [] if r.random() < 0.2 else ([key()] if index == 0 else [r.choice(names)])
            if r.random() < 0.05:
                k = [key(), key()]
            out.append(("select", (SPACE, k), {"index": index, "iterator": it,
                                               "offset": r.choice([0, 0, 1]), "limit": r.choice([100, 2])}))
        elif kind == "update":
            ops = _ops(r)
            out.append(("update", (SPACE, key(), ops), {}))
        elif kind == "upsert":
            ops = _ops(r)
            out.append(("upsert", (SPACE, [key(), r.choice(names), r.randrange(4)], ops), {}))
        else:
            out.append(("delete", (SPACE, key()), {}))
    return out


def _ops(r: random.Random) -> list[list[Any]]:
    """One to three ops, often on the same field."""
    return [_op(r) for _ in range(r.randrange(1, 4))]


def _op(r: random.Random) -> list[Any]:
    name = r.choice(["=", "+", "-", "&", "|", "^", "#", "!", ":"])
    field = r.choice([1, 2, 2, 3, -1, 0])
    if name == ":":
        return [name, 1, r.choice([0, 1, -1]), r.choice([0, 1]), "zz"]
    if name == "#":
        return [name, field, r.choice([1, 2])]
    arg = r.choice([1, 3, "q", 1.5]) if name in ("=", "!") else r.choice([1, 2, 1.5, "s"])
    return [name, field, arg]


async def _run(conn: tt.Connection, ops: list[Op], space: str = SPACE) -> list[Any]:
    results: list[Any] = []
    for name, args, kw in ops:
        try:
            resp = await getattr(conn, name)(*args, **kw)
            results.append(("ok", [list(t) for t in resp]))
        except tt.DatabaseError as exc:
            results.append(("err", exc.code))
    results.append(("final", [list(t) for t in await conn.select(space)]))
    return results


def _on_real(host: str, port: int, ops: list[Op], space: str = SPACE) -> list[Any]:
    async def main() -> list[Any]:
        async with tt.connect(host, port, user="test", password="test-password",
                              connection_timeout=10, socket_timeout=10) as conn:
            return await _run(conn, ops, space)

    return trio.run(main)


def _fid_schema(rs: sim.Replicaset) -> None:
    rs.create_space(SPACE, [("id", "unsigned"), ("name", "string"), ("n", "unsigned", True)],
                    indexes=[("primary", [("id", "unsigned")], True),
                             ("byname", [("name", "string")], False)])


def _on_sim(ops: list[Op], space: str = SPACE, schema: Any = _fid_schema) -> list[Any]:
    async def main() -> list[Any]:
        async with sim.open_replicaset(n=1, users={"test": "test-password"}) as rs:
            schema(rs)
            async with tt.connect(rs[0].host, rs[0].port, user="test", password="test-password") as conn:
                return await _run(conn, ops, space)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.fixture(scope="module")
def real_server() -> Iterator[Any]:
    with ServerManager() as manager:
        yield manager.start_instance(name="fidelity")


@pytest.mark.parametrize("seed", range(1, 41))
def test_sim_matches_real_tarantool(real_server: Any, seed: int) -> None:
    real_server.admin_eval("if box.space.fid then box.space.fid:drop() end return true")
    real_server.admin_eval(CREATE_LUA)
    ops = _requests(seed, 200)
    real = _on_real(real_server.host, real_server.port, ops)
    simulated = _on_sim(ops)
    for i, (op, a, b) in enumerate(zip([*ops, ("final", (), {})], real, simulated, strict=True)):
        assert a == b, f"request #{i} {op}: real {a} != sim {b}"


# -- a composite primary key and a scalar secondary index -----------------------

CREATE_LUA_2 = """
local s = box.schema.space.create('fid2', {format = {
    {name = 'a', type = 'unsigned'}, {name = 'b', type = 'string'}}})
s:create_index('primary', {parts = {{1, 'unsigned'}, {2, 'string'}}})
s:create_index('byc', {parts = {{3, 'scalar'}}, unique = false})
return true
"""


def _fid2_schema(rs: sim.Replicaset) -> None:
    rs.create_space("fid2", [("a", "unsigned"), ("b", "string")],
                    indexes=[("primary", [(0, "unsigned"), (1, "string")], True),
                             ("byc", [(2, "scalar")], False)])


def _requests_2(seed: int, count: int) -> list[Op]:
    """Partial keys on a two-part key; mixed scalar types (bool < number < string)."""
    r = random.Random(seed)

    def scalar() -> Any:
        return r.choice([True, False, 0, 1, 2, 1.5, -3, "x", "y", "", "10"])

    out: list[Op] = []
    for _ in range(count):
        kind = r.choice(["insert", "replace", "select", "select", "select", "delete", "update"])
        a, b = r.randrange(4), r.choice(["p", "q", "r"])
        if kind in ("insert", "replace"):
            tup: list[Any] = [a, b, scalar()]
            if r.random() < 0.3:
                tup.append(scalar())
            if r.random() < 0.05:
                tup = [a, b]  # no field 3 for the secondary index
            out.append((kind, ("fid2", tup), {}))
        elif kind == "select":
            index = r.choice([0, 0, 1])
            it = r.choice(["EQ", "REQ", "ALL", "LT", "LE", "GE", "GT"])
            if index == 0:
                key: Any = r.choice([[], [a], [a, b], [a, b], [a, 5]])
            else:
                key = r.choice([[], [scalar()], [scalar()]])
            out.append(("select", ("fid2", key), {"index": index, "iterator": it,
                                                  "limit": r.choice([100, 3]), "offset": r.choice([0, 1])}))
        elif kind == "delete":
            out.append(("delete", ("fid2", r.choice([[a, b], [a]])), {}))
        else:
            ops = [[r.choice(["=", "+", ":"]), 2, r.choice([1, "s", 2.5])]]
            if ops[0][0] == ":":
                ops = [[":", 3, 1, 1, "z"]]
            out.append(("update", ("fid2", [a, b], ops), {}))
    return out


@pytest.mark.parametrize("seed", range(1, 21))
def test_composite_keys_and_scalar_order_match_real_tarantool(real_server: Any, seed: int) -> None:
    real_server.admin_eval("if box.space.fid2 then box.space.fid2:drop() end return true")
    real_server.admin_eval(CREATE_LUA_2)
    ops = _requests_2(seed, 200)
    real = _on_real(real_server.host, real_server.port, ops, "fid2")
    simulated = _on_sim(ops, "fid2", _fid2_schema)
    for i, (op, a, b) in enumerate(zip([*ops, ("final", (), {})], real, simulated, strict=True)):
        assert a == b, f"request #{i} {op}: real {a} != sim {b}"
