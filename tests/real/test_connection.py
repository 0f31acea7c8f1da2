"""Every Connection method against a real Tarantool 2.6 (data checked through the admin console).

The module shares one instance (``clean_tarantool`` empties it before each test).
"""

from __future__ import annotations

import decimal
import uuid
from typing import Any

import pytest
import trio

from tests.real._servers import TarantoolBinary, TarantoolInstance
from tests.real._servers import connect_to as _connect
from trio_tarantool import DatabaseError, ErrorCode, ServerError
from trio_tarantool._iproto._constants import Iterator


def _rows(resp: Any) -> list[list[Any]]:
    """Response rows as plain lists (tuples may come back as lists or tuples)."""
    return [list(row) for row in resp]


async def _fill_tester(conn: Any) -> None:
    for i, name in [(1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "d")]:
        await conn.insert("tester", (i, name))


# --------------------------------------------------------------------- ping


async def test_ping(conn: Any) -> None:
    rtt = await conn.ping()
    assert isinstance(rtt, float)
    assert 0 < rtt < 1
    assert await conn.ping(notime=True) == "Success"


# ------------------------------------------------------------------- select


async def test_select_all_and_by_key(conn: Any) -> None:
    await _fill_tester(conn)
    assert _rows(await conn.select("tester")) == [
        [1, "a"],
        [2, "b"],
        [3, "b"],
        [4, "c"],
        [5, "d"],
    ]
    assert _rows(await conn.select("tester", 3)) == [[3, "b"]]
    assert _rows(await conn.select("tester", [3])) == [[3, "b"]]
    assert _rows(await conn.select(512, 4)) == [[4, "c"]]
    assert _rows(await conn.select("tester", 42)) == []


async def test_select_by_index_name_and_id(conn: Any) -> None:
    await _fill_tester(conn)
    assert _rows(await conn.select("tester", "b", index="name_idx")) == [[2, "b"], [3, "b"]]
    assert _rows(await conn.select("tester", "b", index=1)) == [[2, "b"], [3, "b"]]
    assert _rows(await conn.select(512, ["c"], index=1)) == [[4, "c"]]


async def test_select_iterators(conn: Any) -> None:
    await _fill_tester(conn)
    ge = [[3, "b"], [4, "c"], [5, "d"]]
    assert _rows(await conn.select("tester", 3, iterator="GE")) == ge
    assert _rows(await conn.select("tester", 3, iterator=Iterator.GE)) == ge
    assert _rows(await conn.select("tester", 3, iterator=int(Iterator.GE))) == ge
    assert _rows(await conn.select("tester", 3, iterator="LT")) == [[2, "b"], [1, "a"]]
    assert _rows(await conn.select("tester", 4, iterator="REQ")) == [[4, "c"]]
    assert _rows(await conn.select("tester", "b", index="name_idx", iterator="GT")) == [
        [4, "c"],
        [5, "d"],
    ]
    assert len(await conn.select("tester", [], iterator="ALL")) == 5


async def test_select_offset_limit(conn: Any) -> None:
    await _fill_tester(conn)
    assert _rows(await conn.select("tester", limit=2)) == [[1, "a"], [2, "b"]]
    assert _rows(await conn.select("tester", offset=3)) == [[4, "c"], [5, "d"]]
    assert _rows(await conn.select("tester", 2, offset=1, limit=2, iterator="GE")) == [
        [3, "b"],
        [4, "c"],
    ]
    assert _rows(await conn.select("tester", limit=0)) == []


async def test_select_composite_key(conn: Any) -> None:
    for a, b in [(1, "x"), (1, "y"), (2, "x")]:
        await conn.insert("multi", (a, b, f"{a}{b}"))
    assert _rows(await conn.select("multi", [1, "y"])) == [[1, "y", "1y"]]
    # A partial key on a tree index selects by prefix.
    assert _rows(await conn.select("multi", [1])) == [[1, "x", "1x"], [1, "y", "1y"]]


