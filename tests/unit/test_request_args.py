"""Argument checks of the request builders (``trio_tarantool._request``): no I/O.

Every Connection and pool method builds its request through these builders
first, so a bad argument refused here is refused before anything is sent, in
the caller. Each builder is tried with each kind of wrong argument; hypothesis
then shows that *any* value that is not a list or tuple is refused as a tuple,
and that any list or tuple is accepted and sent field for field.
"""

from __future__ import annotations

import decimal
import enum
import uuid
from collections import namedtuple
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_tarantool import ConfigurationError, Error
from trio_tarantool import _request as rq
from trio_tarantool._iproto import Encoder
from trio_tarantool._iproto import _constants as C
from trio_tarantool._iproto._ext import ext_hook


def body_of(req: rq.Request, space_id: int = 512, index_id: int = 0) -> dict[int, Any]:
    """The body the connection would send (resolving names to these ids)."""
    if req.body is not None:
        return req.body
    assert req.build is not None
    return req.build(space_id, index_id)


def sent(req: rq.Request) -> dict[int, Any]:
    """The body as the server would decode it from the framed packet."""
    packet = Encoder().frame(req.type, 1, body_of(req))
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, ext_hook=ext_hook)
    unpacker.feed(packet[5:])
    _header, body = list(unpacker)
    assert isinstance(body, dict)
    return body


def push(data: Any, ctx: Any) -> None:
    """A valid on_push callback."""


