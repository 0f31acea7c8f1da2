"""The memtx-like engine: iterator order, update ops, errors (as Tarantool 2.6).

Expected values were taken from a real 2.6.0 server running the same
operations (Lua field numbers are 1-based; these use IPROTO's 0-based ones).
"""

from __future__ import annotations

from typing import Any

import pytest

from trio_tarantool._iproto._constants import Iterator as It
from trio_tarantool.sim._spaces import BoxError, Database, Space


def _space() -> Space:
    db = Database()
    sp = db.create_space("x", [("id", "unsigned"), ("name", "string"), ("n", "unsigned", True)])
    sp.create_index("primary", [("id", "unsigned")])
    sp.create_index("byname", [("name", "string")], unique=False)
    return sp


def _err(fn: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(BoxError) as info:
        fn(*args)
    return info.value.code, info.value.message


def test_insert_errors_match_tarantool() -> None:
    sp = _space()
    sp.insert([1, "a", 5])
    assert _err(sp.insert, [1, "b"]) == (3, "Duplicate key exists in unique index 'primary' in space 'x'")
    assert _err(sp.insert, ["z", "b"]) == (23, "Tuple field 1 type does not match one required by operation: expected unsigned")
    assert _err(sp.insert, [2, 3]) == (23, "Tuple field 2 type does not match one required by operation: expected string")
    assert _err(sp.insert, [2]) == (39, "Tuple field 2 required by space format is missing")
    assert _err(sp.select, 0, It.EQ, ["a"], 0, 10) == (18, "Supplied key type of part 0 does not match index part type: expected unsigned")
    assert _err(sp.select, 0, It.EQ, [1, 2], 0, 10) == (31, "Invalid key part count (expected [0..1], got 2)")
    assert _err(sp.select, 7, It.EQ, [], 0, 10) == (35, "No index #7 is defined in space 'x'")
    assert _err(sp.delete, 1, ["a"]) == (41, "Get() doesn't support partial keys and non-unique indexes")
    assert _err(sp.delete, 0, []) == (19, "Invalid key part count in an exact match (expected 1, got 0)")


def test_iterators_follow_tree_semantics() -> None:
    sp = _space()
    for i in (1, 3, 5):
        sp.insert([i, "abc"[i // 2]])

    def ids(it: int, key: list[Any], offset: int = 0, limit: int = 100, index: int = 0) -> list[int]:
        return [t[0] for t in sp.select(index, it, key, offset, limit)]

    assert ids(It.ALL, [3]) == [3, 5]  # a TREE index treats ALL with a key as GE
    assert ids(It.EQ, []) == [1, 3, 5]
    assert ids(It.LT, []) == [5, 3, 1]
    assert ids(It.REQ, [3]) == [3]
    assert ids(It.GT, [3]) == [5]
    assert ids(It.LE, [4]) == [3, 1]
    assert ids(It.LT, [3]) == [1]
    assert ids(It.GE, [2]) == [3, 5]
    assert ids(It.EQ, [4]) == []
    assert ids(It.GE, [0], offset=1, limit=1) == [3]
    assert ids(It.ALL, [], limit=0) == []
    assert _err(sp.select, 0, It.BITS_ALL_SET, [], 0, 10) == (
        112, "Index 'primary' (TREE) of space 'x' (memtx) does not support requested iterator type")


def test_non_unique_index_orders_equal_keys_by_primary_key_and_partial_keys() -> None:
    db = Database()
    sp = db.create_space("t", [("a", "unsigned"), ("b", "string"), ("c", "unsigned")])
    sp.create_index("primary", [("a", "unsigned")])
    sp.create_index("bc", [("b", "string"), ("c", "unsigned")], unique=False)
    for a, b, c in [(5, "x", 1), (2, "x", 1), (9, "x", 0), (1, "y", 3), (7, "w", 2)]:
        sp.insert([a, b, c])

    def ids(it: int, key: list[Any]) -> list[int]:
        return [t[0] for t in sp.select(1, it, key, 0, 100)]

    assert ids(It.EQ, ["x"]) == [9, 2, 5]  # partial key; ties by primary key
    assert ids(It.EQ, ["x", 1]) == [2, 5]
    assert ids(It.REQ, ["x"]) == [5, 2, 9]
    assert ids(It.GT, ["w"]) == [9, 2, 5, 1]
    assert ids(It.LE, ["x"]) == [5, 2, 9, 7]
    assert ids(It.LT, ["x", 1]) == [9, 7]


def test_update_operations_match_tarantool() -> None:
    db = Database()
    sp = db.create_space("x", [("id", "unsigned"), ("name", "string")])
    sp.create_index("primary", [("id", "unsigned")])
    sp.insert([1, "a", 5])
    assert sp.update(0, [1], [["+", 2, 7]])[0] == [1, "a", 12]
    assert sp.update(0, [1], [["|", 2, 2]])[0] == [1, "a", 14]
    assert sp.update(0, [1], [[":", 1, 0, 0, "zz"]])[0] == [1, "zza", 14]
    assert sp.update(0, [1], [["#", 2, 1]])[0] == [1, "zza"]
    assert sp.update(0, [1], [["!", 2, 9]])[0] == [1, "zza", 9]
    assert sp.update(0, [1], [["=", "name", "q"]])[0] == [1, "q", 9]
    assert sp.update(0, [1], [["=", -1, 4]])[0] == [1, "q", 4]
    assert sp.update(0, [1], [["=", 3, "r"]])[0] == [1, "q", 4, "r"]  # = at len appends
    assert sp.update(0, [1], [["!", -1, "E"]])[0] == [1, "q", 4, "r", "E"]
    assert sp.update(0, [1], [["#", 3, 5]])[0] == [1, "q", 4]  # deletes to the end
    assert sp.update(0, [1], [["-", 2, 5]])[0] == [1, "q", -1]
    assert sp.update(0, [1], [["+", 2, 1.5]])[0] == [1, "q", 0.5]
    assert sp.update(0, [1], [["=", 2, 1], ["=", 2, 2]])[0] == [1, "q", 2]
    assert sp.update(0, [1], [[":", 1, -1, 1, "Z"]])[0] == [1, "qZ", 2]
    assert sp.update(0, [7], [["=", 1, "nobody"]]) == (None, None)
    typed = _space()
    typed.insert([1, "a", 5])
    assert _err(typed.update, 0, [1], [["-", 2, 6]]) == (23, "Tuple field 3 type does not match one required by operation: expected unsigned")


def test_update_errors_match_tarantool() -> None:
    sp = _space()
    sp.insert([1, "a", 5])
    assert _err(sp.update, 0, [1], [["=", 0, 7]]) == (94, "Attempt to modify a tuple field which is part of index 'primary' in space 'x'")
    assert _err(sp.update, 0, [1], [["?", 1, 7]]) == (28, 'Unknown UPDATE operation #1: "?"')
    assert _err(sp.update, 0, [1], [["+", 1, 7]]) == (26, "Argument type in operation '+' on field 2 does not match field type: expected a number")
    assert _err(sp.update, 0, [1], [["=", 9, 7]]) == (37, "Field 10 was not found in the tuple")
    assert _err(sp.update, 0, [1], [["&", 2, -1]]) == (26, "Argument type in operation '&' on field 3 does not match field type: expected a positive integer")
    assert _err(sp.update, 0, [1], [["#", 1, 0]]) == (29, "Field 2 UPDATE error: cannot delete 0 fields")
    sp.update(0, [1], [["=", 2, (1 << 64) - 1]])
    assert _err(sp.update, 0, [1], [["+", 2, 1]]) == (95, "Integer overflow when performing '+' operation on field 3")
    assert _err(sp.update, 1, ["a"], [["=", 2, 1]]) == (41, "Get() doesn't support partial keys and non-unique indexes")
    assert sp.select(0, It.EQ, [1], 0, 10) == [[1, "a", (1 << 64) - 1]]  # failed updates changed nothing


def test_replace_upsert_delete_and_secondary_uniqueness() -> None:
    db = Database()
    sp = db.create_space("u", [("id", "unsigned"), ("email", "string")])
    sp.create_index("primary", [("id", "unsigned")])
    sp.create_index("email", [("email", "string")])
    sp.insert([1, "a@x"])
    sp.insert([2, "b@x"])
    assert _err(sp.replace, [3, "a@x"]) == (3, "Duplicate key exists in unique index 'email' in space 'u'")
    _, old = sp.replace([1, "c@x"])
    assert old == [1, "a@x"] and sp.select(1, It.EQ, ["a@x"], 0, 9) == []
    sp.upsert([5, "e@x"], [["=", 1, "ignored"]])
    assert sp.select(0, It.EQ, [5], 0, 9) == [[5, "e@x"]]
    sp.upsert([5, "e@x"], [["=", 1, "f@x"]])
    assert sp.select(0, It.EQ, [5], 0, 9) == [[5, "f@x"]]
    sp.upsert([5, "zzz"], [["+", 1, 1]])  # failing op on the stored tuple: skipped
    assert sp.select(0, It.EQ, [5], 0, 9) == [[5, "f@x"]]
    assert sp.delete(1, ["b@x"]) == [2, "b@x"]
    assert sp.delete(0, [2]) is None
    assert [t[0] for t in sp.select(0, It.ALL, [], 0, 9)] == [1, 5]


def test_double_update_of_the_same_field_follows_26() -> None:
    db = Database()
    sp = db.create_space("x", [])
    sp.create_index("primary", [(0, "unsigned")])
    sp.insert([1, "a", 5, 6])

    def upd(ops: list[Any]) -> Any:
        sp.replace([1, "a", 5, 6])
        try:
            return sp.update(0, [1], ops)[0]
        except BoxError as exc:
            return (exc.code, exc.message)

    double = (29, "Field 3 UPDATE error: double update of the same field")
    assert upd([["=", 2, 1], ["=", 2, 2]]) == [1, "a", 2, 6]
    assert upd([["+", 2, 1], ["+", 2, 2]]) == double
    assert upd([["=", 2, 1], ["+", 2, 2]]) == double
    assert upd([["+", 2, 1], ["=", 2, 2]]) == [1, "a", 2, 6]
    assert upd([["+", 3, 1], ["+", -1, 2]]) == (29, "Field 4 UPDATE error: double update of the same field")
    assert upd([["#", 2, 1], ["=", 2, 2]]) == [1, "a", 2]
    assert upd([["!", 2, 1], ["!", 2, 2]]) == [1, "a", 2, 1, 5, 6]
    assert upd([["!", 2, 1], ["=", 2, 2]]) == [1, "a", 2, 5, 6]
    assert upd([[":", 1, 1, 0, "x"], [":", 1, 1, 0, "y"]]) == (29, "Field 2 UPDATE error: double update of the same field")
    assert upd([["=", 4, 1], ["=", 4, 2]]) == [1, "a", 5, 6, 2]
    assert upd([["+", 2, 1], ["+", 3, 2]]) == [1, "a", 6, 8]
    assert upd([["!", 2, 1], ["+", 2, 2]]) == [1, "a", 3, 5, 6]
    assert upd([["=", 4, 1], ["+", 4, 2]]) == [1, "a", 5, 6, 3]
    assert upd([["=", 2, 1], ["!", 2, 7], ["+", 3, 2]]) == (29, "Field 4 UPDATE error: double update of the same field")
    assert upd([["+", 2, 1], ["#", 1, 1], ["+", 1, 2]]) == (29, "Field 2 UPDATE error: double update of the same field")
