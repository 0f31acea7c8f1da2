"""Plain connections to the members of a real replicaset (roles, replication, promotion)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.real._servers import Replicaset, TarantoolInstance
from trio_tarantool import DatabaseError, ErrorCode, NetworkError, ServerError, connect


def _connect(inst: TarantoolInstance, **kwargs: Any) -> Any:
    kwargs.setdefault("user", inst.user)
    kwargs.setdefault("password", inst.password)
    return connect(inst.host, inst.port, **kwargs)


async def test_members_identify_themselves(replicaset: Replicaset) -> None:
    seen = []
    with trio.fail_after(10):
        for inst in replicaset:
            async with _connect(inst) as c:
                instance_id, instance_uuid, listen, ro = (await c.call("whoami"))[0]
                seen.append((instance_id, listen, ro))
                assert instance_uuid == inst.admin_eval("return box.info.uuid")[0]
    # The master bootstrapped the set (id 1); replicas got ids in join order.
    assert seen[0] == (1, replicaset.instances[0].listen, False)
    assert sorted(i for i, _, _ in seen) == [1, 2, 3]
    assert [(listen, ro) for _, listen, ro in seen[1:]] == [
        (replicaset.instances[1].listen, True),
        (replicaset.instances[2].listen, True),
    ]


async def test_write_on_master_read_on_replica(replicaset: Replicaset) -> None:
    master, replica, _ = replicaset.instances
    with trio.fail_after(15):
        async with _connect(master) as m, _connect(replica) as r:
            await m.insert("tester", (1, "replicated"))
            with pytest.raises(DatabaseError) as exc:
                await r.insert("tester", (2, "refused"))
            assert exc.value.code == ErrorCode.ER_READONLY
            assert exc.value.may_have_executed is False
            await trio.to_thread.run_sync(replicaset.wait_replicated)
            assert [list(t) for t in await r.select("tester")] == [[1, "replicated"]]


async def test_failover_seen_by_connections(replicaset: Replicaset) -> None:
    master, new_master, other = replicaset.instances
    with trio.fail_after(30):
        async with _connect(master) as m, _connect(new_master) as n:
            await m.ping()
            assert (await n.call("whoami"))[0][3] is True
            replicaset.kill_master()
            with pytest.raises(NetworkError):
                await m.ping()
            replicaset.promote(new_master)
            assert (await n.call("whoami"))[0][3] is False
            await n.insert("tester", (10, "after failover"))
            # The third member follows the new master.
            async with _connect(other) as o:
                with trio.fail_after(10):
                    while not await o.select("tester", 10):  # noqa: ASYNC110 - remote state
                        await trio.sleep(0.05)


async def test_loading_instance_refuses_then_serves(replicaset: Replicaset) -> None:
    _, replica, other = replicaset.instances
    other.kill()  # with a peer down, the restarted replica keeps loading
    replica.stop()
    replicaset.start_loading(replica, seconds=2.0)
    with trio.fail_after(20):
        refused = 0
        while True:
            try:
                async with _connect(replica, reconnect_max_attempts=0) as c:
                    # Loading is over: it runs read-only without a full quorum.
                    assert (await c.call("whoami"))[0][3] is True
                    break
            except ServerError as exc:
                assert exc.code == ErrorCode.ER_LOADING
                assert exc.may_have_executed is False
                refused += 1
            except NetworkError:
                pass  # not listening yet
            await trio.sleep(0.1)
    assert refused > 0
    assert replica.admin_eval("return box.info.status")[0] in {"orphan", "running"}
