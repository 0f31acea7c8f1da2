"""One Tarantool connection on a trio stream.

Theory of operation
-------------------
A :class:`Connection` multiplexes any number of concurrent requests over one
socket. Each request gets a fresh ``sync`` id, its packet goes to the *outbox*
and the calling task parks in the *waiter table* under that id. A writer task
takes the whole outbox at once and sends it with one ``send_all`` (so requests
from many tasks are coalesced into few syscalls); a reader task feeds the
sans-I/O :class:`~trio_tarantool._iproto.Decoder` and wakes the waiter whose
``sync`` each reply carries.

Invariants:

* A request's packet is either in the outbox, or was taken by the writer
  (``written``), never both; only a written request may have executed.
* Cancelling a waiting caller removes it from the table (and its packet from
  the outbox if not yet written); its late reply, if any, is dropped by sync.
  The stream is only ever written by the writer task, so a cancelled caller can
  never leave half a packet on the wire.
* When the socket fails, every waiter fails with :class:`NetworkError` saying
  whether its request may have executed; the next request reconnects
  (``reconnect_max_attempts`` tries, ``reconnect_delay`` apart).
* At most ``max_in_flight`` requests wait at once; further callers queue
  (backpressure instead of unbounded memory).
"""

from __future__ import annotations

import itertools
import math
import os
import stat
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

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
    TarantoolTimeoutError,
)
from ._iproto import _requests as R
from ._iproto import constants as C
from ._request import FINISH_PING, FINISH_PING_NOTIME, FINISH_RESPONSE, PushCallback, Request
from ._response import Response, database_error
from ._schema import Schema
from ._tls import TLSOptions, check_transport

_WRONG_SCHEMA = C.TYPE_ERROR | ErrorCode.ER_WRONG_SCHEMA_VERSION

_RECV_SIZE = 64 * 1024
#: Reads served without waiting before the reader yields to other tasks anyway.
_EAGER_READS = 16
_SCHEMA_RETRIES = 3
_AUTH_TYPES = ("chap-sha1", "pap-sha256")


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


class _Waiter:
    """A task parked until the reply with its sync arrives."""

    __slots__ = ("done", "on_push", "on_push_ctx", "packet", "push_error", "sync", "task", "written")

    def __init__(self, packet: bytes, sync: int, task: trio.lowlevel.Task,
                 on_push: PushCallback | None, on_push_ctx: Any) -> None:
        self.packet = packet
        self.sync = sync
        self.task = task
        self.written = False
        self.done = False
        self.on_push = on_push
        self.on_push_ctx = on_push_ctx
        self.push_error: BaseException | None = None


class _Link:
    """One live socket with its reader and writer tasks and its outbox."""

    __slots__ = ("fd", "outbox", "scopes", "stream", "writer_parked", "writer_task")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.scopes = (trio.CancelScope(), trio.CancelScope())
        self.outbox: list[_Waiter] = []
        self.writer_task: trio.lowlevel.Task | None = None
        self.writer_parked = False
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
            trio.lowlevel.reschedule(self.writer_task)


def _socket_fd(stream: trio.abc.Stream) -> int:
    if not isinstance(stream, trio.SocketStream):
        return -1
    try:
        fd = stream.socket.fileno()
        return fd if fd >= 0 and stat.S_ISSOCK(os.fstat(fd).st_mode) else -1
    except (OSError, AttributeError, TypeError, ValueError):
        return -1


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


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
        await self._conn._call_request(C.PREPARE, R.prepare_body(self.stmt_id))

    def __repr__(self) -> str:
        return f"<PreparedStatement id={self.stmt_id} params={self.params_count}>"


