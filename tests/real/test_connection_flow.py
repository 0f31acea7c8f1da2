"""Flow control on one connection: coalesced writes and bounded in-flight requests."""

from __future__ import annotations

import trio
import trio.lowlevel

from tests.real._servers import TarantoolInstance
from trio_tarantool import connect


async def test_concurrent_requests_share_write_calls(clean_tarantool: TarantoolInstance) -> None:
    inst = clean_tarantool
    with trio.fail_after(20):
        async with connect(inst.host, inst.port, user=inst.user, password=inst.password) as conn:
            before = conn.statistics()
            results: dict[int, int] = {}

            async def one(i: int) -> None:
                results[i] = (await conn.eval("return ...", i)).data[0]

            async with trio.open_nursery() as nursery:
                for i in range(1000):
                    nursery.start_soon(one, i)
            after = conn.statistics()
    assert results == {i: i for i in range(1000)}
    sent = after.requests_sent - before.requests_sent
    writes = after.writes - before.writes
    assert sent == 1000
    # Requests queued while the writer was busy went out together.
    assert writes < sent / 5, (writes, sent)


async def test_in_flight_requests_are_bounded(clean_tarantool: TarantoolInstance) -> None:
    inst = clean_tarantool
    peak = 0
    with trio.fail_after(30):
        async with connect(inst.host, inst.port, user=inst.user, password=inst.password,
                           max_in_flight=8) as conn:
            done = 0

            async def one() -> None:
                nonlocal done
                assert (await conn.call("sleep", 0.01)).data == [0.01]
                done += 1

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, conn.statistics().in_flight)
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as outer:
                outer.start_soon(watch)
                async with trio.open_nursery() as nursery:
                    for _ in range(100):
                        nursery.start_soon(one)
                outer.cancel_scope.cancel()
            assert done == 100
            assert conn.statistics().in_flight == 0
    assert peak == 8  # reached, never exceeded
