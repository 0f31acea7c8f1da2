"""Streams and interactive transactions against real servers.

On 2.6 (no IPROTO streams) both are refused before anything is sent; on 3.x
they are proven: isolation between streams, commit, rollback on an exception
and on a cancellation, and a transaction never left open.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.real._servers import TarantoolBinary

pytestmark = pytest.mark.timeout(60)


async def test_streams_are_refused_before_sending_where_the_server_lacks_them(
        conn: Any, server_kind: TarantoolBinary) -> None:
    if server_kind.version >= (2, 10, 0):
        # The server announces both features: the positive cases are below.
        assert 0 in conn.features and 1 in conn.features
        return
    sent = conn.statistics().requests_sent
    with pytest.raises(tt.NotSupportedError, match=r"2\.10"):
        await conn.stream()
    with pytest.raises(tt.NotSupportedError):
        async with conn.transaction():
            pass
    assert conn.statistics().requests_sent == sent


async def test_id_announces_exactly_the_implemented_features() -> None:
    """IPROTO_ID claims streams, transactions, the error extension, watchers and
    watch_once (each proven against 3.x in tests/real), nothing more."""
    from tests.hostile import Peer, hostile_server
    from trio_tarantool._iproto import _constants as C

    async def handler(peer: Peer) -> None:
        await peer.greet()
        await peer.serve_handshake()

    async with hostile_server(handler) as server:
        with trio.fail_after(10):
            async with tt.connect("127.0.0.1", server.port, fetch_schema=False):
                pass
    [body] = server.requests_of(C.ID)
    assert sorted(body[C.FEATURES]) == [0, 1, 2, 3, 6]


@pytest.mark.min_server_version(2, 10)
async def test_uncommitted_rows_are_invisible_to_other_streams_until_commit(
        conn: Any, server_kind: TarantoolBinary) -> None:
    other = await conn.stream()
    async with conn.transaction(isolation="read-committed") as tx:
        await tx.replace("tester", [1, "in tx"])
        assert (await tx.select("tester", 1)).data == [[1, "in tx"]]
        assert (await other.select("tester", 1)).data == []
        assert (await conn.select("tester", 1)).data == []
    assert (await conn.select("tester", 1)).data == [[1, "in tx"]]
    assert (await other.select("tester", 1)).data == [[1, "in tx"]]


@pytest.mark.min_server_version(2, 10)
async def test_an_exception_rolls_the_transaction_back(conn: Any, server_kind: TarantoolBinary) -> None:

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with conn.transaction() as tx:
            await tx.replace("tester", [2, "rolled back"])
            raise Boom
    assert (await conn.select("tester", 2)).data == []
    assert not tx.in_transaction


@pytest.mark.min_server_version(2, 10)
async def test_a_cancellation_rolls_the_transaction_back(conn: Any, server_kind: TarantoolBinary) -> None:
    with trio.move_on_after(0.2) as scope:
        async with conn.transaction(isolation=tt.Isolation.READ_COMMITTED) as tx:
            await tx.replace("tester", [3, "cancelled"])
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert (await conn.select("tester", 3)).data == []
    # The stream's transaction is closed on the server: a new one on the same
    # connection begins and commits normally.
    async with conn.transaction() as tx2:
        await tx2.replace("tester", [3, "committed"])
    assert (await conn.select("tester", 3)).data == [[3, "committed"]]


@pytest.mark.min_server_version(2, 10)
async def test_explicit_begin_commit_rollback_on_a_stream(conn: Any, server_kind: TarantoolBinary) -> None:
    stream = await conn.stream()
    await stream.begin(timeout=5)
    await stream.insert("tester", [4, "a"])
    await stream.rollback()
    await stream.begin()
    await stream.insert("tester", [5, "b"])
    await stream.commit()
    assert (await conn.select("tester", [], iterator="ALL")).data == [[5, "b"]]
    with pytest.raises(tt.ConfigurationError, match="isolation"):
        await stream.begin(isolation="serializable")


@pytest.mark.min_server_version(2, 10)
async def test_a_lost_connection_fails_the_transaction_truthfully(
        conn: Any, server_kind: TarantoolBinary) -> None:
    stream = await conn.stream()
    await stream.begin()
    await stream.replace("tester", [6, "lost"])
    conn.reset("test: simulate a lost socket")
    with pytest.raises(tt.NetworkError, match="rolled it back") as info:
        await stream.replace("tester", [7, "outside the transaction?"])
    assert info.value.may_have_executed is False
    assert (await conn.select("tester", 6)).data == []
    assert (await conn.select("tester", 7)).data == []
