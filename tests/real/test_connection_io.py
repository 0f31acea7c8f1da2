"""Concurrency, pushes, cancellation, timeouts and connection loss against real servers.

Destructive tests (kill, freeze, restart) get a private instance from
``tarantool_factory``; the blocking restart runs in a thread so the trio loop
keeps serving the connection under test meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_tarantool._connection as connection_module
from tests.hostile import Peer, hostile_server
from tests.real._servers import TarantoolInstance
from tests.real._servers import connect_to as _connect
from trio_tarantool import ConnectionClosedError, NetworkError, TarantoolTimeoutError, connect
from trio_tarantool._connection import _FLUSH_AT
from trio_tarantool._iproto import _constants as C

# ------------------------------------------------------------------ pushes


def _pushed_value(data: Any) -> Any:
    """The pushed value, whether the callback got the DATA array or its element."""
    if isinstance(data, list) and len(data) == 1:
        return data[0]
    return data


async def test_push_on_call(conn: Any) -> None:
    """on_push gets (data, on_push_ctx) per message; data is the reply's DATA
    array ([value]), as in the reference connector."""
    seen: list[Any] = []
    ctx: list[Any] = []

    def on_push(data: Any, on_push_ctx: Any) -> None:
        seen.append(data)
        on_push_ctx.append(len(seen))

    resp = await conn.call("push_n", 3, on_push=on_push, on_push_ctx=ctx)
    assert resp.data == ["done"]
    assert seen == [[1], [2], [3]]
    assert ctx == [1, 2, 3]


async def test_push_on_eval_and_without_callback(conn: Any) -> None:
    seen: list[Any] = []
    resp = await conn.eval(
        "box.session.push({a = 1}) box.session.push('two') return 3",
        on_push=lambda data, ctx: seen.append((_pushed_value(data), ctx)),
        on_push_ctx="ctx",
    )
    assert resp.data == [3]
    assert seen == [({"a": 1}, "ctx"), ("two", "ctx")]
    # Without a callback the pushes are dropped and the answer still arrives.
    assert (await conn.call("push_n", 5)).data == ["done"]


async def test_pushes_of_concurrent_calls_do_not_mix(conn: Any) -> None:
    seen: dict[int, list[Any]] = {n: [] for n in (2, 4, 6)}

    async def run(n: int) -> None:
        resp = await conn.call(
            "push_n", n, on_push=lambda d, ctx: seen[ctx].append(_pushed_value(d)), on_push_ctx=n
        )
        assert resp.data == ["done"]

    async with trio.open_nursery() as nursery:
        for n in seen:
            nursery.start_soon(run, n)
    assert seen == {n: list(range(1, n + 1)) for n in (2, 4, 6)}


# ------------------------------------------------------------- concurrency


async def test_thousand_concurrent_requests(conn: Any) -> None:
    await conn.insert("tester", (1, "one"))
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        if i % 3 == 0:
            results[i] = (await conn.call("echo", i, f"s{i}")).data
        elif i % 3 == 1:
            results[i] = (await conn.eval("return ... * 2", i)).data
        else:
            results[i] = [list(r) for r in await conn.select("tester", 1)]

    start = trio.current_time()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(1000):
                nursery.start_soon(one, i)
    elapsed = trio.current_time() - start
    assert len(results) == 1000
    for i, data in results.items():
        if i % 3 == 0:
            assert data == [i, f"s{i}"]
        elif i % 3 == 1:
            assert data == [i * 2]
        else:
            assert data == [[1, "one"]]
    assert conn.in_flight == 0
    print(f"1000 concurrent requests on one connection: {elapsed * 1000:.1f} ms")


async def test_slow_request_does_not_block_others(conn: Any) -> None:
    order: list[str] = []

    async def slow() -> None:
        await conn.call("sleep", 0.5)
        order.append("slow")

    async def fast() -> None:
        await trio.sleep(0.05)
        await conn.ping()
        order.append("fast")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            nursery.start_soon(fast)
    assert order == ["fast", "slow"]


# ------------------------------------------------------------ cancellation


async def test_cancel_in_the_middle(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    with trio.move_on_after(0.1) as scope:
        await conn.call("sleep", 1)
    assert scope.cancelled_caught
    # The connection is still usable right away.
    assert (await conn.call("echo", "after cancel")).data == ["after cancel"]
    # A request in flight when the late reply (1) arrives gets its own answer.
    with trio.fail_after(5):
        assert (await conn.call("sleep", 1.2)).data == [1.2]
    assert (await conn.call("echo", "still fine")).data == ["still fine"]
    assert conn.in_flight == 0
    assert conn.is_connected()


async def test_many_cancelled_requests_leave_no_stale_replies(
    conn: Any, clean_tarantool: TarantoolInstance
) -> None:
    # Many requests cancelled at once: none of their replies reaches a later request.
    gate = "stale-replies"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(conn.call, "gate_wait", gate, f"stale-{i}")
            # Cancelled once all 50 are held on the server (sent, not answered).
            await trio.to_thread.run_sync(clean_tarantool.gate_arrivals, gate, 50)
            nursery.cancel_scope.cancel()
        for i in range(20):
            assert (await conn.call("echo", i)).data == [i]
        # The 50 stale replies are sent now, all before the next reply on this socket.
        await trio.to_thread.run_sync(clean_tarantool.gate_open, gate)
        await trio.to_thread.run_sync(clean_tarantool.gate_departures, gate, 50)
        assert (await conn.call("echo", "x")).data == ["x"]
    assert conn.in_flight == 0


# ---------------------------------------------------------------- timeouts


async def test_socket_timeout(clean_tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with _connect(clean_tarantool, socket_timeout=0.2) as c:
            start = trio.current_time()
            with pytest.raises(TarantoolTimeoutError) as exc:
                await c.call("sleep", 1)
            elapsed = trio.current_time() - start
            assert 0.15 < elapsed < 0.9
            assert isinstance(exc.value, TimeoutError)
            assert isinstance(exc.value, NetworkError)
            assert exc.value.may_have_executed is True
            # Fast requests still work on the same connection object.
            assert (await c.call("echo", 1)).data == [1]


async def test_socket_timeout_on_frozen_server(
    tarantool_factory: Callable[..., TarantoolInstance],
) -> None:
    inst = tarantool_factory()
    with trio.fail_after(20):
        async with _connect(inst, socket_timeout=0.3) as c:
            await c.ping()
            inst.freeze()
            try:
                with pytest.raises(TarantoolTimeoutError):
                    await c.ping()
            finally:
                inst.thaw()
            assert await c.ping(notime=True) == "Success"


async def test_connection_timeout_on_frozen_server(
    tarantool_factory: Callable[..., TarantoolInstance],
) -> None:
    inst = tarantool_factory()
    inst.freeze()  # the kernel accepts, but no greeting ever comes
    try:
        start = trio.current_time()
        with trio.fail_after(10), pytest.raises(TarantoolTimeoutError):
            async with _connect(inst, connection_timeout=0.3, reconnect_max_attempts=0):
                pytest.fail("connected to a frozen server")
        assert trio.current_time() - start < 3
    finally:
        inst.thaw()


# ------------------------------------------------------- connection loss


async def test_server_killed_mid_request_then_restarted(
    tarantool_factory: Callable[..., TarantoolInstance],
) -> None:
    inst = tarantool_factory()
    with trio.fail_after(30):
        async with _connect(inst) as c:
            await c.ping()

            async def kill_soon() -> None:
                await trio.sleep(0.2)
                inst.kill()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_soon)
                with pytest.raises(NetworkError) as exc:
                    await c.call("sleep", 5)
            assert exc.value.may_have_executed is True
            assert not isinstance(exc.value, TarantoolTimeoutError)

            await trio.to_thread.run_sync(inst.start)
            # The next request reconnects by itself.
            assert (await c.call("echo", "back")).data == ["back"]
            assert [list(r) for r in await c.select("tester")] == []
            assert c.is_connected()


async def test_request_while_server_is_down_was_not_sent(
    tarantool_factory: Callable[..., TarantoolInstance],
) -> None:
    inst = tarantool_factory()
    with trio.fail_after(30):
        async with _connect(inst, reconnect_max_attempts=2, reconnect_delay=0.05) as c:
            await c.ping()
            inst.kill()
            await c.wait_disconnected()
            with pytest.raises(NetworkError) as exc:
                await c.insert("tester", (1, "never"))
            assert exc.value.may_have_executed is False
            await trio.to_thread.run_sync(inst.start)
            assert (await c.call("echo", 2)).data == [2]
            # The refused insert really did not run.
            assert inst.admin_eval("return box.space.tester:len()") == [0]


async def test_server_restarted_between_requests(
    tarantool_factory: Callable[..., TarantoolInstance],
) -> None:
    inst = tarantool_factory()
    with trio.fail_after(30):
        async with _connect(inst) as c:
            await c.insert("tester", (1, "durable"))
            await trio.to_thread.run_sync(inst.restart)
            assert [list(r) for r in await c.select("tester", 1)] == [[1, "durable"]]


async def test_reconnect_with_data_written_by_other_side(
    tarantool_factory: Callable[..., TarantoolInstance],
) -> None:
    # After a restart, a space created while the client was away resolves by name.
    inst = tarantool_factory()
    with trio.fail_after(30):
        async with _connect(inst) as c:
            await c.ping()
            inst.kill()
            await trio.to_thread.run_sync(inst.start)
            inst.admin("box.schema.space.create('later'):create_index('pk')")
            assert [list(r) for r in await c.insert("later", (1,))] == [[1]]


# ------------------------------------------------------------- transports


async def test_unix_socket(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    inst = tarantool_factory(unix_listen=True)
    with trio.fail_after(10):
        async with connect(
            None, str(inst.unix_socket), user=inst.user, password=inst.password
        ) as c:
            assert await c.ping(notime=True) == "Success"
            await c.insert("tester", (1, "via unix"))
            assert [list(r) for r in await c.select("tester", "via unix", index="name_idx")] == [
                [1, "via unix"]
            ]
            assert (await c.call("whoami")).data[0][2] == str(inst.unix_socket)


# ---------------------------------------------------------------- volume


async def test_large_values_and_many_rows(conn: Any, clean_tarantool: TarantoolInstance) -> None:
    big = "x" * (3 * 1024 * 1024 + 7)  # spans many socket reads
    with trio.fail_after(20):
        resp = await conn.insert("tester", (1, big))
        assert resp[0][1] == big
        # Binary values stay binary inside a tuple (Lua 2.6 would turn them into strings).
        blob = bytes(range(256)) * 8192
        assert (await conn.insert("wide", (1, blob)))[0][1] == blob
        assert (await conn.select("wide", 1))[0][1] == blob
        clean_tarantool.admin("for i = 2, 20001 do box.space.tester:insert{i, tostring(i)} end")
        rows = await conn.select("tester", 2, iterator="GE")
        assert len(rows) == 20000
        assert [list(r) for r in rows[:2]] == [[2, "2"], [3, "3"]]
        assert list(rows[-1]) == [20001, "20001"]


async def test_many_connections_at_once(clean_tarantool: TarantoolInstance) -> None:
    seen: list[int] = []

    async def one(i: int) -> None:
        async with _connect(clean_tarantool) as c:
            assert (await c.call("echo", i)).data == [i]
            seen.append(i)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
    assert sorted(seen) == list(range(50))
    # Every connection was closed by its context: the server's count drops to 0
    # (the admin console is not an IPROTO connection).
    with trio.fail_after(5):
        # Polls another process, so there is no trio.Event to wait on.
        while clean_tarantool.admin_eval("return box.stat.net().CONNECTIONS.current") != [0]:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_explicit_chap_sha1(clean_tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with _connect(clean_tarantool, auth_type="chap-sha1") as c:
            assert (await c.eval("return box.session.user()")).data == ["test"]


async def test_close_fails_requests_in_flight(clean_tarantool: TarantoolInstance) -> None:
    from trio_tarantool import ConnectionClosedError

    errors: list[BaseException] = []
    gate = "close-in-flight"

    async def slow(c: Any) -> None:
        try:
            await c.call("gate_wait", gate)
        except ConnectionClosedError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with _connect(clean_tarantool) as c:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(slow, c)
                # All three are held on the server: sent, and not answered.
                await trio.to_thread.run_sync(clean_tarantool.gate_arrivals, gate, 3)
                assert c.in_flight == 3
                c.close()
        # Release the held requests of the shared instance.
        await trio.to_thread.run_sync(clean_tarantool.gate_open, gate)
    assert len(errors) == 3
    assert all(isinstance(e, NetworkError) and e.may_have_executed for e in errors)


# ------------------------------------------------------------------ writing a batch of callers


_SYNCS: list[int] = []


def _echo_body(header: dict[int, Any], body: dict[int, Any]) -> dict[int, Any]:
    _SYNCS.append(header[C.SYNC])
    return {C.DATA: [body.get(C.TUPLE)]}


async def _echo(peer: Peer) -> None:
    """Answer every request with its own tuple (a REPLACE's echo); note its sync."""
    await peer.serve(_echo_body)


class StingySocket:
    """``os`` for the connection module, whose ``write`` takes at most
    ``limit`` bytes and refuses every third call (EAGAIN)."""

    calls = 0
    limit = 700

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        StingySocket.calls += 1
        if StingySocket.calls % 3 == 0:
            raise BlockingIOError
        return os.write(fd, bytes(data[:StingySocket.limit]))


async def test_many_callers_in_one_batch_are_written_in_chunks() -> None:
    """Regression (issue 11): 100 callers woken together queued 100 requests and
    the writer task sent them in one write after the last, the server idle
    meanwhile. Every _FLUSH_AT queued packets the submitting caller now writes
    them itself: the counts of writes are exact, and every caller gets its own
    answer."""
    async with hostile_server(_echo) as server:
        async with connect("127.0.0.1", server.port, fetch_schema=False) as conn:
            await conn.replace(512, [0, "warm"])
            before = conn.statistics()
            got: dict[int, Any] = {}

            async def one(i: int) -> None:
                got[i] = (await conn.replace(512, [i, f"v{i}"])).data

            async with trio.open_nursery() as nursery:
                for i in range(1, 101):
                    nursery.start_soon(one, i)
            after = conn.statistics()
    assert got == {i: [[i, f"v{i}"]] for i in range(1, 101)}
    assert after.requests_sent - before.requests_sent == 100
    # The first goes out at once (nothing in flight), then a write every
    # _FLUSH_AT queued packets, and the writer task sends what is left.
    # (Before: 2 writes, the direct one and the writer's.)
    queued = 99
    assert after.writes - before.writes == 1 + queued // _FLUSH_AT + (1 if queued % _FLUSH_AT else 0)
    assert after.writes - before.writes > 2


async def test_partial_and_refused_writes_keep_every_packet_whole_and_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket that takes a few hundred bytes per write, and now and then
    none (EAGAIN), under a batch of callers: the packets cut by an early
    write are finished first, in order, by the writer; the server parses
    every request intact and in submission order, every caller gets its own
    answer, and each request counts as sent once."""
    StingySocket.calls = 0
    payload = "p" * 300  # ~320-byte packets: a chunk of 32 is cut many times
    _SYNCS.clear()
    async with hostile_server(_echo) as server:
        async with connect("127.0.0.1", server.port, fetch_schema=False) as conn:
            await conn.replace(512, [0, "warm"])
            before = conn.statistics()
            monkeypatch.setattr(connection_module, "os", StingySocket())
            got: dict[int, Any] = {}

            async def one(i: int) -> None:
                got[i] = (await conn.replace(512, [i, payload, i])).data

            async with trio.open_nursery() as nursery:
                for i in range(1, 151):
                    nursery.start_soon(one, i)
            monkeypatch.undo()
            after = conn.statistics()
    assert got == {i: [[i, payload, i]] for i in range(1, 151)}
    # Intact: every tuple parsed as sent. In order: syncs grow as the callers submitted.
    assert sorted(body[C.TUPLE][0] for body in server.requests_of(C.REPLACE)) == list(range(151))
    assert len(_SYNCS) == 151 and _SYNCS == sorted(_SYNCS)
    assert after.requests_sent - before.requests_sent == 150
    assert StingySocket.calls > 150 * 320 // 700  # it really was cut


async def test_callers_cancelled_around_early_writes_never_desync(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancellation in every state the early writes create: half of a batch of
    150 callers is cancelled while their packets are unwritten in the queue,
    written whole, or cut by a short write. Nothing is desynchronised: the
    server parses every packet whole, in sync order; a cancelled request that
    was not written never reaches it, one cut in half is finished; every other
    caller gets its own answer, and the connection goes on with nothing in flight."""
    payload = "c" * 300
    _SYNCS.clear()
    monkeypatch.setattr(StingySocket, "limit", 4000)  # a dozen packets per write, one cut
    async with hostile_server(_echo) as server:
        async with connect("127.0.0.1", server.port, fetch_schema=False) as conn:
            await conn.replace(512, [0, "warm"])
            monkeypatch.setattr(connection_module, "os", StingySocket())
            got: dict[int, Any] = {}
            scopes: dict[int, trio.CancelScope] = {}

            async def one(i: int) -> None:
                # Within the batch, before the writer task runs: the previous
                # caller's packet is queued unwritten, or was written by an
                # early write (whole, or cut by it).
                # Every second caller to run cancels one that ran before it (trio
                # runs a batch in an order of its choosing): the one just before
                # (queued, unwritten) or, taking turns, one 70 places before
                # (written by an early write by now, whole or in part).
                k = len(order)
                if k % 2:
                    victim = order[k - 70] if k % 4 == 3 and k >= 70 else order[k - 1]
                    if victim not in cancelled:
                        scopes[victim].cancel()
                        cancelled.append(victim)
                # And a packet an early write cut in two (its rest queued first):
                # its caller is cancelled too; the rest must still go out.
                link = conn._link
                for ticket in link.outbox[:1] if link is not None else []:
                    caller = callers.get(ticket.task)
                    if ticket.written and caller is not None and caller not in cancelled:
                        scopes[caller].cancel()
                        cancelled.append(caller)
                        cut.append(caller)
                callers[trio.lowlevel.current_task()] = i
                order.append(i)
                with trio.CancelScope() as scope:
                    scopes[i] = scope
                    got[i] = (await conn.replace(512, [i, payload, i])).data

            order: list[int] = []
            cut: list[int] = []
            callers: dict[Any, int] = {}

            cancelled: list[int] = []
            async with trio.open_nursery() as nursery:
                for i in range(1, 151):
                    nursery.start_soon(one, i)
            monkeypatch.undo()
            assert conn.in_flight == 0
            assert (await conn.replace(512, [999, "after"])).data == [[999, "after"]]
    assert {i: got[i] for i in range(1, 151) if i not in cancelled} == {
        i: [[i, payload, i]] for i in range(1, 151) if i not in cancelled}
    assert not set(got) & set(cancelled)
    seen = [body[C.TUPLE][0] for body in server.requests_of(C.REPLACE)]
    assert len(seen) == len(set(seen))  # each at most once
    assert set(range(1, 151)) - set(cancelled) <= set(seen) and seen[-1] == 999
    assert _SYNCS == sorted(_SYNCS)
    # Both kinds of cancelled request happened: forgotten unwritten, and written.
    assert set(cancelled) - set(seen) and set(cancelled) & set(seen)
    assert cut and set(cut) <= set(seen)


async def test_close_among_early_writes_says_truly_what_may_have_executed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """close() in the middle of a batch of callers whose packets are queued,
    written early, or cut by a short write: every caller fails with
    ConnectionClosedError, and one that says it was not executed truly never
    reached the server (whatever bytes went out, the server parses no request
    of a caller told 'not executed')."""
    payload = "x" * 300
    monkeypatch.setattr(StingySocket, "limit", 4000)
    async with hostile_server(_echo) as server:
        async with connect("127.0.0.1", server.port, fetch_schema=False) as conn:
            await conn.replace(512, [0, "warm"])
            monkeypatch.setattr(connection_module, "os", StingySocket())
            failures: dict[int, NetworkError] = {}
            ran: list[int] = []

            async def one(i: int) -> None:
                ran.append(i)
                if len(ran) == 120:  # close with the batch's writes in every state
                    conn.close()
                try:
                    await conn.replace(512, [i, payload, i])
                except NetworkError as exc:
                    failures[i] = exc

            async with trio.open_nursery() as nursery:
                for i in range(1, 151):
                    nursery.start_soon(one, i)
            monkeypatch.undo()
        await trio.testing.wait_all_tasks_blocked()  # the server has read what reached it
    assert set(failures) == set(range(1, 151))
    assert all(isinstance(exc, ConnectionClosedError) for exc in failures.values())
    reached = {body[C.TUPLE][0] for body in server.requests_of(C.REPLACE)} - {0}
    not_executed = {i for i, exc in failures.items() if not exc.may_have_executed}
    assert not reached & not_executed
    assert reached and not_executed  # both kinds happened
