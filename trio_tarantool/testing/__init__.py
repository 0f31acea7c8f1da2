"""A test kit for applications built on trio_tarantool: a pytest plugin (opt-in).

Enable it in the project's top-level ``conftest.py``::

    pytest_plugins = ["trio_tarantool.testing"]

or on the command line / in ``addopts``: ``-p trio_tarantool.testing``. It is
not loaded by merely installing trio-tarantool, so projects that do not use
it pay nothing. It needs pytest-trio with ``trio_mode = true``
(``pip install 'trio-tarantool[pytest]'`` brings pytest and pytest-trio);
without them, a test asking for the fixture stops the run with a
:class:`pytest.UsageError` that says what to install or set.

``tarantool_sim``
    A started simulated replicaset (:class:`trio_tarantool.sim.Replicaset`):
    three instances ``tt1.sim`` .. ``tt3.sim``, the first one the master, in
    virtual time (the fixture asks for pytest-trio's ``autojump_clock``, so
    sleeps cost nothing). Pass ``tarantool_sim.addrs`` to
    :func:`trio_tarantool.open_pool` or ``**tarantool_sim.addrs[i]`` to
    :func:`trio_tarantool.connect`.

Configure the default fixture with a marker::

    @pytest.mark.tarantool_sim(n=5, seed=42, lag=0.01)
    async def test_my_app(tarantool_sim): ...

or pick the seed for a whole run with ``--tarantool-sim-seed N`` (default 0).

Faults and time, on the replicaset object (see ``docs/sim.md``):
``crash(i)``, ``restart(i)``, ``pause(i)``/``resume(i)``, ``partition(i)``,
``unpartition(i)``, ``heal()``, ``set_ro(i, flag)``, ``set_status(i, s)``,
``await failover()``, ``start_failover()``, ``await advance(seconds)``,
``roles()``, ``trace``, ``create_space(...)``, ``register_function(name,
handler)``.

The failover kit (no pytest needed; :func:`fault_schedules` needs Hypothesis,
``pip install 'trio-tarantool[testing]'``), to prove an app survives
failover (``docs/sim.md``, "Prove your app survives failover"):

* :func:`fault_schedules`: a Hypothesis strategy of :class:`Schedule` (timed
  :class:`Fault` steps: crash, restart, pause, resume, partition, heal, link
  delay, planned switch, failover; promote and election with elections);
* :func:`run_schedule`: plays one schedule beside ``app(addrs, recorder)`` in
  virtual time, heals, gives a liveness window, returns a :class:`History`;
* :func:`check_at_most_once`, :func:`check_no_lost_acknowledged_writes`,
  :func:`check_reads_served_by_mode`, :func:`check_liveness_after_healing`:
  each raises an AssertionError explaining the violation, with a replay line.

They are imported on first use: loading the plugin imports neither
Hypothesis nor the simulator.
"""

from typing import TYPE_CHECKING, Any

# The plugin's hooks and fixture, so that pytest finds them on this module.
from ._plugin import pytest_addoption as pytest_addoption
from ._plugin import pytest_collection_modifyitems as pytest_collection_modifyitems
from ._plugin import pytest_configure as pytest_configure
from ._plugin import tarantool_sim as tarantool_sim

# The property-based failover kit (issue 12): imported on first use, so that
# loading the plugin costs nothing and hypothesis stays optional.
if TYPE_CHECKING:
    from ._checks import check_at_most_once as check_at_most_once
    from ._checks import check_liveness_after_healing as check_liveness_after_healing
    from ._checks import check_no_lost_acknowledged_writes as check_no_lost_acknowledged_writes
    from ._checks import check_reads_served_by_mode as check_reads_served_by_mode
    from ._history import Execution as Execution
    from ._history import History as History
    from ._history import RecordedClient as RecordedClient
    from ._history import RecordedRequest as RecordedRequest
    from ._history import Recorder as Recorder
    from ._runner import run_schedule as run_schedule
    from ._schedule import Fault as Fault
    from ._schedule import Schedule as Schedule
    from ._schedule import fault_schedules as fault_schedules

#: Public name -> the private module that holds it.
_KIT = {
    "check_at_most_once": "_checks",
    "check_liveness_after_healing": "_checks",
    "check_no_lost_acknowledged_writes": "_checks",
    "check_reads_served_by_mode": "_checks",
    "Execution": "_history",
    "History": "_history",
    "RecordedClient": "_history",
    "RecordedRequest": "_history",
    "Recorder": "_history",
    "run_schedule": "_runner",
    "Fault": "_schedule",
    "Schedule": "_schedule",
    "fault_schedules": "_schedule",
}


def __getattr__(name: str) -> Any:
    """Import a kit name on first use (PEP 562), and fix its ``__module__`` for docs and tracebacks."""
    module = _KIT.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    if isinstance(value, type) or callable(value):
        try:
            value.__module__ = __name__
        except (AttributeError, TypeError):
            pass
    globals()[name] = value
    return value
