"""The name -> id cache built from `_vspace` and `_vindex` rows."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit._msgpack_strategies import msgpack_values
from trio_tarantool._errors import Error, ProtocolError, SchemaError
from trio_tarantool._schema import Schema

# _vspace rows: [id, owner, name, engine, field_count, flags, format]
SPACES: list[list[Any]] = [
    [281, 1, "_vspace", "sysview", 0, {}, []],
    [512, 1, "tester", "memtx", 0, {}, [{"name": "id", "type": "unsigned"}]],
    [513, 1, "другое", "vinyl", 0, {}, []],
]
# _vindex rows: [space_id, index_id, name, type, opts, parts]
INDEXES: list[list[Any]] = [
    [281, 0, "primary", "tree", {}, [[0, "unsigned"]]],
    [512, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]],
    [512, 1, "by_name", "hash", {}, [[1, "string"]]],
    [513, 0, "pk", "tree", {}, [[0, "unsigned"]]],
]


@pytest.fixture
def schema() -> Schema:
    return Schema(80, SPACES, INDEXES)


def test_space_lookups(schema: Schema) -> None:
    assert schema.version == 80
    assert schema.space_id("tester") == 512
    assert schema.space_id("_vspace") == 281
    assert schema.space_id("другое") == 513
    assert schema.space_id("missing") is None
    assert schema.space_name(512) == "tester"
    assert schema.space_name(999) is None


def test_index_lookups(schema: Schema) -> None:
    assert schema.index_id(512, "primary") == 0
    assert schema.index_id(512, "by_name") == 1
    assert schema.index_id(281, "primary") == 0
    assert schema.index_id(513, "pk") == 0
    assert schema.index_id(513, "primary") is None  # names are per space
    assert schema.index_id(999, "primary") is None


def test_require_space(schema: Schema) -> None:
    assert schema.require_space("tester") == 512
    with pytest.raises(SchemaError) as info:
        schema.require_space("nope")
    assert isinstance(info.value, Error)
    assert "'nope'" in str(info.value)
    assert "schema version 80" in str(info.value)


def test_require_index_names_the_space_and_the_index(schema: Schema) -> None:
    assert schema.require_index(512, "by_name") == 1
    with pytest.raises(SchemaError, match=r"space 'tester' has no index named 'nope'"):
        schema.require_index(512, "nope")
    # a space unknown to the cache is named by its id
    with pytest.raises(SchemaError, match=r"space '999' has no index named 'primary'"):
        schema.require_index(999, "primary")


def test_bytes_names_from_an_encoding_none_connection() -> None:
    """Rows read with encoding=None carry bytes names: they are decoded as UTF-8."""
    schema = Schema(
        3,
        [[512, 1, b"tester", b"memtx", 0, {}, []], [513, 1, "другое".encode(), b"memtx", 0, {}, []]],
        [[512, 0, b"primary", b"tree", {}, []], [512, 1, b"sk", b"tree", {}, []]],
    )
    assert schema.space_id("tester") == 512
    assert schema.space_id("другое") == 513
    assert schema.space_name(512) == "tester"
    assert schema.index_id(512, "sk") == 1


def test_bytes_names_in_lookups(schema: Schema) -> None:
    """An application on an encoding=None connection may name spaces with bytes
    (regression: b'tester' was never found)."""
    assert schema.space_id(b"tester") == 512
    assert schema.space_id("другое".encode()) == 513
    assert schema.require_space(b"tester") == 512
    assert schema.index_id(512, b"by_name") == 1
    assert schema.require_index(512, b"primary") == 0
    with pytest.raises(SchemaError, match="nope"):
        schema.require_space(b"nope")


def test_rows_given_as_tuples_and_ids_as_other_ints() -> None:
    """Rows are any sequences; ids are normalised to int."""
    schema = Schema(1, iter([(600, 1, "t")]), iter([(600, 3, "i")]))
    assert schema.space_id("t") == 600
    assert schema.index_id(600, "i") == 3


def test_empty_schema() -> None:
    schema = Schema(0, [], [])
    assert schema.space_id("tester") is None
    with pytest.raises(SchemaError):
        schema.require_space("tester")


def test_repr(schema: Schema) -> None:
    assert repr(schema) == "<Schema version=80 spaces=3>"


# -- malformed rows: ProtocolError naming the row, never a builtin (issue 8, item 10) ----


@pytest.mark.parametrize(
    ("spaces", "indexes", "match"),
    [
        (["tester"], [], r"_vspace: row 0 \('tester'\) is a string, expected an array \[id, owner, name"),
        ([[512, 1, "ok"], b"x"], [], r"_vspace: row 1 \(b'x'\) is binary"),
        ([{0: 512}], [], r"_vspace: row 0 .* is a map"),
        ([512], [], r"_vspace: row 0 \(512\) is an integer"),
        ([None], [], r"row 0 \(None\) is nil"),
        ([[512, 1]], [], r"_vspace: row 0 \(\[512, 1\]\) has 2 field\(s\), expected at least 3"),
        ([["512", 1, "t"]], [], r"_vspace: row 0 .* field 0 is a string, expected an id"),
        ([[-1, 1, "t"]], [], r"field 0 is an integer, expected an id"),
        ([[True, 1, "t"]], [], r"field 0 is a boolean"),
        ([[512, 1, 7]], [], r"_vspace: row 0 .* field 2 is an integer, expected a name \(a string\)"),
        ([[512, 1, ["t"]]], [], r"field 2 is an array, expected a name"),
        ([], [[512, "0", "pk"]], r"_vindex: row 0 .* field 1 is a string, expected an id .*\[space_id, index_id"),
        ([], [[512, 0]], r"_vindex: row 0 .* has 2 field\(s\)"),
        ([], [[512, 0, "pk"], "pk"], r"_vindex: row 1 \('pk'\) is a string"),
        ([], [[512.0, 0, "pk"]], r"_vindex: row 0 .* field 0 is a float"),
        ([], [[512, 0, None]], r"_vindex: row 0 .* field 2 is nil"),
        ({512: [512, 1, "t"]}, [], r"reply to SELECT from _vspace: DATA is a map, expected an array of rows"),
        ([], 5, r"_vindex: DATA is an integer"),
        ("rows", [], r"_vspace: DATA is a string"),
    ],
)
def test_malformed_rows_raise_protocol_error(spaces: Any, indexes: Any, match: str) -> None:
    """Regression: these raised ValueError (int('t')), IndexError, TypeError or
    KeyError, or (a string row, a name that is a number) built a wrong cache."""
    with pytest.raises(ProtocolError, match=match) as info:
        Schema(5, spaces, indexes)
    assert isinstance(info.value, Error)
    assert info.value.may_have_executed is True


def test_a_long_row_is_cut_in_the_message() -> None:
    with pytest.raises(ProtocolError) as info:
        Schema(1, [[b"x" * 100_000, 2, "t"]], [])
    assert len(str(info.value)) < 300


@settings(max_examples=500, deadline=None)
@given(st.lists(msgpack_values | st.lists(msgpack_values, max_size=5), max_size=4) | msgpack_values,
       st.lists(msgpack_values | st.lists(msgpack_values, max_size=5), max_size=4) | msgpack_values)
def test_any_rows_give_a_schema_or_protocol_error(spaces: Any, indexes: Any) -> None:
    try:
        schema = Schema(1, spaces, indexes)
    except ProtocolError:
        return
    repr(schema)
    assert all(type(i) is int for i in schema._space_names)
