"""The lifecycle of one connection, as an explicit state machine.

A :class:`~trio_tarantool.Connection` is always in exactly one :class:`ConnectionState`,
and moves between them only along :data:`TRANSITIONS`::

    IDLE ──request──▶ CONNECTING ──handshake done──▶ READY
     ▲                    │ all attempts failed          │ socket lost
     └────────────────────┴──────────────────────────────┘
    any state ──close()──▶ CLOSING ──tasks gone──▶ CLOSED

``close()`` is legal in every state and always wins: an attempt in progress
is abandoned (its socket closed, never installed), nothing is written after
``close()`` returns, and the state only ever moves forward from CLOSING.
This module is pure (no trio, no I/O), so the table can be tested on its own.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "ConnectionState", "check_transition"]


class ConnectionState(enum.Enum):
    """Where a connection is in its life."""

    #: No socket; the next request starts connecting.
    IDLE = "idle"
    #: An attempt (socket, TLS, greeting, ID, auth) or the pause between attempts.
    CONNECTING = "connecting"
    #: A socket is up, with its reader and writer tasks.
    READY = "ready"
    #: ``close()`` was called; the reader, writer and connector tasks are winding down.
    CLOSING = "closing"
    #: Closed, and every task and socket of the connection is gone.
    CLOSED = "closed"


#: Every legal move. CLOSING -> CLOSED happens when the last task has exited
#: (at once, when none was running).
TRANSITIONS: frozenset[tuple[ConnectionState, ConnectionState]] = frozenset({
    (ConnectionState.IDLE, ConnectionState.CONNECTING),
    (ConnectionState.CONNECTING, ConnectionState.READY),
    (ConnectionState.CONNECTING, ConnectionState.IDLE),
    (ConnectionState.READY, ConnectionState.IDLE),
    (ConnectionState.IDLE, ConnectionState.CLOSING),
    (ConnectionState.CONNECTING, ConnectionState.CLOSING),
    (ConnectionState.READY, ConnectionState.CLOSING),
    (ConnectionState.CLOSING, ConnectionState.CLOSED),
})


def check_transition(old: ConnectionState, new: ConnectionState) -> ConnectionState:
    """``new``, if the lifecycle allows moving there from ``old``; else AssertionError."""
    if (old, new) not in TRANSITIONS:
        raise AssertionError(f"illegal connection state change {old.value} -> {new.value}")
    return new
