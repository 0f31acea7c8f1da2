"""A real vshard cluster with the real crud module, for tests and benchmarks.

Theory of operation
-------------------
:func:`start_cluster` builds, on top of a :class:`~tests.real._servers.ServerManager`
(which owns every process and stops them all in ``close()``), the smallest
cluster that exercises everything a client of crud meets:

* two storage replicasets, each a master and a replica
  (``lua/sharded_storage.lua``: ``vshard.storage.cfg`` + ``crud.init_storage()``,
  the sharded space ``customers`` with its ``bucket_id`` field and index);
* two routers (``lua/sharded_router.lua``: ``vshard.router.cfg`` +
  ``crud.init_router()`` + ``crud.cfg{stats = true}``), the instances clients
  connect to, as user ``test``.

Every replicaset is configured with ``master = 'auto'``: vshard's routers find
the writable member of each replicaset by themselves (and storages learn their
role from ``box.info.ro``), so a failover is "make the replica writable"
(:meth:`ShardedCluster.promote`) and needs no re-cfg anywhere; the routers pick
the new master up within their master-search interval (0.5 s while a master is
missing).

The modules are the unmodified releases in ``../shared/lua-rocks`` (crud 1.7.5,
vshard 0.1.42, checks, errors), put on ``package.path`` by the Lua scripts from
``$LUA_ROCKS_DIR``, which this module sets from :func:`rocks_dir`. Where that
folder is missing (a user's machine) :func:`rocks_dir` raises
:class:`RocksMissingError`; the tests' fixture (:func:`cluster_fixture`) skips
then, except in CI, where it fails.

Start-up: the six processes are spawned at once, waited for, then one router
bootstraps the buckets (``vshard.router.bootstrap``) and every router is
waited for until it sees every replicaset's master; :attr:`ShardedCluster.start_seconds`
says how long that took.

Like ``_servers.py``, this module depends on nothing but the standard library
(and pytest, only inside :func:`cluster_fixture`), so ``bench/`` can use it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.real._servers import (
    LUA_DIR,
    PROJECT_ROOT,
    AdminError,
    ServerManager,
    ServerStartError,
    TarantoolBinary,
    TarantoolInstance,
    find_free_port,
    in_ci,
    lua_quote,
)

#: Where the real Lua modules are on developer machines and in CI
#: (``$LUA_ROCKS_DIR`` overrides it).
DEFAULT_ROCKS_DIR = PROJECT_ROOT.parent / "shared" / "lua-rocks"
#: The module folders the Lua scripts put on ``package.path``.
ROCK_FOLDERS = ("crud-1.7.5", "vshard-0.1.42", "checks-3.4.1", "errors-2.2.1")
#: Init scripts of the storages and the routers.
STORAGE_LUA = LUA_DIR / "sharded_storage.lua"
ROUTER_LUA = LUA_DIR / "sharded_router.lua"
#: The user vshard creates on the storages (from the sharding URIs) and uses
#: for replication and router -> storage calls.
STORAGE_USER = "storage"
STORAGE_PASSWORD = "storage-password"
#: The sharded space every storage has: id, bucket_id, name, age.
SPACE = "customers"
FIELDS = ("id", "bucket_id", "name", "age")
#: vshard's bucket_count for the test cluster (small: bootstrap is faster).
BUCKET_COUNT = 60
#: How long bootstrap and the routers' discovery may take.
BOOTSTRAP_TIMEOUT = 30.0


class RocksMissingError(RuntimeError):
    """The folder with the real crud / vshard modules is not there."""


def rocks_dir() -> Path:
    """The lua-rocks folder (``$LUA_ROCKS_DIR``, else :data:`DEFAULT_ROCKS_DIR`).

    Raises:
        RocksMissingError: it, or one of :data:`ROCK_FOLDERS` in it, is missing;
            the message names the path and the variable that sets it.
    """
    root = Path(os.environ.get("LUA_ROCKS_DIR") or DEFAULT_ROCKS_DIR)
    missing = [name for name in ROCK_FOLDERS if not (root / name).is_dir()]
    if missing:
        raise RocksMissingError(
            f"no real crud/vshard modules: {root} lacks {', '.join(missing)} "
            "(set $LUA_ROCKS_DIR to the folder of ../shared/lua-rocks)"
        )
    return root


@dataclass
class StorageReplicaset:
    """One storage replicaset: its vshard uuid and its two members.

    Attributes:
        uuid: The replicaset uuid in the sharding config.
        members: ``[first master, first replica]``, in start order.
        master: The member currently meant to be writable (changed by
            :meth:`ShardedCluster.promote`).
    """

    uuid: str
    members: list[TarantoolInstance]
    master: TarantoolInstance

    @property
    def replica(self) -> TarantoolInstance:
        """The member that is not :attr:`master`."""
        return next(m for m in self.members if m is not self.master)


@dataclass
class ShardedCluster:
    """A running cluster (see the module docstring); its processes belong to ``manager``.

    Attributes:
        manager: Owns every process; closing it stops the cluster.
        replicasets: The two storage replicasets.
        routers: The two routers (what clients connect to).
        bucket_count: vshard's bucket_count.
        start_seconds: Wall time from the first spawn to a usable cluster.
    """

    manager: ServerManager
    replicasets: list[StorageReplicaset]
    routers: list[TarantoolInstance]
    bucket_count: int
    start_seconds: float = 0.0
    instance_uuids: dict[str, str] = field(default_factory=dict)

    @property
    def router_addrs(self) -> list[dict[str, Any]]:
        """``[{'host': ..., 'port': ...}, ...]`` of the routers, as ConnectionPool takes them."""
        return [{"host": r.host, "port": r.port} for r in self.routers]

    @property
    def storages(self) -> list[TarantoolInstance]:
        """Every storage process, replicaset by replicaset."""
        return [m for rs in self.replicasets for m in rs.members]

    def uuid_of(self, inst: TarantoolInstance) -> str:
        """The instance uuid of a storage (as ``crud.storage_info`` keys it)."""
        return self.instance_uuids[inst.name]

    def replicaset_of(self, inst: TarantoolInstance) -> StorageReplicaset:
        """The replicaset ``inst`` is a member of."""
        return next(rs for rs in self.replicasets if inst in rs.members)

    # ------------------------------------------------------- ground truth
    def stored(self, space: str = SPACE) -> dict[int, list[Any]]:
        """Every tuple of ``space`` on the running masters, by primary key.

        Read through the admin consoles, not through a client under test, so
        tests compare what clients were told with what the storages hold.
        """
        rows: dict[int, list[Any]] = {}
        for rs in self.replicasets:
            if not rs.master.is_running():
                continue
            (tuples,) = rs.master.admin_eval(
                f"local out = {{}} for _, t in box.space[{lua_quote(space)}]:pairs() do "
                "table.insert(out, t:totable()) end return out"
            )
            for row in tuples or []:
                rows[int(row[0])] = row
        return rows

    def holder_of(self, key: int, space: str = SPACE) -> StorageReplicaset:
        """The replicaset whose master stores the tuple with primary key ``key``.

        Raises:
            KeyError: no running master has it.
        """
        for rs in self.replicasets:
            if rs.master.is_running() and rs.master.admin_eval(
                f"return box.space[{lua_quote(space)}]:get({int(key)}) ~= nil"
            ) == [True]:
                return rs
        raise KeyError(f"no master stores {space} key {key}")

    def replicaset_of_key(self, key: int) -> StorageReplicaset:
        """The replicaset that owns the bucket of primary key ``key`` (asked of a router)."""
        router = next(r for r in self.routers if r.is_running())
        (rs_uuid,) = router.admin_eval(
            f"local b = vshard.router.bucket_id_strcrc32({int(key)}) "
            "local rs = vshard.router.route(b) return rs and rs.uuid"
        )
        return next(rs for rs in self.replicasets if rs.uuid == rs_uuid)

    def reset(self) -> None:
        """Empty the sharded space on every master and the routers' crud statistics."""
        for rs in self.replicasets:
            rs.master.admin(f"box.space[{lua_quote(SPACE)}]:truncate()")
        for router in self.routers:
            if router.is_running():
                router.admin("crud.reset_stats()")

    # ------------------------------------------------------------ failover
    def promote(self, inst: TarantoolInstance, timeout: float = BOOTSTRAP_TIMEOUT) -> None:
        """Make the storage ``inst`` its replicaset's master and wait for the routers.

        ``box.cfg{read_only = false}`` is all vshard 0.1.42 needs with
        ``master = 'auto'``: the storage takes the role from ``box.info.ro``
        and each running router finds the new master by its master search;
        this blocks until every running router names ``inst`` as the master.
        """
        rs = self.replicaset_of(inst)
        inst.admin("box.cfg{read_only = false}")
        rs.master = inst
        deadline = time.monotonic() + timeout
        for router in self.routers:
            if router.is_running():
                _wait_router_master(router, rs.uuid, self.uuid_of(inst), deadline)

    def wait_routers_ready(self, timeout: float = BOOTSTRAP_TIMEOUT) -> None:
        """Block until every running router knows every replicaset's master."""
        deadline = time.monotonic() + timeout
        for router in self.routers:
            if not router.is_running():
                continue
            for rs in self.replicasets:
                _wait_router_master(router, rs.uuid, self.uuid_of(rs.master), deadline)


