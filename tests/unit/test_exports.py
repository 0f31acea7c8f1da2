"""The public surface of ``trio_tarantool``, pinned.

Adding a public name means adding it to PUBLIC_NAMES below (keep it sorted);
removing or renaming one is an API break and should fail here first.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import trio_tarantool

PUBLIC_NAMES = sorted([
    "Adjust",
    "BoxError",
    "BreakerState",
    "CircuitBreaker",
    "ClusterConnectWarning",
    "ConfigurationError",
    "Connection",
    "ConnectionClosedError",
    "ConnectionPool",
    "ConnectionState",
    "ConnectionStatistics",
    "CrudError",
    "CrudModuleError",
    "CrudModuleManyError",
    "CrudResult",
    "DatabaseError",
    "Datetime",
    "Error",
    "ErrorCode",
    "InstanceAddedEvent",
    "InstanceDownEvent",
    "InstanceRemovedEvent",
    "InstanceState",
    "InstanceStatistics",
    "InstanceUpEvent",
    "Interval",
    "Isolation",
    "Iterator",
    "LatencyAwareStrategy",
    "LeastOutstandingStrategy",
    "Mode",
    "NetworkError",
    "NetworkWarning",
    "NotSupportedError",
    "PoolClosedEvent",
    "PoolEvent",
    "PoolEvents",
    "PoolStatistics",
    "PoolTask",
    "PoolTolopogyError",
    "PoolTolopogyWarning",
    "PoolTopologyError",
    "PoolTopologyWarning",
    "PoolUnit",
    "PreparedStatement",
    "ProtocolError",
    "Response",
    "RetryEvent",
    "RoleChangeEvent",
    "RoundRobinStrategy",
    "Schema",
    "SchemaError",
    "ServerError",
    "Status",
    "StrategyInterface",
    "Stream",
    "TarantoolTimeoutError",
    "connect",
    "connect_over",
    "open_connection",
    "open_pool",
    "queue_factory",
])

#: Public names that are deliberately a second name for another export.
ALIASES = {
    "PoolTolopogyError": "PoolTopologyError",
    "PoolTolopogyWarning": "PoolTopologyWarning",
    "open_connection": "connect",
}

PACKAGE_DIR = Path(trio_tarantool.__file__).parent
REPO_ROOT = PACKAGE_DIR.parent


def test_public_names_are_pinned() -> None:
    # Skipped: pytest's assertion-rewrite helpers ("@py_builtins", injected
    # because the package ships a pytest plugin) and the subpackages (test
    # kit, simulator), which are attributes once something imported them.
    public = sorted(
        name for name in dir(trio_tarantool)
        if not name.startswith(("_", "@")) and name not in ("testing", "sim")
    )
    assert public == PUBLIC_NAMES


def test_public_objects_say_they_live_in_trio_tarantool() -> None:
    """Tracebacks, reprs and docs show ``trio_tarantool.X``, not the private module."""
    for name in PUBLIC_NAMES:
        obj = getattr(trio_tarantool, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "trio_tarantool", name
            assert obj.__name__ == ALIASES.get(name, name), name


def test_aliases_are_the_same_object() -> None:
    for alias, target in ALIASES.items():
        assert getattr(trio_tarantool, alias) is getattr(trio_tarantool, target)


def test_exceptions_derive_from_error() -> None:
    """Every exception class in the public surface shares the library's base;
    the warnings are the reference's UserWarnings (filtered, never raised)."""
    warning_names = []
    for name in PUBLIC_NAMES:
        obj = getattr(trio_tarantool, name)
        if inspect.isclass(obj) and issubclass(obj, Warning):
            assert issubclass(obj, UserWarning) and not issubclass(obj, trio_tarantool.Error), name
            warning_names.append(name)
        elif inspect.isclass(obj) and issubclass(obj, BaseException):
            assert issubclass(obj, trio_tarantool.Error), name
    assert warning_names == ["ClusterConnectWarning", "NetworkWarning", "PoolTolopogyWarning",
                             "PoolTopologyWarning"]


def test_version_matches_the_installed_metadata() -> None:
    assert trio_tarantool.__version__ == importlib.metadata.version("trio-tarantool")


def test_ships_py_typed() -> None:
    """PEP 561 marker present in the package and listed as package data.

    (A regex rather than tomllib: the project supports Python 3.10.)
    """
    assert importlib.resources.files("trio_tarantool").joinpath("py.typed").is_file()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^trio_tarantool\s*=\s*\[[^\]]*"py\.typed"', section, re.M), section


# The sans-I/O core must not need trio. ``import trio_tarantool._iproto`` runs
# the package's __init__ first (which imports the trio Connection), so the
# check loads the core modules under a bare stand-in for the parent package.
_NO_TRIO_SCRIPT = """
import json, sys, types
pkg = types.ModuleType("trio_tarantool")
pkg.__path__ = [sys.argv[1]]
sys.modules["trio_tarantool"] = pkg
import importlib
for name in sys.argv[2:]:
    importlib.import_module(name)
from trio_tarantool._iproto import Decoder
decoder = Decoder()
decoder.feed(bytes.fromhex("ce00000006820000010180"))
reply = decoder.next_reply()
print(json.dumps({
    "trio": sorted(m for m in sys.modules if m == "trio" or m.startswith("trio.")),
    "sync": reply.sync,
}))
"""


def _import_in_subprocess(*modules: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-I", "-c", _NO_TRIO_SCRIPT, str(PACKAGE_DIR), *modules],
        capture_output=True, text=True, timeout=60, check=True,
    )
    decoded: dict[str, object] = json.loads(result.stdout)
    return decoded


def test_sans_io_core_does_not_import_trio() -> None:
    found = _import_in_subprocess(
        "trio_tarantool._iproto", "trio_tarantool._errors",
        "trio_tarantool._response", "trio_tarantool._schema",
    )
    assert found == {"trio": [], "sync": 1}


def test_the_trio_check_can_see_trio() -> None:
    """Control for the test above: loading the Connection the same way does pull trio in."""
    found = _import_in_subprocess("trio_tarantool._iproto", "trio_tarantool._connection")
    assert "trio" in found["trio"]  # type: ignore[operator]
