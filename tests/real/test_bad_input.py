"""Bad input never reaches the server (issue 8, items 5, 11 and 14b).

Against a real Tarantool, one connection and a one-instance pool get every kind
of bad argument: each must raise :class:`~trio_tarantool.ConfigurationError`
naming the argument, and nothing may have been stored or run (the ``tester``
space stays empty, the server's ``counter_inc`` stays at 0). Against the
hostile test server, the record of what arrived proves that no request was
sent at all, and the connection goes on serving afterwards.
"""

from __future__ import annotations

import decimal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

import trio_tarantool
from tests.hostile import Peer, hostile_server
from tests.real._servers import TarantoolInstance
from trio_tarantool import ConfigurationError, Mode
from trio_tarantool._iproto import _constants as C

USER: dict[str, Any] = {"user": "test", "password": "test-password"}

#: The ``tester`` space: [id unsigned, name string], primary index on id.
SPACE = "tester"

# (label, what to call on a connection-like object, regex of the message).
# Each would store or run something if it reached the server.
Op = Callable[[Any], Awaitable[Any]]
BAD_CALLS: list[tuple[str, Op, str]] = [
    # item 5: str, bytes and dicts are not split into tuples
    ("replace str", lambda c: c.replace(SPACE, "q7z"),
     r"replace\(\): values must be a list or tuple \(one tuple\), got str 'q7z'"),
    ("replace bytes", lambda c: c.replace(SPACE, b"xyz"), r"replace\(\): values .*got bytes"),
    ("replace dict", lambda c: c.replace(SPACE, {"dk": 1}), r"replace\(\): values .*got dict"),
    ("insert str", lambda c: c.insert(SPACE, "q7z"), r"insert\(\): values .*got str"),
    ("insert bytes", lambda c: c.insert(SPACE, b"xyz"), r"insert\(\): values .*got bytes"),
    ("insert dict", lambda c: c.insert(SPACE, {"dk": 1}), r"insert\(\): values .*got dict"),
    ("upsert str", lambda c: c.upsert(SPACE, "q7z", []), r"upsert\(\): tuple_value .*got str"),
    ("upsert dict", lambda c: c.upsert(SPACE, {"dk": 1}, []), r"upsert\(\): tuple_value .*got dict"),
    ("upsert op str", lambda c: c.upsert(SPACE, [5, "x"], "=,2,y"), r"upsert\(\): op_list must be"),
    ("update op no str", lambda c: c.update(SPACE, 1, [[2, "=", "x"]]), r"update\(\): op_list\[0\]"),
    # keys
    ("delete dict key", lambda c: c.delete(SPACE, {"id": 1}), r"delete\(\): key must be a scalar"),
    ("select set key", lambda c: c.select(SPACE, {1}), r"select\(\): key .*got set"),
    # item 14b: out of range, said so
    ("select 2**64 key", lambda c: c.select(SPACE, 2**64), r"select\(\): key 18446744073709551616 is outside "
     r"the msgpack range -2\*\*63 \.\. 2\*\*64-1"),
    # item 11: values msgpack cannot encode, named by position
    ("replace object", lambda c: c.replace(SPACE, [6, object()]),
     r"replace\(\): values\[1\]: cannot send a value of type object"),
    ("replace surrogate", lambda c: c.replace(SPACE, [7, "a\udc80"]),
     r"replace\(\): values\[1\]: str 'a\\udc80' cannot be encoded as UTF-8"),
    ("insert 2**64", lambda c: c.insert(SPACE, [2**64, "x"]), r"insert\(\): values\[0\]: int .* is outside the msgpack range"),
    ("insert -2**63-1", lambda c: c.insert(SPACE, [-2**63 - 1, "x"]), r"insert\(\): values\[0\]: int .* is outside"),
    ("upsert object op", lambda c: c.upsert(SPACE, [8, "x"], [["=", 2, object()]]),
     r"upsert\(\): op_list\[0\]\[2\]: cannot send"),
    # item 11: builtin TypeError/ValueError before; ConfigurationError naming the argument now
    ("unknown iterator", lambda c: c.select(SPACE, 1, iterator="SIDEWAYS"), r"select\(\): unknown iterator 'SIDEWAYS'"),
    ("space float", lambda c: c.replace(1.5, [9, "x"]), r"replace\(\): space_name must be a name \(str\) or an id \(int\)"),
    ("negative limit", lambda c: c.select(SPACE, limit=-1), r"select\(\): limit must be in 0 \.\. 2\*\*32-1"),
    ("call 123", lambda c: c.call(123), r"call\(\): func_name must be a non-empty str, got int 123"),
    ("call object arg", lambda c: c.call("counter_inc", object()), r"call\(\): args\[0\]: cannot send"),
    ("eval surrogate", lambda c: c.eval("counter_inc() return '\udc80'"), r"eval\(\): expr: str"),
    ("eval on_push", lambda c: c.eval("counter_inc() box.session.push(1) return 1", on_push=3),
     r"eval\(\): on_push must be a callable"),
    ("call on_push", lambda c: c.call("counter_inc", on_push="print"), r"call\(\): on_push must be a callable"),
    ("execute set params", lambda c: c.execute('INSERT INTO "tester" VALUES (?, ?)', {10, "x"}),
     r"execute\(\): params must be a list or tuple .* or a dict with str keys"),
    ("execute str params", lambda c: c.execute('INSERT INTO "tester" VALUES (?, ?)', "ab"), r"execute\(\): params .*got str"),
    ("execute object param", lambda c: c.execute('INSERT INTO "tester" VALUES (?, ?)', [11, object()]),
     r"execute\(\): params\[1\]: cannot send"),
]