# (builder, args, kwargs, regex the message must match). Every entry is
# refused with ConfigurationError; the regex names the method and the argument.
BAD: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    # -- item 5: a tuple is a list or a tuple, nothing that merely iterates
    ("replace", ("s", "q7z"), {}, r"^replace\(\): values must be a list or tuple \(one tuple\), got str 'q7z'$"),
    ("replace", (512, b"xyz"), {}, r"^replace\(\): values must be .*, got bytes b'xyz'$"),
    ("replace", ("s", {"dk": 1}), {}, r"^replace\(\): values .*got dict \{'dk': 1\}$"),
    ("insert", ("s", "q7z"), {}, r"^insert\(\): values must be a list or tuple"),
    ("insert", (512, bytearray(b"ab")), {}, r"^insert\(\): values .*got bytearray"),
    ("insert", ("s", {1, 2}), {}, r"^insert\(\): values .*got set"),
    ("insert", ("s", frozenset()), {}, r"^insert\(\): values .*got frozenset"),
    ("insert", ("s", iter([1, 2])), {}, r"^insert\(\): values .*got list_iterator"),
    ("insert", ("s", range(3)), {}, r"^insert\(\): values .*got range"),
    ("insert", ("s", None), {}, r"^insert\(\): values .*got NoneType"),
    ("insert", ("s", 7), {}, r"^insert\(\): values .*got int 7"),
    ("upsert", ("s", "q7z", []), {}, r"^upsert\(\): tuple_value must be a list or tuple"),
    ("upsert", (512, {"a": 1}, []), {}, r"^upsert\(\): tuple_value .*got dict"),
    # -- operations: a list/tuple of [op, field, arg...] whose op is a str
    ("update", ("s", 1, "=,1,x"), {}, r"^update\(\): op_list must be a list or tuple of operations"),
    ("update", ("s", 1, {"=": 1}), {}, r"^update\(\): op_list must be"),
    ("update", ("s", 1, ["="]), {}, r"^update\(\): op_list\[0\]: each update operation"),
    ("update", ("s", 1, [["=", 1, "x"], ("=",)]), {}, r"^update\(\): op_list\[1\]: each"),
    ("update", ("s", 1, [[1, 1, "x"]]), {}, r"^update\(\): op_list\[0\]: .*op is a str"),
    ("update", ("s", 1, [{"=": 1}]), {}, r"^update\(\): op_list\[0\]"),
    ("upsert", ("s", [1], "="), {}, r"^upsert\(\): op_list must be"),
    ("upsert", ("s", [1], [[b"=", 1, 2]]), {}, r"^upsert\(\): op_list\[0\]"),
    # -- keys: a scalar or a list/tuple of parts; never a map, a set or an iterator
    ("select", ("s", {"a": 1}), {}, r"^select\(\): key must be a scalar or a list/tuple of key parts, got dict"),
    ("select", (512, {1, 2}), {}, r"^select\(\): key .*got set"),
    ("delete", ("s", {"a": 1}), {}, r"^delete\(\): key .*got dict"),
    ("delete", ("s", frozenset({1})), {}, r"^delete\(\): key .*got frozenset"),
    ("update", ("s", {"id": 1}, []), {}, r"^update\(\): key .*got dict"),
    ("update", (512, iter([1]), []), {}, r"^update\(\): key .*got list_iterator"),
    # -- item 14b: a key out of msgpack's integer range says so
    ("select", ("s", 2**64), {}, r"^select\(\): key 18446744073709551616 is outside the msgpack range -2\*\*63 \.\. 2\*\*64-1$"),
    ("delete", (512, -2**63 - 1), {}, r"^delete\(\): key -9223372036854775809 is outside the msgpack range"),
    ("update", ("s", 2**70, []), {}, r"^update\(\): key .* is outside"),
    # -- select's window: ints in 0 .. 2**32-1
    ("select", ("s",), {"offset": -1}, r"^select\(\): offset must be in 0 \.\. 2\*\*32-1, got -1$"),
    ("select", ("s",), {"limit": -5}, r"^select\(\): limit must be in 0"),
    ("select", ("s",), {"limit": 2**32}, r"^select\(\): limit must be in 0"),
    ("select", ("s",), {"offset": "10"}, r"^select\(\): offset must be an int, got str '10'$"),
    ("select", ("s",), {"limit": 1.5}, r"^select\(\): limit must be an int, got float"),
    ("select", ("s",), {"limit": True}, r"^select\(\): limit must be an int, got bool"),
    ("select", ("s",), {"offset": None}, r"^select\(\): offset must be an int"),
    # -- item 11: spaces, indexes and iterators
    ("select", (1.5,), {}, r"^select\(\): space_name must be a name \(str\) or an id \(int\), got float 1\.5$"),
    ("select", (None,), {}, r"^select\(\): space_name"),
    ("select", (True,), {}, r"^select\(\): space_name .*got bool"),
    ("select", ("s",), {"index": 0.0}, r"^select\(\): index must be a name"),
    ("select", ("s",), {"index": [0]}, r"^select\(\): index"),
    ("insert", (b"s", [1]), {}, r"^insert\(\): space_name .*got bytes"),
    ("replace", (3.0, [1]), {}, r"^replace\(\): space_name"),
    ("update", (None, 1, []), {}, r"^update\(\): space_name"),
    ("upsert", ("s", [1], []), {"index": 1.0}, r"^upsert\(\): index"),
    ("delete", (["s"], 1), {}, r"^delete\(\): space_name"),
    ("select", ("s",), {"iterator": "SIDEWAYS"}, r"^select\(\): unknown iterator 'SIDEWAYS': expected one of EQ, "),
    ("select", ("s",), {"iterator": 99}, r"^select\(\): unknown iterator number 99$"),
    ("select", ("s",), {"iterator": 1.0}, r"^select\(\): iterator must be a name, an Iterator or an int, got float"),
    ("select", ("s",), {"iterator": True}, r"^select\(\): iterator must be"),
    # -- call / eval / execute / prepare
    ("call", (123,), {}, r"^call\(\): func_name must be a non-empty str, got int 123$"),
    ("call", ("",), {}, r"^call\(\): func_name must be a non-empty str, got str ''$"),
    ("call", (b"box.info",), {}, r"^call\(\): func_name .*got bytes"),
    ("call", (None, 1), {}, r"^call\(\): func_name"),
    ("eval", (42,), {}, r"^eval\(\): expr must be a str \(Lua code\), got int 42$"),
    ("eval", (b"return 1",), {}, r"^eval\(\): expr .*got bytes"),
    ("execute", (1.5,), {}, r"^execute\(\): query must be SQL text \(str\) or a statement id \(int\), got float"),
    ("execute", (True,), {}, r"^execute\(\): query .*got bool"),
    ("execute", ("SELECT ?", {1, 2}), {}, r"^execute\(\): params must be a list or tuple \(positional SQL parameters\) or a dict with str keys"),
    ("execute", ("SELECT ?", "ab"), {}, r"^execute\(\): params must be .*got str 'ab'$"),
    ("execute", ("SELECT ?", b"ab"), {}, r"^execute\(\): params must be .*got bytes"),
    ("execute", ("SELECT ?", 5), {}, r"^execute\(\): params must be .*got int"),
    ("execute", ("SELECT :a", {1: 2}), {}, r"^execute\(\): params: SQL parameter names must be non-empty strings, got int 1$"),
    ("execute", ("SELECT :a", {"": 2}), {}, r"^execute\(\): params: SQL parameter names"),
    ("prepare", (7,), {}, r"^prepare\(\): query must be SQL text \(str\), got int 7$"),
    # -- item 11: a non-callable on_push is refused, not sent and failed later
    ("select", ("s",), {"on_push": "print"}, r"^select\(\): on_push must be a callable \(data, ctx\) or None, got str 'print'$"),
    ("insert", ("s", [1]), {"on_push": 1}, r"^insert\(\): on_push must be a callable"),
    ("replace", (512, [1]), {"on_push": [push]}, r"^replace\(\): on_push"),
    ("update", ("s", 1, []), {"on_push": 0}, r"^update\(\): on_push"),
    ("upsert", ("s", [1], []), {"on_push": {}}, r"^upsert\(\): on_push"),
    ("delete", ("s", 1), {"on_push": b"x"}, r"^delete\(\): on_push"),
    ("call", ("f",), {"on_push": "push"}, r"^call\(\): on_push must be a callable"),
    ("eval", ("return 1",), {"on_push": 3}, r"^eval\(\): on_push must be a callable"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "match"), BAD,
                         ids=[f"{b[0]}-{n}" for n, b in enumerate(BAD)])
