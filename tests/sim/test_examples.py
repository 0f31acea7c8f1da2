"""Every simulator example in examples/ runs, as a reader would run it.

Each ``examples/sim_*.py`` is started as its own process (``python
examples/sim_X.py``, from a scratch directory, so only the installed package
is imported) and must exit 0 and print what it promises. The same files run on
the installed wheel in scripts/check_packaging.sh. tests/unit/test_docs.py
checks that the docs' code blocks are these files' text and that every
example is run here or in tests/real/test_examples.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: Example file -> a line of what it must print.
SIM_EXAMPLES = {
    "sim_quickstart.py": "written after the failover: [[3, 'Ada']]",
    "sim_replicaset.py": "rs failover end new=",
    "sim_3x.py": "rows: [[1], [2], [3]]",
    "sim_pool_events.py": "tt2.sim:3301 became rw (was ro)",
}

#: A hang guard, not a performance bound: each takes about a second.
HANG_GUARD = 120


@pytest.mark.parametrize("name", sorted(SIM_EXAMPLES))
def test_sim_example_runs(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=tmp_path, capture_output=True,
        text=True, timeout=HANG_GUARD, check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    assert SIM_EXAMPLES[name] in done.stdout, f"{name} printed:\n{done.stdout}"
