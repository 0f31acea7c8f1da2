"""Watchers: the latest value of a server-side key, followed as it changes.

Tarantool >= 2.10 pushes ``box.broadcast()`` keys (and built-ins such as
``box.status``, ``box.id``, ``box.election``, ``box.shutdown``) to clients that
sent IPROTO_WATCH for them; each IPROTO_EVENT must be acknowledged (by sending
WATCH again) before the next one comes. A connection keeps one
:class:`KeyState` per watched key, shared by all its :class:`Watcher`
iterators, and subscribes again after every reconnect.

A watcher yields the current value first, then each *new* value. It follows
the latest value, not every intermediate one: a consumer slower than the
changes sees the newest value when it asks, never a stale one, and never
the same value twice in a row (the re-subscription after a reconnect repeats
the current value; it is not yielded again unless it changed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

__all__ = ["KeyState", "Watcher"]


class KeyState:
    """What a connection knows of one watched key."""

    __slots__ = ("changed", "closed", "key", "seq", "subscribers", "value")

    def __init__(self, key: str) -> None:
        self.key = key
        self.value: Any = None
        #: Bumped on every new value; 0 until the first one arrived.
        self.seq = 0
        self.subscribers = 0
        self.closed = False
        self.changed = trio.Event()

    def update(self, value: Any) -> bool:
        """Record ``value``; True when it is new (and waiting watchers were woken)."""
        if self.seq and value == self.value and type(value) is type(self.value):
            return False
        self.value = value
        self.seq += 1
        self._wake()
        return True

    def close(self) -> None:
        """No more values will come (the connection closed)."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class Watcher(AsyncIterator[Any]):
    """``async for value in watcher``: the key's current value, then each change.

    Iteration ends when the connection is closed.
    """

    def __init__(self, state: KeyState) -> None:
        self._state = state
        self._seen = 0

    @property
    def key(self) -> str:
        return self._state.key

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Any:
        await trio.lowlevel.checkpoint()
        state = self._state
        while state.seq == self._seen:
            if state.closed:
                raise StopAsyncIteration
            await state.changed.wait()
        self._seen = state.seq
        return state.value

    def __repr__(self) -> str:
        return f"<trio_tarantool.Watcher {self._state.key!r} seen={self._seen}>"