def test_bad_argument_is_a_configuration_error(method: str, args: tuple[Any, ...],
                                               kwargs: dict[str, Any], match: str) -> None:
    """Refused by the builder itself (so in the caller, before any I/O), naming the argument."""
    with pytest.raises(ConfigurationError, match=match) as info:
        rq.BUILDERS[method](*args, **kwargs)
    # Old code that caught the builtin errors keeps working.
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, Error)


# Accepted: what the docs list (docs/connection.md, "Arguments").
Row = namedtuple("Row", "id name")


class Color(enum.IntEnum):
    RED = 1


GOOD: list[tuple[str, tuple[Any, ...], dict[str, Any], int, Any]] = [
    # (method, args, kwargs, body key, value the server receives under it)
    ("insert", ("s", [1, "a"]), {}, C.TUPLE, [1, "a"]),
    ("insert", (512, (1, "a")), {}, C.TUPLE, [1, "a"]),
    ("replace", ("s", Row(1, "a")), {}, C.TUPLE, [1, "a"]),
    ("replace", ("s", []), {}, C.TUPLE, []),
    ("upsert", ("s", (1,), (("+", 2, 1),)), {}, C.OPS, [["+", 2, 1]]),
    ("update", ("s", 1, ()), {}, C.TUPLE, []),
    ("update", ("s", 1, [("=", "name", "b")]), {}, C.TUPLE, [["=", "name", "b"]]),
    ("select", ("s", 2**64 - 1), {}, C.KEY, [2**64 - 1]),
    ("select", ("s", -2**63), {}, C.KEY, [-2**63]),
    ("select", ("s", "k"), {}, C.KEY, ["k"]),
    ("select", ("s", b"k"), {}, C.KEY, [b"k"]),
    ("select", ("s", True), {}, C.KEY, [True]),
    ("select", ("s", 1.5), {}, C.KEY, [1.5]),
    ("select", ("s", Color.RED), {}, C.KEY, [1]),
    ("select", ("s", (1, "a")), {}, C.KEY, [1, "a"]),
    ("select", ("s", None), {}, C.KEY, []),
    ("select", ("s",), {"offset": 0, "limit": 2**32 - 1}, C.LIMIT, 2**32 - 1),
    ("select", ("s",), {"offset": Color.RED}, C.OFFSET, 1),
    ("select", ("s",), {"iterator": "ge"}, C.ITERATOR, C.Iterator.GE),
    ("select", ("s",), {"iterator": C.Iterator.LT}, C.ITERATOR, C.Iterator.LT),
    ("select", ("s",), {"on_push": push}, C.SPACE_ID, 512),
    ("delete", ("s", [1]), {"index": "pk", "on_push": lambda data, ctx: None}, C.KEY, [1]),
    ("call", ("f", "q7z", {"a": 1}), {"on_push": push}, C.TUPLE, ["q7z", {"a": 1}]),
    ("eval", ("return ...", b"x"), {}, C.TUPLE, [b"x"]),
    ("execute", ("SELECT ?", (1,)), {}, C.SQL_BIND, [1]),
    ("execute", ("SELECT :a", {"a": 1, "@b": 2}), {}, C.SQL_BIND, [{":a": 1}, {"@b": 2}]),
    ("execute", (12, None), {}, C.SQL_BIND, []),
    ("prepare", ("SELECT 1",), {}, C.SQL_TEXT, "SELECT 1"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "key", "value"), GOOD,
                         ids=[f"{g[0]}-{n}" for n, g in enumerate(GOOD)])
