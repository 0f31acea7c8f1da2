"""The connection lifecycle table (trio_tarantool._lifecycle)."""

from __future__ import annotations

import itertools

import pytest

from trio_tarantool._lifecycle import TRANSITIONS, ConnectionState, check_transition


def test_close_is_legal_from_every_live_state() -> None:
    for state in (ConnectionState.IDLE, ConnectionState.CONNECTING, ConnectionState.READY):
        assert check_transition(state, ConnectionState.CLOSING) is ConnectionState.CLOSING


def test_closing_only_ends_in_closed_and_closed_is_final() -> None:
    assert {new for old, new in TRANSITIONS if old is ConnectionState.CLOSING} == {ConnectionState.CLOSED}
    assert not [new for old, new in TRANSITIONS if old is ConnectionState.CLOSED]


def test_nothing_leaves_closing_or_closed_for_a_live_state() -> None:
    for old, new in itertools.product((ConnectionState.CLOSING, ConnectionState.CLOSED), ConnectionState):
        if (old, new) != (ConnectionState.CLOSING, ConnectionState.CLOSED):
            with pytest.raises(AssertionError, match="illegal"):
                check_transition(old, new)


def test_ready_is_reached_only_through_connecting() -> None:
    assert {old for old, new in TRANSITIONS if new is ConnectionState.READY} == {ConnectionState.CONNECTING}
