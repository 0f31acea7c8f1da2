"""Fidelity: the same request sequence against the simulator and a real 2.6 and 3.8.

Sequences are drawn from a seeded generator over a small key space, so they
hit duplicates, missing keys, partial keys, bad types and every update op.
Each sequence runs twice with the real client: once against a real Tarantool
(its own ``trio.run``, real sockets), once against a simulated instance (its
own ``trio.run`` with the fake network). Data and error codes must match;
a divergence is a bug in the simulator first. Every test runs once per server
kind (``[2.6]``, ``[3.8]``), the simulator playing that version.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_tarantool as tt
from tests.sim._real import SERVER_KINDS, sim_version, started_instance
from tests.sim._seeds import seeds
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


def _modelled(ops: list[Op], version: str) -> list[Op]:
    """The requests whose rules the simulator models for ``version``.

    3.x changed the update engine (the same field may be updated twice in a
    request, ``=``/``!``/``#`` past the end of the tuple, the order of checks,
    upsert's handling of failing ops) and checks an iterator before the key;
    the simulator follows 2.6's rules there, so against 3.8 the sequences
    leave out updates, upserts and BITS_ALL_SET (a known gap, docs/sim.md).
    """
    if version.startswith("2."):
        return ops
    return [op for op in ops if op[0] not in ("update", "upsert")
            and op[2].get("iterator") != "BITS_ALL_SET"]


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


def _on_sim(ops: list[Op], space: str = SPACE, schema: Any = _fid_schema, version: str = "2.6.0") -> list[Any]:
    async def main() -> list[Any]:
        async with sim.open_replicaset(n=1, version=version, users={"test": "test-password"}) as rs:
            schema(rs)
            async with tt.connect(rs[0].host, rs[0].port, user="test", password="test-password") as conn:
                return await _run(conn, ops, space)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.fixture(scope="module", params=SERVER_KINDS)
def real_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A real server of each kind; ``.sim_version`` is what the simulator plays against it."""
    for inst in started_instance(request.param, "fidelity"):
        inst.sim_version = sim_version(request.param)
        yield inst


@pytest.mark.parametrize("seed", seeds("FIDELITY_SEEDS", 12))
def test_sim_matches_real_tarantool(real_server: Any, seed: int) -> None:
    real_server.admin_eval("if box.space.fid then box.space.fid:drop() end return true")
    real_server.admin_eval(CREATE_LUA)
    ops = _modelled(_requests(seed, 200), real_server.sim_version)
    real = _on_real(real_server.host, real_server.port, ops)
    simulated = _on_sim(ops, version=real_server.sim_version)
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


@pytest.mark.parametrize("seed", seeds("FIDELITY_SEEDS_2", 6))
def test_composite_keys_and_scalar_order_match_real_tarantool(real_server: Any, seed: int) -> None:
    real_server.admin_eval("if box.space.fid2 then box.space.fid2:drop() end return true")
    real_server.admin_eval(CREATE_LUA_2)
    ops = _modelled(_requests_2(seed, 200), real_server.sim_version)
    real = _on_real(real_server.host, real_server.port, ops, "fid2")
    simulated = _on_sim(ops, "fid2", _fid2_schema, real_server.sim_version)
    for i, (op, a, b) in enumerate(zip([*ops, ("final", (), {})], real, simulated, strict=True)):
        assert a == b, f"request #{i} {op}: real {a} != sim {b}"