def _wait_router_master(
    router: TarantoolInstance, rs_uuid: str, master_uuid: str, deadline: float
) -> None:
    """Block until ``router`` names ``master_uuid`` the master of replicaset ``rs_uuid``."""
    lua = (
        f"local rs = vshard.router.static.replicasets[{lua_quote(rs_uuid)}] "
        "return rs ~= nil and rs.master ~= nil and rs.master.uuid or box.NULL"
    )
    while True:
        (seen,) = router.admin_eval(lua)
        if seen == master_uuid:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{router.name} still sees master {seen} of replicaset {rs_uuid}, "
                f"not {master_uuid}"
            )
        time.sleep(0.02)


def start_cluster(
    manager: ServerManager,
    *,
    bucket_count: int = BUCKET_COUNT,
    retries: int = 3,
    name: str = "shard",
) -> ShardedCluster:
    """Start and bootstrap a cluster of 2 x 2 storages and 2 routers (module docstring).

    Args:
        manager: Owns the processes (their server kind is ``manager.binary``).
        bucket_count: vshard's bucket_count.
        retries: Attempts on new ports when one was taken meanwhile.
        name: Prefix of the instance names (``shard-s1-a``, ``shard-router-1``...).

    Raises:
        RocksMissingError: the real modules are not there.
        ServerStartError: a process did not start (the message has its log tail).
    """
    rocks = rocks_dir()
    for attempt in range(retries):
        began = time.monotonic()
        cluster = _spawn(manager, rocks, bucket_count, name)
        try:
            for inst in [*cluster.storages, *cluster.routers]:
                inst.wait_ready()
        except ServerStartError as exc:
            for inst in [*cluster.storages, *cluster.routers]:
                inst.cleanup()
                manager.instances.remove(inst)
            if "Address already in use" not in str(exc) or attempt == retries - 1:
                raise
            continue
        # Later restarts of a storage must not wait for a dead peer.
        for inst in cluster.storages:
            inst.env["TT_QUORUM"] = "1"
            inst.env.pop("TT_BOOT_REPLICATION_TIMEOUT", None)
        _bootstrap(cluster.routers[0])
        cluster.wait_routers_ready()
        cluster.start_seconds = time.monotonic() - began
        return cluster
    raise AssertionError("unreachable")


