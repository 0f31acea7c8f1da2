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
"""

# The plugin's hooks and fixture, so that pytest finds them on this module.
from ._plugin import pytest_addoption as pytest_addoption
from ._plugin import pytest_collection_modifyitems as pytest_collection_modifyitems
from ._plugin import pytest_configure as pytest_configure
from ._plugin import tarantool_sim as tarantool_sim
