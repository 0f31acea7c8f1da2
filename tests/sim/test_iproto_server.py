"""The simulated instance, driven by an independent raw IPROTO client."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import trio

from tests.sim._raw import RawClient, scramble
from trio_tarantool import sim
from trio_tarantool._iproto import _constants as C
from trio_tarantool.sim._iproto_server import check_chap_sha1


def _code(header: dict[int, Any]) -> int:
    return int(header[C.REQUEST_TYPE])


async def _client(rs: sim.Replicaset, i: int = 0) -> RawClient:
    return await RawClient.open(rs[i].host, rs[i].port)


def test_scramble_check_accepts_right_and_rejects_wrong_password() -> None:
    salt = bytes(range(32))
    b64 = base64.b64encode(salt)
    assert check_chap_sha1("secret", salt, scramble(b64, "secret"))
    assert not check_chap_sha1("secret", salt, scramble(b64, "Secret"))
    assert not check_chap_sha1("secret", salt, b"short")


async def test_greeting_layout(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, seed=3) as rs:
        c = await _client(rs)
        g = c.greeting
        assert len(g) == 128 and g[63:64] == b"\n" and g[127:128] == b"\n"
        banner = g[:63].decode().rstrip()
        assert re.fullmatch(r"Tarantool 2\.6\.0 \(Binary\) [0-9a-f-]{36}", banner)
        assert banner.endswith(rs[0].uuid)
        salt = base64.b64decode(c.salt_line)
        assert 20 <= len(salt) <= 32
        # a second connection gets a different salt
        c2 = await _client(rs)
        assert c2.salt_line != c.salt_line


async def test_auth_success_wrong_password_unknown_user(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1, users={"alice": "pw"}) as rs:
        c = await _client(rs)
        h, _ = await c.auth("alice", "pw")
        assert _code(h) == C.OK
        h, b = await c.auth("alice", "nope")
        assert _code(h) == C.TYPE_ERROR | 47
        assert b[C.ERROR_24] == "Incorrect password supplied for user 'alice'"
        h, b = await c.auth("bob", "pw")
        assert _code(h) == C.TYPE_ERROR | 45
        assert b[C.ERROR_24] == "User 'bob' is not found"


async def test_error_body_has_message_and_stack(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        c = await _client(rs)
        h, b = await c.request(C.SELECT, {C.SPACE_ID: 512, C.INDEX_ID: 0, C.ITERATOR: 0, C.KEY: [], C.LIMIT: 10})
        assert _code(h) == C.TYPE_ERROR | 36
        assert b[C.ERROR_24] == "Space '512' does not exist"
        (entry,) = b[C.ERROR][C.MP_ERROR_STACK]
        assert entry[C.MP_ERROR_ERRCODE] == 36
        assert entry[C.MP_ERROR_MESSAGE] == "Space '512' does not exist"
        assert entry[C.MP_ERROR_TYPE] == "ClientError"
        assert h[C.SCHEMA_VERSION] == rs[0].db.schema_version


async def test_unknown_request_types_and_id_on_26(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        c = await _client(rs)
        h, b = await c.request(C.ID, {C.VERSION: 3, C.FEATURES: [0, 1]})
        assert _code(h) == C.TYPE_ERROR | 48
        assert b[C.ERROR_24] == "Unknown request type 73"
        h, b = await c.request(0x7777, {})
        assert b[C.ERROR_24] == "Unknown request type 30583"
        h, b = await c.request(C.PING)
        assert _code(h) == C.OK and b == {}


async def test_id_and_watch_on_a_210_server(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2, protocol_version=4) as rs:
        c = await _client(rs, 1)
        h, b = await c.request(C.ID, {C.VERSION: 3, C.FEATURES: [0, 1, 2, 3]})
        assert _code(h) == C.OK and b[C.VERSION] == 4 and 3 in b[C.FEATURES]
        await c.send(C.WATCH, {C.EVENT_KEY: "box.status"})
        h, b = await c.recv()
        assert _code(h) == C.EVENT and b[C.EVENT_KEY] == "box.status"
        assert b[C.EVENT_DATA] == {"is_ro": True, "is_ro_cfg": True, "status": "running"}
        # not acknowledged yet: a change is held back until the ack
        rs.set_ro(1, False)
        with trio.move_on_after(1):
            await c.recv()
            pytest.fail("event sent before the previous one was acknowledged")
        await c.send(C.WATCH, {C.EVENT_KEY: "box.status"})  # ack
        h, b = await c.recv()
        assert b[C.EVENT_DATA]["is_ro"] is False
        await c.send(C.WATCH, {C.EVENT_KEY: "box.status"})  # ack, nothing pending
        rs.set_status(1, "orphan")
        h, b = await c.recv()
        assert b[C.EVENT_DATA] == {"is_ro": True, "is_ro_cfg": False, "status": "orphan"}


async def test_push_messages_precede_the_reply(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:

        def pusher(ctx: sim.CallContext, n: int) -> list[Any]:
            for i in range(n):
                ctx.push({"step": i})
            return ["done", n]

        rs.register_function("pusher", pusher)
        c = await _client(rs)
        sync = await c.send(C.CALL, {C.FUNCTION_NAME: "pusher", C.TUPLE: [2]})
        got = [await c.recv() for _ in range(3)]
        assert [(_code(h), h[C.SYNC]) for h, _ in got] == [(C.CHUNK, sync), (C.CHUNK, sync), (C.OK, sync)]
        assert [b[C.DATA] for _, b in got] == [[{"step": 0}], [{"step": 1}], ["done", 2]]


async def test_call_eval_and_box_info(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        c = await _client(rs, 1)
        h, b = await c.request(C.CALL, {C.FUNCTION_NAME: "box.info", C.TUPLE: []})
        info = b[C.DATA][0]
        assert info["ro"] is True and info["status"] == "running" and info["id"] == 2
        assert info["uuid"] == rs[1].uuid
        h, b = await c.request(C.EVAL, {C.EXPR: "return box.info", C.TUPLE: []})
        assert b[C.DATA][0]["ro"] is True
        h, b = await c.request(C.EVAL, {C.EXPR: "return ...", C.TUPLE: [1, "x"]})
        assert b[C.DATA] == [1, "x"]
        h, b = await c.request(C.CALL, {C.FUNCTION_NAME: "f", C.TUPLE: []})
        assert _code(h) == C.TYPE_ERROR | 33 and b[C.ERROR_24] == "Procedure 'f' is not defined"
        h, b = await c.request(C.CALL_16, {C.FUNCTION_NAME: "box.info", C.TUPLE: []})
        assert b[C.DATA][0][0]["id"] == 2  # each value wrapped in a tuple


async def test_slow_async_handler_does_not_block_pipelined_requests(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:

        async def slow(ctx: sim.CallContext) -> list[Any]:
            await trio.sleep(10)
            return ["slow"]

        rs.register_function("slow", slow)
        c = await _client(rs)
        s1 = await c.send(C.CALL, {C.FUNCTION_NAME: "slow", C.TUPLE: []})
        s2 = await c.send(C.PING)
        h, _ = await c.recv()
        assert h[C.SYNC] == s2
        t0 = trio.current_time()
        h, b = await c.recv()
        assert h[C.SYNC] == s1 and b[C.DATA] == ["slow"]
        assert trio.current_time() - t0 == pytest.approx(10)


async def test_handler_box_error_and_lua_error(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:

        def boom(ctx: sim.CallContext) -> list[Any]:
            raise sim.BoxError(42, "Execute access to function 'boom' is denied for user 'guest'", "AccessDeniedError")

        def lua(ctx: sim.CallContext) -> list[Any]:
            raise RuntimeError("attempt to index a nil value")

        rs.register_function("boom", boom)
        rs.register_function("lua", lua)
        c = await _client(rs)
        h, b = await c.request(C.CALL, {C.FUNCTION_NAME: "boom", C.TUPLE: []})
        assert _code(h) == C.TYPE_ERROR | 42
        assert b[C.ERROR][0][0][C.MP_ERROR_TYPE] == "AccessDeniedError"
        h, b = await c.request(C.CALL, {C.FUNCTION_NAME: "lua", C.TUPLE: []})
        assert _code(h) == C.TYPE_ERROR | 32 and "nil value" in b[C.ERROR_24]


async def test_readonly_loading_schema_version_and_guest_access(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2, loading_time=5, guest_access=False, users={"u": "p"}) as rs:
        rs.create_space("t", [("id", "unsigned")], indexes=[("primary", [("id", "unsigned")], True)])
        c = await _client(rs, 1)
        h, b = await c.request(C.PING)
        assert _code(h) == C.OK  # ping works while loading
        await c.auth("u", "p")
        h, b = await c.request(C.SELECT, {C.SPACE_ID: 512, C.KEY: []})
        assert _code(h) == C.TYPE_ERROR | 116
        assert b[C.ERROR_24] == "Instance bootstrap hasn't finished yet"
        await trio.sleep(5)
        h, b = await c.request(C.INSERT, {C.SPACE_ID: 512, C.TUPLE: [1]})
        assert _code(h) == C.TYPE_ERROR | 7
        assert b[C.ERROR_24] == "Can't modify data because this instance is in read-only mode."
        sv = rs[1].db.schema_version
        h, b = await c.request(C.SELECT, {C.SPACE_ID: 512, C.KEY: []}, schema_version=sv - 1)
        assert _code(h) == C.TYPE_ERROR | 109
        assert b[C.ERROR_24] == f"Wrong schema version, current: {sv}, in request: {sv - 1}"
        g = await _client(rs, 0)
        h, b = await g.request(C.SELECT, {C.SPACE_ID: 512, C.KEY: []})
        assert _code(h) == C.TYPE_ERROR | 42
        assert b[C.ERROR_24] == "Read access to space 't' is denied for user 'guest'"


async def test_vspace_vindex_reflect_user_spaces_and_schema_version_bumps(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        before = rs[0].db.schema_version
        rs.create_space(
            "x", [("id", "unsigned"), ("name", "string"), ("n", "unsigned", True)],
            indexes=[("primary", [("id", "unsigned")], True), ("byname", [("name", "string")], False)],
        )
        assert rs[0].db.schema_version == before + 3  # space + 2 indexes
        c = await _client(rs)
        h, b = await c.request(C.SELECT, {C.SPACE_ID: C.VSPACE_ID, C.INDEX_ID: 0, C.KEY: [512]})
        assert h[C.SCHEMA_VERSION] == before + 3
        assert b[C.DATA] == [[512, 1, "x", "memtx", 0, {}, [
            {"name": "id", "type": "unsigned"}, {"name": "name", "type": "string"},
            {"name": "n", "type": "unsigned", "is_nullable": True}]]]
        h, b = await c.request(C.SELECT, {C.SPACE_ID: C.VINDEX_ID, C.INDEX_ID: 0, C.KEY: [512]})
        assert b[C.DATA] == [
            [512, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]],
            [512, 1, "byname", "tree", {"unique": False}, [[1, "string"]]],
        ]
        h, b = await c.request(C.SELECT, {C.SPACE_ID: C.VSPACE_ID, C.INDEX_ID: 2, C.KEY: ["_vindex"]})
        assert b[C.DATA][0][0] == C.VINDEX_ID
        h, b = await c.request(C.SELECT, {C.SPACE_ID: C.VINDEX_ID, C.INDEX_ID: 0, C.KEY: [289]})
        assert [(r[1], r[2]) for r in b[C.DATA]] == [(0, "primary"), (2, "name")]


async def test_garbage_closes_the_connection(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=1) as rs:
        c = await _client(rs)
        await c.stream.send_all(b"\xc1\xc1\xc1")
        with pytest.raises(EOFError):
            await c.recv()


async def test_crash_gives_fin_when_idle_and_rst_with_unread_requests(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        idle = await _client(rs, 0)
        rs.crash(0)
        with pytest.raises(EOFError):  # a clean FIN: the kernel closed the socket
            await idle.recv()
        busy = await _client(rs, 1)
        rs.pause(1)
        await busy.send(C.PING)
        await trio.sleep(1)
        await busy.send(C.PING)  # stays unread in the frozen server's socket
        await trio.sleep(1)
        rs.crash(1)
        with pytest.raises(trio.BrokenResourceError) as info:
            await busy.recv()
        assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_write_error_precedence(autojump_clock: Any) -> None:
    async with sim.open_replicaset(n=2) as rs:
        c = await _client(rs, 1)  # a read-only replica
        h, b = await c.request(C.INSERT, {C.SPACE_ID: 777, C.TUPLE: [1]})
        assert _code(h) == C.TYPE_ERROR | 36  # no such space wins over read-only
        h, b = await c.request(C.INSERT, {C.SPACE_ID: C.VSPACE_ID, C.TUPLE: [1]})
        assert (_code(h), b[C.ERROR_24]) == (C.TYPE_ERROR | 113, "View '_vspace' is read-only")