class Connection(CrudMixin):
    """A connection to one Tarantool instance, shared by any number of tasks.

    Create it with :func:`connect`; its methods mirror the box API. Spaces and
    indexes are accepted by name or by id. The ``crud_*`` methods call the
    crud module's functions on this instance (their ``mode`` is ignored).
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
    ) -> None:
        self.transport = check_transport(transport)
        self.tls = TLSOptions(ssl_key_file, ssl_cert_file, ssl_ca_file, ssl_ciphers,
                              ssl_password, ssl_password_file) if self.transport == "ssl" else None
        self._ssl_context = self.tls.context() if self.tls is not None else None
        if host is None:
            if not isinstance(port, str) or not port:
                raise ConfigurationError(f"with host=None, port must be a unix socket path, got {port!r}")
        else:
            if not isinstance(host, str) or not host:
                raise ConfigurationError(f"host must be a non-empty string or None, got {host!r}")
            if isinstance(port, str) and port.isdigit():
                port = int(port)
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ConfigurationError(f"port {port!r} is not a TCP port in 1..65535")
        if encoding not in ("utf-8", "utf8", None):
            raise ConfigurationError(f"encoding must be 'utf-8' or None (bytes), got {encoding!r}")
        if password is not None and user is None:
            raise ConfigurationError("a password was given without a user")
        if auth_type is not None and auth_type not in _AUTH_TYPES:
            raise ConfigurationError(f"auth_type must be one of {_AUTH_TYPES}, got {auth_type!r}")
        if isinstance(reconnect_max_attempts, bool) or not isinstance(reconnect_max_attempts, int) \
                or reconnect_max_attempts < 0:
            raise ConfigurationError(f"reconnect_max_attempts must be an int >= 0, got {reconnect_max_attempts!r}")
        if isinstance(reconnect_delay, bool) or not isinstance(reconnect_delay, int | float) or reconnect_delay < 0:
            raise ConfigurationError(f"reconnect_delay must be a number >= 0, got {reconnect_delay!r}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ConfigurationError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.socket_timeout = _check_timeout("socket_timeout", socket_timeout)
        self.connection_timeout = _check_timeout("connection_timeout", connection_timeout)
        self.reconnect_max_attempts = reconnect_max_attempts
        self.reconnect_delay = float(reconnect_delay)
        self.encoding = None if encoding is None else "utf-8"
        self.call_16 = bool(call_16)
        self.fetch_schema = bool(fetch_schema)
        self.auth_type = auth_type
        self.max_in_flight = max_in_flight

        self.greeting: _iproto.Greeting | None = None
        #: IPROTO protocol version (0 for servers before 2.10, which lack IPROTO_ID).
        self.protocol_version = 0
        self.features: frozenset[int] = frozenset()
        self.schema: Schema | None = None
        self.schema_version = 0

        self._nursery: trio.Nursery | None = None
        self._encoder = _iproto.Encoder()
        self._sync = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._link: _Link | None = None
        self._closed = False
        self._connect_lock = trio.Lock()
        self._schema_lock = trio.Lock()
        self._lost = trio.Event()
        self._lost.set()
        self._last_error: BaseException | None = None
        self._capacity = trio.lowlevel.ParkingLot()
        self._blocked = 0  # callers parked in _capacity
        self._sent = 0  # requests written to a socket
        self._writes = 0  # write system calls that carried them
        self._connects = 0  # sockets established (1 + reconnects)

    # -- public state ---------------------------------------------------------------
    def is_closed(self) -> bool:
        """True once :meth:`close` was called (or the owning context exited)."""
        return self._closed

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
    def last_error(self) -> BaseException | None:
        """Why the last socket was lost (None if it never was)."""
        return self._last_error

    async def wait_disconnected(self) -> None:
        """Return when the current socket is lost (at once if there is none)."""
        await self._lost.wait()

    def __repr__(self) -> str:
        where = self.port if self.host is None else f"{self.host}:{self.port}"
        state = "closed" if self._closed else ("connected" if self._link is not None else "disconnected")
        return f"<trio_tarantool.Connection {where} {state} in_flight={len(self._waiters)}>"

    # -- lifecycle --------------------------------------------------------------------
    def attach(self, nursery: trio.Nursery) -> None:
        """Host this connection's reader and writer tasks in ``nursery``.

        For code that manages a :class:`Connection`'s lifetime itself (as the
        pool does) instead of through :func:`connect`: after ``attach``, the
        first request connects. Call :meth:`close` before the nursery ends.
        """
        self._nursery = nursery

    async def _open(self, nursery: trio.Nursery) -> None:
        self.attach(nursery)
        await self._establish()

    def close(self) -> None:
        """Close now: pending requests fail with ConnectionClosedError; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._drop_link(self._link, ConnectionClosedError("connection closed by the application"))

    async def aclose(self) -> None:
        """Close, as :meth:`close`; a checkpoint like every async method."""
        self.close()
        await trio.lowlevel.checkpoint()

    async def _establish(self) -> None:
        """Open a socket, read the greeting, say ID, authenticate, start the tasks."""
        assert self._nursery is not None
        where = f"{self.host}:{self.port}" if self.host is not None else str(self.port)
        try:
            with trio.fail_after(self.connection_timeout) if self.connection_timeout else _no_scope():
                stream = await self._open_stream()
                try:
                    await self._handshake(stream)
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
        except trio.TooSlowError:
            raise TarantoolTimeoutError(
                f"connecting to {where} took longer than connection_timeout={self.connection_timeout}s",
                may_have_executed=False,
            ) from None
        except OSError as exc:
            raise NetworkError(f"cannot connect to {where}: {exc}", may_have_executed=False) from exc
        except _iproto.GreetingError as exc:
            raise ProtocolError(f"{where}: {exc}", may_have_executed=False) from exc
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise NetworkError(f"connection to {where} lost during the handshake: {cause}",
                               may_have_executed=False) from exc
        link = _Link(stream)
        self._link = link
        self._connects += 1
        self._lost = trio.Event()
        self.schema = None  # the server may have been restarted with another schema
        self._nursery.start_soon(self._reader, link, _iproto.Decoder(raw=self.encoding is None))
        self._nursery.start_soon(self._writer, link)

    async def _open_stream(self) -> trio.abc.Stream:
        if self.host is None:
            stream: trio.abc.Stream = await trio.open_unix_socket(str(self.port))
        else:
            stream = await trio.open_tcp_stream(self.host, int(self.port))
        if self._ssl_context is None:
            return stream
        try:
            tls = trio.SSLStream(stream, self._ssl_context, server_hostname=self.host)
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return tls

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
        if decoder.buffered:
            raise ProtocolError("server sent unsolicited data during the handshake", may_have_executed=False)

    def _on_id_reply(self, reply: _iproto.Reply) -> None:
        if reply.is_error:
            # Servers before 2.10 do not know IPROTO_ID: protocol version 0.
            self.protocol_version, self.features = 0, frozenset()
            return
        version = reply.body.get(C.VERSION, 0)
        features = reply.body.get(C.FEATURES, [])
        self.protocol_version = version if isinstance(version, int) else 0
        self.features = frozenset(f for f in features if isinstance(f, int))

    def _drop_link(self, link: _Link | None, error: NetworkError) -> None:
        """Forget ``link`` (if still current) and fail everything waiting on it."""
        if link is None or link is not self._link:
            return
        self._last_error = error
        self._link = None
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

    async def _ensure_connected(self) -> None:
        if self._closed:
            raise ConnectionClosedError("connection is closed", may_have_executed=False)
        async with self._connect_lock:
            if self._link is not None:
                return
            if self._closed:
                raise ConnectionClosedError("connection is closed", may_have_executed=False)
            attempts = self.reconnect_max_attempts + 1
            last: NetworkError | None = None
            for attempt in range(attempts):
                if attempt:
                    await trio.sleep(self.reconnect_delay)
                try:
                    await self._establish()
                    return
                except NetworkError as exc:
                    last = exc
            assert last is not None
            raise NetworkError(f"{last.message} (after {attempts} attempt(s))", may_have_executed=False) from last

    # -- the two I/O tasks --------------------------------------------------------------
    async def _reader(self, link: _Link, decoder: _iproto.Decoder) -> None:
        pop = self._waiters.pop
        reschedule = trio.lowlevel.reschedule
        Value = outcome.Value
        stream = link.stream
        error: NetworkError | None = None
        fd = link.fd
        eager = 0
        data: bytes | bytearray
        try:
            with link.scopes[0]:
                while True:
                    if fd >= 0:
                        # Read the socket directly: trio's receive_some adds a
                        # scheduler round trip even when data is waiting.
                        try:
                            data = os.read(fd, _RECV_SIZE)
                        except BlockingIOError:
                            eager = 0
                            await trio.lowlevel.wait_readable(fd)
                            continue
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
                    for reply in decoder.replies():
                        if reply.code == C.CHUNK:
                            self._on_push(reply)
                            continue
                        waiter = pop(reply.sync, None)
                        if waiter is None:
                            continue  # its caller gave up (cancelled or timed out)
                        if reply.schema_version != self.schema_version and reply.schema_version:
                            self._on_schema_version(reply.schema_version)
                        if not waiter.done:
                            waiter.done = True
                            reschedule(waiter.task, Value(reply))
        except ProtocolError as exc:
            error = exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            error = NetworkError(f"connection lost: {exc}")
        finally:
            # Also when cancelled from outside: nobody may go on waiting on a
            # dead link, and its socket is closed here, not leaked.
            self._drop_link(link, error or NetworkError("connection closed: its reader task was cancelled"))
            await trio.aclose_forcefully(stream)

    async def _writer(self, link: _Link) -> None:
        link.writer_task = trio.lowlevel.current_task()
        stream = link.stream
        fd = link.fd
        error: NetworkError | None = None
        with link.scopes[1]:
            try:
                while True:
                    if not link.outbox:
                        link.writer_parked = True
                        await trio.lowlevel.wait_task_rescheduled(link.abort_park)
                        continue
                    batch = link.outbox
                    link.outbox = []
                    for waiter in batch:
                        waiter.written = True
                    data = b"".join([w.packet for w in batch])
                    self._sent += len(batch)
                    self._writes += 1
                    if fd >= 0:
                        await _write_all(fd, data)
                    else:
                        await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                error = NetworkError(f"connection lost while sending: {exc}")
            finally:
                link.writer_parked = False
                link.writer_task = None
                self._drop_link(link, error or NetworkError("connection closed: its writer task was cancelled"))

    def _write_directly(self, link: _Link, waiter: _Waiter) -> None:
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
        if waiter is None or waiter.on_push is None:
            return
        try:
            # The DATA array as it came (``[value]``), as the reference connector passes it.
            waiter.on_push(reply.body.get(C.DATA), waiter.on_push_ctx)
        except Exception as exc:  # reported to the caller once its reply arrives
            if waiter.push_error is None:
                waiter.push_error = exc

    def _on_schema_version(self, version: int) -> None:
        self.schema_version = version
        if self.schema is not None and self.schema.version != version:
            self.schema = None

    @staticmethod
    def _wake(waiter: _Waiter, result: outcome.Outcome[Any]) -> None:
        if not waiter.done:
            waiter.done = True
            trio.lowlevel.reschedule(waiter.task, result)

    # -- the request path ---------------------------------------------------------------------
    def _enqueue(self, link: _Link, request_type: int, body: Mapping[int, Any] | None,
                 schema_version: int | None, on_push: PushCallback | None, on_push_ctx: Any,
                 task: trio.lowlevel.Task) -> _Waiter:
        """Register a waiter for ``task`` and queue (or write) its packet; never blocks."""
        sync = next(self._sync)
        if request_type == C.CALL and self.call_16:
            request_type = C.CALL_16
        waiter = _Waiter(self._encoder.frame(request_type, sync, body, schema_version), sync,
                         task, on_push, on_push_ctx)
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
            link.outbox.append(waiter)
            if link.writer_parked:
                link.kick()
        return waiter

    def _forget(self, waiter: _Waiter) -> None:
        """Its caller gave up: drop the waiter, and its packet if not yet written."""
        waiter.done = True
        if self._waiters.pop(waiter.sync, None) is not None and not waiter.written:
            link = self._link
            if link is not None:
                try:
                    link.outbox.remove(waiter)
                except ValueError:
                    pass

    async def _send(self, request_type: int, body: Mapping[int, Any] | None,
                    schema_version: int | None = None, on_push: PushCallback | None = None,
                    on_push_ctx: Any = None) -> _iproto.Reply:
        """Send one request and wait for its reply (which may be an error reply)."""
        link = self._link
        if link is None:
            await self._ensure_connected()
            link = self._link
        while len(self._waiters) >= self.max_in_flight:
            self._blocked += 1
            try:
                await self._capacity.park()
            finally:
                self._blocked -= 1
            if self._link is None:
                await self._ensure_connected()
            link = self._link
        assert link is not None
        waiter = self._enqueue(link, request_type, body, schema_version, on_push, on_push_ctx,
                               trio.lowlevel.current_task())

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._forget(waiter)
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            if self.socket_timeout is None:
                reply: _iproto.Reply = await trio.lowlevel.wait_task_rescheduled(abort)
            else:
                with trio.fail_after(self.socket_timeout):
                    reply = await trio.lowlevel.wait_task_rescheduled(abort)
        except trio.TooSlowError:
            raise TarantoolTimeoutError(
                f"no reply within socket_timeout={self.socket_timeout}s", may_have_executed=waiter.written
            ) from None
        finally:
            if self._blocked:
                self._capacity.unpark()
        if waiter.push_error is not None:
            raise waiter.push_error
        return reply

    def _try_submit(self, req: Request, task: trio.lowlevel.Task) -> _Waiter | None:
        """Queue ``req`` for ``task`` without blocking, if that is possible now.

        None when it is not (no socket, too many in flight, names not in the
        cached schema): the caller then runs :meth:`_perform`, which waits.
        The reply reschedules ``task`` directly, with the raw reply.
        """
        link = self._link
        if link is None or len(self._waiters) >= self.max_in_flight:
            return None
        body = req.body
        version = None
        if body is None:
            schema = self.schema
            if schema is None or not self.fetch_schema:
                return None
            space = req.space
            space_id = space if type(space) is int else schema.space_id(space)  # type: ignore[arg-type]
            if space_id is None:
                return None
            index = req.index
            index_id = index if type(index) is int else schema.index_id(space_id, index)  # type: ignore[arg-type]
            if index_id is None:
                return None
            assert req.build is not None
            body = req.build(space_id, index_id)
            version = schema.version
        return self._enqueue(link, req.type, body, version, req.on_push, req.on_push_ctx, task)

    async def _perform(self, req: Request) -> Response:
        """Send ``req`` (resolving names, reconnecting, waiting as needed); its Response."""
        if req.body is not None:
            reply = await self._send(req.type, req.body, None, req.on_push, req.on_push_ctx)
        else:
            assert req.build is not None
            for _ in range(_SCHEMA_RETRIES):
                space_id, index_id, version = await self._resolve(req.space, req.index)
                reply = await self._send(req.type, req.build(space_id, index_id), version,
                                         req.on_push, req.on_push_ctx)
                if reply.code != _WRONG_SCHEMA:
                    break
                self._on_schema_version(reply.schema_version)
                self.schema = None
        if reply.code & C.TYPE_ERROR or reply.decode_error is not None:
            raise _failure(reply)
        return Response(reply)

    def _result(self, req: Request, reply: _iproto.Reply, start: float) -> Any:
        """What a method returns for this reply (or the exception it raises), for
        callers that sent ``req`` through :meth:`_try_submit` at ``start``."""
        if reply.code & C.TYPE_ERROR or reply.decode_error is not None:
            raise _failure(reply)
        return self._finish(req, Response(reply), start)

    def _finish(self, req: Request, response: Response, start: float) -> Any:
        finish = req.finish
        if finish == FINISH_RESPONSE:
            return response
        if finish == FINISH_PING:
            return trio.current_time() - start
        if finish == FINISH_PING_NOTIME:
            return "Success"
        return PreparedStatement(self, response)

    async def _call_request(self, request_type: int, body: Mapping[int, Any] | None) -> Response:
        reply = await self._send(request_type, body)
        if reply.code & C.TYPE_ERROR:
            raise database_error(reply)
        return Response(reply)

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
                spaces = await self._send(C.SELECT, R.select_body(C.VSPACE_ID, 0, [], 0, 0xFFFFFFFF, C.Iterator.ALL))
                indexes = await self._send(C.SELECT, R.select_body(C.VINDEX_ID, 0, [], 0, 0xFFFFFFFF, C.Iterator.ALL))
                for reply in (spaces, indexes):
                    if reply.is_error:
                        raise database_error(reply)
                if spaces.schema_version == indexes.schema_version:
                    schema = Schema(spaces.schema_version, spaces.body.get(C.DATA, []), indexes.body.get(C.DATA, []))
                    self.schema = schema
                    self.schema_version = schema.version
                    return schema
            raise SchemaError("the schema kept changing while it was being loaded")

    def flush_schema(self) -> None:
        """Forget cached names; they are fetched again on next use."""
        self.schema = None

    # -- box API -------------------------------------------------------------------------
    async def ping(self, notime: bool = False) -> float | str:
        """Round trip to the server: the time it took in seconds, or "Success" with notime."""
        req = _rq.ping(notime)
        start = trio.current_time()
        return cast(float | str, self._finish(req, await self._perform(req), start))

    async def select(self, space_name: str | int, key: Any = None, *, offset: int = 0,
                     limit: int = 0xFFFFFFFF, index: str | int = 0, iterator: Any = None,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Tuples of a space by index key; no key (or []) selects all."""
        return await self._perform(_rq.select(
            space_name, key, offset=offset, limit=limit, index=index, iterator=iterator,
            on_push=on_push, on_push_ctx=on_push_ctx))

    async def insert(self, space_name: str | int, values: Sequence[Any], *,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Insert a tuple; fails with ER_TUPLE_FOUND if its key exists."""
        return await self._perform(_rq.insert(
            space_name, values, on_push=on_push, on_push_ctx=on_push_ctx))

    async def replace(self, space_name: str | int, values: Sequence[Any], *,
                      on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Insert a tuple, or replace the one with the same primary key."""
        return await self._perform(_rq.replace(
            space_name, values, on_push=on_push, on_push_ctx=on_push_ctx))

    async def update(self, space_name: str | int, key: Any, op_list: Sequence[Any], *,
                     index: str | int = 0, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """Apply update operations (``[op, field, arg...]``) to the tuple with ``key``."""
        return await self._perform(_rq.update(
            space_name, key, op_list, index=index, on_push=on_push, on_push_ctx=on_push_ctx))

    async def upsert(self, space_name: str | int, tuple_value: Sequence[Any], op_list: Sequence[Any], *,
                     index: str | int = 0, on_push: PushCallback | None = None,
                     on_push_ctx: Any = None) -> Response:
        """Insert ``tuple_value``, or apply ``op_list`` to the existing tuple."""
        return await self._perform(_rq.upsert(
            space_name, tuple_value, op_list, index=index, on_push=on_push, on_push_ctx=on_push_ctx))

    async def delete(self, space_name: str | int, key: Any, *, index: str | int = 0,
                     on_push: PushCallback | None = None, on_push_ctx: Any = None) -> Response:
        """Delete the tuple with ``key``; the reply holds the deleted tuple."""
        return await self._perform(_rq.delete(
            space_name, key, index=index, on_push=on_push, on_push_ctx=on_push_ctx))

    async def call(self, func_name: str, *args: Any, on_push: PushCallback | None = None,
                   on_push_ctx: Any = None) -> Response:
        """Call a stored function; ``data`` holds what it returned.

        Each positional argument is one Lua argument: ``call("f", [1, 2])``
        passes one array (unlike the reference connector, which spreads a lone
        list into several arguments).
        """
        return await self._perform(_rq.call(
            func_name, *args, on_push=on_push, on_push_ctx=on_push_ctx))

    async def eval(self, expr: str, *args: Any, on_push: PushCallback | None = None,
                   on_push_ctx: Any = None) -> Response:
        """Evaluate a Lua chunk with ``...`` bound to ``args``."""
        return await self._perform(_rq.eval(
            expr, *args, on_push=on_push, on_push_ctx=on_push_ctx))

    async def execute(self, query: str | int, params: Any = None) -> Response:
        """Run SQL: text, or the id of a prepared statement; params positional or named."""
        return await self._perform(_rq.execute(query, params))

    async def prepare(self, query: str) -> PreparedStatement:
        """Prepare an SQL statement for repeated :meth:`PreparedStatement.execute`."""
        return PreparedStatement(self, await self._perform(_rq.prepare(query)))

    async def _crud_call(self, func_name: str, args: tuple[Any, ...], mode: Any) -> Response:
        return await self.call(func_name, *args)


def _failure(reply: _iproto.Reply) -> Error:
    """The exception for a reply that is an error or could not be decoded."""
    if reply.code & C.TYPE_ERROR:
        return database_error(reply)
    assert reply.decode_error is not None
    return ProtocolError(reply.decode_error, may_have_executed=True)


async def _write_all(fd: int, data: bytes) -> None:
    """Write everything to a non-blocking socket, waiting only when it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)


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
) -> AsyncIterator[Connection]:
    """Open a connection; it is closed, and its tasks gone, when the block exits.

    ``host=None`` with a path as ``port`` connects over a unix socket;
    ``transport='ssl'`` wraps the stream in TLS (the ``ssl_*`` options: client
    certificate and key, a CA file that turns server verification on, ciphers,
    the key's password or a file of candidate passwords). Raises
    :class:`NetworkError` if the server cannot be reached, :class:`DatabaseError`
    if authentication fails, :class:`TarantoolTimeoutError` past
    ``connection_timeout``.
    """
    conn = Connection(
        host, port, user=user, password=password, socket_timeout=socket_timeout,
        connection_timeout=connection_timeout, reconnect_max_attempts=reconnect_max_attempts,
        reconnect_delay=reconnect_delay, encoding=encoding, call_16=call_16,
        fetch_schema=fetch_schema, auth_type=auth_type, max_in_flight=max_in_flight,
        transport=transport, ssl_key_file=ssl_key_file, ssl_cert_file=ssl_cert_file,
        ssl_ca_file=ssl_ca_file, ssl_ciphers=ssl_ciphers, ssl_password=ssl_password,
        ssl_password_file=ssl_password_file,
    )
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


__all__ = ["Connection", "ConnectionStatistics", "PreparedStatement", "connect"]