IDS = [label for label, _, _ in BAD_CALLS]


async def nothing_stored_or_run(conn: Any) -> None:
    """The tester space is empty and counter_inc never ran; the connection still works."""
    assert (await conn.select(SPACE)).data == []
    assert (await conn.call("counter_get")).data == [0]
    await conn.replace(SPACE, [1, "fine"])
    assert (await conn.select(SPACE, 1)).data == [[1, "fine"]]


@pytest.mark.parametrize(("label", "op", "match"), BAD_CALLS, ids=IDS)
async def test_connection_refuses_bad_input_unsent(conn: Any, label: str, op: Op, match: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConfigurationError, match=match):
            await op(conn)
        await nothing_stored_or_run(conn)


async def test_connection_refuses_bad_input_by_space_id(conn: Any) -> None:
    """By id the body is built at once; by name only after resolution: both refuse alike."""
    with trio.fail_after(10):
        space_id = (await conn.eval(f"return box.space.{SPACE}.id")).data[0]
        for values in ("q7z", b"xyz", {"dk": 1}):
            with pytest.raises(ConfigurationError, match=r"replace\(\): values must be a list or tuple"):
                await conn.replace(space_id, values)
        with pytest.raises(ConfigurationError, match=r"replace\(\): values\[1\]: int .* is outside"):
            await conn.replace(space_id, [1, 2**64])
        await nothing_stored_or_run(conn)
        # What is refused as a tuple is fine as a field; a tuple may be a tuple.
        await conn.replace(space_id, (2, "q7z"))
        assert (await conn.select(SPACE, "q7z", index="name_idx")).data == [[2, "q7z"]]
        assert (await conn.select(SPACE, [], limit=2**32 - 1)).data == [[1, "fine"], [2, "q7z"]]


@pytest.fixture
async def one_pool(clean_tarantool: TarantoolInstance) -> AsyncIterator[trio_tarantool.ConnectionPool]:
    """A pool of the one emptied shared instance."""
    with trio.fail_after(20):
        async with trio_tarantool.open_pool(
            [{"host": clean_tarantool.host, "port": clean_tarantool.port}], refresh_delay=0.5, **USER,
        ) as pool:
            yield pool


class _AnyMode:
    """The pool with ``mode=Mode.ANY`` filled in for the calls that need one."""

    def __init__(self, pool: trio_tarantool.ConnectionPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._pool, name)
        if name in ("call", "eval", "execute"):
            return lambda *args, **kwargs: method(*args, mode=Mode.ANY, **kwargs)
        return method


@pytest.mark.parametrize(("label", "op", "match"), BAD_CALLS, ids=IDS)
async def test_pool_refuses_bad_input_unsent(one_pool: trio_tarantool.ConnectionPool, label: str, op: Op,
                                             match: str) -> None:
    with trio.fail_after(20):
        pool = _AnyMode(one_pool)
        with pytest.raises(ConfigurationError, match=match):
            await op(pool)
        await nothing_stored_or_run(pool)


async def test_pool_crud_refuses_bad_tuples(one_pool: trio_tarantool.ConnectionPool) -> None:
    """crud_* shape their arguments the same way (no crud module needed: nothing is sent)."""
    with trio.fail_after(20):
        with pytest.raises(ConfigurationError, match=r"crud_insert\(\): values must be a list or tuple"):
            await one_pool.crud_insert(SPACE, "q7z")
        with pytest.raises(ConfigurationError, match=r"crud_replace_object\(\): values must be a dict"):
            await one_pool.crud_replace_object(SPACE, [1, "x"])  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match=r"crud_get\(\): key must be a scalar"):
            await one_pool.crud_get(SPACE, {"id": 1})


# -- proof on the wire: the hostile server records every request it reads --------------


async def _serve_pings(peer: Peer) -> None:
    """Handshake like 2.6, then answer every request with an empty OK."""
    await peer.serve(lambda header, body: {C.DATA: []})


async def test_no_request_reaches_the_wire() -> None:
    """Every bad call fails in the caller; the server reads only the handshake and the pings."""
    with trio.fail_after(10):
        async with hostile_server(_serve_pings) as server, \
                trio_tarantool.connect("127.0.0.1", server.port, fetch_schema=False, **USER) as conn:
            await conn.ping()
            before = list(server.requests)
            bad: list[Callable[[], Awaitable[Any]]] = [
                lambda: conn.replace(512, "q7z"),
                lambda: conn.insert(512, b"xyz"),
                lambda: conn.upsert(512, {"dk": 1}, []),  # type: ignore[arg-type]
                lambda: conn.select(512, 2**64),
                lambda: conn.delete(512, {"k": 1}),
                lambda: conn.replace(512, [1, object()]),
                lambda: conn.replace(512, [1, "\udc80"]),
                lambda: conn.update(512, 1, [["=", 2, 2**64]]),
                lambda: conn.select(512, iterator="nope"),
                lambda: conn.select(512, offset=-1),
                lambda: conn.call(123),  # type: ignore[arg-type]
                lambda: conn.call("f", decimal.Decimal("1"), object()),
                lambda: conn.eval("return 1", on_push=3),  # type: ignore[arg-type]
                lambda: conn.execute("SELECT ?", {1, 2}),
                lambda: conn.execute("SELECT ?", [2**64]),
            ]
            for number, attempt in enumerate(bad):
                with pytest.raises(ConfigurationError):
                    await attempt()
                assert server.requests == before, f"bad call {number} reached the server"
            await conn.ping()  # the connection is unharmed
            assert [rtype for rtype, _ in server.requests[len(before):]] == [C.PING]
