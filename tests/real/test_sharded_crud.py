"""Every ``crud_*`` method against the real crud 1.7.5 on a real vshard cluster.

The cluster (``tests/real/_cluster.py``): two storage replicasets (master +
replica each) and two routers running ``crud.init_router()``; one cluster per
module and server kind. Each test runs twice per kind: through a
``Connection`` to one router and through a ``ConnectionPool`` of both routers
(default mode ANY, so calls alternate between them). What the client reports
is checked against what the storages hold, read through their admin consoles.

The stand-in (``tests/real/lua/crud.lua``) is kept only in ``test_pool_crud.py``,
for what a sharded cluster cannot show: crud answering on every member of one
replicaset, so the pool's modes (RW to the master, RO to replicas) are
visible in crud calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from tests.real._cluster import FIELDS, SPACE, ShardedCluster, cluster_fixture
from tests.real._servers import TEST_PASSWORD, TEST_USER, TarantoolBinary, connect_to
from trio_tarantool import (
    CrudModuleError,
    CrudModuleManyError,
    DatabaseError,
    ErrorCode,
    open_pool,
)
from trio_tarantool._crud import CrudResult


@pytest.fixture(scope="module")
def cluster(server_kind: TarantoolBinary) -> Iterator[ShardedCluster]:
    """One cluster per module and server kind (start-up is the expensive part)."""
    yield from cluster_fixture(server_kind)


@pytest.fixture
def clean_cluster(cluster: ShardedCluster) -> ShardedCluster:
    """The module's cluster with ``customers`` empty and crud statistics reset."""
    cluster.reset()
    return cluster


@pytest.fixture(params=["connection", "pool"])
async def crud(request: pytest.FixtureRequest, clean_cluster: ShardedCluster) -> AsyncIterator[Any]:
    """A Connection to router 1, or a pool of both routers."""
    with trio.fail_after(30):
        if request.param == "connection":
            async with connect_to(clean_cluster.routers[0]) as conn:
                yield conn
        else:
            async with open_pool(
                clean_cluster.router_addrs, user=TEST_USER, password=TEST_PASSWORD, refresh_delay=0.2
            ) as pool:
                yield pool


def names(result: CrudResult) -> list[str]:
    """The ``name`` field of each row."""
    return [row[2] for row in result.rows]


async def fill(crud: Any, count: int) -> None:
    """Insert ids 1..count with ages 10, 20, ...: they land on both replicasets."""
    values = [[i, None, f"n{i}", i * 10] for i in range(1, count + 1)]
    result = await crud.crud_insert_many(SPACE, values)
    assert result is not None and sorted(r[0] for r in result.rows) == list(range(1, count + 1))


