"""The floor reference client (``bench/floor.py``) answers every caller correctly.

Its numbers are only a floor if it does the same work as the real clients: each
caller must get the reply with its own sync, whatever the order and chunking the
server uses, errors must surface, and against a real server it must return the
same rows trio_tarantool does.
"""

from __future__ import annotations

import shutil
from typing import Any

import msgpack
import pytest
import trio

from bench import floor, servers
from bench.workload import key_of, replace_tuple
from tests.hostile import Peer, hostile_server
from trio_tarantool._iproto import _constants as C

TASKS = 10


async def _trickle(peer: Peer, data: bytes, step: int) -> None:
    """Send ``data`` in ``step``-byte pieces, so packets and even msgpack values
    arrive split across reads."""
    for at in range(0, len(data), step):
        await peer.send_raw(data[at : at + step])


def _packet(header: dict[int, Any], body: Any = None) -> bytes:
    """A packet with a body, or with none at all when ``body`` is None (legal IPROTO)."""
    payload: bytes = msgpack.packb(header) + (b"" if body is None else msgpack.packb(body))
    return b"\xce" + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("step", [1, 7, 4096])
async def test_floor_gives_each_caller_its_own_reply_in_any_order_and_chunking(step: int) -> None:
    async def handler(peer: Peer) -> None:
        await peer.greet()
        pending = [await peer.read_request() for _ in range(TASKS + 1)]
        out = b""
        for header, body in reversed(pending):  # answered in reverse order
            sync = header[C.SYNC]
            if header[C.REQUEST_TYPE] == C.PING:
                out += _packet({C.REQUEST_TYPE: 0, C.SYNC: sync})  # header only
            else:
                key = body[C.KEY][0]
                out += _packet({C.REQUEST_TYPE: 0, C.SYNC: sync}, {C.DATA: [[key, f"v{key}"]]})
        await _trickle(peer, out, step)
        header, _ = await peer.read_request()
        await peer.error(header[C.SYNC], 36, "Space '999' does not exist")
        await peer.drain()

    got: dict[int, Any] = {}
    with trio.fail_after(10):
        async with (
            hostile_server(handler) as server,
            floor.connect("127.0.0.1", server.port) as client,
        ):

            async def one(key: int) -> None:
                got[key] = await client.select(512, [key])

            async def ping() -> None:
                got[-1] = await client.ping()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping)
                for key in range(1, TASKS + 1):
                    nursery.start_soon(one, key)
            with pytest.raises(floor.FloorError, match="error 36: Space '999' does not exist"):
                await client.select(999, [1])
    assert got == {-1: None, **{k: [[k, f"v{k}"]] for k in range(1, TASKS + 1)}}
    selects = server.requests_of(C.SELECT)
    assert sorted(b[C.KEY][0] for b in selects[:TASKS]) == list(range(1, TASKS + 1))
    assert all(b[C.SPACE_ID] == 512 and b[C.ITERATOR] == 0 for b in selects[:TASKS])


async def test_floor_fails_its_waiters_when_the_server_hangs_up() -> None:
    async def handler(peer: Peer) -> None:
        await peer.greet()
        await peer.read_request()  # and close without answering

    with trio.fail_after(10):
        async with (
            hostile_server(handler) as server,
            floor.connect("127.0.0.1", server.port) as client,
        ):
            with pytest.raises(floor.FloorError, match="connection closed"):
                await client.ping()


def test_scramble_matches_the_library() -> None:
    from trio_tarantool._iproto._greeting import chap_sha1_scramble

    salt = bytes(range(32))
    assert floor.scramble("secret", salt) == chap_sha1_scramble("secret", salt)


@pytest.mark.real
@pytest.mark.skipif(shutil.which("tarantool") is None, reason="needs a tarantool binary")
def test_floor_answers_like_trio_tarantool_on_a_real_server() -> None:
    import trio_tarantool

    async def main(port: int) -> None:
        with trio.fail_after(20):
            async with floor.connect("127.0.0.1", port, servers.USER, servers.PASSWORD) as client:
                space, write = await client.space_id("bench"), await client.space_id("bench_w")
                assert await client.ping() is None
                for i in (0, 41, 9999):
                    want = [[key_of(i), servers.expected_value(key_of(i))]]
                    assert await client.select(space, [key_of(i)]) == want
                    assert await client.call("bench_get", [key_of(i)]) == want
                    assert await client.replace(write, replace_tuple(i)) == [replace_tuple(i)]
                with pytest.raises(floor.FloorError, match="error 36"):
                    await client.select(999_999, [1])
                with pytest.raises(floor.FloorError, match="no space named"):
                    await client.space_id("nope")
                async with trio_tarantool.connect(
                    "127.0.0.1", port, user=servers.USER, password=servers.PASSWORD
                ) as conn:
                    assert (await conn.select("bench", 77)).data == await client.select(space, [77])
                    assert (await conn.select("bench_w", key_of(41))).data == [replace_tuple(41)]
                    assert space == conn.schema.space_id("bench")  # type: ignore[union-attr]

    with servers.single() as cluster:
        trio.run(main, cluster.instances[0].port)
