"""The README's ``tarantool_sim`` example, run as written, over many seeds.

The test function is taken from README.md at collection time (the python
block of the "Testing your app against a simulated replicaset" section), so
the README cannot drift from what is tested. Issue 8 item 4: it used to fail
on 7 of 12 seeds (a no-master window longer than ``probe_timeout`` made the
first write fail with PoolTopologyError instead of finding the new master).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.sim._seeds import seeds

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Testing your app against a simulated replicaset"
#: 30 seeds (README_SEEDS=N for another number): in virtual time they cost about 2 s.
SEEDS = seeds("README_SEEDS", 30, first=0)


def readme_example() -> tuple[str, Callable[..., Any]]:
    """The example's source and the test function it defines."""
    text = README.read_text()
    section = text[text.index(SECTION):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, f"README.md: no python block after {SECTION!r}"
    source = match.group(1)
    namespace: dict[str, Any] = {}
    exec(compile(source, f"{README}:{SECTION}", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert len(tests) == 1, f"README.md example should define one test, got {sorted(namespace)}"
    return source, tests[0]


SOURCE, EXAMPLE = readme_example()


def test_the_example_is_a_complete_module() -> None:
    """Imports included: it runs as a file of its own (what a reader copies)."""
    assert "from trio_tarantool import" in SOURCE
    assert "tarantool_sim" in SOURCE


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.tarantool_sim(seed=s)) for s in SEEDS])
async def test_readme_example_passes_for_every_seed(tarantool_sim: Any, autojump_clock: Any, seed: int) -> None:
    """``autojump_clock`` is asked for here because pytest-trio takes the clock only from
    the test's own arguments: with ``tarantool_sim`` alone the run is on the real clock
    (``test_plugin.py::test_the_fixture_alone_runs_in_virtual_time``, xfail), and each
    seed sleeps through its failover window in wall time."""
    await EXAMPLE(tarantool_sim)
