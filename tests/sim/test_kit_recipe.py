"""docs/sim.md's recipe "Prove your app survives failover", run as written.

The block is read from docs/sim.md at collection time (as
tests/sim/test_readme_example.py does for the README), executed as a module
of its own, and its Hypothesis test is run with the settings it shows; so
the recipe cannot drift from what works. Its app is then broken on purpose
(a blind retry of a write) to show the same test fails and prints a replay
line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "sim.md"
SECTION = "## Prove your app survives failover"


def recipe() -> tuple[str, dict[str, Any]]:
    """The recipe's source and the namespace it defines."""
    text = DOC.read_text()
    section = text[text.index(SECTION):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, f"docs/sim.md: no python block after {SECTION!r}"
    source = match.group(1)
    namespace: dict[str, Any] = {"__name__": "sim_md_recipe"}
    exec(compile(source, f"{DOC}:{SECTION}", "exec"), namespace)
    return source, namespace


SOURCE, RECIPE = recipe()


def test_the_recipe_is_a_complete_test_module_of_about_twenty_lines() -> None:
    assert "from trio_tarantool import" in SOURCE and "from hypothesis import" in SOURCE
    tests = [name for name in RECIPE if name.startswith("test_")]
    assert tests == ["test_app_survives_failover"]
    code = [line for line in SOURCE.splitlines() if line.strip() and not line.startswith(("import", "from"))]
    assert len(code) <= 26, f"the recipe grew to {len(code)} lines of code"


@pytest.mark.timeout(300)
def test_the_recipe_passes_as_written() -> None:
    RECIPE["test_app_survives_failover"]()


def test_the_recipe_fails_for_an_app_that_retries_an_insert_blindly() -> None:
    """The recipe's checks, with its app swapped for one that re-sends an insert that
    timed out: the insert did run (late), so the retry gets ER_TUPLE_FOUND, and
    the app, retrying that too, is stuck on one order forever after healing."""
    import trio

    import trio_tarantool as tt
    from trio_tarantool import testing

    async def blind(addrs: Any, recorder: Any) -> None:
        async with recorder.pool(addrs, socket_timeout=0.5, refresh_delay=0.2) as pool:
            for order in range(1000):
                while True:
                    try:
                        await pool.insert("orders", [order, "new"])
                        break
                    except tt.DatabaseError:
                        await trio.sleep(0.1)  # and send it again, whatever happened
                await trio.sleep(0.1)

    schedule = testing.Schedule.parse("+0.35 delay(0, 2.0)")
    history = testing.run_schedule(schedule, blind, seed=0, setup=RECIPE["schema"])
    testing.check_at_most_once(history)  # the duplicate was refused: it took effect once
    testing.check_no_lost_acknowledged_writes(history)
    testing.check_reads_served_by_mode(history)
    with pytest.raises(AssertionError, match=r"liveness after healing.*\n.*insert started .* after healing "
                                             r".* and failed: ServerError.*ER_TUPLE_FOUND") as info:
        testing.check_liveness_after_healing(history)
    assert "replay: run_schedule(Schedule.parse('+0.35 delay(0, 2.0)'), " in str(info.value)
    # Control: the recipe's own app, on the same schedule, passes.
    control = testing.run_schedule(schedule, RECIPE["app"], seed=0, setup=RECIPE["schema"])
    testing.check_liveness_after_healing(control)
