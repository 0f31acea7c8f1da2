"""The pytest plugin behind :mod:`trio_tarantool.testing` (opt-in, see the package docstring).

Why opt-in rather than an always-on ``pytest11`` entry point: the entry
point's module lives inside ``trio_tarantool``, so merely loading it imports
the whole library (trio, msgpack, the client) into every pytest run of every
project installed next to it -- about 0.4 s a run, for projects that never use
the fixture. A project that wants the fixture names the plugin; nobody else
pays. The simulator itself is imported only when the fixture runs.

Misuse is reported at collection, as a :class:`pytest.UsageError` naming what
to install or set, rather than as a puzzling "fixture not found" or a test that
pytest skips because it cannot run ``async def`` functions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from trio_tarantool.sim import Replicaset

#: The fixture this plugin provides (and checks the use of).
FIXTURE = "tarantool_sim"
#: The module pytest-trio registers as its plugin.
_PYTEST_TRIO_MODULE = "pytest_trio.plugin"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--tarantool-sim-seed N``: the default seed of every ``tarantool_sim`` world."""
    group = parser.getgroup("trio_tarantool")
    group.addoption(
        "--tarantool-sim-seed", type=int, default=0,
        help="seed of the simulated Tarantool replicasets (tarantool_sim fixture)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``tarantool_sim`` marker (the suite may run with ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        "tarantool_sim(n=3, seed=None, **options): options of the tarantool_sim fixture "
        "(trio_tarantool.sim.open_replicaset keywords)",
    )


def _pytest_trio_loaded(config: pytest.Config) -> bool:
    """Whether pytest-trio's plugin is active in this run (by entry point or ``-p``)."""
    return any(
        getattr(plugin, "__name__", None) == _PYTEST_TRIO_MODULE
        for plugin in config.pluginmanager.get_plugins()
    )


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
        config: pytest.Config, items: list[pytest.Item]) -> Generator[None, None, None]:
    """Refuse, with what to do, a test that asks for ``tarantool_sim`` but cannot get it,
    and run the others on the fixture's virtual clock.

    The fixture is an async fixture run by pytest-trio inside the test's
    ``trio.run`` (the simulator replaces trio's socket factory for that run,
    and the fixture needs pytest-trio's ``autojump_clock``). So pytest-trio
    must be loaded and the test must be a trio test: with ``trio_mode`` every
    ``async def`` test is one (pytest-trio marks them in its own
    ``pytest_collection_modifyitems``, which is why this hook wraps the others
    and acts after them all).
    """
    yield
    users = [item for item in items if FIXTURE in getattr(item, "fixturenames", ())]
    if not users:
        return
    if not _pytest_trio_loaded(config):
        raise pytest.UsageError(
            f"{users[0].nodeid}: the {FIXTURE} fixture runs on pytest-trio, which is not "
            "installed (or was disabled with -p no:trio): pip install 'trio-tarantool[pytest]' "
            "(or pip install pytest-trio), and set trio_mode = true under "
            "[tool.pytest.ini_options] in pyproject.toml"
        )
    for item in users:
        if item.get_closest_marker("trio") is None:
            raise pytest.UsageError(
                f"{item.nodeid}: the {FIXTURE} fixture needs a trio test: make the test "
                "'async def' and set trio_mode = true under [tool.pytest.ini_options] in "
                "pyproject.toml (or trio_mode = true in pytest.ini), or mark it @pytest.mark.trio"
            )
        # pytest-trio hands its runner only a clock the *test* asks for by
        # argument: the fixture's autojump_clock would be ignored (and the test
        # run on the real clock). Wrap the runner already chosen, if any.
        chosen = next((m.kwargs["run"] for m in item.iter_markers("trio") if "run" in m.kwargs), None)
        item.add_marker(pytest.mark.trio(run=_virtual_time_run(item, chosen)), append=False)


def _virtual_time_run(item: pytest.Item, chosen: Callable[..., Any] | None) -> Callable[..., Any]:
    """The runner of ``item`` (``chosen`` by an earlier marker, else pytest-trio's
    configured one), given the fixture's ``autojump_clock`` when the test itself
    asks for no clock (a test that does keeps its own)."""

    def run(fn: Callable[[], Any], *, clock: Any = None, instruments: Any = ()) -> Any:
        runner = chosen
        if runner is None:
            from pytest_trio.plugin import choose_run  # type: ignore[import-untyped]

            runner = choose_run(item.config)
        if clock is None:
            clock = getattr(item, "funcargs", {}).get("autojump_clock")
        return runner(fn, clock=clock, instruments=instruments)

    return run


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {"n": 3, "seed": request.config.getoption("--tarantool-sim-seed")}
    marker = request.node.get_closest_marker("tarantool_sim")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("tarantool_sim marker: pass options by keyword (n=..., seed=...)")
        options.update({k: v for k, v in marker.kwargs.items() if v is not None})
    return options


@pytest.fixture
async def tarantool_sim(request: pytest.FixtureRequest, autojump_clock: Any) -> AsyncIterator[Replicaset]:
    """A started simulated replicaset (3 instances, the first the master) in virtual time.

    One per test: the simulator takes over trio's socket factory for the
    whole ``trio.run``. The value is a :class:`trio_tarantool.sim.Replicaset`.
    """
    from trio_tarantool import sim

    options = _options(request)
    async with sim.open_replicaset(options.pop("n"), **options) as rs:
        yield rs
