"""The name -> id cache built from `_vspace` and `_vindex` rows."""

from __future__ import annotations

from typing import Any

import pytest

from trio_tarantool._errors import Error, SchemaError
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
