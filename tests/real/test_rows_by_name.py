"""Rows by name: Response.rows(as_dict=True) from the space format, on both servers."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.real._servers import TarantoolInstance, connect_to


async def test_select_and_dml_rows_by_field_name(conn: Any) -> None:
    inserted = await conn.insert("tester", [1, "Ada"])
    assert inserted.rows(as_dict=True) == [{"id": 1, "name": "Ada"}]
    await conn.replace("tester", [2, "Grace", "extra", 42])  # beyond the format: by position
    by_name = await conn.select("tester", [], iterator="ALL")
    assert by_name.rows(as_dict=True) == [
        {"id": 1, "name": "Ada"},
        {"id": 2, "name": "Grace", 2: "extra", 3: 42},
    ]
    assert by_name.rows() == [[1, "Ada"], [2, "Grace", "extra", 42]]
    space_id = conn.schema.space_id("tester")
    by_id = await conn.select(space_id, 1)
    assert by_id.rows(as_dict=True) == [{"id": 1, "name": "Ada"}]
    updated = await conn.update("tester", 1, [["=", "name", "Ada L."]])
    assert updated.rows(as_dict=True) == [{"id": 1, "name": "Ada L."}]
    deleted = await conn.delete(space_id, 2)
    assert deleted.rows(as_dict=True)[0]["name"] == "Grace"


async def test_rows_by_name_need_a_space_and_a_schema(clean_tarantool: TarantoolInstance, conn: Any) -> None:
    with pytest.raises(tt.SchemaError, match="no space format"):
        (await conn.call("box.info")).rows(as_dict=True)
    with trio.fail_after(10):
        async with connect_to(clean_tarantool, fetch_schema=False) as bare:
            space_id = (await conn.reload_schema()).space_id("tester")
            response = await bare.select(space_id, [])
            with pytest.raises(tt.SchemaError, match="no space format"):
                response.rows(as_dict=True)