async def test_single_tuple_dml(crud: Any, clean_cluster: ShardedCluster) -> None:
    res = await crud.crud_insert(SPACE, [1, None, "Ann", 20])
    assert [m["name"] for m in res.metadata] == list(FIELDS)
    ((key, bucket_id, name, age),) = res.rows
    assert (key, name, age) == (1, "Ann", 20) and 1 <= bucket_id <= clean_cluster.bucket_count
    # The router put the tuple on the replicaset that owns its bucket.
    assert clean_cluster.holder_of(1) is clean_cluster.replicaset_of_key(1)
    assert clean_cluster.stored() == {1: [1, bucket_id, "Ann", 20]}

    res = await crud.crud_insert_object(SPACE, {"id": 2, "name": "Bob", "age": 30})
    assert crud.crud_unflatten_rows(res.rows, res.metadata)[0] == {
        "id": 2, "bucket_id": res.rows[0][1], "name": "Bob", "age": 30,
    }
    # Read back from the master: crud.get reads in mode 'read' by default, which
    # vshard may serve from the replica before asynchronous replication caught up.
    assert (await crud.crud_get(SPACE, 1, {"mode": "write"})).rows == [[1, bucket_id, "Ann", 20]]
    assert (await crud.crud_get(SPACE, 404)).rows == []

    res = await crud.crud_update(SPACE, 1, [["+", "age", 1], ["=", "name", "Anna"]])
    assert res.rows == [[1, bucket_id, "Anna", 21]]
    assert (await crud.crud_update(SPACE, 404, [["+", "age", 1]])).rows == []

    assert names(await crud.crud_replace(SPACE, [1, None, "Annie", 22])) == ["Annie"]
    assert names(await crud.crud_replace_object(SPACE, {"id": 3, "name": "Cid", "age": 40})) == ["Cid"]
    # upsert answers no rows, whether it inserted or updated.
    assert (await crud.crud_upsert(SPACE, [4, None, "Dan", 50], [["+", "age", 1]])).rows == []
    assert (await crud.crud_upsert(SPACE, [4, None, "Dan", 50], [["+", "age", 1]])).rows == []
    res = await crud.crud_upsert_object(SPACE, {"id": 5, "name": "Eve", "age": 60}, [["=", "name", "x"]])
    assert res.rows == []

    assert names(await crud.crud_delete(SPACE, 2)) == ["Bob"]
    assert (await crud.crud_delete(SPACE, 2)).rows == []
    stored = clean_cluster.stored()
    assert {k: (row[2], row[3]) for k, row in stored.items()} == {
        1: ("Annie", 22), 3: ("Cid", 40), 4: ("Dan", 51), 5: ("Eve", 60),
    }


async def test_many_variants(crud: Any, clean_cluster: ShardedCluster) -> None:
    res = await crud.crud_insert_many(SPACE, [[1, None, "a", 1], [2, None, "b", 2], [3, None, "c", 3]])
    assert sorted(names(res)) == ["a", "b", "c"]
    res = await crud.crud_insert_object_many(SPACE, [{"id": 4, "name": "d", "age": 4}])
    assert names(res) == ["d"]
    res = await crud.crud_replace_many(SPACE, [[1, None, "A", 10], [5, None, "e", 5]])
    assert sorted(names(res)) == ["A", "e"]
    res = await crud.crud_replace_object_many(SPACE, [{"id": 2, "name": "B", "age": 20}])
    assert names(res) == ["B"]
    # upsert_many answers only metadata: no 'rows' key at all (single upsert: rows = {}).
    res = await crud.crud_upsert_many(SPACE, [[[3, None, "x", 0], [["+", "age", 100]]], [[6, None, "f", 6], []]])
    assert res is not None and "rows" not in res.fields and res.metadata[0]["name"] == "id"
    res = await crud.crud_upsert_object_many(SPACE, [[{"id": 7, "name": "g", "age": 7}, []]])
    assert res is not None and "rows" not in res.fields
    assert {k: (r[2], r[3]) for k, r in clean_cluster.stored().items()} == {
        1: ("A", 10), 2: ("B", 20), 3: ("c", 103), 4: ("d", 4), 5: ("e", 5), 6: ("f", 6), 7: ("g", 7),
    }


async def test_many_partial_and_total_failure(crud: Any, clean_cluster: ShardedCluster) -> None:
    await fill(crud, 2)
    with pytest.raises(CrudModuleManyError) as partial:
        await crud.crud_insert_many(SPACE, [[3, None, "new", 3], [1, None, "dup", 9]])
    assert partial.value.success_list is not None and names(partial.value.success_list) == ["new"]
    (error,) = partial.value.errors_list
    assert "Duplicate key exists" in error.err
    # The failed tuple comes back, with the bucket_id the router computed.
    assert error.operation_data[0] == 1 and error.operation_data[2:] == ["dup", 9]
    assert "Duplicate key exists" in str(partial.value)
    assert sorted(clean_cluster.stored()) == [1, 2, 3]

    # Every tuple failing: crud answers nil (no result), so no success list.
    with pytest.raises(CrudModuleManyError) as total:
        await crud.crud_insert_object_many(
            SPACE, [{"id": 1, "name": "d", "age": 1}, {"id": 2, "name": "d", "age": 2}]
        )
    assert total.value.success_list is None
    assert sorted(e.operation_data[0] for e in total.value.errors_list) == [1, 2]
    assert {k: r[2] for k, r in clean_cluster.stored().items()} == {1: "n1", 2: "n2", 3: "new"}


