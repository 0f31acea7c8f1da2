"""Tests of crud request/response shaping (``trio_tarantool._crud``) with fake responses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from trio_tarantool._crud import (
    CRUD_HINT,
    CrudError,
    CrudResult,
    PoolCrudMixin,
    unflatten_rows,
)
from trio_tarantool._errors import (
    ConfigurationError,
    CrudModuleError,
    CrudModuleManyError,
    DatabaseError,
    ErrorCode,
    NetworkError,
)
from trio_tarantool._strategy import Mode


@dataclass
class FakeResponse:
    data: list[Any]


@dataclass
class FakeCrud(PoolCrudMixin):
    """Answers every crud call with the next scripted reply and records the call."""

    replies: list[Any] = field(default_factory=list)
    calls: list[tuple[str, tuple[Any, ...], Mode | None]] = field(default_factory=list)

    async def _crud_call_in(self, func_name: str, args: tuple[Any, ...], mode: Mode | None) -> FakeResponse:
        self.calls.append((func_name, args, mode))
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return FakeResponse(reply)


META = [{"name": "id", "type": "unsigned"}, {"name": "name", "type": "string"}]
RESULT = {"metadata": META, "rows": [[1, "a"]]}
ERR = {"class_name": "InsertError", "err": "Duplicate key exists", "str": "InsertError: Duplicate key exists"}

# (method, args, kwargs, expected function, expected call args)
REQUESTS: list[tuple[str, tuple[Any, ...], dict[str, Any], str, tuple[Any, ...]]] = [
    ("crud_insert", ("s", [1, "a"]), {}, "crud.insert", ("s", [1, "a"], {})),
    ("crud_insert_object", ("s", {"id": 1}), {"opts": {"timeout": 1}}, "crud.insert_object", ("s", {"id": 1}, {"timeout": 1})),
    ("crud_get", ("s", 1), {}, "crud.get", ("s", 1, {})),
    ("crud_update", ("s", 1), {}, "crud.update", ("s", 1, [], {})),
    ("crud_update", ("s", 1, [["=", "name", "b"]]), {}, "crud.update", ("s", 1, [["=", "name", "b"]], {})),
    ("crud_delete", ("s", 1), {}, "crud.delete", ("s", 1, {})),
    ("crud_replace", ("s", (1, "a")), {}, "crud.replace", ("s", (1, "a"), {})),
    ("crud_replace_object", ("s", {"id": 1}), {}, "crud.replace_object", ("s", {"id": 1}, {})),
    ("crud_upsert", ("s", [1, "a"], [["+", 1, 1]]), {}, "crud.upsert", ("s", [1, "a"], [["+", 1, 1]], {})),
    ("crud_upsert_object", ("s", {"id": 1}), {}, "crud.upsert_object", ("s", {"id": 1}, [], {})),
    ("crud_select", ("s",), {}, "crud.select", ("s", [], {})),
    ("crud_select", ("s", [[">=", "id", 1]], {"first": 2}), {}, "crud.select", ("s", [[">=", "id", 1]], {"first": 2})),
    ("crud_min", ("s", "primary"), {}, "crud.min", ("s", "primary", {})),
    ("crud_max", ("s", "primary"), {}, "crud.max", ("s", "primary", {})),
]

#: Each batch method with a function making its n-th batch item (a tuple, an
#: object, or a [tuple or object, operations] pair: what the method accepts).
MANY: list[tuple[str, str, Any]] = [
    ("crud_insert_many", "crud.insert_many", lambda n: [n, "a"]),
    ("crud_insert_object_many", "crud.insert_object_many", lambda n: {"id": n}),
    ("crud_replace_many", "crud.replace_many", lambda n: [n, "a"]),
    ("crud_replace_object_many", "crud.replace_object_many", lambda n: {"id": n}),
    ("crud_upsert_many", "crud.upsert_many", lambda n: [[n, "a"], [["=", 2, "b"]]]),
    ("crud_upsert_object_many", "crud.upsert_object_many", lambda n: [{"id": n}, [["=", "name", "b"]]]),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "func", "call_args"), REQUESTS)
async def test_single_success(method: str, args: tuple[Any, ...], kwargs: dict[str, Any], func: str, call_args: tuple[Any, ...]) -> None:
    crud = FakeCrud(replies=[[RESULT, None]])
    result = await getattr(crud, method)(*args, **kwargs, mode=Mode.RO)
    assert crud.calls == [(func, call_args, Mode.RO)]
    assert isinstance(result, CrudResult)
    assert result.rows == [[1, "a"]]
    assert result.metadata == META
    assert result == CrudResult(RESULT)


@pytest.mark.parametrize(("method", "args", "kwargs", "func", "call_args"), REQUESTS)
async def test_single_error(method: str, args: tuple[Any, ...], kwargs: dict[str, Any], func: str, call_args: tuple[Any, ...]) -> None:
    crud = FakeCrud(replies=[[None, ERR]])
    with pytest.raises(CrudModuleError) as info:
        await getattr(crud, method)(*args, **kwargs)
    err = info.value.extra_info_error
    assert isinstance(err, CrudError)
    assert err.class_name == "InsertError"
    assert err.err == "Duplicate key exists"
    assert "Duplicate key exists" in str(info.value)
    assert crud.calls[0][2] == Mode.ANY  # the default mode


@pytest.mark.parametrize(("method", "func", "item"), MANY)
async def test_many_success_partial_and_total_failure(method: str, func: str, item: Any) -> None:
    crud = FakeCrud(replies=[[RESULT, None], [RESULT, [ERR, ERR]], [None, [ERR]]])
    result = await getattr(crud, method)("s", [item(1)])
    assert result == CrudResult(RESULT)
    assert crud.calls[0] == (func, ("s", [item(1)], {}), Mode.ANY)

    with pytest.raises(CrudModuleManyError) as info:
        await getattr(crud, method)("s", [item(1), item(2), item(3)])
    assert info.value.success_list == CrudResult(RESULT)
    assert [e.err for e in info.value.errors_list] == ["Duplicate key exists"] * 2

    with pytest.raises(CrudModuleManyError) as info:
        await getattr(crud, method)("s", [item(1)])
    assert info.value.success_list is None
    assert len(info.value.errors_list) == 1


async def test_plain_valued_functions() -> None:
    crud = FakeCrud(replies=[[3, None], [7], [True], [{"s1": {"status": "running"}}]])
    assert await crud.crud_count("s", [["==", "id", 1]]) == 3
    assert await crud.crud_len("s") == 7
    assert await crud.crud_truncate("s") is True
    assert await crud.crud_storage_info() == {"s1": {"status": "running"}}
    assert [c[0:2] for c in crud.calls] == [
        ("crud.count", ("s", [["==", "id", 1]], {})),
        ("crud.len", ("s", {})),
        ("crud.truncate", ("s", {})),
        ("crud.storage_info", ({},)),
    ]


@pytest.mark.parametrize("method", ["crud_count", "crud_len", "crud_truncate"])
async def test_plain_valued_errors(method: str) -> None:
    crud = FakeCrud(replies=[[None, ERR]])
    with pytest.raises(CrudModuleError, match="Duplicate key"):
        await getattr(crud, method)("s")


async def test_storage_info_error() -> None:
    crud = FakeCrud(replies=[[None, ERR]])
    with pytest.raises(CrudModuleError):
        await crud.crud_storage_info()


async def test_stats() -> None:
    crud = FakeCrud(replies=[[{"insert": {"ok": {"count": 1}}}], [{}]])
    stats = await crud.crud_stats("s", mode=Mode.PREFER_RO)
    assert isinstance(stats, CrudResult)
    assert stats.insert == {"ok": {"count": 1}}  # type: ignore[attr-defined]
    assert crud.calls[0] == ("crud.stats", ("s",), Mode.PREFER_RO)
    assert await crud.crud_stats() is None
    assert crud.calls[1] == ("crud.stats", (None,), Mode.ANY)


async def test_bytes_keys_are_decoded() -> None:
    crud = FakeCrud(replies=[[{b"rows": [[1]], b"metadata": []}, None]])
    result = await crud.crud_get("s", 1)
    assert result.rows == [[1]]
    assert result.fields == {"rows": [[1]], "metadata": []}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (ErrorCode.ER_NO_SUCH_PROC, "Procedure 'crud.insert' is not defined"),
        (ErrorCode.ER_ACCESS_DENIED, "Execute access to function 'crud.insert' is denied for user 'guest'"),
    ],
)
async def test_hint_for_missing_module_or_rights(code: int, message: str) -> None:
    crud = FakeCrud(replies=[DatabaseError(code, message)])
    with pytest.raises(DatabaseError) as info:
        await crud.crud_insert("s", [1])
    assert info.value.code == code
    assert info.value.message == message + CRUD_HINT
    assert "crud module" in str(info.value)
    assert isinstance(info.value.__cause__, DatabaseError)


async def test_other_errors_pass_unchanged() -> None:
    original = DatabaseError(ErrorCode.ER_PROC_LUA, "boom")
    network = NetworkError("lost", may_have_executed=False)
    crud = FakeCrud(replies=[original, network])
    with pytest.raises(DatabaseError) as info:
        await crud.crud_get("s", 1)
    assert info.value is original
    with pytest.raises(NetworkError) as info2:
        await crud.crud_get("s", 1)
    assert info2.value is network


async def test_argument_types_are_checked_before_sending() -> None:
    crud = FakeCrud()
    with pytest.raises(TypeError, match="space_name"):  # ConfigurationError is a TypeError too
        await crud.crud_insert(1, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="values"):
        await crud.crud_insert_object("s", [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="opts"):
        await crud.crud_get("s", 1, opts=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conditions"):
        await crud.crud_select("s", "id > 1")
    assert crud.calls == []


#: (method, args, what the message must name): each is refused before any call.
BAD_CRUD_ARGS: list[tuple[str, tuple[Any, ...], str]] = [
    # a tuple is a list or tuple: a str, bytes or dict would be spread into fields
    ("crud_insert", ("s", "q7z"), r"crud_insert\(\): values must be a list or tuple \(one tuple\), got str 'q7z'"),
    ("crud_insert", ("s", b"xyz"), r"crud_insert\(\): values .*got bytes"),
    ("crud_replace", ("s", {"dk": 1}), r"crud_replace\(\): values .*got dict"),
    ("crud_upsert", ("s", "q7z", []), r"crud_upsert\(\): values .*got str"),
    # an object is a mapping
    ("crud_insert_object", ("s", [1, 2]), r"crud_insert_object\(\): values must be a dict"),
    ("crud_replace_object", ("s", "a"), r"crud_replace_object\(\): values must be a dict"),
    ("crud_upsert_object", ("s", (1,), []), r"crud_upsert_object\(\): values must be a dict"),
    # keys: a scalar or a list/tuple, never a map or a set
    ("crud_get", ("s", {"id": 1}), r"crud_get\(\): key must be a scalar or a list/tuple"),
    ("crud_delete", ("s", {1, 2}), r"crud_delete\(\): key .*got set"),
    ("crud_update", ("s", {"id": 1}, []), r"crud_update\(\): key"),
    # operations: [op, field, arg...] with a str op
    ("crud_update", ("s", 1, "=,name,b"), r"crud_update\(\): operations must be a list or tuple"),
    ("crud_update", ("s", 1, [[1, "name", "b"]]), r"crud_update\(\): operations\[0\]"),
    ("crud_upsert", ("s", [1], ["="]), r"crud_upsert\(\): operations\[0\]"),
    # batches: every item checked
    ("crud_insert_many", ("s", [[1], "q7z"]), r"crud_insert_many\(\): values\[1\] must be a list or tuple"),
    ("crud_replace_many", ("s", [{"id": 1}]), r"crud_replace_many\(\): values\[0\]"),
    ("crud_insert_object_many", ("s", [{"id": 1}, [2]]), r"crud_insert_object_many\(\): values\[1\] must be a dict"),
    ("crud_replace_object_many", ("s", "ab"), r"crud_replace_object_many\(\): values must be a list or tuple"),
    ("crud_upsert_many", ("s", [[[1], [["=", 2, 3]]], [[1]]]), r"crud_upsert_many\(\): values_operation\[1\] must be a pair"),
    ("crud_upsert_many", ("s", [["q7z", []]]), r"crud_upsert_many\(\): values_operation\[0\]\[0\]"),
    ("crud_upsert_many", ("s", [[[1], [["=", 2]], "x"]]), r"values_operation\[0\] must be a pair"),
    ("crud_upsert_many", ("s", [[[1], ["="]]]), r"crud_upsert_many\(\): values_operation\[0\]\[1\]\[0\]"),
    ("crud_upsert_object_many", ("s", [[[1], []]]), r"crud_upsert_object_many\(\): values_operation\[0\]\[0\] must be a dict"),
    # an index by name or id
    ("crud_min", ("s", 1.5), r"crud_min\(\): index_name must be a name \(str\) or an id \(int\)"),
    ("crud_max", ("s", None), r"crud_max\(\): index_name"),
    ("crud_count", ("s", {"id": 1}), r"crud_count\(\): conditions must be a list or tuple"),
]


@pytest.mark.parametrize(("method", "args", "match"), BAD_CRUD_ARGS)
async def test_bad_crud_arguments_raise_configuration_error_unsent(method: str, args: tuple[Any, ...],
                                                                   match: str) -> None:
    crud = FakeCrud()
    with pytest.raises(ConfigurationError, match=match):
        await getattr(crud, method)(*args)
    assert crud.calls == []


async def test_crud_accepts_namedtuples_and_index_ids() -> None:
    """A tuple subclass is a tuple; an index may be given by id."""
    from collections import namedtuple
    Row = namedtuple("Row", "id name")
    crud = FakeCrud(replies=[[RESULT, None], [RESULT, None]])
    await crud.crud_insert("s", Row(1, "a"))
    await crud.crud_min("s", 0)
    assert [c[1][1] for c in crud.calls] == [Row(1, "a"), 0]


def test_unflatten_rows_refuses_metadata_without_names() -> None:
    with pytest.raises(ConfigurationError, match="metadata"):
        unflatten_rows([[1]], [{"type": "unsigned"}])


async def test_non_map_result_is_reported() -> None:
    crud = FakeCrud(replies=[[42, None]])
    with pytest.raises(TypeError, match="map was expected"):
        await crud.crud_get("s", 1)


def test_unflatten_rows_is_local() -> None:
    crud = FakeCrud()
    rows = [[1, "a"], [2, "b", ]]
    assert crud.crud_unflatten_rows(rows, META, mode=Mode.RW) == [
        {"id": 1, "name": "a"}, {"id": 2, "name": "b"},
    ]
    assert crud.calls == []
    with pytest.raises(ConfigurationError, match=r"rows\[0\] has 3 fields"):
        unflatten_rows([[1, 2, 3]], META)


def test_connection_crud_signatures_have_no_mode_and_the_pool_adds_only_mode() -> None:
    """The reference Connection's crud_* take no mode; the pool's take mode=Mode.ANY too."""
    import inspect

    from trio_tarantool import Connection, ConnectionPool

    names = sorted(n for n in dir(Connection) if n.startswith("crud_"))
    assert len(names) == 24  # 23 calls + crud_unflatten_rows
    for name in names:
        conn_params = inspect.signature(getattr(Connection, name)).parameters
        pool_params = dict(inspect.signature(getattr(ConnectionPool, name)).parameters)
        assert "mode" not in conn_params, name
        mode = pool_params.pop("mode")
        assert mode.kind is inspect.Parameter.KEYWORD_ONLY and mode.default is Mode.ANY, name
        assert list(pool_params) == list(conn_params), name
        assert getattr(ConnectionPool, name).__doc__, name


def test_crud_result_rows_as_dicts() -> None:
    result = CrudResult(RESULT)
    assert result.as_dicts() == [{"id": 1, "name": "a"}]
    assert CrudResult({"metadata": META}).as_dicts() == []


@pytest.mark.parametrize(("method", "args", "kwargs", "func", "call_args"), REQUESTS)
async def test_noreturn_success_is_an_empty_result(method: str, args: tuple[Any, ...], kwargs: dict[str, Any], func: str, call_args: tuple[Any, ...]) -> None:
    """crud answers ``nil, nil`` to a call with ``noreturn = true`` (the real crud
    1.7.5 does, tests/real/test_sharded_crud.py): a success, not a malformed reply."""
    crud = FakeCrud(replies=[[None, None]])
    result = await getattr(crud, method)(*args, **kwargs)
    assert isinstance(result, CrudResult) and result.fields == {}
