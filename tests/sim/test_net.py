"""The fake network: stream conformance, faults, name resolution."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tarantool.sim._net import FakeSocket, Network


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


async def _pair(net: Network, address: tuple[str, int]) -> tuple[trio.SocketStream, trio.SocketStream]:
    c, s = await net.socketpair(address)
    return trio.SocketStream(c), trio.SocketStream(s)


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=0, max_size=300), max_size=30),
    chunk_size=st.one_of(st.none(), st.integers(1, 50)),
    delay=st.sampled_from([0.0, 0.001, 0.5]),
    jitter=st.sampled_from([0.0, 0.0004, 0.3]),
    seed=st.integers(0, 2**32),
)
def test_any_faults_short_of_loss_deliver_the_same_bytes_in_order(
    chunks: list[bytes], chunk_size: int | None, delay: float, jitter: float, seed: int
) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            net = Network(random.Random(seed), nursery)
            net.install()
            net.link(("127.99.9.9", 1)).set(chunk_size=chunk_size, delay=delay, jitter=jitter)
            a, b = await _pair(net, ("127.99.9.9", 1))
            got = bytearray()

            async def reader() -> None:
                while True:
                    data = await b.receive_some(4096)
                    if not data:
                        return
                    if chunk_size is not None:
                        assert len(data) <= chunk_size
                    got.extend(data)

            nursery.start_soon(reader)
            for chunk in chunks:
                await a.send_all(chunk)
            await a.send_eof()
        assert bytes(got) == b"".join(chunks)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_refuse_blackhole_and_unknown_names(autojump_clock: object) -> None:
    async with trio.open_nursery() as nursery:
        net = await _make_network(nursery)
        net.add_host("svc.sim", "127.66.1.1")

        async def handler(sock: FakeSocket) -> None:
            await trio.SocketStream(sock).send_all(b"hi")

        net.listen(("svc.sim", 7), handler)
        stream = await trio.open_tcp_stream("svc.sim", 7)
        assert await stream.receive_some(10) == b"hi"
        with pytest.raises(OSError) as info:
            await trio.open_tcp_stream("svc.sim", 8)  # nobody listens
        assert isinstance(info.value.__cause__.exceptions[0], ConnectionRefusedError)  # type: ignore[union-attr]
        net.link(("svc.sim", 7)).set(refuse=True)
        with pytest.raises(OSError):
            await trio.open_tcp_stream("svc.sim", 7)
        net.link(("svc.sim", 7)).set(refuse=False, blackhole=True)
        with trio.move_on_after(30) as scope:
            await trio.open_tcp_stream("svc.sim", 7)
        assert scope.cancelled_caught
        net.link(("svc.sim", 7)).clear()
        stream = await trio.open_tcp_stream("127.66.1.1", 7)  # numeric addresses work too
        assert await stream.receive_some(10) == b"hi"
        with pytest.raises(OSError):
            await trio.open_tcp_stream("nowhere.sim", 7)
