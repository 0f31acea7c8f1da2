"""Failover drills on a real vshard cluster under crud traffic through a pool of the two routers.

* A router is SIGKILLed while 20 tasks run ``crud_replace`` / ``crud_get`` in a
  loop: the pool moves to the other router, and every failure's
  ``may_have_executed`` is checked against what the storages hold (each write
  has its own key, so "was it applied?" has a definite answer).
* A storage master is SIGKILLed, then its replica promoted (``master='auto'``:
  ``box.cfg{read_only=false}``, the routers find it): writes to its buckets fail
  as ``CrudModuleError`` naming the problem, the other replicaset keeps
  serving, and writes resume after the promotion.

Each test starts its own cluster (they break it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from tests.real._cluster import SPACE, ShardedCluster, StorageReplicaset, cluster_fixture
from tests.real._servers import TEST_PASSWORD, TEST_USER, TarantoolBinary
from trio_tarantool import CrudModuleError, Error, open_pool

TASKS = 20
#: Keys of task i are i * KEY_SPAN + attempt: every write has a key of its own.
KEY_SPAN = 1_000_000


@pytest.fixture
def cluster(server_kind: TarantoolBinary) -> Iterator[ShardedCluster]:
    """A fresh cluster per test: the drills kill its processes."""
    yield from cluster_fixture(server_kind)


@dataclass(frozen=True)
class Outcome:
    """What one request was told: ``kind`` is 'ok' or the exception's class name."""

    op: str
    key: int
    kind: str
    may_have_executed: bool | None
    after_kill: bool


def _pool(cluster: ShardedCluster) -> Any:
    return open_pool(
        cluster.router_addrs, user=TEST_USER, password=TEST_PASSWORD, refresh_delay=0.2,
        socket_timeout=10,
    )


async def test_router_killed_under_crud_traffic(cluster: ShardedCluster) -> None:
    outcomes: list[Outcome] = []
    killed = False
    warm = trio.Event()
    done = trio.Event()
    successes_after_kill: Counter[int] = Counter()

    def record(op: str, key: int, exc: BaseException | None) -> None:
        if exc is None:
            outcomes.append(Outcome(op, key, "ok", None, killed))
        else:
            outcomes.append(
                Outcome(op, key, type(exc).__name__, getattr(exc, "may_have_executed", None), killed)
            )
        # Warm: 10 requests per task done before the kill.
        if len(outcomes) >= 10 * TASKS:
            warm.set()

    async def worker(pool: Any, task: int) -> None:
        last_ok: int | None = None
        attempt = 0
        while not done.is_set():
            attempt += 1
            key = task * KEY_SPAN + attempt
            try:
                await pool.crud_replace(SPACE, [key, None, f"t{task}", attempt])
            except Error as exc:
                record("replace", key, exc)
            else:
                record("replace", key, None)
                last_ok = key
                if killed:
                    successes_after_kill[task] += 1
                    if len(successes_after_kill) == TASKS and min(successes_after_kill.values()) >= 5:
                        done.set()
            if last_ok is not None:
                try:
                    # mode 'write': from the master (crud reads from a replica by
                    # default, which may not have the write yet: async replication).
                    got = await pool.crud_get(SPACE, last_ok, {"mode": "write"})
                except Error as exc:
                    record("get", last_ok, exc)
                else:
                    record("get", last_ok, None)
                    assert got.rows[0][0] == last_ok and got.rows[0][2] == f"t{task}"

    victim = cluster.routers[0]
    with trio.fail_after(60):
        async with _pool(cluster) as pool, trio.open_nursery() as nursery:
            for task in range(TASKS):
                nursery.start_soon(worker, pool, task)
            await warm.wait()
            killed = True
            await trio.to_thread.run_sync(victim.kill)
            await done.wait()
            # Every task got writes through after the kill: the pool moved to the
            # surviving router.
            assert not victim.is_running()

    stored = cluster.stored()
    kinds = Counter((o.op, o.kind, o.may_have_executed) for o in outcomes)
    applied_anyway = sum(
        1 for o in outcomes if o.op == "replace" and o.kind != "ok" and o.key in stored
    )
    print(f"\nrouter kill drill ({cluster.manager.binary.kind}): {dict(kinds)}; "
          f"failed writes that were applied anyway: {applied_anyway}")
    for o in outcomes:
        if o.op != "replace":
            continue
        if o.kind == "ok":
            assert o.key in stored, f"acknowledged write {o.key} is not on any storage"
        else:
            # A failure is a NetworkError-family error from the killed router.
            assert o.after_kill, f"{o} failed before the kill"
            if o.may_have_executed is False:
                assert o.key not in stored, f"{o} said not executed, but the storages hold it"
            else:
                assert o.may_have_executed is True, o
    # Reads only fail when they were in flight on the killed router.
    assert all(o.after_kill for o in outcomes if o.kind != "ok")
    assert sum(o.kind == "ok" and o.after_kill for o in outcomes) >= 5 * TASKS


