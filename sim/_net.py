"""The fake network: in-memory sockets that trio's own stream code drives.

Theory of operation
-------------------
trio lets one ``trio.run`` replace how sockets are created
(:func:`trio.socket.set_custom_socket_factory`) and how host names are resolved
(:func:`trio.socket.set_custom_hostname_resolver`). :class:`Network` installs
both, so unchanged client code that calls ``trio.open_tcp_stream(host, port)``
gets a real :class:`trio.SocketStream` wrapped around a :class:`FakeSocket`.

A connection is two one-way :class:`_Pipe` objects. Bytes written into a pipe
become readable after the link's delay (plus seeded jitter), in order, and a
reader gets at most ``chunk_size`` bytes per ``recv`` when the link says so.
Nothing here uses threads, real sockets or the wall clock: every wait is a trio
wait, so :class:`trio.testing.MockClock` drives the whole world.

Faults live on a :class:`Link`, one per listening address (the test process is
the only client, so "a link" is "the path to one server"):

* ``refuse``: ``connect`` fails at once with ``ECONNREFUSED``;
* ``blackhole``: ``connect`` never completes (until the fault is cleared);
* ``stall``: established connections stop delivering bytes (both ways);
* ``delay``/``jitter``: one-way latency of every segment;
* ``chunk_size``: the reader gets bytes in pieces of at most this size;
* ``reset_after``: the server-to-client direction of each new connection
  delivers that many bytes, then the connection is reset (``ECONNRESET``).

A partition is ``stall + blackhole``: exactly what a TCP client sees when the
path to a server silently drops packets.
"""

from __future__ import annotations

import errno
import itertools
import operator
import random
import socket as _stdlib_socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

#: Default per-direction buffer, like a kernel socket buffer.
PIPE_CAPACITY = 1 << 16

AcceptHandler = Callable[["FakeSocket"], Awaitable[None]]


@dataclass
class LinkFaults:
    """The fault settings of one link; all off by default."""

    refuse: bool = False
    blackhole: bool = False
    stall: bool = False
    delay: float = 0.0
    jitter: float = 0.0
    chunk_size: int | None = None
    reset_after: int | None = None


class Link:
    """The path from the test process to one listening address.

    Changing a fault wakes every pipe of the link, so a cleared stall or
    blackhole takes effect at once.
    """

    def __init__(self, network: Network, address: tuple[str, int]) -> None:
        self.network = network
        self.address = address
        self.faults = LinkFaults()
        self.pipes: list[_Pipe] = []
        self._changed = trio.lowlevel.ParkingLot()

    def set(self, **changes: Any) -> None:
        """Change fault settings (names as in :class:`LinkFaults`)."""
        for name, value in changes.items():
            if not hasattr(self.faults, name):
                raise TypeError(f"unknown link fault {name!r}")
            setattr(self.faults, name, value)
        self.network.record(f"{self.address[0]}:{self.address[1]}", f"link {self._describe()}")
        self._changed.unpark_all()
        for pipe in self.pipes:
            pipe.wake()

    def clear(self) -> None:
        """Remove every fault."""
        self.set(**vars(LinkFaults()))

    def _describe(self) -> str:
        default = LinkFaults()
        parts = [f"{k}={v}" for k, v in vars(self.faults).items() if getattr(default, k) != v]
        return " ".join(parts) or "clear"

    async def wait_changed(self) -> None:
        await self._changed.park()

    def draw_delay(self) -> float:
        """One-way latency of the next segment (seeded jitter)."""
        f = self.faults
        if f.jitter > 0:
            return max(0.0, f.delay + self.network.rng.uniform(-f.jitter, f.jitter))
        return f.delay