def test_valid_arguments_are_sent_as_given(method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                                           key: int, value: Any) -> None:
    assert sent(rq.BUILDERS[method](*args, **kwargs))[key] == value


# -- hypothesis: any non-list/tuple is refused as a tuple; any list/tuple is sent as is ------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=8), st.binary(max_size=8),
)
not_a_tuple = st.one_of(
    scalars,
    st.builds(bytearray, st.binary(max_size=8)),
    st.dictionaries(st.text(max_size=4), scalars, max_size=3),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.text(max_size=3), max_size=3),
    st.iterables(st.integers(), max_size=3),
    st.builds(range, st.integers(0, 5)),
    st.builds(decimal.Decimal, st.integers()),
    st.builds(uuid.UUID, st.uuids().map(str)),
    st.builds(object),
)
fields = st.lists(st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=6)
a_tuple = st.one_of(fields, fields.map(tuple))
spaces = st.one_of(st.integers(0, 2**32 - 1), st.text(min_size=1, max_size=8))


@given(space=spaces, values=not_a_tuple, method=st.sampled_from(["insert", "replace", "upsert"]))
def test_any_non_tuple_is_refused(space: str | int, values: Any, method: str) -> None:
    args: tuple[Any, ...] = (space, values, []) if method == "upsert" else (space, values)
    argument = "tuple_value" if method == "upsert" else "values"
    with pytest.raises(ConfigurationError, match=rf"^{method}\(\): {argument} must be a list or tuple"):
        rq.BUILDERS[method](*args)


@given(space=spaces, values=a_tuple, method=st.sampled_from(["insert", "replace", "upsert"]))
def test_any_list_or_tuple_is_sent_field_for_field(space: str | int, values: Any, method: str) -> None:
    args: tuple[Any, ...] = (space, values, [["=", 1, 0]]) if method == "upsert" else (space, values)
    body = sent(rq.BUILDERS[method](*args))
    expected = [list(f) if isinstance(f, list | tuple) else f for f in values]
    assert body[C.TUPLE] == expected


