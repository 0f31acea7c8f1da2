"""The pure pacing core of the pool's health (trio_tarantool._health.Pacer)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from trio_tarantool._health import BACKOFF_BASE, MIN_GAP, PROBE_LUA, Pacer


def test_the_probe_is_an_eval_of_two_values() -> None:
    """Not a CALL: a call_16 connection would send CALL_16 and wrap the answer."""
    assert PROBE_LUA == "return box.info.ro, box.info.status"


def test_jitter_is_seeded_by_the_address_not_the_global_random() -> None:
    def sequence(seed: str) -> list[float]:
        pacer = Pacer(1.0, seed)
        out = []
        for i in range(8):
            pacer.failed(float(i))
            out.append(pacer.backoff())
        return out

    state = random.getstate()
    try:
        random.seed(1)
        first = sequence("10.0.0.1:3301")
        random.seed(2)
        assert sequence("10.0.0.1:3301") == first
    finally:
        random.setstate(state)
    assert sequence("10.0.0.2:3301") != first


def test_backoff_grows_to_refresh_delay_and_ends_after_a_quiet_refresh_delay() -> None:
    pacer = Pacer(1.0, "a:1")
    assert pacer.backoff() == 0.0
    caps = []
    for i in range(8):
        assert pacer.failed(float(i)) is (i == 0)  # only the first failure is news
        caps.append(min(1.0, BACKOFF_BASE * 2 ** i))
        assert caps[-1] / 2 <= pacer.backoff() <= caps[-1]
    pacer.succeeded(7.5)  # too soon after the last failure
    assert pacer.failures == 8
    pacer.succeeded(8.0)
    assert pacer.failures == 0 and pacer.backoff() == 0.0


def test_early_gap_doubles_with_early_probes_and_resets_on_the_cadence() -> None:
    pacer = Pacer(0.5, "a:1")
    gaps = []
    for _ in range(8):
        gaps.append(pacer.early_wait())
        pacer.after_wait(early=True)
    assert gaps[0] == MIN_GAP
    assert gaps == sorted(gaps) and gaps[-1] == 0.5
    pacer.after_wait(early=False)
    assert pacer.early_wait() == MIN_GAP


@given(refresh=st.floats(0.001, 100), events=st.lists(st.sampled_from(["fail", "ok", "early", "cadence"]),
                                                     max_size=60))
def test_an_early_probe_never_waits_longer_than_refresh_delay(refresh: float, events: list[str]) -> None:
    """Whatever happened, the cadence stays the bound: pacing only delays early wake-ups."""
    pacer = Pacer(refresh, "h:1")
    now = 0.0
    for event in events:
        now += refresh / 3
        if event == "fail":
            pacer.failed(now)
        elif event == "ok":
            pacer.succeeded(now)
        else:
            pacer.after_wait(early=event == "early")
        assert 0 <= pacer.early_wait() <= refresh