class _Pipe:
    """One direction of a fake connection: an ordered byte queue with latency."""

    def __init__(self, link: Link, name: str, capacity: int = PIPE_CAPACITY) -> None:
        self.link = link
        self.name = name
        self.capacity = capacity
        #: Segments as [deliver_at, bytearray]; deliver times never decrease.
        self.segments: deque[list[Any]] = deque()
        self.buffered = 0
        self.eof = False  # the writer shut down or closed
        self.reset = False  # RST: both ends fail
        self.reader_closed = False
        self.reset_after: int | None = None  # bytes left before a RST
        self.delivered = 0
        #: One (stream offset just past the write, write number, virtual time)
        #: per write not yet looked up (see :meth:`write_of`).
        self.marks: deque[tuple[int, int, float]] = deque()
        self._lot = trio.lowlevel.ParkingLot()

    def wake(self) -> None:
        self._lot.unpark_all()

    def write(self, data: bytes) -> int:
        """Queue as much of ``data`` as fits; return how much was taken."""
        room = self.capacity - self.buffered
        n = min(room, len(data))
        if self.reset_after is not None:
            n = min(n, max(self.reset_after - self.delivered, 0))
            if n == 0:
                return 0
        if n == 0:
            return 0
        now = trio.current_time()
        at = now + self.link.draw_delay()
        if self.segments and self.segments[-1][0] > at:
            at = self.segments[-1][0]  # TCP keeps order
        self.segments.append([at, bytearray(data[:n])])
        self.buffered += n
        self.delivered += n
        network = self.link.network
        network.write_count += 1
        if self.name == "c2s":  # only what a server reads is looked up
            self.marks.append((self.delivered, network.write_count, now))
        self.wake()
        return n

    def write_of(self, offset: int) -> tuple[int, float]:
        """(write number, virtual time) of the write that carried byte ``offset - 1``.

        Offsets are counted from the start of the stream; lookups must come in
        non-decreasing order (a reader's view), which lets older marks go.
        """
        while len(self.marks) > 1 and self.marks[0][0] < offset:
            self.marks.popleft()
        if not self.marks:
            return 0, 0.0
        _, number, at = self.marks[0]
        return number, at

    def readable_at(self) -> float | None:
        """When the first queued segment can be read, or None if none is queued."""
        if not self.segments:
            return None
        return float(self.segments[0][0])

    def take(self, max_bytes: int) -> bytes:
        limit = max_bytes
        chunk = self.link.faults.chunk_size
        if chunk is not None:
            limit = min(limit, chunk)
        out = bytearray()
        now = trio.current_time()
        while self.segments and len(out) < limit and self.segments[0][0] <= now:
            seg = self.segments[0]
            need = limit - len(out)
            part = seg[1][:need]
            del seg[1][:need]
            out += part
            if not seg[1]:
                self.segments.popleft()
        self.buffered -= len(out)
        self.wake()
        return bytes(out)

    async def wait(self, deadline: float = float("inf")) -> None:
        if deadline == float("inf"):
            await self._lot.park()  # no cancel scope needed (the common case)
            return
        with trio.move_on_at(deadline):
            await self._lot.park()


_fileno_counter = itertools.count(1000)


