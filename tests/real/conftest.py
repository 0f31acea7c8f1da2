"""Fixtures that run real Tarantool processes (see ``tests/real/_servers.py``).

Every test in this directory is marked ``real``. All processes a fixture starts
are stopped by its finalizer, whether the test passed or failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio

from tests.real._servers import Replicaset, ServerManager, TarantoolInstance, connect_to


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected under tests/real as ``real``."""
    for item in items:
        if "tests/real/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.real)


@pytest.fixture
def server_manager() -> Iterator[ServerManager]:
    """A per-test owner of processes; everything it started is stopped afterwards."""
    with ServerManager() as manager:
        yield manager


@pytest.fixture(scope="module")
def _module_server_manager() -> Iterator[ServerManager]:
    with ServerManager() as manager:
        yield manager


@pytest.fixture(scope="module")
def tarantool(_module_server_manager: ServerManager) -> TarantoolInstance:
    """A standalone instance shared by the tests of one module (non-destructive use)."""
    return _module_server_manager.start_instance(name="shared")


@pytest.fixture
def tarantool_factory(server_manager: ServerManager) -> Callable[..., TarantoolInstance]:
    """``factory(**kwargs)`` starts a private standalone instance (see start_instance)."""

    def factory(**kwargs: Any) -> TarantoolInstance:
        return server_manager.start_instance(**kwargs)

    return factory


@pytest.fixture
def replicaset(server_manager: ServerManager) -> Replicaset:
    """A fresh 3-member replicaset: member 1 master, members 2 and 3 read-only."""
    return server_manager.start_replicaset(3)


@pytest.fixture
def replicaset_factory(server_manager: ServerManager) -> Callable[..., Replicaset]:
    """``factory(size=3, wal_mode='write')`` starts another replicaset."""

    def factory(size: int = 3, **kwargs: Any) -> Replicaset:
        return server_manager.start_replicaset(size, **kwargs)

    return factory


#: Lua that empties the shared instance: truncates the fixed spaces and drops
#: every other user space (SQL tables, spaces created by schema tests).
_RESET_LUA = """
local keep = {tester = true, multi = true, wide = true, typed = true, customers = true}
local drop = {}
for _, t in box.space._space:pairs(512, {iterator = 'GE'}) do
    if not keep[t.name] then table.insert(drop, t.name) end
end
for _, name in ipairs(drop) do box.space[name]:drop() end
for name in pairs(keep) do box.space[name]:truncate() end
counter_reset()
"""


@pytest.fixture
def clean_tarantool(tarantool: TarantoolInstance) -> TarantoolInstance:
    """The module's shared instance, emptied before the test (through the admin console)."""
    tarantool.admin(_RESET_LUA)
    return tarantool


@pytest.fixture
async def conn(clean_tarantool: TarantoolInstance) -> AsyncIterator[Any]:
    """A connection (default options) to the emptied shared instance."""
    with trio.fail_after(10):
        async with connect_to(clean_tarantool) as c:
            yield c
