"""The connection lifecycle table (trio_tarantool._lifecycle)."""

from __future__ import annotations

import itertools

import pytest

from trio_tarantool._lifecycle import TRANSITIONS, State, check_transition


def test_close_is_legal_from_every_live_state() -> None:
    for state in (State.IDLE, State.CONNECTING, State.READY):
        assert check_transition(state, State.CLOSING) is State.CLOSING


def test_closing_only_ends_in_closed_and_closed_is_final() -> None:
    assert {new for old, new in TRANSITIONS if old is State.CLOSING} == {State.CLOSED}
    assert not [new for old, new in TRANSITIONS if old is State.CLOSED]


def test_nothing_leaves_closing_or_closed_for_a_live_state() -> None:
    for old, new in itertools.product((State.CLOSING, State.CLOSED), State):
        if (old, new) != (State.CLOSING, State.CLOSED):
            with pytest.raises(AssertionError, match="illegal"):
                check_transition(old, new)


def test_ready_is_reached_only_through_connecting() -> None:
    assert {old for old, new in TRANSITIONS if new is State.READY} == {State.CONNECTING}
