"""Pool health against hostile servers and real Tarantool: probe cost, call_16 probes.

Issue 8 items 6 and 12: an instance that accepts and drops every connection
must not be reconnected in a storm, nor make its healthy neighbour be probed
in one; and probes must work on connections opened with ``call_16=True``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.hostile import HostileServer, Peer, hostile_server
from tests.real._servers import Replicaset
from trio_tarantool import Mode, Status, open_pool
from trio_tarantool._iproto import _constants as C

USER: dict[str, Any] = {"user": "test", "password": "test-password"}
#: How long the storm tests watch the pool (real seconds).
WATCH = 3.0


async def answer_probes(peer: Peer, first: tuple[dict[int, Any], dict[int, Any]] | None = None) -> None:
    """Answer box.info probes as a healthy rw instance (EVAL of ro/status, or CALL box.info)."""
    request = first
    while True:
        header, _ = request if request is not None else await peer.read_request()
        request = None
        rtype, sync = header.get(C.REQUEST_TYPE), header[C.SYNC]
        if rtype == C.EVAL:
            await peer.reply(sync, {C.DATA: [False, "running"]})
        elif rtype in (C.CALL, C.CALL_16):
            await peer.reply(sync, {C.DATA: [{"ro": False, "status": "running"}]})
        else:
            await peer.reply(sync, {C.DATA: []})


async def healthy(peer: Peer) -> None:
    await peer.greet()
    await peer.serve_handshake()
    await answer_probes(peer, peer.pending)


async def drop_after_probe(peer: Peer) -> None:
    """Greet, answer the first probe as a healthy master, then drop the connection."""
    await peer.greet()
    await peer.serve_handshake()
    assert peer.pending is not None
    header, _ = peer.pending
    if header.get(C.REQUEST_TYPE) == C.EVAL:
        await peer.reply(header[C.SYNC], {C.DATA: [False, "running"]})
    else:
        await peer.reply(header[C.SYNC], {C.DATA: [{"ro": False, "status": "running"}]})


def probes(server: HostileServer) -> int:
    """EVAL probes, or (before the fix) CALLs of box.info; not the test's own CALLs of "f"."""
    calls = [b for b in server.requests_of(C.CALL) if b.get(C.FUNCTION_NAME) == "box.info"]
    return len(server.requests_of(C.EVAL)) + len(calls)


@asynccontextmanager
async def two_servers(flapping: Callable[[Peer], Awaitable[None]]
                      ) -> AsyncIterator[tuple[HostileServer, HostileServer]]:
    async with hostile_server(flapping) as bad, hostile_server(healthy) as good:
        yield bad, good


async def test_a_flapping_instance_costs_few_connects_and_no_probes_of_its_neighbour() -> None:
    """Issue 8 item 6: ~90 connects/s to the flapping instance, ~21 probes/s of the healthy one.

    The flapping instance looks healthy to each probe and drops the connection
    right after it (each loss used to wake every probe loop, its own 10 ms later).
    """
    async with two_servers(drop_after_probe) as (bad, good):
        addrs = [{"host": "127.0.0.1", "port": bad.port}, {"host": "127.0.0.1", "port": good.port}]
        with trio.fail_after(WATCH + 10):
            async with open_pool(addrs, refresh_delay=1) as pool:
                # Requests keep running meanwhile (each an RW call to the healthy one).
                for _ in range(int(WATCH * 10)):
                    await pool.call("f", mode=Mode.RW)
                    await trio.sleep(0.1)
                assert pool.statistics()[1].status == Status.HEALTHY
        connects, neighbour_probes = bad.connections, probes(good)
    # Cadence: one probe per refresh_delay, plus the first one; a backoff that
    # starts at 50 ms adds a handful. Before the fix: ~270 and ~60.
    assert connects <= 3 * WATCH + 3, connects
    assert neighbour_probes <= WATCH / 1 + 4, neighbour_probes


async def test_probes_work_with_call_16(replicaset: Replicaset) -> None:
    """Issue 8 item 12: with call_16=True every instance stayed UNHEALTHY."""
    with trio.fail_after(20):
        async with open_pool(replicaset.addrs, call_16=True, refresh_delay=0.2, **USER) as pool:
            stats = pool.statistics()
            assert [s.status for s in stats] == [Status.HEALTHY] * 3, stats
            roles = {s.addr: s.read_only for s in stats}
            assert roles[replicaset.master.listen] is False
            assert all(roles[r.listen] is True for r in replicaset.replicas)
            resp = await pool.call("whoami", mode=Mode.RW)
            # CALL_16 wraps each returned value in a tuple of its own.
            assert replicaset.master.listen in str(resp.data)
