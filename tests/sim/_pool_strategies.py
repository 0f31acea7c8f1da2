"""Hypothesis strategies for pool scenarios (see :mod:`tests.sim._pool_harness`).

Steps are plain tuples so that they shrink well and print as a readable list;
time steps are symbolic (``"refresh+"`` is ``refresh_delay + EPS``) so a
step list stays meaningful whatever configuration it is paired with.
"""

from __future__ import annotations

from hypothesis import strategies as st

from tests.sim._pool_harness import KINDS, MODES, TIME_STEPS, N, PoolConfig, Step

__all__ = ["configs", "configs_3x", "election_steps", "scenario_steps", "scenario_steps_3x", "steps", "steps_3x"]

_INSTANCE = st.integers(0, N - 1)


def configs() -> st.SearchStrategy[PoolConfig]:
    """Pool timings around the defaults, including the awkward orders
    (probe_timeout below or above refresh_delay and socket_timeout)."""
    return st.builds(
        PoolConfig,
        seed=st.integers(0, 2**16),
        refresh_delay=st.sampled_from([0.5, 0.2, 1.0]),
        socket_timeout=st.sampled_from([0.5, 0.3, 1.0]),
        probe_timeout=st.sampled_from([None, 0.3, 0.75]),
        connection_timeout=st.sampled_from([None, 0.25]),
        link_delay=st.sampled_from([0.0005, 0.0, 0.01]),
        retry_not_executed=st.sampled_from([True, False]),
        loading_time=st.sampled_from([0.0, 0.3]),
        start_fault=st.none() | st.tuples(st.sampled_from(["crash", "pause", "partition"]), _INSTANCE),
        close_in_flight=st.sampled_from([False, False, False, True]),
    )


def steps() -> st.SearchStrategy[Step]:
    """One scenario step: a request (or a burst), a fault, a repair, or time passing."""
    modes = st.sampled_from(MODES)
    kinds = st.sampled_from(KINDS)
    request = st.tuples(st.just("req"), modes, kinds)
    burst = st.tuples(st.just("burst"), modes, kinds, st.integers(2, 6))
    advance = st.tuples(st.just("advance"), st.sampled_from(TIME_STEPS))
    fault = st.one_of(
        st.tuples(st.sampled_from(["crash", "partition", "pause"]), _INSTANCE),
        st.tuples(st.sampled_from(["restart", "unpartition", "resume"]), _INSTANCE),
        st.tuples(st.just("set_ro"), _INSTANCE, st.booleans()),
        st.tuples(st.just("switch"), _INSTANCE),
        st.tuples(st.sampled_from(["failover", "failover_crash", "heal"])),
        st.tuples(st.just("status"), _INSTANCE, st.sampled_from(["orphan", "running"])),
        st.tuples(st.just("link"), _INSTANCE, st.sampled_from(["slow", "reset", "refuse", "clear"])),
    )
    return st.one_of(request, burst, advance, advance, fault, request)


def scenario_steps(max_size: int = 40, close: bool = True) -> st.SearchStrategy[list[Step]]:
    """A list of steps; in about one scenario in five (``close``), the pool is closed
    at a drawn step, by ``close()`` or by leaving its ``async with``, and the
    steps after it run against the closed pool."""
    plain = st.lists(steps(), min_size=min(8, max_size), max_size=max_size)
    if not close:
        return plain
    return _with_close(plain)


def _with_close(plain: st.SearchStrategy[list[Step]]) -> st.SearchStrategy[list[Step]]:
    @st.composite
    def with_close(draw: st.DrawFn) -> list[Step]:
        drawn = draw(plain)
        how = draw(st.sampled_from([None, None, None, None, "close", "exit"]))
        if how is not None:
            drawn.insert(draw(st.integers(0, len(drawn))), ("close", how))
        return drawn

    return with_close()


def configs_3x(election: bool | None = None) -> st.SearchStrategy[PoolConfig]:
    """The same timings on a 3.8 replicaset (the pool follows box.status events),
    with Raft elections or without (``election=None``: drawn)."""
    servers = ["3.8", "3.8-election"] if election is None else ["3.8-election" if election else "3.8"]
    return st.builds(
        lambda base, server: PoolConfig(**{**base.__dict__, "server": server}),
        configs(), st.sampled_from(servers),
    )


def _transaction() -> st.SearchStrategy[Step]:
    """``("txn", api, n, end, at)``: see :mod:`tests.sim._pool_3x`.

    ``cancel0`` at the commit (``at >= n``) is drawn too: it found that a block
    cancelled as its COMMIT starts left the transaction open on the server
    (fixed; regression test
    ``test_pool_3x.py::test_a_transaction_cancelled_as_its_commit_starts_is_not_left_open``).
    """
    return st.tuples(st.just("txn"), st.sampled_from(["pool", "pool", "conn"]), st.integers(2, 4),
                     st.sampled_from(["commit", "commit", "raise", "cancel", "cancel0"]),
                     st.integers(0, 4))


def steps_3x() -> st.SearchStrategy[Step]:
    """Steps of a 3.8 scenario: the 2.6 ones plus transactions, transaction readers
    and a background writer (an RW write every 10 or 50 ms for a while)."""
    return st.one_of(
        steps(), _transaction(), _transaction(),
        st.tuples(st.just("txread"), st.sampled_from(MODES)),
        st.tuples(st.just("writer"), st.sampled_from([0.01, 0.05]), st.sampled_from([1.0, 3.0])),
    )


def scenario_steps_3x(max_size: int = 30) -> st.SearchStrategy[list[Step]]:
    """A 3.8 scenario (a close at a drawn step in about one in five, as in :func:`scenario_steps`)."""
    return _with_close(st.lists(steps_3x(), min_size=min(8, max_size), max_size=max_size))


def election_steps() -> st.SearchStrategy[list[Step]]:
    """An election scenario: a writer every 10 ms, then promotes, elections with the
    leader crashed (a drawn no-leader window) or not, repairs and quiet periods, with
    transactions and readers in between."""
    quiet = st.tuples(st.just("advance"), st.sampled_from(["window+", "refresh+", "small", "probe+"]))
    fault = st.one_of(
        st.tuples(st.just("switch"), _INSTANCE),
        st.tuples(st.sampled_from(["failover", "failover_crash"])),
        st.tuples(st.sampled_from(["restart", "crash", "pause", "resume"]), _INSTANCE),
    )
    other = st.one_of(_transaction(), st.tuples(st.just("txread"), st.sampled_from(MODES)),
                      st.tuples(st.just("req"), st.sampled_from(MODES), st.sampled_from(KINDS)))
    return st.lists(st.one_of(quiet, quiet, fault, other), min_size=3, max_size=10).map(
        lambda drawn: [("writer", 0.01, 8.0), ("advance", "window+"), *drawn])
