"""Streams and interactive transactions (Tarantool >= 2.10, IPROTO streams).

A :class:`Stream` is a sequence of requests on one connection that the
server runs in order, one after the other; on a stream, ``begin()`` opens an
interactive transaction that spans requests until ``commit()`` or
``rollback()``. :func:`transaction` wraps that in ``async with``: commit on a
normal exit, rollback on an exception or a cancellation, and never a
transaction left open on the server.

A transaction lives on the server as long as the socket it began on: if the
connection is lost, the server rolls it back. So a stream remembers the socket
its transaction began on, and a request on it after a reconnect fails (it
would otherwise run outside the transaction, committed on its own).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import trio

from . import _request as _rq
from ._errors import ConfigurationError, Error, NetworkError, ServerError
from ._iproto import _constants as C
from ._iproto import _requests as R
from ._request import PushCallback, Request
from ._response import Response

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Isolation", "Stream", "transaction"]

#: How long a rollback after an error or a cancellation may take before the
#: connection is reset instead (which makes the server roll back).
ROLLBACK_TIMEOUT = 5.0


class Isolation(enum.IntEnum):
    """Transaction isolation levels (``box.begin{txn_isolation=...}``)."""

    DEFAULT = 0
    READ_COMMITTED = 1
    READ_CONFIRMED = 2
    BEST_EFFORT = 3


def isolation_level(isolation: Any) -> int:
    """An isolation level given as :class:`Isolation`, its name ("read-committed") or number."""
    if isinstance(isolation, str):
        try:
            return Isolation[isolation.strip().upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(repr(i.name.lower().replace("_", "-")) for i in Isolation)
            raise ConfigurationError(f"isolation must be one of {names}, got {isolation!r}") from None
    if isinstance(isolation, int) and not isinstance(isolation, bool):
        try:
            return Isolation(isolation)
        except ValueError:
            pass
    raise ConfigurationError(f"isolation must be an Isolation or its name, got {isolation!r}")


class Stream:
    """Requests that the server runs in order, optionally in one transaction.

    Get one with :meth:`Connection.stream`. It has the request methods of a
    connection (without ``crud_*``), plus :meth:`begin`, :meth:`commit` and
    :meth:`rollback`.
    """

    def __init__(self, conn: Connection, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        #: The connection's socket_id when the open transaction began
        #: (None when no transaction is open).
        self._tx_socket: int | None = None

    def __repr__(self) -> str:
        tx = " in transaction" if self._tx_socket is not None else ""
        return f"<trio_tarantool.Stream {self.stream_id} of {self.conn!r}{tx}>"

    @property
    def in_transaction(self) -> bool:
        """True between a successful :meth:`begin` and its commit or rollback."""
        return self._tx_socket is not None

    async def _perform(self, request: Request) -> Any:
        if self._tx_socket is not None and self._tx_socket != self.conn.socket_id:
            self._tx_socket = None
            raise NetworkError(
                f"stream {self.stream_id}: the connection was lost during the transaction, so the "
                "server rolled it back; this request was not sent", may_have_executed=False)
        return await self.conn.perform(request, None, self.stream_id)

    async def _require(self, feature: int, what: str) -> None:
        await self.conn._require(feature, what)

    async def begin(self, isolation: Any = Isolation.DEFAULT,
                    timeout: float | None = None) -> None:  # noqa: ASYNC109 (the server's limit)
        """Open an interactive transaction on this stream.

        ``timeout`` (seconds) is the server's limit for the transaction;
        ``isolation`` an :class:`Isolation` or its name (``"read-committed"``).
        """
        level = isolation_level(isolation)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or not timeout > 0):
            raise ConfigurationError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        await self._require(C.FEATURE_TRANSACTIONS, "begin()")
        if self._tx_socket is not None:
            raise ConfigurationError(f"stream {self.stream_id} already has an open transaction")
        # Counted as open from the moment BEGIN may reach the server, so that
        # a BEGIN whose outcome is unknown is rolled back too.
        self._tx_socket = self.conn.socket_id
        try:
            await self.conn.perform(Request(C.BEGIN, R.begin_body(timeout, level)), None, self.stream_id)
        except ServerError:
            self._tx_socket = None  # refused: no transaction
            raise
        except NetworkError as exc:
            if not exc.may_have_executed:
                self._tx_socket = None
            raise

    async def commit(self) -> None:
        """Commit the open transaction."""
        try:
            await self._perform(Request(C.COMMIT, {}))
        finally:
            self._tx_socket = None

    async def rollback(self) -> None:
        """Roll the open transaction back."""
        try:
            await self._perform(Request(C.ROLLBACK, {}))
        finally:
            self._tx_socket = None

    # -- requests on the stream ------------------------------------------------------------
    async def select(self, space_name: str | int, key: Any = None, *, offset: int = 0,
                     limit: int = 0xFFFFFFFF, index: str | int = 0, iterator: Any = None,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        return cast(Response, await self._perform(_rq.select(
            space_name, key, offset=offset, limit=limit, index=index, iterator=iterator,
            on_push=on_push, on_push_ctx=on_push_ctx)))

    async def insert(self, space_name: str | int, values: Sequence[Any]) -> Response:
        return cast(Response, await self._perform(_rq.insert(space_name, values)))

    async def replace(self, space_name: str | int, values: Sequence[Any]) -> Response:
        return cast(Response, await self._perform(_rq.replace(space_name, values)))

    async def update(self, space_name: str | int, key: Any, op_list: Sequence[Any], *,
                     index: str | int = 0) -> Response:
        return cast(Response, await self._perform(_rq.update(space_name, key, op_list, index=index)))

    async def upsert(self, space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
                     index: str | int = 0) -> Response:
        return cast(Response, await self._perform(_rq.upsert(space_name, tuple_value, op_list, index=index)))

    async def delete(self, space_name: str | int, key: Any, *, index: str | int = 0) -> Response:
        return cast(Response, await self._perform(_rq.delete(space_name, key, index=index)))

    async def call(self, func_name: str, *args: Any) -> Response:
        return cast(Response, await self._perform(_rq.call(func_name, *args)))

    async def eval(self, expr: str, *args: Any) -> Response:
        return cast(Response, await self._perform(_rq.eval(expr, *args)))

    async def execute(self, query: str | int, params: Any = None) -> Response:
        return cast(Response, await self._perform(_rq.execute(query, params)))


#: Stream ids are unique per process, which keeps them unique per connection.
_stream_ids = itertools.count(1)


async def open_stream(conn: Connection) -> Stream:
    """A new stream on ``conn`` (the server must support streams)."""
    stream = Stream(conn, next(_stream_ids))
    await stream._require(C.FEATURE_STREAMS, "stream()")
    return stream


@asynccontextmanager
async def transaction(conn: Connection, isolation: Any = Isolation.DEFAULT,
                      timeout: float | None = None) -> AsyncIterator[Stream]:  # noqa: ASYNC109
    """``async with`` an interactive transaction on a new stream of ``conn``.

    Commits when the block ends normally; rolls back (shielded, bounded by
    :data:`ROLLBACK_TIMEOUT`) when it raises or is cancelled. If the rollback
    cannot complete, the connection's socket is reset, which makes the server
    roll the transaction back: none is ever left open.
    """
    stream = await open_stream(conn)
    try:
        await stream.begin(isolation, timeout)
        yield stream
    except BaseException:
        if stream.in_transaction:
            await _roll_back_shielded(stream, conn)
        raise
    try:
        await stream.commit()
    except ServerError:
        raise  # the server answered the COMMIT: the transaction is over either way
    except BaseException:
        # Cancelled or failed before the server answered: the COMMIT may not
        # even have been written. A ROLLBACK behind it on the same stream (the
        # server runs a stream's requests in order) ends the transaction if the
        # COMMIT never came, and is refused harmlessly if it did.
        await _roll_back_shielded(stream, conn)
        raise


async def _roll_back_shielded(stream: Stream, conn: Connection) -> None:
    """Roll the stream's transaction back, shielded and bounded; reset the socket if that fails.

    A reset makes the server roll back every transaction of the socket: none
    is ever left open.
    """
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + ROLLBACK_TIMEOUT
        try:
            await stream.conn.perform(Request(C.ROLLBACK, {}), None, stream.stream_id)
        except ServerError:
            pass  # the server answered: no transaction is open any more
        except Error:
            conn.reset("a transaction's rollback did not complete")
        finally:
            stream._tx_socket = None
    if scope.cancelled_caught:
        conn.reset("a transaction's rollback timed out")
