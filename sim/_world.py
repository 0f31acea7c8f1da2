"""The simulated world: one seed, one trace, one fake network, many instances.

Everything random in the simulator draws from ``World.rng`` (one
``random.Random(seed)``) and everything timed uses the trio clock, so under
``trio.testing.MockClock`` the same seed and the same client code give the same
trace. trio's own scheduler picks among runnable tasks with a private random
generator; :func:`seed_trio_scheduler` seeds it (the hook trio exposes for
Hypothesis), which makes whole runs repeatable byte for byte.
"""

from __future__ import annotations

import random
import sys
import uuid as _uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from trio_tarantool._iproto import _constants as C

from ._instance import FakeInstance, InstanceConfig
from ._net import Network

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]


def seed_trio_scheduler(seed: int) -> None:
    """Make trio's choice among simultaneously runnable tasks repeatable.

    trio shuffles each batch of runnable tasks with ``trio._core._run._r``;
    Hypothesis seeds the same generator through trio's plugin. Call this
    before ``trio.run`` when a test compares two runs.
    """
    from trio._core import _run

    # The same switch trio's Hypothesis plugin flips: sort each batch by task
    # creation order before shuffling it with the (now seeded) generator.
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(seed)


T = TypeVar("T")


def run(async_fn: Callable[..., Awaitable[T]], *args: Any, seed: int | None = 0) -> T:
    """``trio.run`` in virtual time (MockClock, autojump at 0) with a seeded scheduler.

    The same ``async_fn``, arguments and seed give the same run; this is the
    one-``trio.run``-per-example entry point for Hypothesis tests (pass
    ``seed=None`` there to leave trio's scheduler to Hypothesis' seeding).
    """
    import trio.testing

    if seed is not None:
        seed_trio_scheduler(seed)
    return trio.run(async_fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


class World:
    """Owner of the randomness, the trace, the network and the instances."""

    def __init__(self, seed: int, nursery: trio.Nursery, *, trace_requests: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.nursery = nursery
        self.trace_requests = trace_requests
        self.trace: list[str] = []
        self.network = Network(self.rng, nursery, record=self.record)
        self.cluster_uuid = self.uuid()
        self.instances: list[FakeInstance] = []
        self._changed = trio.lowlevel.ParkingLot()

    # -- randomness and trace -------------------------------------------------
    def uuid(self) -> str:
        """A UUID drawn from the world's seed (never from the OS)."""
        return str(_uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def record(self, who: str, event: str) -> None:
        """Append one trace line: virtual time, who, what."""
        self.trace.append(f"{trio.current_time():12.6f} {who} {event}")

    def record_request(self, instance: str, conn: str, name: str, sync: int, body: dict[int, Any]) -> None:
        if not self.trace_requests:
            return
        detail = ""
        if C.FUNCTION_NAME in body:
            detail = f" {body[C.FUNCTION_NAME]}"
        elif C.EXPR in body:
            detail = f" {body[C.EXPR]!r}"
        elif C.SPACE_ID in body:
            detail = f" space={body[C.SPACE_ID]}"
        self.record(instance, f"{conn} {name} sync={sync}{detail}")

    def trace_text(self) -> str:
        return "\n".join(self.trace) + "\n"

    # -- time and change notification ------------------------------------------
    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` after ``delay`` virtual seconds (in the world's nursery)."""

        async def later() -> None:
            await trio.sleep(delay)
            fn()

        self.nursery.start_soon(later)

    def changed(self) -> None:
        """Wake everything waiting for a ground-truth change."""
        self._changed.unpark_all()

    async def wait_changed(self) -> None:
        await self._changed.park()

    # -- instances ---------------------------------------------------------------
    def add_instance(
        self,
        name: str,
        host: str,
        port: int = 3301,
        *,
        ip: str | None = None,
        config: InstanceConfig | None = None,
        start: bool = True,
    ) -> FakeInstance:
        """Create an instance reachable as ``host:port`` (``host`` resolves to ``ip``)."""
        if ip is None:
            ip = f"127.77.0.{len(self.instances) + 1}"
        self.network.add_host(host, ip)
        inst = FakeInstance(self, name, host, port, instance_id=len(self.instances) + 1, config=config)
        self.instances.append(inst)
        if start:
            inst.start()
        return inst

    def instance_by_id(self, instance_id: int) -> FakeInstance | None:
        """The instance with ``box.info.id`` ``instance_id`` (None: no such instance)."""
        for inst in self.instances:
            if inst.id == instance_id:
                return inst
        return None

    def shutdown(self) -> None:
        """Stop every instance (the end of the world, not a simulated crash)."""
        self.trace_requests = False
        for inst in self.instances:
            inst.stop()


@asynccontextmanager
async def open_world(seed: int = 0, *, trace_requests: bool = True) -> AsyncIterator[World]:
    """A world whose network serves this ``trio.run``'s ``open_tcp_stream`` calls.

    On exit every instance stops and the custom socket factory and resolver
    are removed. An exception from the body comes out as itself, not wrapped
    in an ExceptionGroup.
    """
    try:
        async with trio.open_nursery() as nursery:
            world = World(seed, nursery, trace_requests=trace_requests)
            world.network.install()
            try:
                yield world
            finally:
                world.shutdown()
                Network.uninstall()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
