"""One Tarantool connection on a trio stream.

Theory of operation
-------------------
A :class:`Connection` multiplexes any number of concurrent requests over one
socket. Each request gets a fresh ``sync`` id and a :class:`Ticket`; its packet
goes to the *outbox* and the calling task parks until the reply with that sync
reschedules it. A writer task takes the whole outbox at once and sends it in
one write (so requests from many tasks share few syscalls); a reader task
feeds the sans-I/O :class:`~trio_tarantool._iproto.Decoder` and wakes the
task whose ``sync`` each reply carries.

The connection's life is the explicit state machine of
:mod:`trio_tarantool._lifecycle` (IDLE, CONNECTING, READY, CLOSING, CLOSED).
Connecting is the job of one *connector* task (socket, TLS, greeting, ID,
auth, ``reconnect_max_attempts`` retries ``reconnect_delay`` apart); requests
only wait for its result, each within its own deadline, so no caller's
timeout or cancellation can leave a half-made connection behind, and
``close()`` cancels the connector wherever it is.

Invariants:

* **close() wins.** It is legal in every state; an attempt in progress is
  abandoned and its socket closed, never installed; nothing is written after
  ``close()`` returns; every waiting request fails with
  :class:`ConnectionClosedError` saying truthfully whether it was written.
* **Whole packets.** Only the writer task (or, for a lone request, the caller
  itself in one non-blocking ``os.write``) writes the socket; a cancelled
  caller's packet is removed from the outbox if not yet written, so the
  stream never carries half a packet.
* **One deadline per request.** ``socket_timeout`` (or the pool's deadline)
  bounds the whole request: waiting for a connection, for a free slot, for
  names, for the reply. Its :class:`TarantoolTimeoutError` says whether the
  packet was written.
* **Truthful failures.** When the socket fails, every waiter fails with
  :class:`NetworkError` whose ``may_have_executed`` is True exactly when its
  packet (or part of it) was written.
* **Bounded memory.** At most ``max_in_flight`` requests wait for replies;
  further callers queue (backpressure, not unbounded buffers).

The pool uses the same request path through :meth:`Connection.submit_nowait`,
:meth:`Connection.finish` and :meth:`Connection.perform`.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

import outcome
import trio

from . import _iproto
from . import _request as _rq
from ._crud import CrudMixin
from ._errors import (
    ConfigurationError,
    ConnectionClosedError,
    Error,
    ErrorCode,
    NetworkError,
    NotSupportedError,
    ProtocolError,
    SchemaError,
    ServerError,
    TarantoolTimeoutError,
)
from ._iproto import _requests as R
from ._iproto import constants as C
from ._lifecycle import ConnectionState, check_transition
from ._options import ConnectionOptions, connection_options
from ._request import FINISH_PING, FINISH_PING_NOTIME, FINISH_RESPONSE, PushCallback, Request
from ._response import Response, database_error, reply_to, response_of
from ._schema import Schema
from ._stream import Isolation, Stream, open_stream, transaction
from ._tls import start_tls
from ._watch import KeyState, Watcher

_WRONG_SCHEMA = C.TYPE_ERROR | ErrorCode.ER_WRONG_SCHEMA_VERSION

#: State changes at INFO (connected, lost, reconnect attempts failed, server
#: shutting down), detail at DEBUG. Never a password: messages name the address.
logger = logging.getLogger("trio_tarantool.connection")
#: Requests on a space, whose replies' rows can be named by the space's format.
_SPACE_REQUESTS = frozenset({C.SELECT, C.INSERT, C.REPLACE, C.UPDATE, C.UPSERT, C.DELETE})
#: Requests that run the application's code on the server.
_CODE_REQUESTS = frozenset({C.CALL, C.CALL_16, C.EVAL, C.EXECUTE})
#: The key a gracefully stopping server (>= 2.10) broadcasts to its clients.
_SHUTDOWN_KEY = "box.shutdown"

_RECV_SIZE = 64 * 1024
_U32 = 0xFFFFFFFF
#: The body of a PING (packed afresh each time: nothing may mutate it).
_EMPTY_BODY: Final[dict[int, Any]] = {}
# The hot path's names, as plain module globals (one lookup each, not two).
_wait = trio.lowlevel.wait_task_rescheduled
_current_task = trio.lowlevel.current_task
_PING, _SELECT, _INSERT, _REPLACE, _CALL, _CALL_16 = C.PING, C.SELECT, C.INSERT, C.REPLACE, C.CALL, C.CALL_16
_EXECUTE, _SQL_TEXT, _STMT_ID, _SQL_BIND = C.EXECUTE, C.SQL_TEXT, C.STMT_ID, C.SQL_BIND
_SPACE_ID, _INDEX_ID, _LIMIT, _OFFSET, _ITERATOR, _KEY, _TUPLE, _FUNCTION_NAME = (
    C.SPACE_ID, C.INDEX_ID, C.LIMIT, C.OFFSET, C.ITERATOR, C.KEY, C.TUPLE, C.FUNCTION_NAME)
#: Iterator types as plain ints (an IntEnum member costs more to fetch and to pack).
_EQ, _ALL = int(C.Iterator.EQ), int(C.Iterator.ALL)
#: select()'s defaults, compared by identity on the hot path (see there).
_ZERO, _ALL_ROWS = 0, 0xFFFFFFFF
#: Queued packets at which a submitting caller writes the outbox itself
#: rather than leave it all to the writer task (see :meth:`Connection._flush`).
_FLUSH_AT = 32
_INF = math.inf
#: Reads served without waiting before the reader yields to other tasks anyway.
_EAGER_READS = 16
_SCHEMA_RETRIES = 3


class ShutdownDrained(NetworkError):
    """Why a socket was closed after the server's graceful-shutdown notice.

    Nothing was lost: the connection sent nothing new after the notice and
    closed the socket once the replies in flight had come (health checks use
    the type to tell a planned stop from a failure).
    """


class _Resend:
    """What :meth:`Connection.finish` returns for a reply that asks to send again."""

    def __repr__(self) -> str:
        return "RESEND"


#: :meth:`Connection.finish`'s answer to a stale-schema reply: the request was
#: refused unexecuted; send it again with :meth:`Connection.perform`.
RESEND: Final = _Resend()


@dataclass(frozen=True)
class ConnectionStatistics:
    """Counters of one :class:`Connection` (see :meth:`Connection.statistics`).

    ``writes`` against ``requests_sent`` shows how well concurrent requests are
    coalesced into shared system calls.
    """

    connected: bool
    in_flight: int
    requests_sent: int
    writes: int
    connects: int


class Ticket:
    """One request queued on a connection for a task parked until its reply.

    The reply reschedules :attr:`task` with ``outcome.Value(reply)``, a
    failure of the socket with ``outcome.Error(NetworkError)``. A request with
    a push callback gets a :class:`_PushTicket`; a plain one reads the class
    defaults below (no callback, no push error).
    """

    __slots__ = ("conn", "deadline", "done", "packet", "sync", "task", "written")

    on_push: PushCallback | None = None
    on_push_ctx: Any = None
    push_error: BaseException | None = None

    def __init__(self, conn: Connection, packet: bytes, sync: int, task: trio.lowlevel.Task) -> None:
        self.conn = conn
        self.packet = packet
        self.sync = sync
        self.task = task
        #: True once any byte of the packet went to the socket: only then may
        #: the request have executed.
        self.written = False
        self.done = False
        #: The hot path's deadline for the reply (trio time; inf: none).
        self.deadline = math.inf

    def cancel(self) -> None:
        """The parked task gave up: forget the request (and its packet, if unwritten).

        Call it from the task's abort function; a late reply is then dropped.
        """
        self.conn._forget(self)

    def __call__(self, _: Any) -> trio.lowlevel.Abort:
        """The abort function of the task parked on this ticket.

        The ticket itself is what the connection passes to
        ``wait_task_rescheduled``: no closure per request, and it removes
        exactly this request.
        """
        self.conn._forget(self)
        return trio.lowlevel.Abort.SUCCEEDED


class _PushTicket(Ticket):
    """A :class:`Ticket` whose request takes a push callback (IPROTO_CHUNK)."""

    __slots__ = ("on_push", "on_push_ctx", "push_error")

    def __init__(self, conn: Connection, packet: bytes, sync: int, task: trio.lowlevel.Task,
                 on_push: PushCallback, on_push_ctx: Any) -> None:
        super().__init__(conn, packet, sync, task)
        self.on_push = on_push
        self.on_push_ctx = on_push_ctx
        self.push_error = None


_new_ticket = object.__new__


class _Link:
    """One live socket with its reader and writer tasks and its outbox."""

    __slots__ = ("dead", "draining", "fd", "kicked", "outbox", "posts", "scopes", "stream",
                 "writer_parked", "writer_task")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.scopes = (trio.CancelScope(), trio.CancelScope())
        self.outbox: list[Ticket] = []
        #: Packets in the outbox that get no reply (WATCH acks): not counted as requests.
        self.posts = 0
        self.writer_task: trio.lowlevel.Task | None = None
        self.writer_parked = False
        #: Set from :meth:`kick` until the writer runs: it has nothing half-written.
        self.kicked = False
        #: Set once the link is dropped: nothing may be written to it any more.
        self.dead = False
        #: Set when the server announced its shutdown: no new request goes here;
        #: the link is dropped once the replies in flight have come.
        self.draining = False
        #: The OS socket, for writing a lone request without waking the writer
        #: task (-1 when the stream is not a real socket, e.g. in the simulator).
        self.fd = _socket_fd(stream)

    def abort_park(self, _: Any) -> trio.lowlevel.Abort:
        """The writer was cancelled while parked: nobody may kick it any more."""
        self.writer_parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def kick(self) -> None:
        """Wake the writer if it waits for work."""
        if self.writer_parked and self.writer_task is not None:
            self.writer_parked = False
            self.kicked = True
            trio.lowlevel.reschedule(self.writer_task)


class _Attempt:
    """One run of the connector: waiters park on ``done``; ``error`` if it failed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: Error | None = None