async def test_response_attributes(conn: Any) -> None:
    await _fill_tester(conn)
    resp = await conn.select("tester", 2, iterator="GE", limit=3)
    assert len(resp) == 3
    assert resp.rowcount == 3
    assert _rows(resp.data) == [[2, "b"], [3, "b"], [4, "c"]]
    assert list(resp[0]) == [2, "b"]
    assert resp.code == 0
    assert isinstance(resp.sync, int)
    assert isinstance(resp.schema_version, int) and resp.schema_version > 0


# ------------------------------------------------------------------ DML


async def test_insert_replace_delete(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    assert _rows(await conn.insert("tester", (10, "ten"))) == [[10, "ten"]]
    assert _rows(await conn.replace("tester", [10, "TEN"])) == [[10, "TEN"]]
    assert _rows(await conn.replace("tester", [11, "eleven"])) == [[11, "eleven"]]
    assert clean_tarantool.admin_eval("return box.space.tester:select()") == [
        [[10, "TEN"], [11, "eleven"]]
    ]
    assert _rows(await conn.delete("tester", 10)) == [[10, "TEN"]]
    assert _rows(await conn.delete("tester", [404])) == []
    # Deleting through a non-unique index is refused by the server.
    with pytest.raises(DatabaseError) as exc:
        await conn.delete("tester", "eleven", index="name_idx")
    assert exc.value.code == ErrorCode.ER_MORE_THAN_ONE_TUPLE
    assert _rows(await conn.delete("tester", 11, index="primary")) == [[11, "eleven"]]
    assert clean_tarantool.admin_eval("return box.space.tester:len()") == [0]


async def test_delete_by_index_id(conn: Any) -> None:
    await conn.insert("multi", (1, "a", None))
    assert _rows(await conn.delete(513, [1, "a"], index=0)) == [[1, "a", None]]


async def test_update_operations(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    await conn.insert("wide", (1, 10, 0b1100, "hello", "x", "y"))
    resp = await conn.update(
        "wide",
        1,
        [
            ("+", 1, 5),  # field numbers are 0-based in IPROTO
            ("&", 2, 0b0100),
            (":", 3, 0, 1, "J"),  # splice: at 0 remove 1 insert 'J'
            ("=", 4, "assigned"),
        ],
    )
    assert _rows(resp) == [[1, 15, 0b0100, "Jello", "assigned", "y"]]
    resp = await conn.update("wide", [1], [("-", 1, 20), ("#", 5, 1), ("!", 1, "inserted")])
    assert _rows(resp) == [[1, "inserted", -5, 0b0100, "Jello", "assigned"]]
    assert clean_tarantool.admin_eval("return box.space.wide:get(1)") == [
        [1, "inserted", -5, 4, "Jello", "assigned"]
    ]
    # Update of a missing key returns nothing.
    assert _rows(await conn.update("wide", 99, [("=", 1, 0)])) == []


async def test_update_by_field_name_and_secondary_index(conn: Any) -> None:
    await conn.insert("tester", (1, "old"))
    assert _rows(await conn.update("tester", 1, [("=", "name", "new")])) == [[1, "new"]]
    await conn.insert("multi", (7, "k", 1))
    assert _rows(await conn.update("multi", [7, "k"], [("=", 2, "v")], index="primary")) == [
        [7, "k", "v"]
    ]


async def test_upsert(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    resp = await conn.upsert("wide", (5, 100, "new"), [("+", 1, 1)])
    assert _rows(resp) == []  # upsert never returns tuples
    assert clean_tarantool.admin_eval("return box.space.wide:get(5)") == [[5, 100, "new"]]
    await conn.upsert("wide", (5, 100, "ignored"), [("+", 1, 1), ("=", 2, "updated")])
    await conn.upsert("wide", [5, 0, ""], [("+", 1, 10)], index=0)
    assert clean_tarantool.admin_eval("return box.space.wide:get(5)") == [[5, 111, "updated"]]


# -------------------------------------------------------------- call / eval


async def test_call(conn: Any) -> None:
    assert (await conn.call("echo", 1, "two", [3, 4], {"k": "v"})).data == [
        1,
        "two",
        [3, 4],
        {"k": "v"},
    ]
    assert (await conn.call("echo")).data == []
    resp = await conn.call("whoami")
    assert len(resp) == 1
    instance_id, instance_uuid, listen, ro = resp[0]
    assert instance_id == 1
    assert uuid.UUID(instance_uuid)
    assert listen == f"127.0.0.1:{conn.port}"
    assert ro is False
    # A Lua builtin through its dotted name.
    assert (await conn.call("box.info")).data[0]["status"] == "running"


async def test_call_list_argument_is_one_argument(conn: Any) -> None:
    # Each positional argument is one Lua argument; a lone list is not spread
    # (a deliberate difference from the reference connector).
    assert (await conn.call("echo", [1, 2, 3])).data == [[1, 2, 3]]
    assert (await conn.call("echo", [1, 2], 3)).data == [[1, 2], 3]
    assert (await conn.call("echo", *[1, 2, 3])).data == [1, 2, 3]


async def test_eval(conn: Any) -> None:
    assert (await conn.eval("return 1 + 1")).data == [2]
    assert (await conn.eval("return ...", 1, "a", None)).data == [1, "a", None]
    assert (await conn.eval("local a, b = ... return a * b", 6, 7)).data == [42]
    assert (await conn.eval("box.space.tester:insert{1, 'from eval'}")).data == []
    assert _rows(await conn.select("tester", 1)) == [[1, "from eval"]]


async def test_call_16(clean_tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with _connect(clean_tarantool, call_16=True) as c16:
            # CALL_16 wraps every scalar result into a tuple of its own.
            assert (await c16.call("echo", 1, "a")).data == [[1], ["a"]]
            # ... and a returned table is one tuple.
            assert (await c16.call("echo", [1, 2])).data == [[1, 2]]
        async with _connect(clean_tarantool) as c17:
            assert (await c17.call("echo", 1, "a")).data == [1, "a"]


async def test_encoding_none_returns_bytes(clean_tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with _connect(clean_tarantool, encoding=None) as c:
            await c.insert("tester", (1, "text"))
            assert _rows(await c.select("tester", 1)) == [[1, b"text"]]
            assert (await c.call("echo", "str")).data == [b"str"]
            assert (await c.eval("return 'abc'")).data == [b"abc"]
            # Names given as str still resolve.
            assert _rows(await c.select("tester", "text", index="name_idx")) == [[1, b"text"]]


async def test_fetch_schema_false(clean_tarantool: TarantoolInstance) -> None:
    from trio_tarantool import NotSupportedError

    clean_tarantool.admin("box.space.tester:insert{1, 'one'}")
    with trio.fail_after(10):
        async with _connect(clean_tarantool, fetch_schema=False) as c:
            with pytest.raises(NotSupportedError):
                await c.select("tester", 1)
            with pytest.raises(NotSupportedError):
                await c.select(512, "one", index="name_idx")
            with pytest.raises(NotSupportedError):
                await c.insert("tester", (2, "two"))
            assert _rows(await c.select(512, 1)) == [[1, "one"]]
            assert _rows(await c.select(512, "one", index=1)) == [[1, "one"]]
            assert _rows(await c.insert(512, (2, "two"))) == [[2, "two"]]
            assert (await c.call("echo", 5)).data == [5]


# ---------------------------------------------------------------- schema


async def test_schema_reload_after_create_from_other_connection(
    conn: Any, clean_tarantool: TarantoolInstance
) -> None:
    await conn.ping()
    await conn.select("tester")  # the schema is loaded now
    async with _connect(clean_tarantool) as other:
        await other.eval(
            "local s = box.schema.space.create('fresh') "
            "s:create_index('pk') s:create_index('by_two', {parts = {2, 'string'}})"
        )
    # The first connection has not seen the change; using the new name must work.
    assert _rows(await conn.insert("fresh", (1, "x"))) == [[1, "x"]]
    assert _rows(await conn.select("fresh", "x", index="by_two")) == [[1, "x"]]


async def test_schema_reload_after_new_index(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    await _fill_tester(conn)
    clean_tarantool.admin("box.space.multi:create_index('by_value', {parts = {3, 'scalar'}})")
    try:
        await conn.insert("multi", (1, "a", 99))
        assert _rows(await conn.select("multi", 99, index="by_value")) == [[1, "a", 99]]
    finally:
        clean_tarantool.admin("box.space.multi.index.by_value:drop()")


async def test_schema_reload_after_drop_from_other_connection(
    conn: Any, clean_tarantool: TarantoolInstance
) -> None:
    from trio_tarantool import SchemaError

    clean_tarantool.admin("box.schema.space.create('doomed'):create_index('pk')")
    assert _rows(await conn.insert("doomed", (1,))) == [[1]]
    async with _connect(clean_tarantool) as other:
        await other.eval("box.space.doomed:drop()")
    # The first request may still go out with the cached id (the server then
    # says "no such space"); at the latest the next one knows the name is gone.
    with pytest.raises((SchemaError, ServerError)) as first:
        await conn.select("doomed")
    if isinstance(first.value, ServerError):
        assert first.value.code == 36
    with pytest.raises(SchemaError):
        await conn.select("doomed")


# ------------------------------------------------------------------ SQL


def _sql_name(server: TarantoolBinary, name: str) -> str:
    """The name the server gives an unquoted SQL identifier written in lower case.

    2.x folds unquoted identifiers to upper case (``CREATE TABLE sql_t (id ...)``
    makes space ``SQL_T`` with field ``ID``); 3.0 stopped folding and keeps them
    as written (space ``sql_t``, field ``id``). Checked by hand with both
    binaries through box.execute on the server itself, without the client.
    """
    return name.upper() if server.version < (3, 0) else name


async def test_sql_create_insert_select(conn: Any, server_kind: TarantoolBinary) -> None:
    resp = await conn.execute(
        "CREATE TABLE sql_t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, score NUMBER)"
    )
    assert resp.affected_row_count == 1
    resp = await conn.execute(
        "INSERT INTO sql_t (name, score) VALUES (?, ?), (?, ?)", ["a", 1.5, "b", 2]
    )
    assert resp.affected_row_count == 2
    assert resp.autoincrement_ids == [1, 2]
    resp = await conn.execute(
        "INSERT INTO sql_t VALUES (:id, :name, :score)", {"id": 10, "name": "c", "score": 3}
    )
    assert resp.affected_row_count == 1
    resp = await conn.execute("SELECT id, name FROM sql_t WHERE id = :id", {":id": 10})
    assert _rows(resp) == [[10, "c"]]
    assert [m["name"] for m in resp.metadata] == [
        _sql_name(server_kind, "id"),
        _sql_name(server_kind, "name"),
    ]
    assert [m["type"] for m in resp.metadata] == ["integer", "string"]
    # 3.x refuses a full scan unless the query says SEQSCAN; 2.6 has no such word.
    seqscan = "SEQSCAN " if server_kind.version >= (3, 0) else ""
    resp = await conn.execute(
        f"SELECT name FROM {seqscan}sql_t WHERE score > ? ORDER BY id", [1]
    )
    assert _rows(resp) == [["a"], ["b"], ["c"]]
    assert resp.affected_row_count is None
    # The SQL table is a box space too.
    assert _rows(await conn.select(_sql_name(server_kind, "sql_t"), 2)) == [[2, "b", 2]]


async def test_sql_on_lua_space(conn: Any) -> None:
    await _fill_tester(conn)
    resp = await conn.execute('SELECT "name" FROM "tester" WHERE "id" >= ? ORDER BY "id"', [4])
    assert _rows(resp) == [["c"], ["d"]]
    resp = await conn.execute('UPDATE "tester" SET "name" = ? WHERE "id" < ?', ["z", 3])
    assert resp.affected_row_count == 2
    assert _rows(await conn.select("tester", "z", index="name_idx")) == [[1, "z"], [2, "z"]]


async def test_sql_prepare_execute_unprepare(conn: Any, server_kind: TarantoolBinary) -> None:
    from trio_tarantool import DatabaseError, Error

    await _fill_tester(conn)
    stmt = await conn.prepare('SELECT "id" FROM "tester" WHERE "name" = ? ORDER BY "id"')
    assert _rows(await stmt.execute(["b"])) == [[2], [3]]
    assert _rows(await stmt.execute(["d"])) == [[5]]
    named = await conn.prepare("SELECT :x + :y AS s")
    resp = await named.execute({"x": 2, "y": 3})
    assert _rows(resp) == [[5]]
    assert [m["name"] for m in resp.metadata] == [_sql_name(server_kind, "s")]
    await stmt.unprepare()
    await named.unprepare()
    with pytest.raises(Error) as exc:
        await stmt.execute(["b"])
    if isinstance(exc.value, DatabaseError):
        assert exc.value.code == ErrorCode.ER_WRONG_QUERY_ID


# ---------------------------------------------------------- decimal / uuid


async def test_decimal_uuid_round_trip(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    values = [
        (1, decimal.Decimal("0"), uuid.UUID("00000000-0000-0000-0000-000000000000")),
        (2, decimal.Decimal("-123.4500"), uuid.uuid4()),
        (3, decimal.Decimal("12345678901234567890.0987654321"), uuid.uuid4()),
        (4, decimal.Decimal("1E-10"), uuid.uuid4()),
    ]
    for row in values:
        resp = await conn.insert("typed", row)
        assert _rows(resp) == [list(row)]
    got = _rows(await conn.select("typed"))
    assert got == [list(r) for r in values]
    for _, dec, uid in got:
        assert isinstance(dec, decimal.Decimal)
        assert isinstance(uid, uuid.UUID)
    # The server stored real decimal/uuid values (cdata), not strings.
    assert clean_tarantool.admin_eval(
        "local t = box.space.typed:get(2) "
        "return require('decimal').is_decimal(t.dec), type(t.uid), tostring(t.dec), "
        "tostring(t.uid)"
    ) == [True, "cdata", "-123.4500", str(values[1][2])]
    # Values sent as call arguments come back unchanged.
    assert (await conn.call("echo", values[2][1], values[2][2])).data == [
        values[2][1],
        values[2][2],
    ]


async def test_decimal_uuid_from_lua(conn: Any) -> None:
    resp = await conn.call("decimal_uuid")
    assert resp.data == [
        decimal.Decimal("123.456"),
        uuid.UUID("f6423bdf-b49e-4913-b361-09740c5c76cb"),
    ]
    resp = await conn.eval(
        "return require('decimal').new('-0.001'), "
        "require('uuid').fromstr('00000000-0000-0000-0000-000000000000')"
    )
    assert resp.data == [decimal.Decimal("-0.001"), uuid.UUID(int=0)]
    resp = await conn.eval("local d = ... return d * 2", decimal.Decimal("1.25"))
    assert resp.data == [decimal.Decimal("2.50")]


# ------------------------------------------------------------- value types


async def test_value_types_round_trip(conn: Any) -> None:
    values: list[Any] = [
        0,
        1,
        -1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        2**32 - 1,
        2**32,
        2**63 - 1,
        2**64 - 1,
        -(2**31),
        -(2**63),
        1.5,
        -0.25,
        1e300,
        True,
        False,
        None,
        "",
        "ascii",
        "юникод ✓ 🐍",
        "x" * 70000,
        [],
        [1, [2, [3, []]]],
        {"k": "v", "nested": {"a": [1, 2]}},
    ]
    resp = await conn.call("echo", *values)
    assert resp.data == values
    # Integer map keys survive (a Lua table serialized as a map).
    resp = await conn.eval("return setmetatable({[1] = 'a', [10] = 'b'}, {__serialize = 'map'})")
    assert resp.data == [{1: "a", 10: "b"}]


async def test_unsigned_and_string_key_edges(conn: Any) -> None:
    for key in (0, 2**64 - 1, 2**32):
        await conn.insert("tester", (key, f"k{key}"))
    assert [r[0] for r in await conn.select("tester")] == [0, 2**32, 2**64 - 1]
    assert _rows(await conn.select("tester", 2**64 - 1)) == [[2**64 - 1, f"k{2**64 - 1}"]]
    with pytest.raises(DatabaseError) as exc:
        await conn.insert("tester", (-1, "negative id"))
    assert exc.value.code == ErrorCode.ER_FIELD_TYPE
