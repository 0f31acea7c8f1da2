"""Every real-server example in examples/ runs against real Tarantool.

A replicaset of three is started per server kind (2.6 and 3.8) and every
instance loads examples/schema.lua, the schema and grants the README documents
(the user ``app``, the spaces, ``whoami``). Then each example runs as its own
process, as a reader would run it, with the address in the environment
variables it reads (``TARANTOOL_HOST``/``TARANTOOL_PORT`` for one server,
``TARANTOOL_ADDRS`` for a pool), and must exit 0 and print what it promises.
The examples that need streams, transactions or watchers run on 3.8 only.
tests/unit/test_docs.py checks that the docs' code blocks are these files'
text and that every example is run here or in tests/sim/test_examples.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real._servers import Replicaset, ServerManager, TarantoolBinary

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCHEMA = EXAMPLES / "schema.lua"

#: Example file -> what it must print.
REAL_EXAMPLES = {
    "quickstart.py": "[[1, 'Ada']]\nrunning\n",
    "pool.py": "| a replica: 127.0.0.1:",
    "connection_3x.py": "balances: [[1, 90], [2, 10]]\nFalse running\n",
    "pool_3x.py": "balances: [[1, 90], [2, 10]]\nleader says 2\n",
}
#: The examples that need Tarantool >= 2.10 (streams, transactions, watchers).
NEEDS_3X = {"connection_3x.py", "pool_3x.py"}

#: A hang guard, not a performance bound: each takes well under a second.
HANG_GUARD = 120


@pytest.fixture(scope="module")
def example_replicaset(server_kind: TarantoolBinary) -> Iterator[Replicaset]:
    """A replicaset of three with examples/schema.lua loaded on every instance."""
    with ServerManager(server_kind) as manager:
        rs = manager.start_replicaset(3)
        for inst in rs.instances:  # the master first: replicas only define whoami
            inst.admin(f"dofile({str(SCHEMA)!r})")
        rs.wait_replicated()
        yield rs


def run_example(name: str, rs: Replicaset, cwd: Path) -> str:
    """Run examples/``name`` against ``rs``; its standard output."""
    env = dict(os.environ)
    env.update(
        TARANTOOL_HOST=rs.master.host,
        TARANTOOL_PORT=str(rs.master.port),
        TARANTOOL_ADDRS=",".join(f"{a['host']}:{a['port']}" for a in rs.addrs),
    )
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=HANG_GUARD, check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("name", sorted(set(REAL_EXAMPLES) - NEEDS_3X))
def test_example_runs(name: str, example_replicaset: Replicaset, tmp_path: Path) -> None:
    out = run_example(name, example_replicaset, tmp_path)
    assert REAL_EXAMPLES[name] in out, f"{name} printed:\n{out}"


@pytest.mark.min_server_version(3, 0)
@pytest.mark.parametrize("name", sorted(NEEDS_3X))
def test_3x_example_runs(name: str, example_replicaset: Replicaset, tmp_path: Path) -> None:
    out = run_example(name, example_replicaset, tmp_path)
    assert REAL_EXAMPLES[name] in out, f"{name} printed:\n{out}"
