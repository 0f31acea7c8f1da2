"""Strings that are not UTF-8 fail only the request whose reply holds them."""

from __future__ import annotations

import pytest
import trio

from tests.real._servers import TarantoolInstance
from trio_tarantool import BoxError, DatabaseError, ProtocolError, connect


async def test_invalid_utf8_fails_one_request_not_the_connection(clean_tarantool: TarantoolInstance) -> None:
    inst = clean_tarantool
    with trio.fail_after(10):
        async with connect(inst.host, inst.port, user=inst.user, password=inst.password) as conn:
            await conn.eval("box.space.tester:replace{77, '\\xff\\xfe'}")
            async with trio.open_nursery() as nursery:
                # A request in flight beside the bad one is unaffected.
                nursery.start_soon(conn.call, "sleep", 0.05)
                for _ in range(2):
                    with pytest.raises(ProtocolError, match="encoding=None") as exc:
                        await conn.select("tester", 77)
                    assert exc.value.may_have_executed
            assert conn.is_connected()
            assert (await conn.eval("return 1")).data == [1]
        async with connect(inst.host, inst.port, user=inst.user, password=inst.password,
                           encoding=None) as raw:
            assert [list(r) for r in await raw.select("tester", 77)] == [[77, b"\xff\xfe"]]


async def test_error_objects_arrive_as_box_errors(clean_tarantool: TarantoolInstance) -> None:
    """The MP_ERROR extension (3) decodes to a BoxError chain.

    2.4 .. 2.x send error objects as MP_ERROR only in a session that enabled
    ``error_marshaling_enabled`` (otherwise as their message string). 3.0 removed
    that session setting (setting it raises "Session setting
    error_marshaling_enabled doesn't exist"): it sends MP_ERROR to every client
    that announced the error_extension feature in IPROTO_ID, which this client
    does. Checked by hand against both binaries.
    """
    inst = clean_tarantool
    with trio.fail_after(10):
        async with connect(inst.host, inst.port, user=inst.user, password=inst.password) as conn:
            if inst.version >= (3, 0):
                with pytest.raises(DatabaseError, match="error_marshaling_enabled doesn't exist"):
                    await conn.eval("box.session.settings.error_marshaling_enabled = true")
                enable = ""
            else:
                enable = "box.session.settings.error_marshaling_enabled = true "
            resp = await conn.eval(
                enable +
                "local cause = box.error.new({code = 3, reason = 'root cause'}) "
                "local e = box.error.new({code = 777, reason = 'custom'}) "
                "e:set_prev(cause) return e, 1"
            )
            err, one = resp.data
            assert one == 1
            assert isinstance(err, BoxError)
            assert (err.type, err.errcode, err.message) == ("ClientError", 777, "custom")
            assert err.prev is not None and (err.prev.errcode, err.prev.message) == (3, "root cause")
