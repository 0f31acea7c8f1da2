"""An observable pool against real Tarantool: logs, events, statistics, warnings.

A planned switch-over and a lost connection each leave INFO records on
``trio_tarantool.*`` loggers and events on ``pool.events()``; the statistics
counters move with them; the reference's warnings come once per problem, not
once per probe; no record, event or warning carries the password.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_tarantool as tt
from tests.real._servers import Replicaset, find_free_port
from trio_tarantool import Status, open_pool

pytestmark = pytest.mark.timeout(120)

HANG = 30
#: A password no log line, event or warning may contain.
SECRET = "pw-0bserv3-S3CRET"
_keys = itertools.count(7_000_000)


def add_observer_user(replicaset: Replicaset) -> dict[str, Any]:
    """A user with the distinctive password, created on the master and replicated."""
    replicaset.master.admin(
        f"box.schema.user.create('observer', {{password = '{SECRET}', if_not_exists = true}}) "
        "box.schema.user.grant('observer', 'read,write,execute', 'universe', nil, "
        "{if_not_exists = true})"
    )
    replicaset.wait_replicated()
    return {"user": "observer", "password": SECRET}


class Collector:
    """Reads a subscription into a list and wakes whoever waits for a matching event."""

    def __init__(self, events: tt.PoolEvents) -> None:
        self.events = events
        self.seen: list[tt.PoolEvent] = []
        self._changed = trio.Event()

    async def run(self) -> None:
        async for event in self.events:
            self.seen.append(event)
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, match: Callable[[tt.PoolEvent], bool]) -> tt.PoolEvent:
        while True:
            for event in self.seen:
                if match(event):
                    return event
            await self._changed.wait()


def no_secret_in(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, text


async def test_planned_switch_over_is_observable(replicaset: Replicaset,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The pool learns the switch-over from the write the old master refuses: the retry,
    both role changes and the counters are visible, as INFO records and as events."""
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    user = add_observer_user(replicaset)
    old, new = replicaset.master, replicaset.replicas[0]
    key = next(_keys)
    with trio.fail_after(HANG):
        # No probe and no box.status event tells the pool about the switch-over
        # (refresh_delay=3600, status_events=False): the first write after it
        # goes to the old master, is refused, and is retried on the new one.
        async with open_pool(replicaset.addrs, refresh_delay=3600, probe_timeout=5,
                             status_events=False, **user) as pool, \
                pool.events() as events, trio.open_nursery() as nursery:
            collector = Collector(events)
            nursery.start_soon(collector.run)
            await pool.insert("tester", [key, "before"])
            await trio.to_thread.run_sync(replicaset.switch_master, new)
            await pool.insert("tester", [key + 1, "after"])

            demoted = await collector.wait_for(lambda e: isinstance(e, tt.RoleChangeEvent)
                                               and e.instance == old.listen)
            promoted = await collector.wait_for(lambda e: isinstance(e, tt.RoleChangeEvent)
                                                and e.instance == new.listen)
            retry = await collector.wait_for(lambda e: isinstance(e, tt.RetryEvent))
            assert isinstance(demoted, tt.RoleChangeEvent) and isinstance(promoted, tt.RoleChangeEvent)
            assert (demoted.kind, demoted.old, demoted.new) == ("role", "rw", "ro")
            assert (promoted.kind, promoted.old, promoted.new) == ("role", "ro", "rw")
            assert demoted.time <= promoted.time <= trio.current_time()
            assert isinstance(retry, tt.RetryEvent)
            assert (retry.method, retry.request_kind, retry.from_instance, retry.to_instance,
                    retry.mode) == ("insert", "write", old.listen, new.listen, "RW")
            assert retry.failover and "ER_READONLY" in retry.reason
            assert isinstance(retry.error, tt.ServerError) and retry.error.code == tt.ErrorCode.ER_READONLY

            stats = pool.statistics()
            assert (stats.requests, stats.retries, stats.failovers, stats.role_changes) == (2, 1, 1, 2)
            assert dict(stats.errors) == {"ServerError": 1}
            by_addr = {s.addr: s for s in stats}
            assert by_addr[old.listen].requests == 2 and by_addr[new.listen].requests == 1
            assert by_addr[old.listen].role_changes == 1 and by_addr[new.listen].role_changes == 1
            assert isinstance(by_addr[old.listen].last_error, tt.ServerError)
            assert "ER_READONLY" in (by_addr[old.listen].last_error_message or "")
            for s in stats:
                assert s.probe_rtt is not None and s.probe_rtt_ewma is not None
                assert s.last_probe_ok_at is not None and s.last_probe_ok_at <= trio.current_time()
            rendered = [repr(stats), repr(pool), *(repr(e) for e in collector.seen)]
            pool.close()  # ends the subscription's iteration, so the collector's nursery can exit
        # After the block: the close event ended the iteration.
        assert isinstance(collector.seen[-1], tt.PoolClosedEvent)
        assert collector.seen[-1].kind == "close"

    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"{old.listen} became ro (was rw)" in info, info
    assert f"{new.listen} became rw (was ro)" in info, info
    assert any(m.startswith(f"retry of insert (write): {old.listen} -> {new.listen}") for m in info), info
    assert any(m.startswith("pool connected: ") for m in info), info
    assert any(m.startswith("pool closed: ") for m in info), info
    for record in caplog.records:
        assert record.name.startswith("trio_tarantool."), record.name
    no_secret_in(caplog.text, *rendered)


