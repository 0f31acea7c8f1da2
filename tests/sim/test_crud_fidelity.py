"""crud.* on the simulator vs the crud stand-in on a real Tarantool 2.6.

The real server runs ``tests/real/lua/crud.lua`` (crud's call interface on one
storage); the simulator has its own Python implementation (``sim/_crud.py``).
A seeded sequence of crud calls through the real client must give the same
rows, metadata and errors on both.
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

SPACE = "customers"
FORMAT: list[tuple[str, str] | tuple[str, str, bool]] = [
    ("id", "unsigned"), ("bucket_id", "unsigned"), ("name", "string"), ("age", "number"),
]
INDEXES: list[tuple[str, list[Any], bool]] = [
    ("id", [("id", "unsigned")], True),
    ("bucket_id", [("bucket_id", "unsigned")], False),
    ("age", [("age", "number")], False),
]

Call = tuple[str, tuple[Any, ...]]


def _calls(seed: int, count: int) -> list[Call]:
    r = random.Random(seed)
    names = ["Ann", "Bob", "Cid"]

    def tup() -> list[Any]:
        t: list[Any] = [r.randrange(8), None, r.choice(names), r.choice([20, 30, 40.5])]
        if r.random() < 0.1:
            t[r.choice([0, 2, 3])] = r.choice(["x", -1, None])
        return t

    def obj() -> dict[str, Any]:
        o: dict[str, Any] = {"id": r.randrange(8), "name": r.choice(names), "age": r.choice([20, 30])}
        if r.random() < 0.1:
            o[r.choice(["nope", "name"])] = None
        return o

    def ops() -> list[Any]:
        return [r.choice([["+", "age", 1], ["=", "name", r.choice(names)], ["=", 3, "Zed"],
                          ["+", "name", 1], ["-", 4, 2]])]

    def conds() -> list[Any]:
        out: list[Any] = []
        for _ in range(r.randrange(3)):
            op = r.choice(["=", "<", "<=", ">", ">="])
            field = r.choice(["id", "age", "name"])
            value: Any = r.choice(names) if field == "name" else r.choice([3, 25, 30])
            out.append([op, field, value])
        return out

    def opts() -> dict[str, Any]:
        o: dict[str, Any] = {}
        if r.random() < 0.3:
            o["first"] = r.choice([1, 2, 5])
        if r.random() < 0.2:
            o["fields"] = r.choice([["id", "name"], ["age"], ["nope"]])
        return o

    out: list[Call] = []
    for _ in range(count):
        kind = r.choice(["insert", "insert_object", "replace", "replace_object", "get", "update",
                         "delete", "upsert", "upsert_object", "insert_many", "replace_many",
                         "upsert_many", "select", "select", "count", "min", "max", "len"])
        space = SPACE if r.random() > 0.03 else "nowhere"
        if kind in ("insert", "replace"):
            out.append((kind, (space, tup())))
        elif kind in ("insert_object", "replace_object"):
            out.append((kind, (space, obj())))
        elif kind in ("get", "delete"):
            out.append((kind, (space, r.randrange(8))))
        elif kind == "update":
            out.append((kind, (space, r.randrange(8), ops())))
        elif kind == "upsert":
            out.append((kind, (space, tup(), ops())))
        elif kind == "upsert_object":
            out.append((kind, (space, obj(), ops())))
        elif kind in ("insert_many", "replace_many"):
            o: dict[str, Any] = r.choice([{}, {"stop_on_error": True}, {"rollback_on_error": True}])
            out.append((kind, (space, [tup() for _ in range(r.randrange(1, 4))], o)))
        elif kind == "upsert_many":
            out.append((kind, (space, [[tup(), ops()] for _ in range(r.randrange(1, 3))])))
        elif kind == "select":
            out.append((kind, (space, conds(), opts())))
        elif kind == "count":
            out.append((kind, (space, conds())))
        elif kind in ("min", "max"):
            out.append((kind, (space, r.choice(["id", "age", "nope"]))))
        else:
            out.append((kind, (space,)))
    return out


def _shape(result: Any) -> Any:
    if result is None or isinstance(result, int):
        return result
    return {"metadata": result.metadata, "rows": result.rows}


def _err(e: Any) -> Any:
    return (e.fields["class_name"], e.fields["err"], e.fields.get("operation_data"))


async def _run(conn: tt.Connection, calls: list[Call]) -> list[Any]:
    out: list[Any] = []
    for name, args in calls:
        try:
            out.append(("ok", _shape(await getattr(conn, f"crud_{name}")(*args))))
        except tt.CrudModuleManyError as exc:
            out.append(("many", _shape(exc.success_list) if exc.success_list else None,
                        [_err(e) for e in exc.errors_list]))
        except tt.CrudModuleError as exc:
            out.append(("err", _err(exc.extra_info_error)))
    out.append(("final", _shape(await conn.crud_select(SPACE, []))))
    return out


@pytest.fixture(params=SERVER_KINDS)
def real_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The Lua stand-in on a real server of each kind (``.sim_version``: what the simulator plays)."""
    for inst in started_instance(request.param, "crud-fidelity"):
        inst.sim_version = sim_version(request.param)
        yield inst


def _on_real(server: Any, calls: list[Call]) -> list[Any]:
    async def main() -> list[Any]:
        async with tt.connect(server.host, server.port, user="test", password="test-password",
                              connection_timeout=10, socket_timeout=10) as conn:
            return await _run(conn, calls)

    return trio.run(main)


def _on_sim(calls: list[Call], version: str = "2.6.0") -> list[Any]:
    async def main() -> list[Any]:
        async with sim.open_replicaset(n=1, crud=True, version=version, users={"test": "test-password"}) as rs:
            rs.create_space(SPACE, FORMAT, indexes=INDEXES)
            async with tt.connect(rs[0].host, rs[0].port, user="test", password="test-password") as conn:
                return await _run(conn, calls)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("seed", seeds("CRUD_FIDELITY_SEEDS", 8))
def test_crud_sim_matches_the_real_stand_in(real_server: Any, seed: int) -> None:
    real_server.admin_eval("box.space.customers:truncate() return true")
    calls = _calls(seed, 120)
    if not real_server.sim_version.startswith("2."):
        # 3.x's upsert rules differ from 2.6's, which the simulator follows (docs/sim.md).
        calls = [c for c in calls if not c[0].startswith("upsert")]
    real = _on_real(real_server, calls)
    simulated = _on_sim(calls, real_server.sim_version)
    for i, (call, a, b) in enumerate(zip([*calls, ("final", ())], real, simulated, strict=True)):
        assert a == b, f"call #{i} {call}:\n real {a}\n  sim {b}"