async def test_select_conditions_first_after(crud: Any) -> None:
    await fill(crud, 8)
    # Merged from both replicasets in primary key order.
    assert [r[0] for r in (await crud.crud_select(SPACE)).rows] == list(range(1, 9))
    res = await crud.crud_select(SPACE, [[">=", "age", 30], ["<", "id", 6]])
    assert [r[0] for r in res.rows] == [3, 4, 5]
    res = await crud.crud_select(SPACE, [["<=", "age", 40]], {"fields": ["id", "name"]})
    # '<=' on the age index is scanned backwards, as crud does; the rows keep
    # the scanned index's field (age) after the requested ones: crud merges the
    # storages' answers by it.
    assert res.rows == [[4, "n4", 40], [3, "n3", 30], [2, "n2", 20], [1, "n1", 10]]
    assert [m["name"] for m in res.metadata] == ["id", "name", "age"]

    # Pagination: first + after (the last row of the previous page), forwards and back.
    pages: list[list[int]] = []
    after = None
    while True:
        opts: dict[str, Any] = {"first": 3}
        if after is not None:
            opts["after"] = after
        page = (await crud.crud_select(SPACE, None, opts)).rows
        if not page:
            break
        pages.append([r[0] for r in page])
        after = page[-1]
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8]]
    res = await crud.crud_select(SPACE, None, {"first": -2, "after": [6, None, "n6", 60]})
    assert [r[0] for r in res.rows] == [4, 5]


async def test_min_max_count_len_truncate(crud: Any, clean_cluster: ShardedCluster) -> None:
    await fill(crud, 6)
    assert names(await crud.crud_min(SPACE, "age")) == ["n1"]
    assert names(await crud.crud_max(SPACE, "age")) == ["n6"]
    assert (await crud.crud_max(SPACE, "id", {"fields": ["id"]})).rows == [[6]]
    assert names(await crud.crud_min(SPACE, 0)) == ["n1"]  # an index id works too
    assert await crud.crud_count(SPACE) == 6
    assert await crud.crud_count(SPACE, [[">", "age", 35]]) == 3
    assert await crud.crud_len(SPACE) == 6
    assert await crud.crud_truncate(SPACE) is True
    assert await crud.crud_len(SPACE) == 0
    assert clean_cluster.stored() == {}
    assert (await crud.crud_min(SPACE, "age")).rows == []


async def test_storage_info_and_stats(crud: Any, clean_cluster: ShardedCluster) -> None:
    info = await crud.crud_storage_info()
    assert info == {
        clean_cluster.uuid_of(inst): {"status": "running", "is_master": inst is rs.master}
        for rs in clean_cluster.replicasets
        for inst in rs.members
    }
    # Nothing recorded for the space yet (statistics were reset): an empty table -> None.
    assert await crud.crud_stats(SPACE) is None
    for key in (1, 2, 3):
        await crud.crud_insert(SPACE, [key, None, "x", key])
    await crud.crud_get(SPACE, 1)
    recorded = [
        r.admin_eval(f"local s = crud.stats('{SPACE}') "
                     "return s.insert ~= nil and s.insert.ok.count or 0")[0] for r in clean_cluster.routers
    ]
    assert sum(recorded) == 3
    stats = await crud.crud_stats(SPACE)
    assert stats is not None and stats.insert["ok"]["count"] in recorded
    assert stats.insert["error"]["count"] == 0
    everything = await crud.crud_stats()
    assert everything is not None and SPACE in everything.spaces


