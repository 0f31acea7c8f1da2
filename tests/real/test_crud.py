"""Connection.crud_* against the crud stand-in (``tests/real/lua/crud.lua``) on a real server.

The stand-in answers exactly as the crud module's router functions do (result
maps, ``nil, err`` pairs, ``result, errs`` for batches), so these tests check
the client's request shaping and answer handling end to end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.real._servers import TarantoolInstance
from trio_tarantool import CrudModuleError, CrudModuleManyError, connect

FIELDS = ["id", "bucket_id", "name", "age"]


@pytest.fixture
async def conn(clean_tarantool: TarantoolInstance) -> AsyncIterator[Any]:
    with trio.fail_after(10):
        async with connect(
            clean_tarantool.host,
            clean_tarantool.port,
            user=clean_tarantool.user,
            password=clean_tarantool.password,
        ) as c:
            yield c


def _without_bucket(rows: list[Any]) -> list[list[Any]]:
    """Rows with the computed bucket_id (field 2) removed."""
    return [[r[0], *r[2:]] for r in rows]


async def test_insert_get_update_delete(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    res = await conn.crud_insert("customers", [1, None, "Elizabeth", 23])
    assert [m["name"] for m in res.metadata] == FIELDS
    assert _without_bucket(res.rows) == [[1, "Elizabeth", 23]]
    bucket_id = res.rows[0][1]
    assert isinstance(bucket_id, int) and bucket_id > 0

    res = await conn.crud_get("customers", 1)
    assert res.rows == [[1, bucket_id, "Elizabeth", 23]]
    assert (await conn.crud_get("customers", 404)).rows == []

    res = await conn.crud_update("customers", 1, [["+", "age", 1], ["=", "name", "Liz"]])
    assert res.rows == [[1, bucket_id, "Liz", 24]]

    res = await conn.crud_delete("customers", 1)
    assert res.rows == [[1, bucket_id, "Liz", 24]]
    assert clean_tarantool.admin_eval("return box.space.customers:len()") == [0]


async def test_objects(conn: Any) -> None:
    res = await conn.crud_insert_object("customers", {"id": 2, "name": "Jack", "age": 35})
    assert _without_bucket(res.rows) == [[2, "Jack", 35]]
    objects = conn.crud_unflatten_rows(res.rows, res.metadata)
    assert objects[0]["name"] == "Jack" and objects[0]["id"] == 2
    res = await conn.crud_replace_object("customers", {"id": 2, "name": "Jacques", "age": 36})
    assert _without_bucket(res.rows) == [[2, "Jacques", 36]]
    res = await conn.crud_upsert_object(
        "customers", {"id": 2, "name": "x", "age": 0}, [["+", "age", 4]]
    )
    assert res.rows == []
    assert _without_bucket((await conn.crud_get("customers", 2)).rows) == [[2, "Jacques", 40]]


async def test_replace_and_upsert(conn: Any) -> None:
    await conn.crud_replace("customers", [3, None, "David", 33])
    res = await conn.crud_replace("customers", [3, None, "Dave", 34])
    assert _without_bucket(res.rows) == [[3, "Dave", 34]]
    await conn.crud_upsert("customers", [4, None, "New", 1], [["+", "age", 1]])
    await conn.crud_upsert("customers", [4, None, "New", 1], [["+", "age", 1]])
    assert _without_bucket((await conn.crud_get("customers", 4)).rows) == [[4, "New", 2]]


async def test_select_count_min_max_len(conn: Any) -> None:
    people = [(1, "Elizabeth", 12), (2, "Jack", 35), (3, "David", 33), (4, "William", 25)]
    for pid, name, age in people:
        await conn.crud_insert("customers", [pid, None, name, age])

    res = await conn.crud_select("customers")
    assert [r[0] for r in res.rows] == [1, 2, 3, 4]
    res = await conn.crud_select("customers", [["<=", "age", 33]])
    # Scanned through the 'age' index backwards, as crud does for '<='.
    assert [(r[2], r[3]) for r in res.rows] == [("David", 33), ("William", 25), ("Elizabeth", 12)]
    res = await conn.crud_select(
        "customers", [[">", "id", 1]], {"first": 2, "fields": ["id", "name"]}
    )
    assert res.rows == [[2, "Jack"], [3, "David"]]
    assert [m["name"] for m in res.metadata] == ["id", "name"]

    assert await conn.crud_count("customers", [[">=", "age", 25]]) == 3
    assert await conn.crud_count("customers") == 4
    assert await conn.crud_len("customers") == 4
    assert (await conn.crud_min("customers", "age")).rows[0][2] == "Elizabeth"
    assert (await conn.crud_max("customers", "age")).rows[0][2] == "Jack"
    assert (await conn.crud_max("customers", "id")).rows[0][0] == 4


async def test_truncate_storage_info_stats(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    await conn.crud_insert("customers", [1, None, "a", 1])
    assert await conn.crud_truncate("customers") is True
    assert await conn.crud_len("customers") == 0
    info = await conn.crud_storage_info()
    (instance_uuid,) = clean_tarantool.admin_eval("return box.info.uuid")
    assert info == {instance_uuid: {"status": "running", "is_master": True}}
    assert await conn.crud_stats() is None


async def test_errors(conn: Any) -> None:
    await conn.crud_insert("customers", [1, None, "a", 1])
    with pytest.raises(CrudModuleError) as exc:
        await conn.crud_insert("customers", [1, None, "again", 2])
    err = exc.value.extra_info_error
    assert err.class_name == "InsertError"
    assert "Duplicate key" in err.err
    assert "Duplicate key" in str(exc.value)

    with pytest.raises(CrudModuleError) as exc:
        await conn.crud_get("no_such_space", 1)
    assert exc.value.extra_info_error.class_name == "GetError"
    assert "no_such_space" in str(exc.value)

    with pytest.raises(CrudModuleError) as exc:
        await conn.crud_insert_object("customers", {"id": 9, "name": "x", "age": 1, "bogus": 1})
    assert "bogus" in str(exc.value)


async def test_many_success_and_partial_failure(
    conn: Any, clean_tarantool: TarantoolInstance
) -> None:
    res = await conn.crud_insert_many("customers", [[1, None, "a", 1], [2, None, "b", 2]])
    assert [r[0] for r in res.rows] == [1, 2]

    with pytest.raises(CrudModuleManyError) as exc:
        await conn.crud_insert_many("customers", [[3, None, "c", 3], [1, None, "dup", 9]])
    assert [r[0] for r in exc.value.success_list.rows] == [3]
    (error,) = exc.value.errors_list
    assert error.class_name == "InsertManyError"
    assert error.operation_data == [1, None, "dup", 9]

    res = await conn.crud_insert_object_many("customers", [{"id": 5, "name": "e", "age": 5}])
    assert _without_bucket(res.rows) == [[5, "e", 5]]
    res = await conn.crud_replace_many("customers", [[5, None, "E", 6], [6, None, "f", 6]])
    assert _without_bucket(res.rows) == [[5, "E", 6], [6, "f", 6]]
    res = await conn.crud_replace_object_many("customers", [{"id": 6, "name": "F", "age": 7}])
    assert _without_bucket(res.rows) == [[6, "F", 7]]
    await conn.crud_upsert_many("customers", [[[6, None, "x", 0], [["+", "age", 1]]]])
    await conn.crud_upsert_object_many(
        "customers", [[{"id": 7, "name": "g", "age": 1}, [["+", "age", 1]]]]
    )
    assert clean_tarantool.admin_eval(
        "return box.space.customers:get(6).age, box.space.customers:get(7).age"
    ) == [8, 1]

    # Every tuple failing: no success list at all.
    with pytest.raises(CrudModuleManyError) as exc:
        await conn.crud_insert_many("customers", [[1, None, "dup", 1], [2, None, "dup", 2]])
    assert exc.value.success_list is None
    assert len(exc.value.errors_list) == 2
