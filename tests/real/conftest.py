"""Fixtures that run real Tarantool processes (see ``tests/real/_servers.py``).

Every test in this directory is marked ``real``. All processes a fixture starts
are stopped by its finalizer, whether the test passed or failed.

Two servers: every process fixture depends on ``server_kind``, a session-scoped
fixture parametrized over :data:`~tests.real._servers.SERVER_KINDS`
(``"2.6"``, ``"3.8"``), so each test that uses a server runs once per kind
(``test_x[2.6]``, ``test_x[3.8]``) and module-scoped servers are shared per
kind. ``server_kind`` is the :class:`~tests.real._servers.TarantoolBinary`
(``.kind``, ``.path``, ``.version``). The 2.6 binary must be there; a missing
3.x binary skips the 3.8 variants with the reason, except in CI (``$CI``),
where it fails them: CI must run both. A test that only makes sense from some
version on is marked ``@pytest.mark.min_server_version(3, 0)`` (its older
variants are not generated) rather than skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio

from tests.real._servers import (
    SERVER_KINDS,
    Replicaset,
    ServerBinaryMissingError,
    ServerManager,
    TarantoolBinary,
    TarantoolInstance,
    connect_to,
    find_binary,
    in_ci,
)


def pytest_configure(config: pytest.Config) -> None:
    """Register this directory's marker (the suite runs with --strict-markers)."""
    config.addinivalue_line(
        "markers",
        "min_server_version(major, minor=0): run only the server kinds at least this "
        "version (tests/real/conftest.py)",
    )


def _kind_version(kind: str) -> tuple[int, ...]:
    """The version of server ``kind``: its binary's, or the label's if it is missing."""
    try:
        return find_binary(kind).version
    except ServerBinaryMissingError:
        return tuple(int(part) for part in kind.split("."))


@pytest.hookimpl(tryfirst=True)  # before pytest parametrizes the fixture with all kinds
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.min_server_version(3, 0)``: the test runs on those kinds only.

    A test that only makes sense from some version on says so with this marker
    instead of skipping on older servers (in CI a skip fails the run): the
    variants of older kinds are not generated at all.
    """
    marker = metafunc.definition.get_closest_marker("min_server_version")
    if marker is None:
        return
    if "server_kind" not in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: min_server_version needs a server fixture"
        )
    minimum = tuple(int(part) for part in marker.args)
    kinds = [kind for kind in SERVER_KINDS if _kind_version(kind) >= minimum]
    # As a parametrize mark (applied by pytest's own hook, after this one): pytest
    # then leaves out the fixture's own parametrization over every kind.
    metafunc.definition.add_marker(
        pytest.mark.parametrize("server_kind", kinds, indirect=True, scope="session")
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected under tests/real as ``real``."""
    for item in items:
        if "tests/real/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> TarantoolBinary:
    """The server binary of this variant of the test (see the module docstring)."""
    kind: str = request.param
    try:
        return find_binary(kind)
    except ServerBinaryMissingError as exc:
        if kind == SERVER_KINDS[0]:
            pytest.fail(str(exc))
        if in_ci():
            pytest.fail(f"{exc}; CI must run the {kind} variants (tests/real/conftest.py)")
        pytest.skip(f"{exc}; the {kind} variants run where that binary is (always in CI)")


@pytest.fixture
def server_manager(server_kind: TarantoolBinary) -> Iterator[ServerManager]:
    """A per-test owner of processes of this variant's server kind; everything
    it started is stopped afterwards."""
    with ServerManager(server_kind) as manager:
        yield manager


@pytest.fixture(scope="module")
def _module_server_manager(server_kind: TarantoolBinary) -> Iterator[ServerManager]:
    with ServerManager(server_kind) as manager:
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
