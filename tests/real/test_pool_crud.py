"""Every crud_* method through the ConnectionPool, against the crud stand-in
(``tests/real/lua/crud.lua``) on a real 3-member replicaset.

The real crud is proven in ``test_sharded_crud.py`` (and the single
connection's crud_* only there); these stay for what a vshard cluster cannot
show: crud answering on every member of one replicaset, so the pool's modes
are visible in crud calls (writes refused by replicas unless mode=RW,
``crud_storage_info`` rotating over all three members under the default mode,
mode RO served by a replica), and a missing crud function's hint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.real._servers import Replicaset
from trio_tarantool._crud import CRUD_HINT, CrudResult, _InMode
from trio_tarantool._errors import CrudModuleError, CrudModuleManyError, DatabaseError, ErrorCode
from trio_tarantool._pool import ConnectionPool, open_pool
from trio_tarantool._strategy import Mode

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
FIELDS = ["id", "bucket_id", "name", "age"]
RW = Mode.RW


def names(result: CrudResult) -> list[str]:
    return [r[2] for r in result.rows]


@pytest.fixture
async def pool(replicaset: Replicaset) -> AsyncIterator[ConnectionPool]:
    with trio.fail_after(60):
        async with open_pool(replicaset.addrs, refresh_delay=0.2, **USER) as p:
            yield p


async def test_every_crud_method_through_the_pool(pool: ConnectionPool, replicaset: Replicaset) -> None:
    # Writes go to the master explicitly: the stand-in writes locally, as a
    # storage would, so a replica refuses them.
    first = await pool.crud_insert("customers", [1, None, "Ann", 20], mode=RW)
    assert [m["name"] for m in first.metadata] == FIELDS and names(first) == ["Ann"]
    res: CrudResult | None = await pool.crud_insert_object("customers", {"id": 2, "name": "Bob", "age": 30}, mode=RW)
    assert res is not None and names(res) == ["Bob"]
    res = await pool.crud_insert_many("customers", [[3, None, "Cid", 40], [4, None, "Dan", 50]], mode=RW)
    assert res is not None and sorted(names(res)) == ["Cid", "Dan"]
    res = await pool.crud_insert_object_many(
        "customers", [{"id": 5, "name": "Eve", "age": 60}, {"id": 6, "name": "Fay", "age": 70}], mode=RW,
    )
    assert res is not None and sorted(names(res)) == ["Eve", "Fay"]
    res = await pool.crud_replace("customers", [1, None, "Anna", 21], mode=RW)
    assert res is not None and names(res) == ["Anna"]
    res = await pool.crud_replace_object("customers", {"id": 2, "name": "Bobby", "age": 31}, mode=RW)
    assert res is not None and names(res) == ["Bobby"]
    res = await pool.crud_replace_many("customers", [[3, None, "Cyd", 41]], mode=RW)
    assert res is not None and names(res) == ["Cyd"]
    res = await pool.crud_replace_object_many("customers", [{"id": 4, "name": "Danny", "age": 51}], mode=RW)
    assert res is not None and names(res) == ["Danny"]
    await pool.crud_update("customers", 5, [["+", "age", 1]], mode=RW)
    await pool.crud_upsert("customers", [6, None, "x", 0], [["+", "age", 1]], mode=RW)
    await pool.crud_upsert_object("customers", {"id": 7, "name": "Gus", "age": 80}, [], mode=RW)
    await pool.crud_upsert_many("customers", [[[8, None, "Hal", 90], []]], mode=RW)
    await pool.crud_upsert_object_many(
        "customers", [[{"id": 9, "name": "Ivy", "age": 99}, []]], mode=RW,
    )
    res = await pool.crud_delete("customers", 9, mode=RW)
    assert res is not None and names(res) == ["Ivy"]
    await trio.to_thread.run_sync(replicaset.wait_replicated)

    # Reads with the default mode (ANY) are served by every member in turn.
    for _ in range(3):
        assert names(await pool.crud_get("customers", 5)) == ["Eve"]
        assert (await pool.crud_get("customers", 5)).rows[0][3] == 61
        selected = await pool.crud_select("customers", [[">=", "age", 60]])
        assert sorted(names(selected)) == ["Eve", "Fay", "Gus", "Hal"]
        assert await pool.crud_count("customers", [["<", "age", 40]]) == 2
        assert await pool.crud_len("customers") == 8
        assert names(await pool.crud_min("customers", "age")) == ["Anna"]
        assert names(await pool.crud_max("customers", "age")) == ["Hal"]
        assert await pool.crud_stats() is None
        assert await pool.crud_stats("customers") is None
    rows = (await pool.crud_select("customers", [["==", "id", 6]], mode=Mode.RO)).rows
    assert rows[0][3] == 71
    objects = pool.crud_unflatten_rows(rows, (await pool.crud_get("customers", 6)).metadata)
    assert objects[0]["name"] == "Fay" and objects[0]["age"] == 71

    # storage_info answers with the uuid of the instance that ran it: the default
    # mode rotates over the whole replicaset.
    uuids: set[str] = set()
    for _ in range(3):
        uuids.update((await pool.crud_storage_info()).keys())
    assert len(uuids) == 3
    (master_info,) = (await pool.crud_storage_info(mode=RW)).values()
    assert master_info == {"status": "running", "is_master": True}

    assert await pool.crud_truncate("customers", mode=RW) is True
    await trio.to_thread.run_sync(replicaset.wait_replicated)
    assert await pool.crud_len("customers", mode=Mode.RO) == 0


async def test_crud_errors_through_the_pool(pool: ConnectionPool) -> None:
    await pool.crud_insert("customers", [1, None, "Ann", 20], mode=RW)
    with pytest.raises(CrudModuleError) as info:
        await pool.crud_insert("customers", [1, None, "Ann", 20], mode=RW)
    assert info.value.extra_info_error.class_name == "InsertError"
    with pytest.raises(CrudModuleError, match="doesn't exist"):
        await pool.crud_get("no_such_space", 1)
    with pytest.raises(CrudModuleManyError) as many:
        await pool.crud_insert_many("customers", [[1, None, "dup", 1], [2, None, "new", 2]], mode=RW)
    assert many.value.success_list is not None and names(many.value.success_list) == ["new"]
    assert len(many.value.errors_list) == 1


async def test_missing_crud_function_gets_a_hint(pool: ConnectionPool) -> None:
    with pytest.raises(DatabaseError) as info:
        await _InMode(pool, Mode.ANY)._crud("crud.no_such_function", ())
    assert info.value.code == ErrorCode.ER_NO_SUCH_PROC
    assert info.value.message.endswith(CRUD_HINT)
