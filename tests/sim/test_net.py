"""The fake network: stream conformance, faults, name resolution."""

from __future__ import annotations

import random

import trio
import trio.testing

from sim._net import FakeSocket, Network


async def _make_network(nursery: trio.Nursery) -> Network:
    net = Network(random.Random(0), nursery)
    net.install()
    return net


async def test_fake_stream_pair_is_a_half_closeable_stream() -> None:
    async with trio.open_nursery() as nursery:
        net = await _make_network(nursery)

        async def maker() -> tuple[trio.SocketStream, trio.SocketStream]:
            c, s = await net.socketpair()
            return trio.SocketStream(c), trio.SocketStream(s)

        async def clogged() -> tuple[trio.SocketStream, trio.SocketStream]:
            a, b = await maker()
            # fill both directions until a send would block
            for s in (a, b):
                sock = s.socket
                assert isinstance(sock, FakeSocket)
                while sock.is_writable_now():
                    await sock.send(b"x" * 65536)
            return a, b

        with trio.fail_after(3):
            await trio.testing.check_half_closeable_stream(maker, clogged)