def _keys_of(cluster: ShardedCluster, rs: StorageReplicaset, count: int) -> list[int]:
    """``count`` primary keys whose buckets ``rs`` owns."""
    keys: list[int] = []
    key = 0
    while len(keys) < count:
        key += 1
        if cluster.replicaset_of_key(key) is rs:
            keys.append(key)
    return keys


#: How the routers describe a replicaset whose master is gone, depending on
#: the moment: its connection refused, the master missing, no replica of the
#: replicaset connected (vshard's UNREACHABLE_REPLICASET), or the call timed out.
MASTER_GONE = ("Connection refused", "MISSING_MASTER", "master was not found", "Timeout exceeded",
               "Peer closed", "Connection is not established", "UNREACHABLE_REPLICASET")


def _first_replicaset(cluster: ShardedCluster) -> set[str]:
    """The replicaset each router's crud fetches the space schema from.

    crud 1.7.5 (``utils.get_spaces``) takes it from the master of the first
    replicaset of ``vshard.router.routeall()``: while that master is down,
    every write through that router fails with ``GetSpaceError``, whatever
    replicaset the key belongs to.
    """
    return {r.admin_eval("return (next(vshard.router.routeall()))")[0] for r in cluster.routers}


async def test_storage_master_killed_then_replica_promoted(cluster: ShardedCluster) -> None:
    # The victim is not the replicaset the routers take the schema from, so the
    # other replicaset keeps taking writes (see _first_replicaset).
    first = _first_replicaset(cluster)
    healthy_rs, victim_rs = sorted(cluster.replicasets, key=lambda rs: rs.uuid not in first)
    isolated = victim_rs.uuid not in first
    keys = _keys_of(cluster, victim_rs, 5 + TASKS)
    before, during = keys[:5], keys[5:]
    (elsewhere,) = _keys_of(cluster, healthy_rs, 1)
    old_master, new_master = victim_rs.master, victim_rs.replica

    with trio.fail_after(60):
        async with _pool(cluster) as pool:
            for key in before:
                await pool.crud_replace(SPACE, [key, None, "before", 0])
            await trio.to_thread.run_sync(_wait_replicated, victim_rs)
            await trio.to_thread.run_sync(old_master.kill)

            # Writes to the dead master's buckets fail typed and say why.
            with pytest.raises(CrudModuleError) as info:
                await pool.crud_replace(SPACE, [during[0], None, "x", 0], {"timeout": 0.5})
            err = info.value.extra_info_error
            assert err.class_name == "ReplaceError"
            assert any(problem in err.err for problem in MASTER_GONE), err.err
            # The other replicaset is untouched (unless both routers fetch the
            # schema from the victim). (Reads of the victim's keys are not
            # checked here: right after the kill vshard may call the whole
            # replicaset UNREACHABLE_REPLICASET for a moment.)
            if isolated:
                assert (await pool.crud_replace(SPACE, [elsewhere, None, "ok", 0])).rows[0][0] == elsewhere

            # Writers keep trying through the promotion; each stops at its first success.
            errors: list[BaseException] = []
            acknowledged: list[int] = []

            async def writer(key: int) -> None:
                while True:
                    try:
                        await pool.crud_replace(SPACE, [key, None, "during", 1], {"timeout": 0.5})
                    except Error as exc:
                        errors.append(exc)
                        await trio.sleep(0.05)  # pacing between attempts, not synchronisation
                    else:
                        acknowledged.append(key)
                        return

            async with trio.open_nursery() as nursery:
                for key in during:
                    nursery.start_soon(writer, key)
                await trio.to_thread.run_sync(cluster.promote, new_master)
            # Right after the routers see the new master, writes go through.
            assert (await pool.crud_replace(SPACE, [during[0], None, "after", 2])).rows[0][2] == "after"

    assert sorted(acknowledged) == sorted(during)
    kinds = Counter(type(e).__name__ for e in errors)
    print(f"\nstorage master drill ({cluster.manager.binary.kind}): errors {dict(kinds)}")
    assert all(isinstance(e, CrudModuleError) for e in errors), kinds
    for exc in errors:
        assert isinstance(exc, CrudModuleError)
        assert exc.extra_info_error.class_name == "ReplaceError"
        assert any(p in exc.extra_info_error.err for p in MASTER_GONE), exc.extra_info_error.err
    stored = cluster.stored()
    assert all(stored[key][2] == "before" for key in before)
    assert all(stored[key][2] in ("during", "after") for key in during)
    if isolated:
        assert stored[elsewhere][2] == "ok"
    assert cluster.holder_of(during[1]) is victim_rs and victim_rs.master is new_master


def _wait_replicated(rs: StorageReplicaset) -> None:
    """Block until the replica has applied the master's vclock."""
    from tests.real._servers import Replicaset

    view = Replicaset(rs.members)
    view.master = rs.master
    view.wait_replicated()
