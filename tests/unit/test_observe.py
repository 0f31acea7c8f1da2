"""The pure parts of the pool's observability (trio_tarantool._observe)."""

from __future__ import annotations

import logging
import warnings

import pytest
import trio

import trio_tarantool as tt
from trio_tarantool._observe import EventHub, Throttle, emit_warning, ewma
from trio_tarantool._strategy import Status


def test_throttle_reports_new_errors_and_repeats_once_per_interval() -> None:
    throttle = Throttle(60.0)
    assert throttle.due("a", "refused", 0.0)
    # The same error on every poll: not again until the interval has passed.
    assert not any(throttle.due("a", "refused", t / 10) for t in range(1, 600))
    assert throttle.due("a", "refused", 60.0)
    # A new error is due at once; so is another instance's.
    assert throttle.due("a", "timeout", 60.5)
    assert throttle.due("b", "timeout", 60.5)
    assert not throttle.due("a", "timeout", 61.0)
    # Healthy again: the next failure is due at once.
    throttle.reset("a")
    assert throttle.due("a", "timeout", 61.0)


def test_ewma_starts_at_the_first_sample() -> None:
    assert ewma(None, 0.5) == 0.5
    assert ewma(1.0, 0.0) == pytest.approx(0.8)


def _stats() -> tt.PoolStatistics:
    a = tt.InstanceStatistics("h:1", Status.HEALTHY, False, None, 0)
    b = tt.InstanceStatistics("h:2", Status.UNHEALTHY, None, OSError("x"), 1, last_error_message="x")
    return tt.PoolStatistics((a, b), requests=3)


def test_pool_statistics_is_the_sequence_of_its_instances() -> None:
    stats = _stats()
    assert len(stats) == 2 and stats[0].addr == "h:1" and stats[-1].in_flight == 1
    assert [s.addr for s in stats] == ["h:1", "h:2"]
    first, second = stats
    assert second.last_error_message == "x"
    assert stats[0:1] == (first,)
    assert dict(stats.errors) == {}
    with pytest.raises(AttributeError):
        stats.requests = 4  # type: ignore[misc]  # frozen


async def test_every_subscriber_gets_every_event_and_close_ends_them() -> None:
    hub = EventHub()
    one, two = hub.subscribe(8), hub.subscribe(8)
    up = tt.InstanceUpEvent(time=1.0, instance="h:1", role="rw")
    hub.publish(up)
    hub.close(tt.PoolClosedEvent(time=2.0))
    for events in (one, two):
        assert [e async for e in events] == [up, tt.PoolClosedEvent(time=2.0)]
    assert (up.kind, tt.PoolClosedEvent(time=0).kind) == ("up", "close")
    # Subscribing to a closed hub: iteration ends at once.
    assert [e async for e in hub.subscribe(8)] == []


async def test_a_slow_subscriber_loses_the_oldest_events_and_never_blocks() -> None:
    hub = EventHub()
    slow = hub.subscribe(2)
    fast = hub.subscribe(100)
    changes = [tt.RoleChangeEvent(time=float(t), instance="h:1", old="rw" if t % 2 else "ro",
                                  new="ro" if t % 2 else "rw") for t in range(5)]
    for event in changes:
        hub.publish(event)  # synchronous: nothing waits for a reader
    hub.close(tt.PoolClosedEvent(time=9.0))
    assert [e async for e in slow] == [changes[4], tt.PoolClosedEvent(time=9.0)]
    assert slow.dropped == 4 and fast.dropped == 0 and hub.dropped == 4
    assert [e async for e in fast] == [*changes, tt.PoolClosedEvent(time=9.0)]


async def test_leaving_the_block_unsubscribes() -> None:
    hub = EventHub()
    async with hub.subscribe(1) as events:
        pass
    hub.publish(tt.InstanceUpEvent(time=1.0, instance="h:1", role="ro"))
    assert hub.dropped == 0 and events.dropped == 0
    assert [e async for e in events] == []


def test_retry_event_says_whether_it_was_a_failover() -> None:
    common = {"time": 0.0, "method": "insert", "request_kind": "write", "mode": "RW", "reason": "r"}
    assert tt.RetryEvent(from_instance="a", to_instance="b", **common).failover  # type: ignore[arg-type]
    assert not tt.RetryEvent(from_instance="a", to_instance="a", **common).failover  # type: ignore[arg-type]
    assert not tt.RetryEvent(from_instance="a", to_instance=None, **common).failover  # type: ignore[arg-type]


def test_a_warning_turned_error_raises_in_the_callers_task_and_is_logged_in_background(
        caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=tt.NetworkWarning)
        with pytest.raises(tt.NetworkWarning, match="lost"):
            emit_warning("h:1: connection lost", tt.NetworkWarning, background=False)
        with caplog.at_level(logging.WARNING, logger="trio_tarantool.pool"):
            emit_warning("h:1: connection lost", tt.NetworkWarning, background=True)  # no raise
    assert "NetworkWarning: h:1: connection lost" in caplog.text


def test_warning_classes_follow_the_reference() -> None:
    assert tt.PoolTolopogyWarning is tt.PoolTopologyWarning
    for category in (tt.ClusterConnectWarning, tt.NetworkWarning, tt.PoolTopologyWarning):
        assert issubclass(category, UserWarning)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=category)
            emit_warning("x", category, background=False)
        assert seen == []


async def test_events_max_buffer_is_checked() -> None:
    pool = tt.ConnectionPool([{"host": "127.0.0.1", "port": 1}], connect_now=False)
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(tt.ConfigurationError, match="max_buffer"):
            pool.events(max_buffer=bad)  # type: ignore[arg-type]
    events = pool.events()
    pool.close()
    assert [type(e) async for e in events] == [tt.PoolClosedEvent]
    await trio.lowlevel.checkpoint()
