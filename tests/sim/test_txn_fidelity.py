"""Fidelity of streams and interactive transactions: the simulator against a real 3.8.

Seeded sequences of requests on two streams of one connection (``A`` and
``B``) and on the connection itself (autocommit): ``begin`` (every isolation
level the client knows, sometimes a timeout), ``commit``, ``rollback``, and
insert/replace/update/upsert/delete/select by primary key or over the whole
space, on a few keys so that the streams keep reading and writing each
other's rows. The same sequence runs against Tarantool 3.8 (with
``memtx_use_mvcc_engine``) and against a simulated 3.8 instance; each result
(data, or error code) and the final content must be identical. This is what
pins the simulator's MVCC rules (see ``sim/_txn.py``): what an open
transaction sees, when it conflicts (97), that its rows stay invisible to the
others until it commits.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_tarantool as tt
from tests.sim._real import started_instance
from tests.sim._seeds import seeds
from trio_tarantool import sim

pytestmark = pytest.mark.real

SPACE = "txf"
CREATE_LUA = """
if box.space.txf then box.space.txf:drop() end
local s = box.schema.space.create('txf', {format = {
    {name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'},
    {name = 'n', type = 'unsigned', is_nullable = true}}})
s:create_index('primary', {parts = {'id'}})
s:create_index('byname', {parts = {'name'}, unique = false})
return true
"""

#: (who, operation, arguments): who is "A", "B" (streams) or "auto" (no stream).
Op = tuple[str, str, tuple[Any, ...]]


def _sequence(seed: int, count: int) -> list[Op]:
    r = random.Random(seed)
    out: list[Op] = []
    for _ in range(count):
        who = r.choice(["A", "A", "B", "B", "auto"])
        kinds = ["insert", "replace", "update", "delete", "upsert", "get", "get", "scan"]
        if who != "auto":
            kinds += ["begin", "begin", "commit", "commit", "rollback"]
        kind = r.choice(kinds)
        k = r.randrange(4)
        name = r.choice(["a", "b"])
        if kind in ("insert", "replace"):
            out.append((who, kind, (SPACE, [k, name])))
        elif kind == "update":
            op = r.choice([["=", 1, name], ["=", 2, r.randrange(3)], ["+", 2, 1]])
            out.append((who, "update", (SPACE, k, [op])))
        elif kind == "upsert":
            out.append((who, "upsert", (SPACE, [k, name, 0], [["+", 2, 1]])))
        elif kind == "delete":
            out.append((who, "delete", (SPACE, k)))
        elif kind == "get":
            out.append((who, "select", (SPACE, k)))
        elif kind == "scan":
            out.append((who, "select", (SPACE, None)))
        elif kind == "begin":
            isolation = r.choice(["default", "read-committed", "read-confirmed", "best-effort"])
            out.append((who, "begin", (isolation,)))
        else:
            out.append((who, kind, ()))
    return out


async def _run(conn: tt.Connection, ops: list[Op]) -> list[Any]:
    streams = {"A": await conn.stream(), "B": await conn.stream()}
    results: list[Any] = []
    for who, name, args in ops:
        target: Any = conn if who == "auto" else streams[who]
        try:
            resp = await getattr(target, name)(*args)
            results.append(("ok", None if resp is None else [list(t) for t in resp]))
        except tt.DatabaseError as exc:
            results.append(("err", exc.code))
        except tt.ConfigurationError:
            results.append(("refused by the client",))  # begin() on an open transaction
    for stream in streams.values():
        if stream.in_transaction:
            await stream.rollback()
    results.append(("final", [list(t) for t in await conn.select(SPACE)]))
    return results


def _on_real(host: str, port: int, ops: list[Op]) -> list[Any]:
    async def main() -> list[Any]:
        async with tt.connect(host, port, user="test", password="test-password",
                              connection_timeout=10, socket_timeout=10) as conn:
            return await _run(conn, ops)

    return trio.run(main)


def _on_sim(ops: list[Op]) -> list[Any]:
    async def main() -> list[Any]:
        async with sim.open_replicaset(n=1, version=(3, 8), users={"test": "test-password"}) as rs:
            rs.create_space(SPACE, [("id", "unsigned"), ("name", "string"), ("n", "unsigned", True)],
                            indexes=[("primary", [("id", "unsigned")], True),
                                     ("byname", [("name", "string")], False)])
            async with tt.connect(rs[0].host, rs[0].port, user="test", password="test-password") as conn:
                return await _run(conn, ops)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.fixture(scope="module")
def real_3x() -> Iterator[Any]:
    yield from started_instance("3.8", "txn-fidelity")


SEEDS = len(seeds("TXN_FIDELITY_SEEDS", 16))


@pytest.mark.parametrize("seed", range(1, SEEDS + 1))
def test_transactions_match_real_tarantool_3x(real_3x: Any, seed: int) -> None:
    real_3x.admin_eval(CREATE_LUA)
    ops = _sequence(seed, 100)
    real = _on_real(real_3x.host, real_3x.port, ops)
    simulated = _on_sim(ops)
    for i, (op, a, b) in enumerate(zip([*ops, ("final", "", ())], real, simulated, strict=True)):
        assert a == b, f"request #{i} {op}: real {a} != sim {b}\nsequence: {ops[:i + 1]}"