class FakeSocket(trio.socket.SocketType):
    """A trio socket object backed by in-memory pipes.

    Implements what :class:`trio.SocketStream` and
    :func:`trio.open_tcp_stream` use: ``connect``, ``send``, ``recv``,
    ``shutdown``, ``close``, ``fileno``, ``wait_writable``, socket options and
    names. Errors are the ``OSError`` values a kernel would give, so trio turns
    them into the usual stream exceptions.
    """

    def __init__(self, network: Network, family: int, type: int, proto: int) -> None:
        super().__init__()
        self._network = network
        self._family = _stdlib_socket.AddressFamily(family)
        self._type = _stdlib_socket.SocketKind(type)
        self._proto = proto
        self._opts: dict[tuple[int, int], int | bytes] = {}
        self._fileno = next(_fileno_counter)
        self._closed = False
        self._shut_wr = False
        self._rx: _Pipe | None = None
        self._tx: _Pipe | None = None
        self._peer: tuple[str, int] | None = None
        self._local: tuple[str, int] = ("0.0.0.0", 0)
        self._reader_busy = False
        self._writer_busy = False
        self.link: Link | None = None
        self.peer_socket: FakeSocket | None = None
        #: True for the end a listener accepted.
        self.server_side = False

    # -- identity --------------------------------------------------------
    @property
    def family(self) -> _stdlib_socket.AddressFamily:
        return self._family

    @property
    def type(self) -> _stdlib_socket.SocketKind:
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._shut_wr

    def fileno(self) -> int:
        return -1 if self._closed else self._fileno

    def getpeername(self) -> Any:
        if self._peer is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._peer

    def getsockname(self) -> Any:
        return self._local

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        self._opts[(level, optname)] = value if isinstance(value, (int, bytes)) else 0

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        value = self._opts.get((level, optname), 0)
        if buflen is not None:
            return value if isinstance(value, bytes) else int(value).to_bytes(4, "little")
        return value

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<FakeSocket fd={self._fileno} {state} peer={self._peer}>"

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------
    async def bind(self, address: Any) -> None:
        await trio.lowlevel.checkpoint()
        self._local = (str(address[0]), int(address[1]))

    async def connect(self, address: Any) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        host, port = str(address[0]), int(address[1])
        await self._network.connect(self, (host, port))

    def _attach(self, rx: _Pipe, tx: _Pipe, peer: tuple[str, int], link: Link) -> None:
        self._rx, self._tx, self._peer, self.link = rx, tx, peer, link

    def shutdown(self, flag: int) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if flag in (_stdlib_socket.SHUT_WR, _stdlib_socket.SHUT_RDWR):
            self._shut_wr = True
            if self._tx is not None:
                self._tx.eof = True
                self._tx.wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tx is not None:
            self._tx.eof = True
            self._tx.wake()
        if self._rx is not None:
            self._rx.reader_closed = True
            self._rx.wake()
        self._network.forget(self)

    def reset(self) -> None:
        """Abort the connection as an RST would: both ends fail with ECONNRESET."""
        for pipe in (self._rx, self._tx):
            if pipe is not None:
                pipe.reset = True
                pipe.wake()

    @property
    def is_closed(self) -> bool:
        return self._closed

    # -- data --------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")

    async def send(self, data: Any, flags: int = 0) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        if self._writer_busy:
            raise trio.BusyResourceError("another task is already sending on this socket")
        self._writer_busy = True
        try:
            data = bytes(data)
            tx = self._tx
            if tx is None:
                raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
            while True:
                self._check_open()
                if tx.reset:
                    raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
                if tx.reader_closed:
                    raise BrokenPipeError(errno.EPIPE, "Broken pipe")
                if self._shut_wr:
                    raise BrokenPipeError(errno.EPIPE, "Broken pipe")
                if not data:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return 0
                n = tx.write(data)
                if n:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return n
                if tx.reset_after is not None and tx.delivered >= tx.reset_after:
                    tx.reset = True
                    if self._rx is not None:
                        self._rx.reset = True
                        self._rx.wake()
                    self._network.record(self._describe_peer(), "reset (reset_after)")
                    continue
                await tx.wait()
        finally:
            self._writer_busy = False

    def _describe_peer(self) -> str:
        if self.link is not None:
            return f"{self.link.address[0]}:{self.link.address[1]}"
        return "?"

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._writer_busy:
            raise trio.BusyResourceError("another task is already sending on this socket")
        self._writer_busy = True
        try:
            tx = self._tx
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("socket was closed")
                if tx is None or tx.reset or tx.reader_closed or tx.buffered < tx.capacity:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                await tx.wait()
        finally:
            self._writer_busy = False

    async def recv(self, buflen: int, flags: int = 0) -> bytes:
        buflen = operator.index(buflen)  # a real socket rejects 1.5 the same way
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        if self._reader_busy:
            raise trio.BusyResourceError("another task is already reading from this socket")
        self._reader_busy = True
        try:
            rx = self._rx
            if rx is None:
                raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("socket was closed while reading")
                stalled = self.link is not None and self.link.faults.stall
                at = rx.readable_at()
                now = trio.current_time()
                # Bytes that already arrived are readable before an RST that
                # came after them (that is how "reset mid-response" looks).
                if rx.reset and (stalled or at is None or at > now):
                    raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
                if not stalled and at is not None and at <= now:
                    data = rx.take(buflen)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
                if not stalled and at is None and rx.eof:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return b""
                await rx.wait(at if (at is not None and not stalled) else float("inf"))
        finally:
            self._reader_busy = False

    def peer_write_of(self, offset: int) -> tuple[int, float]:
        """When the peer wrote the received byte at stream offset ``offset - 1``.

        Returns (write number in :attr:`Network.write_count` order, virtual
        time). It tells bytes written before a moment from bytes written
        after it, whatever the link delay; ask in non-decreasing offsets.
        """
        if self._rx is None:
            return 0, 0.0
        return self._rx.write_of(offset)

    def has_unread_data(self) -> bool:
        """True if bytes sent to this socket were not read yet (arrived or in flight)."""
        return self._rx is not None and self._rx.buffered > 0

    def is_writable_now(self) -> bool:
        """True if ``send`` would take at least one byte without waiting."""
        tx = self._tx
        return tx is not None and tx.buffered < tx.capacity

    def is_readable(self) -> bool:
        rx = self._rx
        if rx is None:
            return False
        at = rx.readable_at()
        return rx.reset or rx.eof or (at is not None and at <= trio.current_time())


