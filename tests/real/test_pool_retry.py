"""The pool's retry policy and deadline against real Tarantool and a hostile server.

Issue 8 item 3: a CALL refused with ER_READONLY may have run part of its body,
so the pool must not run it again elsewhere unless told it is idempotent.
Item 2 (pool part): one deadline per request, whose error says truthfully
whether the request was written.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.hostile import Peer, hostile_server
from tests.real._servers import Replicaset
from trio_tarantool import DatabaseError, ErrorCode, Mode, TarantoolTimeoutError, open_pool
from trio_tarantool._iproto import _constants as C

USER: dict[str, Any] = {"user": "test", "password": "test-password"}

#: On every instance: count the body's runs in a Lua global (not replicated),
#: then write (refused with ER_READONLY on a read-only instance).
BUMP_THEN_WRITE = (
    "rawset(_G, 'body_runs', 0) "
    "rawset(_G, 'bump_then_write', function(key) "
    "body_runs = body_runs + 1 "
    "box.space.tester:replace({key, 'bumped'}) "
    "return box.cfg.listen end)"
)


def body_runs(replicaset: Replicaset) -> dict[str, int]:
    return {inst.listen: int(inst.admin_eval("return body_runs")[0]) for inst in replicaset.instances}


async def test_a_call_refused_as_read_only_is_not_run_again(replicaset: Replicaset) -> None:
    """3 calls with mode=ANY over 1 master and 2 replicas: the body ran 5 times before."""
    for inst in replicaset.instances:
        inst.admin(BUMP_THEN_WRITE)
    ok = failed_may_have_run = 0
    with trio.fail_after(20):
        async with open_pool(replicaset.addrs, refresh_delay=30, **USER) as pool:
            for key in range(3):
                try:
                    await pool.call("bump_then_write", 7_000 + key, mode=Mode.ANY)
                    ok += 1
                except DatabaseError as exc:
                    assert exc.code == ErrorCode.ER_READONLY
                    assert exc.may_have_executed is True  # the body ran up to its write
                    failed_may_have_run += 1
            # DML is refused before it runs, so it is still retried (on the master).
            for key in range(3):
                await pool.replace("tester", [7_300 + key, "x"], mode=Mode.ANY)
    runs = body_runs(replicaset)
    assert sum(runs.values()) == ok + failed_may_have_run, runs
    assert failed_may_have_run == 2  # round robin: both replicas got one


async def test_an_idempotent_call_refused_as_read_only_is_retried_on_the_master(
        replicaset: Replicaset) -> None:
    for inst in replicaset.instances:
        inst.admin(BUMP_THEN_WRITE)
    with trio.fail_after(20):
        async with open_pool(replicaset.addrs, refresh_delay=30, **USER) as pool:
            served = [(await pool.call("bump_then_write", 7_100 + key, mode=Mode.ANY,
                                       idempotent=True))[0] for key in range(3)]
            # eval is covered by the same policy.
            await pool.eval("return bump_then_write(...)", 7_200, mode=Mode.ANY, idempotent=True)
    assert set(served) == {replicaset.master.listen}
    runs = body_runs(replicaset)
    assert runs[replicaset.master.listen] == 4
    assert sum(runs.values()) <= 4 + 2  # plus the replicas' refused runs


async def test_retries_off_means_one_attempt(replicaset: Replicaset) -> None:
    for inst in replicaset.instances:
        inst.admin(BUMP_THEN_WRITE)
    with trio.fail_after(20):
        async with open_pool(replicaset.addrs, refresh_delay=30, retry_not_executed=False,
                             **USER) as pool:
            with pytest.raises(DatabaseError) as info:
                for key in range(3):
                    await pool.call("bump_then_write", 7_400 + key, mode=Mode.ANY, idempotent=True)
    assert info.value.may_have_executed is True
    assert sum(body_runs(replicaset).values()) == key + 1


# -- one deadline per request (hostile server) -----------------------------------------


async def answer_probes_only(peer: Peer) -> None:
    """A healthy rw instance to the probes; silent to everything else (incl. schema loads)."""
    await peer.greet()
    await peer.serve_handshake()
    request = peer.pending
    while True:
        header, body = request if request is not None else await peer.read_request()
        request = None
        rtype, sync = header.get(C.REQUEST_TYPE), header[C.SYNC]
        if rtype == C.EVAL:
            await peer.reply(sync, {C.DATA: [False, "running"]})
        elif rtype == C.CALL and body.get(C.FUNCTION_NAME) == "box.info":
            await peer.reply(sync, {C.DATA: [{"ro": False, "status": "running"}]})


async def test_the_deadline_says_a_request_never_written_did_not_run() -> None:
    """A select by name needs the schema first, which never comes: the select itself
    was never written, so the timeout must say may_have_executed=False."""
    async with hostile_server(answer_probes_only) as server:
        addrs = [{"host": "127.0.0.1", "port": server.port}]
        with trio.fail_after(10):
            async with open_pool(addrs, socket_timeout=0.3, refresh_delay=30) as pool:
                with pytest.raises(TarantoolTimeoutError) as info:
                    await pool.select("tester", 1, mode=Mode.RW)
                assert info.value.may_have_executed is False, info.value
                with pytest.raises(TarantoolTimeoutError) as info:
                    await pool.call("f", mode=Mode.RW)  # written, never answered
                assert info.value.may_have_executed is True, info.value
    assert not [b for b in server.requests_of(C.SELECT) if b.get(C.SPACE_ID) not in (281, 289)]