async def test_lost_connection_is_observable(replicaset: Replicaset,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A killed replica: INFO records on both loggers, a "down" event, one NetworkWarning,
    and its failing probes logged once, not once per probe."""
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    user = add_observer_user(replicaset)
    victim = replicaset.replicas[1]
    with trio.fail_after(HANG):
        async with open_pool(replicaset.addrs, refresh_delay=0.05, **user) as pool, \
                pool.events() as events, trio.open_nursery() as nursery:
            collector = Collector(events)
            nursery.start_soon(collector.run)
            unit = next(u for u in pool._units if u.key == victim.listen)
            with pytest.warns(tt.NetworkWarning) as record:
                await trio.to_thread.run_sync(victim.kill)
                down = await collector.wait_for(lambda e: isinstance(e, tt.InstanceDownEvent))
                # Many probes of the dead instance later...
                probes = unit.probes
                while unit.probes < probes + 10:
                    await pool._health._probe_done.wait()  # set at the end of every probe
            lost = [w for w in record if issubclass(w.category, tt.NetworkWarning)]
            assert len(lost) == 1, [str(w.message) for w in lost]
            assert str(lost[0].message).startswith(f"{victim.listen}: connection lost")
            assert isinstance(down, tt.InstanceDownEvent)
            assert (down.kind, down.instance, down.role) == ("down", victim.listen, "ro")
            assert "connection lost" in down.reason
            assert isinstance(down.error, tt.NetworkError)

            (stats,) = [s for s in pool.statistics() if s.addr == victim.listen]
            assert stats.status == Status.UNHEALTHY
            assert isinstance(stats.last_error, tt.NetworkError)
            assert stats.probe_failures >= 10
            rendered = [repr(pool.statistics()), *(repr(e) for e in collector.seen),
                        *(str(w.message) for w in record)]
            pool.close()

    about_victim = [r for r in caplog.records
                    if victim.listen in r.getMessage() and r.name == "trio_tarantool.pool"]
    info = [r.getMessage() for r in about_victim if r.levelno == logging.INFO]
    assert any(m.startswith(f"{victim.listen} is UNHEALTHY (was ro): connection lost") for m in info), info
    # The loss, then the probes' own (different) errors once each; the other probes at DEBUG.
    assert len([m for m in info if "probe" in m]) <= 2, info  # (a kill during a probe: two errors)
    assert len([r for r in about_victim if r.levelno == logging.DEBUG and "again" in r.getMessage()]) >= 8
    connection_info = [r.getMessage() for r in caplog.records
                       if r.name == "trio_tarantool.connection" and r.levelno == logging.INFO]
    assert any("connection lost" in m for m in connection_info), connection_info
    no_secret_in(caplog.text, *rendered)


async def test_a_dead_address_warns_once_not_per_probe(caplog: pytest.LogCaptureFixture) -> None:
    """No server behind the address: one ClusterConnectWarning at connect(), one
    PoolTopologyWarning (no rw instance) after probe_timeout, however many probes fail."""
    caplog.set_level(logging.INFO, logger="trio_tarantool")
    port = find_free_port()
    with trio.fail_after(HANG):
        with pytest.warns(tt.ClusterConnectWarning) as record:
            async with open_pool([{"host": "127.0.0.1", "port": port}], refresh_delay=0.02,
                                 probe_timeout=0.2, user="u", password=SECRET) as pool:
                (unit,) = pool._units
                start = trio.current_time()
                while unit.probes < 20 or trio.current_time() - start < 0.5:
                    await pool._health._probe_done.wait()  # set at the end of every probe
                (stats,) = pool.statistics()
    connect = [str(w.message) for w in record if w.category is tt.ClusterConnectWarning]
    topology = [str(w.message) for w in record if w.category is tt.PoolTopologyWarning]
    assert len(connect) == 1 and connect[0].startswith(f"Failed to connect to 127.0.0.1:{port}"), connect
    assert topology == ["no healthy rw instance in the pool for more than probe_timeout=0.2s"], topology
    assert not [w for w in record if w.category is tt.NetworkWarning]  # never connected: nothing lost
    assert stats.probe_failures >= 20 and stats.last_probe_ok_at is None and stats.probe_rtt is None
    assert isinstance(stats.last_error, tt.NetworkError)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
            and r.getMessage().startswith(f"127.0.0.1:{port}: box.info probe failed")]
    assert len(info) == 1, info  # one INFO record for 20+ failed probes
    no_secret_in(caplog.text, *(str(w.message) for w in record))


async def test_the_warnings_are_easy_to_silence() -> None:
    """``warnings.filterwarnings("ignore", category=...)`` silences them; with them turned
    into errors, connect() raises ClusterConnectWarning (the caller's task)."""
    port = find_free_port()
    addrs = [{"host": "127.0.0.1", "port": port}]
    with trio.fail_after(HANG):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=tt.ClusterConnectWarning)
            async with open_pool(addrs, refresh_delay=0.02, probe_timeout=5):
                pass
        assert [w for w in seen if issubclass(w.category, tt.ClusterConnectWarning)] == []
        with warnings.catch_warnings():
            warnings.simplefilter("error", category=tt.ClusterConnectWarning)
            with pytest.raises(tt.ClusterConnectWarning, match=f"127.0.0.1:{port}"):
                async with open_pool(addrs, refresh_delay=0.02, probe_timeout=5):
                    raise AssertionError("connect() must raise the warning as an error")