class FakeSocketFactory(trio.abc.SocketFactory):
    """Hands out :class:`FakeSocket` objects for the owning :class:`Network`."""

    def __init__(self, network: Network) -> None:
        self._network = network

    def socket(
        self,
        family: _stdlib_socket.AddressFamily | int | None = None,
        type: _stdlib_socket.SocketKind | int | None = None,
        proto: int | None = None,
    ) -> trio.socket.SocketType:
        if family is None:
            family = _stdlib_socket.AF_INET
        if type is None:
            type = _stdlib_socket.SOCK_STREAM
        return FakeSocket(self._network, family, type, proto or 0)


class FakeResolver(trio.abc.HostnameResolver):
    """Resolves the simulated host names to their fake IPv4 addresses."""

    def __init__(self, network: Network) -> None:
        self._network = network

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        await trio.lowlevel.checkpoint()
        name = host.decode("ascii") if isinstance(host, bytes) else (host or "")
        ip = self._network.hosts.get(name.lower())
        if ip is None:
            raise _stdlib_socket.gaierror(
                _stdlib_socket.EAI_NONAME, f"Name or service not known: {name!r}"
            )
        if isinstance(port, bytes):
            port = port.decode()
        return [
            (
                _stdlib_socket.AF_INET,
                _stdlib_socket.SOCK_STREAM,
                _stdlib_socket.IPPROTO_TCP,
                "",
                (ip, int(port or 0)),
            )
        ]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        await trio.lowlevel.checkpoint()
        for name, ip in self._network.hosts.items():
            if ip == sockaddr[0]:
                return name, str(sockaddr[1])
        return str(sockaddr[0]), str(sockaddr[1])


class Listener:
    """A listening address; ``handler`` serves each accepted server-side socket."""

    def __init__(self, network: Network, address: tuple[str, int], handler: AcceptHandler) -> None:
        self.network = network
        self.address = address
        self.handler = handler
        self.accepting = True