def _socket_fd(stream: trio.abc.Stream) -> int:
    if not isinstance(stream, trio.SocketStream):
        return -1
    try:
        fd = stream.socket.fileno()
        return fd if fd >= 0 and stat.S_ISSOCK(os.fstat(fd).st_mode) else -1
    except (OSError, AttributeError, TypeError, ValueError):
        return -1


def _not_sent(exc: NetworkError) -> NetworkError:
    """``exc`` for a request that was surely not written (same kind and message)."""
    if not exc.may_have_executed:
        return exc
    try:
        return type(exc)(exc.message, may_have_executed=False)
    except TypeError:  # a subclass with another constructor
        return NetworkError(exc.message, may_have_executed=False)


def _copy_error(exc: Error) -> Error:
    """A fresh exception like ``exc`` (one shared instance must not be raised in many tasks)."""
    try:
        if isinstance(exc, NetworkError):
            return type(exc)(exc.message, may_have_executed=False)
        if type(exc) is ServerError:
            return ServerError(exc.code, exc.message, exc.extra_info)
    except TypeError:  # a subclass with another constructor
        pass
    return exc


class PreparedStatement:
    """An SQL statement prepared on the server (PREPARE), run by id."""

    def __init__(self, conn: Connection, response: Response) -> None:
        self._conn = conn
        self.response = response
        stmt_id = response.stmt_id
        if stmt_id is None:
            raise ProtocolError("PREPARE reply has no statement id")
        self.stmt_id: int = stmt_id

    @property
    def params(self) -> list[dict[str, Any]]:
        """The statement's parameters (name and type)."""
        return self.response.bind_metadata

    @property
    def params_count(self) -> int:
        return self.response.bind_count

    @property
    def columns(self) -> list[dict[str, Any]]:
        """Result columns, for a SELECT statement."""
        return self.response.metadata

    async def execute(self, params: Any = None) -> Response:
        """Run the statement with these parameters."""
        return await self._conn.execute(self.stmt_id, params)

    async def unprepare(self) -> None:
        """Release the statement on the server."""
        await self._conn.perform(Request(C.PREPARE, R.prepare_body(self.stmt_id)))

    def __repr__(self) -> str:
        return f"<PreparedStatement id={self.stmt_id} params={self.params_count}>"