def _spawn(manager: ServerManager, rocks: Path, bucket_count: int, name: str) -> ShardedCluster:
    """Create the six instances (free ports, fresh uuids) and spawn them all."""
    ports: list[int] = []
    while len(set(ports)) < 6:
        ports = [find_free_port() for _ in range(6)]
    storage_ports, router_ports = ports[:4], ports[4:]
    sharding: dict[str, Any] = {}
    layout: list[tuple[str, list[tuple[str, str, int]]]] = []
    for rs_number in (1, 2):
        rs_uuid = str(uuid.uuid4())
        members = []
        replicas: dict[str, Any] = {}
        for letter in ("a", "b"):
            port = storage_ports.pop(0)
            inst_uuid = str(uuid.uuid4())
            inst_name = f"{name}-s{rs_number}-{letter}"
            replicas[inst_uuid] = {
                "uri": f"{STORAGE_USER}:{STORAGE_PASSWORD}@127.0.0.1:{port}",
                "name": inst_name,
            }
            members.append((inst_name, inst_uuid, port))
        sharding[rs_uuid] = {"master": "auto", "replicas": replicas}
        layout.append((rs_uuid, members))
    common_env = {
        "LUA_ROCKS_DIR": str(rocks),
        "TT_SHARDING": json.dumps(sharding),
        "TT_BUCKET_COUNT": str(bucket_count),
    }
    replicasets: list[StorageReplicaset] = []
    uuids: dict[str, str] = {}
    for rs_uuid, members in layout:
        instances = []
        for number, (inst_name, inst_uuid, port) in enumerate(members):
            env = dict(common_env)
            env.update(
                {
                    "TT_INSTANCE_UUID": inst_uuid,
                    "TT_READ_ONLY": "false" if number == 0 else "true",
                    "TT_BOOT_REPLICATION_TIMEOUT": "0.1",
                }
            )
            inst = TarantoolInstance(
                STORAGE_LUA, name=inst_name, port=port, env=env, binary=manager.binary,
                preexec_fn=manager.preexec_fn,
            )
            manager.instances.append(inst)
            instances.append(inst)
            uuids[inst_name] = inst_uuid
        replicasets.append(StorageReplicaset(uuid=rs_uuid, members=instances, master=instances[0]))
    routers = []
    for number, port in enumerate(router_ports, start=1):
        router = TarantoolInstance(
            ROUTER_LUA, name=f"{name}-router-{number}", port=port, env=dict(common_env),
            binary=manager.binary, preexec_fn=manager.preexec_fn,
        )
        manager.instances.append(router)
        routers.append(router)
    cluster = ShardedCluster(
        manager=manager, replicasets=replicasets, routers=routers,
        bucket_count=bucket_count, instance_uuids=uuids,
    )
    for inst in [*cluster.storages, *cluster.routers]:
        inst.spawn()
    return cluster


def _bootstrap(router: TarantoolInstance) -> None:
    """Create the buckets through ``router`` (retried while storages are still connecting)."""
    deadline = time.monotonic() + BOOTSTRAP_TIMEOUT
    while True:
        try:
            router.admin_eval(
                "local ok, err = vshard.router.bootstrap({timeout = 5, if_not_bootstrapped = true}) "
                "if not ok then error(tostring(err and (err.message or err)), 0) end return ok"
            )
            return
        except AdminError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cluster_fixture(server_kind: TarantoolBinary) -> Iterator[ShardedCluster]:
    """The body of the tests' cluster fixtures: start, yield, stop everything.

    Where the real modules are missing it skips with the reason (a user's
    machine), except in CI (``$CI``), where it fails: CI must run these tests.
    """
    import pytest

    try:
        rocks_dir()
    except RocksMissingError as exc:
        if in_ci():
            pytest.fail(f"{exc}; CI must run the sharded-cluster tests")
        pytest.skip(str(exc))
    with ServerManager(server_kind) as manager:
        yield start_cluster(manager)