async def test_opts(crud: Any, clean_cluster: ShardedCluster) -> None:
    # An explicit bucket_id (in the tuple or as an option) is kept.
    assert (await crud.crud_insert(SPACE, [1, 7, "a", 1])).rows[0][1] == 7
    assert (await crud.crud_insert(SPACE, [2, None, "b", 2], {"bucket_id": 9})).rows[0][1] == 9
    res = await crud.crud_insert(SPACE, [3, None, "c", 3], {"fields": ["id", "name"]})
    assert res.rows == [[3, "c"]] and [m["name"] for m in res.metadata] == ["id", "name"]
    # noreturn: crud answers nil, nil; the client an empty result.
    res = await crud.crud_replace(SPACE, [4, None, "d", 4], {"noreturn": True})
    assert res.fields == {}
    assert clean_cluster.stored()[4][2:] == ["d", 4]
    res = await crud.crud_get(SPACE, 1, {"bucket_id": 7, "mode": "write", "fields": ["name"]})
    assert res.rows == [["a"]]
    res = await crud.crud_select(SPACE, [[">", "id", 1]], {"batch_size": 1, "first": 2, "mode": "write"})
    assert [r[0] for r in res.rows] == [2, 3]
    res = await crud.crud_update(SPACE, 2, [["+", "age", 5]], {"bucket_id": 9, "timeout": 5})
    assert res.rows[0][3] == 7


async def test_errors_are_typed(crud: Any) -> None:
    await crud.crud_insert(SPACE, [1, None, "a", 1])
    with pytest.raises(CrudModuleError) as dup:
        await crud.crud_insert(SPACE, [1, None, "again", 2])
    assert dup.value.extra_info_error.class_name == "InsertError"
    # 2.6 quotes the index 'id', 3.8 "id" and adds the old and new tuples.
    assert "Duplicate key exists in unique index" in dup.value.extra_info_error.err
    assert dup.value.code == ErrorCode.ER_PROC_LUA
    assert "InsertError" in str(dup.value)

    with pytest.raises(CrudModuleError) as no_space:
        await crud.crud_get("no_such_space", 1)
    assert no_space.value.extra_info_error.class_name == "GetError"
    assert 'Space "no_such_space" doesn\'t exist' in str(no_space.value)

    with pytest.raises(CrudModuleError, match='Unknown field "bogus"') as flatten:
        await crud.crud_insert_object(SPACE, {"id": 9, "name": "x", "age": 1, "bogus": 1})
    assert flatten.value.extra_info_error.class_name == "InsertError"

    with pytest.raises(CrudModuleError, match="'nofield' was not found") as update:
        await crud.crud_update(SPACE, 1, [["+", "nofield", 1]])
    assert update.value.extra_info_error.class_name == "UpdateError"

    # Bad options: crud's own check, inside a SelectError with a stack.
    with pytest.raises(CrudModuleError, match=r"bad argument opts\.first") as bad_opts:
        await crud.crud_select(SPACE, None, {"first": "x"})
    assert bad_opts.value.extra_info_error.class_name == "SelectError"
    assert "stack" in bad_opts.value.extra_info_error.fields

    # A bucket no replicaset holds: vshard's ShardingError inside crud's GetError.
    with pytest.raises(CrudModuleError, match="NO_ROUTE_TO_BUCKET") as no_route:
        await crud.crud_get(SPACE, 1, {"bucket_id": 10_000})
    assert no_route.value.extra_info_error.class_name == "GetError"

    # storage_info checks its opts with a plain Lua error, not a crud error.
    with pytest.raises(DatabaseError) as plain:
        await crud.crud_storage_info({"timeout": "x"})
    assert not isinstance(plain.value, CrudModuleError)
    assert plain.value.code == ErrorCode.ER_PROC_LUA and "bad argument opts.timeout" in plain.value.message
