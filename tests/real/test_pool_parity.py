"""Seed-API parity where ported code relies on it: pool.pool, get_address,
refresh_delay=0, the bad-mode message (against the hostile in-test server)."""

from __future__ import annotations

import pytest
import trio

import trio_tarantool as tt
from tests.hostile import Peer, hostile_server
from trio_tarantool._iproto import _constants as C


async def healthy(peer: Peer) -> None:
    """A writable instance: ID refused (2.6), probes answered, requests answered empty."""
    await peer.greet()
    while True:
        header, _ = await peer.read_request()
        rtype, sync = header.get(C.REQUEST_TYPE), header[C.SYNC]
        if rtype == C.ID:
            await peer.error(sync, 48, "Unknown request type 73")
        elif rtype == C.EVAL:
            await peer.reply(sync, {C.DATA: [False, "running"]})
        else:
            await peer.reply(sync, {C.DATA: []})


async def test_pool_mapping_addresses_and_the_bad_mode_message() -> None:
    async with hostile_server(healthy) as server:
        with trio.fail_after(10):
            async with tt.open_pool([{"host": "127.0.0.1", "port": server.port}]) as pool:
                key = f"127.0.0.1:{server.port}"
                assert list(pool.pool) == [key]
                assert pool.pool[key].get_address() == key
                with pytest.raises(ValueError, match="Unexpected mode 'rw'"):
                    await pool.select(512, 1, mode="rw")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="Please, specify 'mode' keyword argument"):
                    await pool.ping()


async def test_refresh_delay_zero_probes_often_but_never_spins() -> None:
    async with hostile_server(healthy) as server:
        with trio.fail_after(10):
            async with tt.open_pool([{"host": "127.0.0.1", "port": server.port}],
                                    refresh_delay=0) as pool:
                before = len(server.requests_of(C.EVAL))
                await trio.sleep(0.5)
                probes = len(server.requests_of(C.EVAL)) - before
                assert pool.refresh_delay == 0
    # Every ~10 ms: many probes in 0.5 s, but not a busy loop (thousands).
    assert 5 <= probes <= 100, probes