class Network:
    """All fake hosts, listeners and links of one simulated world.

    ``record`` is called with (who, event) for every connection event, so the
    world's trace shows what the network did.
    """

    def __init__(
        self,
        rng: random.Random,
        nursery: trio.Nursery,
        record: Callable[[str, str], None] | None = None,
    ) -> None:
        self.rng = rng
        self.nursery = nursery
        self.hosts: dict[str, str] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.links: dict[tuple[str, int], Link] = {}
        self.sockets: list[FakeSocket] = []
        #: Writes (``send`` calls that queued bytes) so far, on every socket:
        #: a world-wide order of writes (see :meth:`FakeSocket.peer_write_of`).
        self.write_count = 0
        self._record = record
        self._next_client_port = 40000

    def record(self, who: str, event: str) -> None:
        if self._record is not None:
            self._record(who, event)

    def install(self) -> None:
        """Route this ``trio.run``'s sockets and name lookups to this network."""
        trio.socket.set_custom_socket_factory(FakeSocketFactory(self))
        trio.socket.set_custom_hostname_resolver(FakeResolver(self))

    @staticmethod
    def uninstall() -> None:
        trio.socket.set_custom_socket_factory(None)
        trio.socket.set_custom_hostname_resolver(None)

    def add_host(self, name: str, ip: str) -> None:
        self.hosts[name.lower()] = ip

    def link(self, address: tuple[str, int]) -> Link:
        """The link to ``address`` (created on first use)."""
        ip = self.hosts.get(address[0].lower(), address[0])
        key = (ip, int(address[1]))
        if key not in self.links:
            self.links[key] = Link(self, key)
        return self.links[key]

    def listen(self, address: tuple[str, int], handler: AcceptHandler) -> Listener:
        ip = self.hosts.get(address[0].lower(), address[0])
        key = (ip, int(address[1]))
        listener = Listener(self, key, handler)
        self.listeners[key] = listener
        self.link(key)
        return listener

    def unlisten(self, listener: Listener) -> None:
        if self.listeners.get(listener.address) is listener:
            del self.listeners[listener.address]

    def forget(self, sock: FakeSocket) -> None:
        """Drop a closed socket; its pipes go once both ends are closed."""
        if sock in self.sockets:
            self.sockets.remove(sock)
        peer = sock.peer_socket
        if sock.link is not None and (peer is None or peer.is_closed):
            sock.link.pipes = [p for p in sock.link.pipes if p is not sock._rx and p is not sock._tx]

    async def connect(self, client: FakeSocket, address: tuple[str, int]) -> None:
        """Complete ``client.connect(address)`` according to the link's faults."""
        link = self.link(address)
        who = f"{link.address[0]}:{link.address[1]}"
        while True:
            if link.faults.refuse or link.address not in self.listeners:
                self.record(who, "connect refused")
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            if not link.faults.blackhole:
                break
            # A dropped SYN: nothing happens until the fault changes (or the
            # caller's timeout fires).
            await link.wait_changed()
        delay = link.draw_delay()
        if delay > 0:
            await trio.sleep(2 * delay)  # SYN + SYN/ACK
        listener = self.listeners.get(link.address)
        if listener is None or link.faults.refuse:
            self.record(who, "connect refused")
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        up = _Pipe(link, "c2s")
        down = _Pipe(link, "s2c")
        down.reset_after = link.faults.reset_after
        link.pipes += [up, down]
        client_port = self._next_client_port
        self._next_client_port += 1
        server = FakeSocket(self, client.family, client.type, client.proto)
        server.server_side = True
        client._attach(rx=down, tx=up, peer=link.address, link=link)
        client._local = ("10.0.0.1", client_port)
        server._attach(rx=up, tx=down, peer=("10.0.0.1", client_port), link=link)
        server._local = link.address
        client.peer_socket, server.peer_socket = server, client
        self.sockets += [client, server]
        self.record(who, f"accept conn:{client_port}")
        self.nursery.start_soon(listener.handler, server)

    async def socketpair(self, address: tuple[str, int] = ("10.255.0.1", 1)) -> tuple[FakeSocket, FakeSocket]:
        """A connected (client, server) pair on ``address``'s link, no listener needed."""
        await trio.lowlevel.checkpoint()
        link = self.link(address)
        up, down = _Pipe(link, "c2s"), _Pipe(link, "s2c")
        down.reset_after = link.faults.reset_after
        link.pipes += [up, down]
        client = FakeSocket(self, _stdlib_socket.AF_INET, _stdlib_socket.SOCK_STREAM, 0)
        server = FakeSocket(self, _stdlib_socket.AF_INET, _stdlib_socket.SOCK_STREAM, 0)
        client._attach(rx=down, tx=up, peer=link.address, link=link)
        server._attach(rx=up, tx=down, peer=("10.0.0.1", 1), link=link)
        client.peer_socket, server.peer_socket = server, client
        return client, server
