"""A deterministic simulated Tarantool world for testing clients and pools.

The real client code runs unchanged: :func:`open_world` installs trio's custom
socket factory and hostname resolver for the current ``trio.run``, so
``trio.open_tcp_stream("tt1.sim", 3301)`` reaches an in-memory
:class:`FakeInstance` that speaks real IPROTO. Run under
``trio.testing.MockClock(autojump_threshold=0)`` and an hour of failovers takes
seconds; one seed drives every random choice and :attr:`World.trace` records
every event, so a scenario can be replayed and compared byte for byte.

Typical use::

    async with sim.open_replicaset(n=3, seed=7) as rs:
        rs.create_space("demo", [("id", "unsigned"), ("v", "string")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        async with trio_tarantool.connect(**rs.addrs[0]) as conn:
            await conn.insert("demo", [1, "a"])
        rs.crash(0)
        await rs.failover()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._instance import FEATURES_3X, PROTOCOL_VERSION_3X
from ._instance import ElectionState as ElectionState
from ._instance import FakeInstance as FakeInstance
from ._instance import Handler as Handler
from ._instance import InstanceConfig as InstanceConfig
from ._instance import RequestRecord as RequestRecord
from ._net import FakeSocket as FakeSocket
from ._net import Link as Link
from ._net import LinkFaults as LinkFaults
from ._net import Network as Network
from ._replicaset import Replicaset as Replicaset
from ._replicaset import ReplicasetConfig as ReplicasetConfig
from ._session import CallContext as CallContext
from ._spaces import BoxError as BoxError
from ._spaces import Change as Change
from ._spaces import Field as Field
from ._spaces import Space as Space
from ._world import World as World
from ._world import open_world as open_world
from ._world import run as run
from ._world import seed_trio_scheduler as seed_trio_scheduler


@asynccontextmanager
async def open_replicaset(
    n: int = 3,
    *,
    seed: int = 0,
    lag: float = 0.0,
    lag_jitter: float = 0.0,
    failover_window: tuple[float, float] = (0.5, 2.0),
    master: int | None = 0,
    users: dict[str, str] | None = None,
    guest_access: bool = True,
    version: str | tuple[int, int] = "2.6.0",
    protocol_version: int | None = None,
    election: bool = False,
    loading_time: float = 0.0,
    crud: bool = False,
    trace_requests: bool = True,
) -> AsyncIterator[Replicaset]:
    """Open a world holding one replicaset of ``n`` instances ``tt1.sim`` ... .

    Args:
      n: number of instances; ``master`` is the index of the writable one
        (None: all read-only).
      seed: the only source of randomness (salts, uuids, jitter, failover).
      lag, lag_jitter: replication delay of each row, in virtual seconds.
      failover_window: range of the drawn no-master window of a failover.
      users: ``{name: password}`` accepted by chap-sha1 auth.
      guest_access: when False, unauthenticated sessions may only ping.
      version: the version in the greeting (and ``box.info.version``):
        ``"2.6.0"`` (the default) or ``(3, 8)``/``"3.8.0"``. From 3.0 the
        instances play Tarantool 3.x: IPROTO_ID answers protocol 10 with the
        features the simulator implements (streams, transactions, error
        extension, watchers, watch_once); ``box.status`` (with
        ``dd_version``), ``box.election``, ``box.id``, ``box.shutdown`` and
        ``box.broadcast`` keys; ER_READONLY with 3.x's message and fields.
      protocol_version: None plays the version's server (2.6: IPROTO_ID
        unknown); an int plays a 2.10+ server answering ID (features 0-3:
        streams, transactions, error extension, watchers).
      election: Raft elections decide the leader (3.x only): terms, roles,
        ``box.ctl.promote()``, a drawn no-leader window on failover; see
        :meth:`Replicaset.promote`.
      loading_time: seconds of ER_LOADING after every (re)start.
      crud: register the crud.* call interface (one storage) on every instance.
      trace_requests: record every request in the trace (not just events).
    """
    if isinstance(version, tuple):
        version = ".".join(str(part) for part in (*version, 0, 0)[:3])
    features = InstanceConfig.features
    if protocol_version is None and int(version.split(".", 1)[0]) >= 3:
        protocol_version, features = PROTOCOL_VERSION_3X, FEATURES_3X
    if election and int(version.split(".", 1)[0]) < 3:
        raise ValueError(f"election=True needs a 3.x version, got {version!r}")
    config = InstanceConfig(
        version=version,
        protocol_version=protocol_version,
        features=features,
        users=dict(users or {}),
        guest_access=guest_access,
        loading_time=loading_time,
        crud=crud,
    )
    async with open_world(seed, trace_requests=trace_requests) as world:
        rs = Replicaset(
            world,
            n,
            config=ReplicasetConfig(lag=lag, lag_jitter=lag_jitter, failover_window=failover_window),
            instance_config=config,
            master=master,
            election=election,
        )
        yield rs


__all__ = [
    "BoxError",
    "CallContext",
    "Change",
    "ElectionState",
    "FakeInstance",
    "FakeSocket",
    "Field",
    "Handler",
    "InstanceConfig",
    "Link",
    "LinkFaults",
    "Network",
    "Replicaset",
    "ReplicasetConfig",
    "RequestRecord",
    "Space",
    "World",
    "open_replicaset",
    "open_world",
    "run",
    "seed_trio_scheduler",
]
