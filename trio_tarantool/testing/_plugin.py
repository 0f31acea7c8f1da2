"""The pytest plugin behind :mod:`trio_tarantool.testing` (registered by entry point).

It stays cheap to load: the simulator is imported only when a fixture runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_tarantool")
    group.addoption(
        "--tarantool-sim-seed", type=int, default=0,
        help="seed of the simulated Tarantool replicasets (tarantool_sim fixture)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tarantool_sim(n=3, seed=None, **options): options of the tarantool_sim fixture "
        "(sim.open_replicaset keywords)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {"n": 3, "seed": request.config.getoption("--tarantool-sim-seed")}
    marker = request.node.get_closest_marker("tarantool_sim")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("tarantool_sim marker: pass options by keyword (n=..., seed=...)")
        options.update({k: v for k, v in marker.kwargs.items() if v is not None})
    return options


@pytest.fixture
async def tarantool_sim(request: pytest.FixtureRequest, autojump_clock: Any) -> AsyncIterator[Any]:
    """A started simulated replicaset (3 instances, the first the master) in virtual time.

    One per test: the simulator takes over trio's socket factory for the
    whole ``trio.run``.
    """
    import sim

    options = _options(request)
    async with sim.open_replicaset(options.pop("n"), **options) as rs:
        yield rs
