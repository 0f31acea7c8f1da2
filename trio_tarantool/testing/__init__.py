"""A test kit for applications built on trio_tarantool.

Installing trio-tarantool registers a pytest plugin (module
:mod:`trio_tarantool.testing._plugin`) with a fixture, for tests run by
pytest-trio:

``tarantool_sim``
    A started simulated replicaset (``sim.Replicaset``): three instances
    ``tt1.sim`` .. ``tt3.sim``, the first one the master, in virtual time
    (the fixture asks for pytest-trio's ``autojump_clock``, so sleeps cost
    nothing). Pass ``tarantool_sim.addrs`` to :func:`trio_tarantool.open_pool`
    or ``**tarantool_sim.addrs[i]`` to :func:`trio_tarantool.connect`.

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