@given(key=st.one_of(st.dictionaries(st.integers(), st.integers(), max_size=2),
                     st.sets(st.integers(), max_size=2), st.frozensets(st.integers(), max_size=2),
                     st.iterables(st.integers(), max_size=2)),
       method=st.sampled_from(["select", "delete", "update"]))
def test_maps_sets_and_iterators_are_refused_as_keys(key: Any, method: str) -> None:
    args: tuple[Any, ...] = ("s", key, []) if method == "update" else ("s", key)
    with pytest.raises(ConfigurationError, match=rf"^{method}\(\): key must be"):
        rq.BUILDERS[method](*args)


@given(key=st.one_of(st.integers(min_value=2**64), st.integers(max_value=-2**63 - 1)))
def test_keys_out_of_msgpack_range_say_so(key: int) -> None:
    with pytest.raises(ConfigurationError, match=r"is outside the msgpack range -2\*\*63 \.\. 2\*\*64-1"):
        rq.select("s", key)


# -- values msgpack cannot encode: refused when framed, naming the argument --------------
#
# The builders check types; whether a value deep inside a tuple can be encoded
# is known when the packet is framed (in the caller's task, before any write).


@pytest.mark.parametrize(("req", "match"), [
    (rq.insert("s", [1, object()]), r"^insert\(\): values\[1\]: cannot send a value of type object"),
    (rq.replace(512, [1, "\udc80"]), r"^replace\(\): values\[1\]: str '\\udc80' cannot be encoded as UTF-8"),
    (rq.replace("s", [1, 2**64]), r"^replace\(\): values\[1\]: int 18446744073709551616 is outside the msgpack range"),
    (rq.upsert("s", [1], [["=", 2, -2**63 - 1]]), r"^upsert\(\): op_list\[0\]\[2\]: int -9223372036854775809 is outside"),
    (rq.upsert("s", [1, {2, 3}], []), r"^upsert\(\): tuple_value\[1\]: cannot send a value of type set"),
    (rq.update("s", 1, [["=", 2, [object()]]]), r"^update\(\): op_list\[0\]\[2\]\[0\]: cannot send"),
    (rq.select("s", [1, object()]), r"^select\(\): key\[1\]: cannot send"),
    (rq.select("s", "\ud800"), r"^select\(\): key\[0\]: str '\\ud800' cannot be encoded as UTF-8"),
    (rq.delete("s", [2**64]), r"^delete\(\): key\[0\]: int .* is outside"),
    (rq.call("f\udc80"), r"^call\(\): func_name: str"),
    (rq.call("f", 1, object()), r"^call\(\): args\[1\]: cannot send a value of type object"),
    (rq.eval("return \udc80"), r"^eval\(\): expr: str"),
    (rq.eval("return ...", {"k": {1}}), r"^eval\(\): args\[0\]\['k'\]: cannot send a value of type set"),
    (rq.execute("SELECT ?", [object()]), r"^execute\(\): params\[0\]: cannot send"),
    (rq.execute("SELECT \udc80"), r"^execute\(\): query: str"),
    (rq.prepare("SELECT \udc80"), r"^prepare\(\): query: str"),
])
def test_unencodable_values_are_refused_when_framed(req: rq.Request, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Encoder().frame(req.type, 1, body_of(req))


def test_extension_values_are_accepted() -> None:
    """Decimal and UUID are scalars Tarantool stores (the MP_EXT types), in tuples and keys."""
    value = [decimal.Decimal("1.5"), uuid.UUID(int=7)]
    assert sent(rq.insert("s", value))[C.TUPLE] == value
    assert sent(rq.select("s", decimal.Decimal("2")))[C.KEY] == [decimal.Decimal("2")]