class Connection(CrudMixin, trio.abc.AsyncResource):
    """A connection to one Tarantool instance, shared by any number of tasks.

    Create it with :func:`connect`; its methods mirror the box API. Spaces and
    indexes are accepted by name or by id. The ``crud_*`` methods call the
    crud module's functions on this instance.
    """

    def __init__(
        self,
        host: str | None,
        port: int | str,
        *,
        user: str | None = None,
        password: str | None = None,
        socket_timeout: float | None = None,
        connection_timeout: float | None = None,
        reconnect_max_attempts: int = 10,
        reconnect_delay: float = 0.1,
        encoding: str | None = "utf-8",
        call_16: bool = False,
        fetch_schema: bool = True,
        auth_type: str | None = None,
        max_in_flight: int = 4096,
        transport: str | None = "",
        ssl_key_file: str | None = None,
        ssl_cert_file: str | None = None,
        ssl_ca_file: str | None = None,
        ssl_ciphers: str | None = None,
        ssl_password: str | None = None,
        ssl_password_file: str | None = None,
        ssl_verify: bool = True,
        ssl_check_hostname: bool = True,
    ) -> None:
        self._init(connection_options(
            host, port, user=user, password=password, socket_timeout=socket_timeout,
            connection_timeout=connection_timeout, reconnect_max_attempts=reconnect_max_attempts,
            reconnect_delay=reconnect_delay, encoding=encoding, call_16=call_16,
            fetch_schema=fetch_schema, auth_type=auth_type, max_in_flight=max_in_flight,
            transport=transport, ssl_key_file=ssl_key_file, ssl_cert_file=ssl_cert_file,
            ssl_ca_file=ssl_ca_file, ssl_ciphers=ssl_ciphers, ssl_password=ssl_password,
            ssl_password_file=ssl_password_file, ssl_verify=ssl_verify,
            ssl_check_hostname=ssl_check_hostname,
        ))

    @classmethod
    def from_options(cls, options: ConnectionOptions) -> Connection:
        """A connection with already validated options (the pool builds one per address)."""
        conn = cls.__new__(cls)
        conn._init(options)
        return conn

    def _init(self, options: ConnectionOptions) -> None:
        self.options = options
        self.host = options.host
        self.port = options.port
        self.user = options.user
        self.password = options.password
        self.socket_timeout = options.socket_timeout
        self.connection_timeout = options.connection_timeout
        self.reconnect_max_attempts = options.reconnect_max_attempts
        self.reconnect_delay = options.reconnect_delay
        self.encoding = options.encoding
        self.call_16 = options.call_16
        self.fetch_schema = options.fetch_schema
        self.auth_type = options.auth_type
        self.max_in_flight = options.max_in_flight
        self.transport = options.transport
        self.tls = options.tls
        self._ssl_context = self.tls.context() if self.tls is not None else None
        #: Opens the stream instead of TCP/unix (see :func:`connect_over`).
        self._stream_factory: Callable[[], Awaitable[trio.abc.Stream]] | None = None

        self.greeting: _iproto.Greeting | None = None
        #: IPROTO protocol version (0 for servers before 2.10, which lack IPROTO_ID).
        self.protocol_version = 0
        self.features: frozenset[int] = frozenset()
        self.schema: Schema | None = None
        self.schema_version = 0

        self._state = ConnectionState.IDLE
        self._nursery: trio.Nursery | None = None
        self._encoder = _iproto.Encoder()
        self._sync = itertools.count(1)
        self._waiters: dict[int, Ticket] = {}
        self._link: _Link | None = None
        self._attempt: _Attempt | None = None
        self._connector_scope: trio.CancelScope | None = None
        self._tasks = 0  # connector, reader and writer tasks running
        self._failing = False  # connect attempts failed since the last success (log once)
        self._gone = trio.Event()  # set on CLOSED
        self._schema_lock = trio.Lock()
        self._keys: dict[str, KeyState] = {}
        self._lost = trio.Event()
        self._lost.set()
        self._last_error: BaseException | None = None
        self._capacity = trio.lowlevel.ParkingLot()
        self._blocked = 0  # callers parked in _capacity
        self._sent = 0  # requests written to a socket
        self._writes = 0  # write system calls that carried them
        self._connects = 0  # sockets established (1 + reconnects)

    # -- public state ---------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its lifecycle (see :class:`~trio_tarantool.ConnectionState`)."""
        return self._state

    def is_closed(self) -> bool:
        """True once :meth:`close` was called (or the owning context exited)."""
        return self._state is ConnectionState.CLOSING or self._state is ConnectionState.CLOSED

    def is_connected(self) -> bool:
        """True while a socket is up (it may still drop at any moment)."""
        return self._link is not None

    @property
    def in_flight(self) -> int:
        """Requests sent or queued and not yet answered."""
        return len(self._waiters)

    def statistics(self) -> ConnectionStatistics:
        """A frozen snapshot of the connection's counters."""
        return ConnectionStatistics(
            connected=self._link is not None, in_flight=len(self._waiters),
            requests_sent=self._sent, writes=self._writes, connects=self._connects,
        )

    @property
    def socket_id(self) -> int:
        """A number that changes whenever the socket is lost or replaced.

        State the server binds to a socket (a stream's transaction) is gone
        once this differs from what it was when that state was made.
        """
        return self._connects * 2 + (self._link is None)

    @property
    def last_error(self) -> BaseException | None:
        """Why the last socket was lost (None if it never was)."""
        return self._last_error

    async def wait_disconnected(self) -> None:
        """Return when the current socket is lost (at once if there is none)."""
        await self._lost.wait()

    @property
    def _where(self) -> str:
        return str(self.port) if self.host is None else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<trio_tarantool.Connection {self._where} {self._state.value} in_flight={len(self._waiters)}>"

    # -- lifecycle --------------------------------------------------------------------
    def _set_state(self, new: ConnectionState) -> None:
        old = self._state
        self._state = check_transition(old, new)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: %s -> %s", self._where, old.value, new.value)
        if new is ConnectionState.CLOSED:
            self._gone.set()

    def attach(self, nursery: trio.Nursery) -> None:
        """Host this connection's tasks in ``nursery``.

        For code that manages a :class:`Connection`'s lifetime itself (as the
        pool does) instead of through :func:`connect`: after ``attach``, the
        first request connects. Call :meth:`close` before the nursery ends.
        """
        self._nursery = nursery

    async def _open(self, nursery: trio.Nursery) -> None:
        """Attach to ``nursery`` and connect once (no retries), raising why not."""
        self.attach(nursery)
        attempt = self._start_connecting(attempts=1)
        await attempt.done.wait()
        if self._link is None:
            if self.is_closed():
                raise ConnectionClosedError("connection closed while connecting", may_have_executed=False)
            assert attempt.error is not None
            raise attempt.error

    def close(self) -> None:
        """Close now, in any state; idempotent.

        A connect attempt in progress is abandoned, nothing more is written,
        and pending requests fail with :class:`ConnectionClosedError` (saying
        whether each was written). The tasks and the socket are gone once the
        owning nursery has run them down (:meth:`aclose` waits for that).
        """
        if self.is_closed():
            return
        self._set_state(ConnectionState.CLOSING)
        if self._connector_scope is not None:
            self._connector_scope.cancel()
        self._drop_link(self._link, ConnectionClosedError("connection closed by the application"))
        if self._attempt is not None:
            self._attempt.done.set()
        self._capacity.unpark_all()
        for key_state in self._keys.values():
            key_state.close()
        if self._tasks == 0:
            self._set_state(ConnectionState.CLOSED)

    def reset(self, reason: str) -> None:
        """Drop the current socket (if any); the next request reconnects.

        Requests in flight fail with :class:`NetworkError` (``may_have_executed``
        True for those written). Used to make the server forget state bound to
        the socket, e.g. a transaction whose rollback could not complete.
        """
        self._drop_link(self._link, NetworkError(f"connection reset: {reason}"))

    async def wait_connected(self) -> None:
        """Connect now if not connected (within ``socket_timeout``, if set)."""
        deadline = self._deadline()
        with trio.CancelScope(deadline=deadline):
            await self._ready_link()
            return
        raise self._timeout("connecting", False)

    def _deadline(self) -> float:
        timeout = self.socket_timeout
        return math.inf if timeout is None else trio.current_time() + timeout

    async def stream(self) -> Stream:
        """A new stream: requests the server runs in order (Tarantool >= 2.10).

        Raises :class:`NotSupportedError` if the server has no streams.
        """
        return await open_stream(self)

    def transaction(self, isolation: Any = Isolation.DEFAULT,
                    timeout: float | None = None) -> AbstractAsyncContextManager[Stream]:
        """``async with conn.transaction() as tx:`` an interactive transaction.

        ``tx`` is a :class:`Stream` with the request methods. Commits when the
        block ends normally; rolls back when it raises or is cancelled (and
        resets the socket if even that fails, so no transaction is left open).
        ``isolation``: an :class:`Isolation` or "default", "read-committed",
        "read-confirmed", "best-effort"; ``timeout``: the server's limit in
        seconds. Needs Tarantool >= 2.10 (else :class:`NotSupportedError`).
        """
        return transaction(self, isolation, timeout)

    async def aclose(self) -> None:
        """Close, as :meth:`close`, and wait until the connection's tasks and socket are gone."""
        self.close()
        if self._nursery is not None and self._tasks:
            await self._gone.wait()
        else:
            await trio.lowlevel.checkpoint()

    def _task_started(self) -> None:
        self._tasks += 1

    def _task_exited(self) -> None:
        self._tasks -= 1
        if self._tasks == 0 and self._state is ConnectionState.CLOSING:
            self._set_state(ConnectionState.CLOSED)

    def _start_connecting(self, attempts: int) -> _Attempt:
        """IDLE -> CONNECTING: start the connector task; its attempt to wait on."""
        if self._nursery is None:
            raise ConnectionClosedError(
                "the connection is not open: use 'async with trio_tarantool.connect(...)'",
                may_have_executed=False,
            )
        attempt = _Attempt()
        scope = trio.CancelScope()
        try:
            self._nursery.start_soon(self._connector, attempt, scope, attempts)
        except RuntimeError:  # the nursery that hosts us is winding down
            raise ConnectionClosedError("the nursery hosting this connection has exited",
                                        may_have_executed=False) from None
        self._set_state(ConnectionState.CONNECTING)
        self._attempt = attempt
        self._connector_scope = scope
        self._task_started()
        return attempt

    async def _connector(self, attempt: _Attempt, scope: trio.CancelScope, attempts: int) -> None:
        """Connect, up to ``attempts`` times; install the socket unless close() came first."""
        last: Error | None = None
        try:
            with scope:
                for n in range(attempts):
                    if n:
                        await trio.sleep(self.reconnect_delay)
                    try:
                        stream = await self._establish()
                    except NetworkError as exc:
                        last = exc
                        # INFO for the first failure after a success, DEBUG for the
                        # repeats: a dead server probed by a pool logs once, not per poll.
                        logger.log(logging.DEBUG if self._failing else logging.INFO,
                                   "%s: connect attempt %d of %d failed: %s", self._where, n + 1,
                                   attempts, exc.message)
                        self._failing = True
                        continue
                    except ServerError as exc:  # refused authentication: trying again will not help
                        last = exc
                        logger.info("%s: authentication refused: %s", self._where, exc)
                        break
                    if self._state is not ConnectionState.CONNECTING:  # close() came first
                        await trio.aclose_forcefully(stream)
                        return
                    self._install(stream)
                    return
            if last is not None and self._state is ConnectionState.CONNECTING:
                if isinstance(last, NetworkError) and attempts > 1:
                    last = type(last)(f"{last.message} (after {attempts} attempts)", may_have_executed=False)
                attempt.error = last
        finally:
            if self._attempt is attempt:
                self._attempt = None
                self._connector_scope = None
                if self._state is ConnectionState.CONNECTING:
                    self._set_state(ConnectionState.IDLE)
            if attempt.error is None and self._link is None and not self.is_closed():
                attempt.error = NetworkError("connecting was cancelled", may_have_executed=False)
            attempt.done.set()
            self._task_exited()

    async def _establish(self) -> trio.abc.Stream:
        """Open a socket, read the greeting, say ID, authenticate: the stream, ready."""
        where = self._where
        try:
            with trio.fail_after(self.connection_timeout) if self.connection_timeout else _no_scope():
                stream = await self._open_stream()
                try:
                    await self._handshake(stream)
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                return stream
        except trio.TooSlowError:
            raise TarantoolTimeoutError(
                f"connecting to {where} took longer than connection_timeout={self.connection_timeout}s",
                may_have_executed=False,
            ) from None
        except ProtocolError as exc:  # no request of the application existed yet
            raise ProtocolError(f"{where}: {exc.message}", may_have_executed=False) from exc
        except NetworkError:
            raise
        except OSError as exc:
            raise NetworkError(f"cannot connect to {where}: {exc}", may_have_executed=False) from exc
        except _iproto.GreetingError as exc:
            raise ProtocolError(f"{where}: {exc}", may_have_executed=False) from exc
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise NetworkError(f"connection to {where} lost during the handshake: {cause}",
                               may_have_executed=False) from exc

    def _install(self, stream: trio.abc.Stream) -> None:
        """CONNECTING -> READY: the stream becomes the link, with its reader and writer."""
        assert self._nursery is not None
        link = _Link(stream)
        decoder = _iproto.Decoder(raw=self.encoding is None)
        self._nursery.start_soon(self._reader, link, decoder)
        self._nursery.start_soon(self._writer, link)
        self._task_started()
        self._task_started()
        self._link = link
        self._connects += 1
        self._lost = trio.Event()
        self.schema = None  # the server may have been restarted with another schema
        self._set_state(ConnectionState.READY)
        self._failing = False
        greeting = self.greeting
        logger.info("%s: connected (%s, protocol %d, features %s)%s", self._where,
                    "Tarantool " + ".".join(map(str, greeting.version)) if greeting else "server",
                    self.protocol_version, sorted(self.features),
                    f", reconnect #{self._connects - 1}" if self._connects > 1 else "")
        if C.FEATURE_WATCHERS in self.features:
            # Graceful shutdown needs the notice; watched keys are re-subscribed.
            self._post(link, C.WATCH, {C.EVENT_KEY: _SHUTDOWN_KEY})
            for key in self._keys:
                self._post(link, C.WATCH, {C.EVENT_KEY: key})

    async def _open_stream(self) -> trio.abc.Stream:
        if self._stream_factory is not None:
            stream: trio.abc.Stream = await self._stream_factory()
        elif self.host is None:
            stream = await trio.open_unix_socket(str(self.port))
        else:
            stream = await trio.open_tcp_stream(self.host, int(self.port))
        if self._ssl_context is None:
            return stream
        return await start_tls(stream, self._ssl_context, self.host, self._where)

    async def _handshake(self, stream: trio.abc.Stream) -> None:
        greeting = bytearray()
        while len(greeting) < C.GREETING_SIZE:
            chunk = await stream.receive_some(C.GREETING_SIZE - len(greeting))
            if not chunk:
                raise NetworkError("server closed the connection before its greeting",
                                   may_have_executed=False)
            greeting += chunk
        self.greeting = _iproto.parse_greeting(bytes(greeting))
        packets = [self._encoder.frame(C.ID, 1, R.id_body())]
        if self.user is not None:
            auth_type = self.auth_type or "chap-sha1"
            body = R.auth_body(self.user, self.password or "", self.greeting.salt, auth_type)
            packets.append(self._encoder.frame(C.AUTH, 2, body))
        await stream.send_all(b"".join(packets))
        decoder = _iproto.Decoder(raw=self.encoding is None)
        pending = len(packets)
        while pending:
            reply = decoder.next_reply()
            if reply is None:
                chunk = await stream.receive_some(_RECV_SIZE)
                if not chunk:
                    raise NetworkError("server closed the connection during the handshake",
                                       may_have_executed=False)
                decoder.feed(chunk)
                continue
            pending -= 1
            if reply.sync == 1:
                self._on_id_reply(reply)
            elif reply.sync == 2 and reply.is_error:
                raise database_error(reply)
            elif reply.sync != 2:
                raise ProtocolError(f"server answered sync {reply.sync} during the handshake",
                                    may_have_executed=False)
        if decoder.buffered:
            raise ProtocolError("server sent unsolicited data during the handshake", may_have_executed=False)

    def _on_id_reply(self, reply: _iproto.Reply) -> None:
        if reply.is_error:
            # Servers before 2.10 do not know IPROTO_ID: protocol version 0.
            self.protocol_version, self.features = 0, frozenset()
            return
        if reply.decode_error is not None:
            raise ProtocolError(f"reply to ID: {reply.decode_error}", may_have_executed=False)
        self.protocol_version, self.features = _iproto.parse_id_reply(reply.body)

    def _drop_link(self, link: _Link | None, error: NetworkError) -> None:
        """Forget ``link`` (if still current) and fail everything waiting on it."""
        if link is None or link is not self._link:
            return
        link.dead = True
        self._last_error = error
        self._link = None
        if isinstance(error, ConnectionClosedError):
            logger.debug("%s: closed by the application (%d in flight)", self._where, len(self._waiters))
        else:
            logger.info("%s: connection lost: %s (%d request(s) in flight)", self._where,
                        error.message, len(self._waiters))
        if self._state is ConnectionState.READY:
            self._set_state(ConnectionState.IDLE)
        for scope in link.scopes:
            scope.cancel()
        waiters = list(self._waiters.values())
        self._waiters.clear()
        link.outbox.clear()
        for waiter in waiters:
            exc = type(error)(error.message, may_have_executed=waiter.written)
            self._wake(waiter, outcome.Error(exc))
        self._capacity.unpark_all()
        self._lost.set()

    async def _ready_link(self) -> _Link:
        """The live link, connecting (or waiting for the connector) first if needed."""
        while True:
            link = self._link
            if link is not None:
                if not link.draining:
                    return link
                await self._lost.wait()  # the server is shutting down: wait for its drain
                continue
            state = self._state
            if state is ConnectionState.CLOSING or state is ConnectionState.CLOSED:
                raise ConnectionClosedError("connection is closed", may_have_executed=False)
            if state is ConnectionState.CONNECTING and self._attempt is not None:
                attempt = self._attempt
            else:
                attempt = self._start_connecting(self.reconnect_max_attempts + 1)
            await attempt.done.wait()
            if self._link is None and attempt.error is not None and not self.is_closed():
                raise _copy_error(attempt.error)

    # -- the two I/O tasks --------------------------------------------------------------
    async def _reader(self, link: _Link, decoder: _iproto.Decoder) -> None:
        pop = self._waiters.pop
        reschedule = cast(Callable[[trio.lowlevel.Task, _iproto.Reply], None], trio.lowlevel.reschedule)
        chunk, event = C.CHUNK, C.EVENT
        stream = link.stream
        error: NetworkError | None = None
        fd = link.fd
        eager = 0
        short = False
        data: bytes | bytearray
        try:
            with link.scopes[0]:
                while True:
                    if fd >= 0:
                        # Read the socket directly: trio's receive_some adds a
                        # scheduler round trip even when data is waiting.
                        if short:
                            # The last read emptied the socket: another now
                            # would most often fail (an exception per batch);
                            # wait for the next bytes instead.
                            short = False
                            eager = 0
                            await trio.lowlevel.wait_readable(fd)
                        try:
                            data = os.read(fd, _RECV_SIZE)
                        except BlockingIOError:
                            eager = 0
                            await trio.lowlevel.wait_readable(fd)
                            continue
                        short = len(data) < _RECV_SIZE
                        eager += 1
                        if eager > _EAGER_READS:  # stay fair to other tasks
                            eager = 0
                            await trio.lowlevel.checkpoint()
                    else:
                        data = await stream.receive_some(_RECV_SIZE)
                    if not data:
                        error = NetworkError("server closed the connection")
                        break
                    decoder.feed(data)
                    known = self.schema_version
                    for reply in decoder.replies():
                        if reply.code:  # an error, a push or an event (0: a success)
                            code = reply.code
                            if code == chunk:
                                self._on_push(reply)
                                continue
                            if code == event:
                                self._on_event(link, reply)
                                continue
                        waiter = pop(reply.sync, None)
                        if waiter is None:
                            continue  # its caller gave up (cancelled or timed out)
                        if self._blocked or link.draining:
                            if self._blocked:
                                self._capacity.unpark()
                            if link.draining and not self._waiters:
                                self._drop_link(link, ShutdownDrained("the server is shutting down"))
                        if reply.schema_version != known and reply.schema_version:
                            self._on_schema_version(reply.schema_version)
                            known = self.schema_version
                        if not waiter.done:
                            waiter.done = True
                            reschedule(waiter.task, reply)  # an outcome by duck typing: Reply.unwrap
        except ProtocolError as exc:
            error = exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            error = NetworkError(f"connection lost: {exc}")
        finally:
            # Also when cancelled from outside: nobody may go on waiting on a
            # dead link, and its socket is closed here, not leaked.
            self._drop_link(link, error or NetworkError("connection closed: its reader task was cancelled"))
            try:
                await trio.aclose_forcefully(stream)
            finally:
                self._task_exited()

    async def _writer(self, link: _Link) -> None:
        link.writer_task = trio.lowlevel.current_task()
        stream = link.stream
        fd = link.fd
        error: NetworkError | None = None
        with link.scopes[1]:
            try:
                while not link.dead:
                    if not link.outbox:
                        link.writer_parked = True
                        await trio.lowlevel.wait_task_rescheduled(link.abort_park)
                        link.kicked = False
                        continue
                    batch = link.outbox
                    link.outbox = []
                    for waiter in batch:
                        waiter.written = True
                    data = b"".join([w.packet for w in batch])
                    self._sent += len(batch) - link.posts
                    link.posts = 0
                    self._writes += 1
                    if fd >= 0:
                        await _write_all(fd, data, link)
                    else:
                        await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                error = NetworkError(f"connection lost while sending: {exc}")
            finally:
                link.writer_parked = link.kicked = False
                link.writer_task = None
                self._drop_link(link, error or NetworkError("connection closed: its writer task was cancelled"))
                self._task_exited()

    def _flush(self, link: _Link) -> None:
        """Write the outbox now, from the submitting caller's task.

        Called when many callers queue requests in one scheduler batch (each
        woken by a reply): left to the writer task, they would all go out in
        one write after the last of them, and the server would idle meanwhile.
        Written every :data:`_FLUSH_AT` packets, the server works on the first
        ones while the rest are built (call +50 %, select +20 % req/s at 100
        tasks, and no more client CPU per request). Only while the writer was
        woken but has not run (``kicked``), so nothing is half-written, and
        without posts in the outbox. Whatever the socket does not take stays
        queued, in order, for the writer, which also reports socket errors.
        """
        batch = link.outbox
        try:
            sent = os.write(link.fd, b"".join([w.packet for w in batch]))
        except OSError:  # full (EAGAIN) or broken: the writer waits or reports it
            return
        self._writes += 1
        done = 0  # packets wholly sent
        for waiter in batch:
            size = len(waiter.packet)
            if size > sent:
                if sent:  # this one went out in part: the rest of it goes first
                    waiter.written = True
                    waiter.packet = waiter.packet[sent:]
                break
            waiter.written = True
            sent -= size
            done += 1
        self._sent += done
        link.outbox = batch[done:]

    def _write_directly(self, link: _Link, waiter: Ticket) -> None:
        self._sent += 1
        self._writes += 1
        try:
            sent = os.write(link.fd, waiter.packet)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            error = NetworkError(f"connection lost while sending: {exc}", may_have_executed=False)
            self._drop_link(link, error)
            raise error from exc
        waiter.written = True
        if sent < len(waiter.packet):
            # The rest goes through the writer, before anything else.
            waiter.written = sent > 0
            waiter.packet = waiter.packet[sent:]
            link.outbox.append(waiter)
            link.kick()

    def _on_push(self, reply: _iproto.Reply) -> None:
        waiter = self._waiters.get(reply.sync)
        if not isinstance(waiter, _PushTicket):  # gone, or a request without callback
            return
        callback = waiter.on_push
        assert callback is not None
        try:
            # The DATA array as it came (``[value]``), as the reference connector passes it.
            callback(reply.body.get(C.DATA), waiter.on_push_ctx)
        except Exception as exc:  # reported to the caller once its reply arrives
            if waiter.push_error is None:
                waiter.push_error = exc

    def _post(self, link: _Link, request_type: int, body: Mapping[int, Any]) -> None:
        """Queue a packet that gets no reply (WATCH, UNWATCH)."""
        ticket = Ticket(self, self._encoder.frame(request_type, next(self._sync), body), 0,
                        cast(trio.lowlevel.Task, None))
        link.posts += 1
        link.outbox.append(ticket)
        link.kick()

    def _on_event(self, link: _Link, reply: _iproto.Reply) -> None:
        """An IPROTO_EVENT: record the key's value, acknowledge it, act on a shutdown."""
        body = reply.body
        key = body.get(C.EVENT_KEY)
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not isinstance(key, str):
            return
        value = body.get(C.EVENT_DATA)
        state = self._keys.get(key)
        if state is not None:
            state.update(value)
        if state is not None or key == _SHUTDOWN_KEY:
            self._post(link, C.WATCH, {C.EVENT_KEY: key})  # the ack: send the next change
        if key == _SHUTDOWN_KEY and value is True and not link.draining:
            logger.info("%s: the server is shutting down: draining %d request(s) in flight",
                        self._where, len(self._waiters))
            link.draining = True
            if not self._waiters:
                self._drop_link(link, ShutdownDrained("the server is shutting down"))

    @property
    def draining(self) -> bool:
        """True while the server's shutdown notice lets the replies in flight finish.

        No new request is sent on the socket meanwhile; once they are in, it is
        closed and the next request connects again.
        """
        return self._link is not None and self._link.draining

    @asynccontextmanager
    async def watch(self, key: str) -> AsyncIterator[Watcher]:
        """``async with conn.watch(key) as values: async for value in values:``.

        Follows a ``box.broadcast()`` key (or ``box.status``, ``box.id``,
        ``box.election``...): its current value first, then each new one, the
        latest when changes come faster than they are read. Survives
        reconnects (subscribes again). Needs Tarantool >= 2.10, else
        :class:`NotSupportedError`.
        """
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"watch(): key must be a non-empty string, got {key!r}")
        await self._require(C.FEATURE_WATCHERS, "watch()")
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = KeyState(key)
        state.subscribers += 1
        if state.subscribers == 1 and self._link is not None:
            self._post(self._link, C.WATCH, {C.EVENT_KEY: key})
        try:
            yield Watcher(state)
        finally:
            state.subscribers -= 1
            if state.subscribers == 0 and self._keys.get(key) is state:
                del self._keys[key]
                if self._link is not None and not self._link.dead and key != _SHUTDOWN_KEY:
                    self._post(self._link, C.UNWATCH, {C.EVENT_KEY: key})

    async def watch_once(self, key: str) -> Any:
        """The current value of a watchable key, without subscribing (Tarantool >= 3.0)."""
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"watch_once(): key must be a non-empty string, got {key!r}")
        await self._require(C.FEATURE_WATCH_ONCE, "watch_once()")
        response = cast(Response, await self.perform(Request(C.WATCH_ONCE, {C.EVENT_KEY: key})))
        return response.data[0] if response.data else None

    async def _require(self, feature: int, what: str) -> None:
        """Connect if needed; NotSupportedError unless the server has ``feature``."""
        await self.wait_connected()
        if feature not in self.features:
            raise NotSupportedError(
                f"{what} needs a server with IPROTO feature {feature} (Tarantool >= 2.10 for "
                f"streams, transactions and watchers, >= 3.0 for watch_once); this one speaks "
                f"protocol {self.protocol_version} with features {sorted(self.features)}")

    def _on_schema_version(self, version: int) -> None:
        self.schema_version = version
        if self.schema is not None and self.schema.version != version:
            self.schema = None

    @staticmethod
    def _wake(waiter: Ticket, result: outcome.Outcome[Any]) -> None:
        if not waiter.done:
            waiter.done = True
            trio.lowlevel.reschedule(waiter.task, result)

    # -- the request path ---------------------------------------------------------------------
    def _enqueue(self, link: _Link, request_type: int, body: Mapping[int, Any] | None,
                 schema_version: int | None, on_push: PushCallback | None, on_push_ctx: Any,
                 task: trio.lowlevel.Task, stream_id: int = 0) -> Ticket:
        """Register a ticket for ``task`` and queue (or write) its packet; never blocks."""
        sync = next(self._sync)
        if request_type == C.CALL and self.call_16:
            request_type = C.CALL_16
        packet = self._encoder.frame(request_type, sync, body, schema_version, stream_id)
        waiter = (Ticket(self, packet, sync, task) if on_push is None
                  else _PushTicket(self, packet, sync, task, on_push, on_push_ctx))
        waiters = self._waiters
        if not waiters and link.writer_parked and link.fd >= 0:
            # A lone request (the sequential case): write it from this task,
            # saving a wake-up of the writer. os.write never blocks here (the
            # socket is non-blocking) and cannot be interrupted half-way, so
            # cancellation still cannot leave a partial packet behind.
            self._write_directly(link, waiter)
            waiters[sync] = waiter
        else:
            waiters[sync] = waiter
            outbox = link.outbox
            outbox.append(waiter)
            if link.writer_parked:
                link.kick()
            elif link.kicked and len(outbox) >= _FLUSH_AT and not link.posts and link.fd >= 0:
                self._flush(link)
        return waiter

    def _forget(self, waiter: Ticket) -> None:
        """Its caller gave up: drop the ticket, and its packet if not yet written."""
        waiter.done = True
        if self._waiters.pop(waiter.sync, None) is not None and not waiter.written:
            link = self._link
            if link is not None:
                try:
                    link.outbox.remove(waiter)
                except ValueError:
                    pass
        if self._blocked:
            self._capacity.unpark()

    def submit_nowait(self, request: Request, task: trio.lowlevel.Task,
                      stream_id: int = 0) -> Ticket | None:
        """Queue ``request`` for ``task`` now, if that is possible without waiting.

        The reply reschedules ``task`` (which must park in
        ``trio.lowlevel.wait_task_rescheduled``, calling :meth:`Ticket.cancel`
        from its abort function) with ``outcome.Value(reply)``; pass the reply
        to :meth:`finish`. None when the request needs waiting (no socket yet,
        ``max_in_flight`` reached, names not in the cached schema): then use
        :meth:`perform`. Raises :class:`NetworkError` (not executed) if the
        socket failed on a direct write.
        """
        link = self._link
        if link is None or len(self._waiters) >= self.max_in_flight or link.draining:
            return None
        body = request.body
        version = None
        if body is None:
            schema = self.schema
            if schema is None or not self.fetch_schema:
                return None
            space = request.space
            space_id = space if type(space) is int else schema.space_id(space)  # type: ignore[arg-type]
            if space_id is None:
                return None
            index = request.index
            index_id = index if type(index) is int else schema.index_id(space_id, index)  # type: ignore[arg-type]
            if index_id is None:
                return None
            assert request.build is not None
            body = request.build(space_id, index_id)
            version = schema.version
        return self._enqueue(link, request.type, body, version, request.on_push, request.on_push_ctx,
                             task, stream_id)

    def finish(self, request: Request, ticket: Ticket, reply: _iproto.Reply, start: float) -> Any:
        """What the request's method returns for ``reply``, or raise its exception.

        ``start`` is when the request began (ping's round trip). Returns
        :data:`RESEND` when the server refused the request as built against an
        old schema: it did not execute; send it again with :meth:`perform`.
        """
        if ticket.push_error is not None:
            raise ticket.push_error
        code = reply.code
        if code:
            if code == _WRONG_SCHEMA and request.body is None:
                self._on_schema_version(reply.schema_version)
                self.schema = None
                return RESEND
            raise _failure(reply, request.type)
        return self._result(request, reply, start)

    def _result(self, request: Request, reply: _iproto.Reply, start: float) -> Any:
        if reply.code or reply.decode_error is not None:
            raise _failure(reply, request.type)
        response = Response(reply, request_type=request.type)
        finish = request.finish
        if finish == FINISH_RESPONSE:
            if request.type in _SPACE_REQUESTS:  # rows(as_dict=True) can name the fields
                body = request.body
                response._space = request.space if body is None else body.get(C.SPACE_ID)
                response._schema = self.schema
            return response
        if finish == FINISH_PING:
            return trio.current_time() - start
        if finish == FINISH_PING_NOTIME:
            return "Success"
        return PreparedStatement(self, response)

    async def perform(self, request: Request, deadline: float | None = None,
                      stream_id: int = 0) -> Any:
        """Send ``request`` and return what its method returns (or raise its error).

        Connects, waits for a free slot and resolves names as needed, all
        within ``deadline`` (absolute trio time; by default ``socket_timeout``
        from now, or none): past it, :class:`TarantoolTimeoutError` says
        whether the request was written. ``stream_id`` sends it on that
        stream (see :meth:`stream`).
        """
        start = trio.current_time()
        if deadline is None:
            deadline = math.inf if self.socket_timeout is None else start + self.socket_timeout
        if self._link is not None:
            ticket = self.submit_nowait(request, trio.lowlevel.current_task(), stream_id)
            if ticket is not None:
                reply = await self._park(ticket, deadline)
                result = self.finish(request, ticket, reply, start)
                if result is not RESEND:
                    return result
        return await self._perform_slowly(request, deadline, start, stream_id)

    async def _park(self, ticket: Ticket, deadline: float) -> _iproto.Reply:
        """Wait for ``ticket``'s reply until ``deadline`` (the ticket is the abort function)."""
        if deadline == math.inf:
            return cast(_iproto.Reply, await trio.lowlevel.wait_task_rescheduled(ticket))
        with trio.CancelScope(deadline=deadline):
            return cast(_iproto.Reply, await trio.lowlevel.wait_task_rescheduled(ticket))
        raise self._timeout("waiting for the reply", ticket.written)

    # The hot path of the box methods, in two halves around the caller's own
    # ``await`` (one coroutine frame fewer than a helper coroutine):
    #
    #     ticket = self._submit(request_type, body, version)   # None: take perform()
    #     reply = await (_wait(ticket) if self.socket_timeout is None
    #                    else self._park(ticket, ticket.deadline))
    #     if reply.code or reply.decode_error is not None:
    #         deadline = self._refused(reply, request_type, ticket)   # raises, or: resend
    #
    # For a request without push callback whose space and index are ids
    # (``version`` None) or names found in the cached schema (``version`` the
    # schema's). Everything else is :meth:`perform`'s contract: one deadline
    # (``socket_timeout``), cancellation that forgets exactly this request
    # (the ticket is the abort function), the error of a failed reply.

    def _submit(self, request_type: int, body: dict[int, Any], version: int | None) -> Ticket | None:
        """Queue a body built by the caller for the current task, or None (nothing
        sent) when that needs waiting: no usable socket or no free slot now. The
        ticket's ``deadline`` is the request's (``socket_timeout`` from now)."""
        link = self._link
        waiters = self._waiters
        if link is None or link.draining or len(waiters) >= self.max_in_flight:
            return None
        timeout = self.socket_timeout
        sync = next(self._sync)
        # A Ticket built field by field: no __init__ frame on the hot path.
        ticket: Ticket = _new_ticket(Ticket)
        ticket.conn = self
        ticket.packet = self._encoder.frame_plain(request_type, sync, body, version)
        ticket.sync = sync
        ticket.task = _current_task()
        ticket.written = ticket.done = False
        ticket.deadline = _INF if timeout is None else trio.current_time() + timeout
        if not waiters and link.writer_parked and link.fd >= 0:
            self._write_directly(link, ticket)  # see _enqueue
            waiters[sync] = ticket
        else:
            waiters[sync] = ticket
            outbox = link.outbox
            outbox.append(ticket)
            if link.writer_parked:
                link.kick()
            elif link.kicked and len(outbox) >= _FLUSH_AT and not link.posts and link.fd >= 0:
                self._flush(link)
        return ticket

    def _refused(self, reply: _iproto.Reply, request_type: int, ticket: Ticket) -> float | None:
        """An error reply on the hot path: raise its exception, or return the
        deadline (None: a fresh one) to resend within, by :meth:`perform`, when
        the server refused a request built against an old schema (not
        executed; only a request that sent a schema version can get that)."""
        if reply.code == _WRONG_SCHEMA:
            self._on_schema_version(reply.schema_version)
            self.schema = None
            return None if ticket.deadline == math.inf else ticket.deadline
        raise _failure(reply, request_type)

    def _timeout(self, phase: str, written: bool) -> TarantoolTimeoutError:
        budget = f"socket_timeout={self.socket_timeout}s" if self.socket_timeout else "its deadline"
        return TarantoolTimeoutError(f"{self._where}: no reply within {budget} ({phase})",
                                     may_have_executed=written)

    async def _perform_slowly(self, request: Request, deadline: float, start: float,
                              stream_id: int) -> Any:
        """:meth:`perform` when the request must wait: connect, capacity, names, schema changes."""
        phase = "connecting"
        ticket: Ticket | None = None
        with trio.CancelScope(deadline=deadline):
            for _ in range(_SCHEMA_RETRIES):
                ticket = None
                body, version = request.body, None
                if body is None:
                    phase = "resolving names"
                    try:
                        body, version = await self._build(request)
                    except NetworkError as exc:
                        # The schema requests were lost, not this one: it was never sent.
                        raise _not_sent(exc) from exc
                phase = "connecting"
                link = await self._ready_link()
                phase = "waiting for a free slot (max_in_flight)"
                while len(self._waiters) >= self.max_in_flight:
                    self._blocked += 1
                    try:
                        await self._capacity.park()
                    finally:
                        self._blocked -= 1
                    phase = "connecting"
                    link = await self._ready_link()
                if request.body is None and self.schema is not None and self.schema.version != version:
                    continue  # the schema changed while we waited: resolve the names again
                phase = "waiting for the reply"
                ticket = self._enqueue(link, request.type, body, version, request.on_push,
                                       request.on_push_ctx, trio.lowlevel.current_task(), stream_id)
                reply = await self._park(ticket, math.inf)
                result = self.finish(request, ticket, reply, start)
                if result is not RESEND:
                    return result
            raise SchemaError("the schema kept changing while the request was being sent")
        raise self._timeout(phase, ticket is not None and ticket.written)

    async def _build(self, request: Request) -> tuple[dict[int, Any], int]:
        """The body of a name-addressed request and the schema version it was built against."""
        space_id, index_id, version = await self._resolve(request.space, request.index)
        assert request.build is not None
        return request.build(space_id, index_id), version

    # -- schema ----------------------------------------------------------------------------
    async def _resolve(self, space: str | int, index: str | int | None) -> tuple[int, int, int]:
        if not self.fetch_schema:
            raise NotSupportedError(
                f"space {space!r}/index {index!r} given by name, but this connection was opened "
                "with fetch_schema=False: use numeric ids"
            )
        for attempt in range(2):
            schema = self.schema if self.schema is not None else await self.reload_schema()
            try:
                space_id = space if isinstance(space, int) else schema.require_space(space)
                if index is None:
                    index_id = 0
                elif isinstance(index, int):
                    index_id = index
                else:
                    index_id = schema.require_index(space_id, index)
                return space_id, index_id, schema.version
            except SchemaError:
                if attempt:
                    raise
                self.schema = None  # perhaps created since our last load
        raise AssertionError("unreachable")

    async def reload_schema(self) -> Schema:
        """Fetch space and index names now (done automatically when needed)."""
        async with self._schema_lock:
            if self.schema is not None:
                return self.schema
            for _ in range(_SCHEMA_RETRIES):
                spaces = await self.perform(Request(
                    C.SELECT, R.select_body(C.VSPACE_ID, 0, [], 0, 0xFFFFFFFF, C.Iterator.ALL)))
                indexes = await self.perform(Request(
                    C.SELECT, R.select_body(C.VINDEX_ID, 0, [], 0, 0xFFFFFFFF, C.Iterator.ALL)))
                if spaces.schema_version == indexes.schema_version:
                    schema = Schema(spaces.schema_version, spaces.data, indexes.data)
                    self.schema = schema
                    self.schema_version = schema.version
                    return schema
            raise SchemaError("the schema kept changing while it was being loaded")

    def flush_schema(self) -> None:
        """Forget cached names; they are fetched again on next use."""
        self.schema = None

    # -- box API -------------------------------------------------------------------------
    # Each method below (execute too) tries the hot path first (:meth:`_submit`): arguments of
    # exactly the usual types (one ``type(x) is`` test each), names found in the
    # cached schema, no push callback, a socket ready. Anything else, including
    # every argument that must be refused, goes through the request builders of
    # :mod:`._request` (which raise ConfigurationError naming the argument) and
    # :meth:`perform`.

    async def ping(self, notime: bool = False) -> float | str:
        """Round trip to the server: the time it took in seconds, or "Success" with notime."""
        deadline = None
        if self._link is not None:
            start = trio.current_time()
            ticket = self._submit(_PING, _EMPTY_BODY, None)
            if ticket is not None:
                reply = await (_wait(ticket) if self.socket_timeout is None
                               else self._park(ticket, ticket.deadline))
                if reply.code or reply.decode_error is not None:
                    deadline = self._refused(reply, _PING, ticket)
                else:
                    return "Success" if notime else trio.current_time() - start
        return cast(float | str, await self.perform(_rq.ping(notime), deadline))

    async def select(self, space_name: str | int, key: Any = None, *, offset: int = 0,
                     limit: int = _ALL_ROWS, index: str | int = 0, iterator: Any = None,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Tuples of a space by index key; no key (or []) selects all."""
        deadline = None
        # ``offset``/``limit``/``index`` left at their defaults are the very
        # default objects: one identity test each instead of type and range.
        if on_push is None and iterator is None and (
                (offset is _ZERO and limit is _ALL_ROWS)
                or (type(offset) is int and type(limit) is int and 0 <= offset <= _U32 and 0 <= limit <= _U32)):
            tk = type(key)
            if tk is int:  # (out of msgpack's range: framing refuses it, naming key[0])
                parts: Any = [key]
                it = _EQ
            elif tk is list or tk is tuple:
                parts = key
                it = _EQ if key else _ALL
            elif tk is str:
                parts, it = [key], _EQ
            elif key is None:
                parts, it = [], _ALL
            else:
                parts = None
            if parts is not None:
                schema = self.schema
                version = None
                if type(space_name) is str:
                    if schema is not None:
                        space_id, version = schema.space_ids.get(space_name), schema.version
                    else:
                        space_id = None
                else:
                    space_id = space_name if type(space_name) is int else None
                if index is _ZERO:
                    index_id: int | None = 0
                elif type(index) is int:
                    index_id = index
                elif type(index) is str and schema is not None and space_id is not None:
                    index_id, version = schema.index_id(space_id, index), schema.version
                else:
                    index_id = None
                if space_id is not None and index_id is not None:
                    ticket = self._submit(_SELECT, {
                        _SPACE_ID: space_id, _INDEX_ID: index_id, _LIMIT: limit, _OFFSET: offset,
                        _ITERATOR: it, _KEY: parts}, version)
                    if ticket is not None:
                        reply = await (_wait(ticket) if self.socket_timeout is None
                                       else self._park(ticket, ticket.deadline))
                        if reply.code or reply.decode_error is not None:
                            deadline = self._refused(reply, _SELECT, ticket)
                        else:
                            return response_of(reply, _SELECT, space_id, schema)
        return cast(Response, await self.perform(_rq.select(
            space_name, key, offset=offset, limit=limit, index=index, iterator=iterator,
            on_push=on_push, on_push_ctx=on_push_ctx), deadline))

    def _submit_tuple(self, request_type: int, space_name: Any, values: Any) -> Ticket | None:
        """INSERT/REPLACE on the hot path: :meth:`_submit`, or None if it cannot be."""
        schema = self.schema
        version = None
        if type(space_name) is int:
            space_id: int | None = space_name
        elif type(space_name) is str and schema is not None:
            space_id, version = schema.space_ids.get(space_name), schema.version
        else:
            return None
        if space_id is None:
            return None
        return self._submit(request_type, {_SPACE_ID: space_id, _TUPLE: values}, version)

    async def insert(self, space_name: str | int, values: Sequence[Any], *,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Insert a tuple; fails with ER_TUPLE_FOUND if its key exists."""
        deadline = None
        if self._link is not None and on_push is None and (type(values) is list or type(values) is tuple):
            ticket = self._submit_tuple(_INSERT, space_name, values)
            if ticket is not None:
                reply = await (_wait(ticket) if self.socket_timeout is None
                               else self._park(ticket, ticket.deadline))
                if reply.code or reply.decode_error is not None:
                    deadline = self._refused(reply, _INSERT, ticket)
                else:
                    return response_of(reply, _INSERT, space_name, self.schema)
        return cast(Response, await self.perform(_rq.insert(
            space_name, values, on_push=on_push, on_push_ctx=on_push_ctx), deadline))

    async def replace(self, space_name: str | int, values: Sequence[Any], *,
                      on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Insert a tuple, or replace the one with the same primary key."""
        deadline = None
        if self._link is not None and on_push is None and (type(values) is list or type(values) is tuple):
            ticket = self._submit_tuple(_REPLACE, space_name, values)
            if ticket is not None:
                reply = await (_wait(ticket) if self.socket_timeout is None
                               else self._park(ticket, ticket.deadline))
                if reply.code or reply.decode_error is not None:
                    deadline = self._refused(reply, _REPLACE, ticket)
                else:
                    return response_of(reply, _REPLACE, space_name, self.schema)
        return cast(Response, await self.perform(_rq.replace(
            space_name, values, on_push=on_push, on_push_ctx=on_push_ctx), deadline))

    async def update(self, space_name: str | int, key: Any, op_list: Sequence[Any], *,
                     index: str | int = 0, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """Apply update operations (``[op, field, arg...]``) to the tuple with ``key``."""
        return cast(Response, await self.perform(_rq.update(
            space_name, key, op_list, index=index, on_push=on_push, on_push_ctx=on_push_ctx)))

    async def upsert(self, space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
                     index: str | int = 0, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """Insert ``tuple_value``, or apply ``op_list`` to the existing tuple."""
        return cast(Response, await self.perform(_rq.upsert(
            space_name, tuple_value, op_list, index=index, on_push=on_push, on_push_ctx=on_push_ctx)))

    async def delete(self, space_name: str | int, key: Any, *, index: str | int = 0,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Delete the tuple with ``key``; the reply holds the deleted tuple."""
        return cast(Response, await self.perform(_rq.delete(
            space_name, key, index=index, on_push=on_push, on_push_ctx=on_push_ctx)))

    async def call(self, func_name: str, *args: Any, on_push: PushCallback | None = None,
                   on_push_ctx: Any = None) -> Response:
        """Call a stored function; ``data`` holds what it returned.

        Each positional argument is one Lua argument: ``call("f", [1, 2])``
        passes one array (unlike the reference connector, which spreads a lone
        list into several arguments).
        """
        deadline = None
        if self._link is not None and on_push is None and type(func_name) is str and func_name:
            request_type = _CALL_16 if self.call_16 else _CALL
            ticket = self._submit(request_type, {_FUNCTION_NAME: func_name, _TUPLE: args}, None)
            if ticket is not None:
                reply = await (_wait(ticket) if self.socket_timeout is None
                               else self._park(ticket, ticket.deadline))
                if reply.code or reply.decode_error is not None:
                    deadline = self._refused(reply, request_type, ticket)
                else:
                    return response_of(reply, request_type, None, None)
        return cast(Response, await self.perform(_rq.call(
            func_name, *args, on_push=on_push, on_push_ctx=on_push_ctx), deadline))

    async def eval(self, expr: str, *args: Any, on_push: PushCallback | None = None,
                   on_push_ctx: Any = None) -> Response:
        """Evaluate a Lua chunk with ``...`` bound to ``args``."""
        return cast(Response, await self.perform(_rq.eval(
            expr, *args, on_push=on_push, on_push_ctx=on_push_ctx)))

    async def execute(self, query: str | int, params: Any = None) -> Response:
        """Run SQL: text, or the id of a prepared statement; params positional or named."""
        deadline = None
        tq = type(query)
        if (tq is str or tq is int) and (params is None or type(params) is list or type(params) is tuple):
            ticket = self._submit(_EXECUTE, {
                _SQL_TEXT if tq is str else _STMT_ID: query, _SQL_BIND: [] if params is None else params}, None)
            if ticket is not None:
                reply = await (_wait(ticket) if self.socket_timeout is None
                               else self._park(ticket, ticket.deadline))
                if reply.code or reply.decode_error is not None:
                    deadline = self._refused(reply, _EXECUTE, ticket)
                else:
                    return Response(reply, request_type=_EXECUTE)  # checks the SQL keys
        return cast(Response, await self.perform(_rq.execute(query, params), deadline))

    async def prepare(self, query: str) -> PreparedStatement:
        """Prepare an SQL statement for repeated :meth:`PreparedStatement.execute`."""
        return cast(PreparedStatement, await self.perform(_rq.prepare(query)))

    async def _crud_call(self, func_name: str, args: tuple[Any, ...]) -> Response:
        return await self.call(func_name, *args)


def _failure(reply: _iproto.Reply, request_type: int) -> Error:
    """The exception for a reply that is an error or could not be decoded."""
    if reply.code & C.TYPE_ERROR:
        error = database_error(reply)
        if request_type in _CODE_REQUESTS:
            # Even a refusal (ER_READONLY...) may come from inside the code,
            # after it did something: only the server's word that it ran
            # nothing would make this False, and it never gives one.
            error.may_have_executed = True
        return error
    assert reply.decode_error is not None
    return ProtocolError(f"{reply_to(request_type, reply.sync)}: {reply.decode_error}",
                         may_have_executed=True)


async def _write_all(fd: int, data: bytes, link: _Link) -> None:
    """Write everything to a non-blocking socket, waiting only when it is full.

    Stops as soon as ``link`` is dropped (close() or a failure) while it
    waited: nothing is written to a link after that.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)
            if link.dead:
                raise trio.ClosedResourceError("the connection was dropped") from None


class _no_scope:
    """A do-nothing context manager (when no timeout applies)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@asynccontextmanager
async def connect(
    host: str | None,
    port: int | str,
    *,
    user: str | None = None,
    password: str | None = None,
    socket_timeout: float | None = None,
    connection_timeout: float | None = None,
    reconnect_max_attempts: int = 10,
    reconnect_delay: float = 0.1,
    encoding: str | None = "utf-8",
    call_16: bool = False,
    fetch_schema: bool = True,
    auth_type: str | None = None,
    max_in_flight: int = 4096,
    transport: str | None = "",
    ssl_key_file: str | None = None,
    ssl_cert_file: str | None = None,
    ssl_ca_file: str | None = None,
    ssl_ciphers: str | None = None,
    ssl_password: str | None = None,
    ssl_password_file: str | None = None,
    ssl_verify: bool = True,
    ssl_check_hostname: bool = True,
) -> AsyncIterator[Connection]:
    """Open a connection; it is closed, and its tasks gone, when the block exits.

    ``host=None`` with a path as ``port`` connects over a unix socket;
    ``transport='ssl'`` wraps the stream in TLS, verifying the server by
    default (against ``ssl_ca_file``, else the system trust store, and its
    host name; ``ssl_check_hostname=False`` and ``ssl_verify=False`` are the
    explicit opt-outs). Raises :class:`NetworkError` if the server cannot be
    reached, :class:`ServerError` if authentication fails,
    :class:`TarantoolTimeoutError` past ``connection_timeout``, and
    :class:`ConfigurationError` for a bad option, before connecting.
    """
    conn = Connection(
        host, port, user=user, password=password, socket_timeout=socket_timeout,
        connection_timeout=connection_timeout, reconnect_max_attempts=reconnect_max_attempts,
        reconnect_delay=reconnect_delay, encoding=encoding, call_16=call_16,
        fetch_schema=fetch_schema, auth_type=auth_type, max_in_flight=max_in_flight,
        transport=transport, ssl_key_file=ssl_key_file, ssl_cert_file=ssl_cert_file,
        ssl_ca_file=ssl_ca_file, ssl_ciphers=ssl_ciphers, ssl_password=ssl_password,
        ssl_password_file=ssl_password_file, ssl_verify=ssl_verify,
        ssl_check_hostname=ssl_check_hostname,
    )
    async with _opened(conn) as opened:
        yield opened


#: The trio-style name of :func:`connect` (``open_*`` for what owns tasks).
open_connection = connect


@asynccontextmanager
async def connect_over(stream: trio.abc.Stream, *, name: str = "stream", **options: Any,
                       ) -> AsyncIterator[Connection]:
    """Speak IPROTO over a stream you opened (a tunnel, or one end of
    ``trio.testing.memory_stream_pair()`` in tests).

    ``options`` are :func:`connect`'s (``user``, ``password``,
    ``socket_timeout``...); ``name`` stands for the address in messages. The
    stream cannot be opened again, so once it is lost every later request
    fails with :class:`NetworkError` (``may_have_executed=False``).
    """
    given = [stream]

    async def factory() -> trio.abc.Stream:
        if not given:
            raise NetworkError(f"{name}: the given stream was lost and cannot be reopened",
                               may_have_executed=False)
        return given.pop()

    if "host" in options or "port" in options:
        raise ConfigurationError("connect_over() takes no host or port: the stream is the address")
    conn = Connection(None, name, **options)
    conn._stream_factory = factory
    async with _opened(conn) as opened:
        yield opened


@asynccontextmanager
async def _opened(conn: Connection) -> AsyncIterator[Connection]:
    """Host ``conn`` in a nursery of its own, connect it, close it on exit."""
    # Errors are caught inside the nursery and re-raised outside it, so callers
    # see the exception itself rather than an ExceptionGroup around it.
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            await conn._open(nursery)
        except BaseException as exc:
            error = exc
            conn.close()
        else:
            try:
                yield conn
            except BaseException as exc:
                error = exc
            finally:
                conn.close()
    if error is not None:
        raise error


__all__ = ["RESEND", "Connection", "ConnectionStatistics", "PreparedStatement", "Ticket", "connect",
           "connect_over", "open_connection"]
