"""Real Tarantool processes for the tests: start, stop, kill, freeze, restart.

Theory of operation
-------------------
Each :class:`TarantoolInstance` is one ``tarantool <script>`` child process on
127.0.0.1 with a free port (found by binding port 0), a fresh short work
directory under the system temp dir (short because it also holds the admin
console's unix socket, and unix socket paths are limited to ~107 bytes) and
its log (stdout + stderr) in ``<work_dir>/tarantool.log``.

The Lua scripts in ``tests/real/lua/`` read their settings from ``TT_*``
environment variables and write a *ready marker* file as their last step, so
"ready" means the init script finished (schema created, or replicated), not
merely that the port is open. :meth:`TarantoolInstance.start` waits for the
marker and for the 128-byte greeting on the listen port, and raises
:class:`ServerStartError` with the log's tail when that fails.

Every instance also has an admin console (``console.listen`` on a unix socket
in its work dir). :meth:`TarantoolInstance.admin` sends one Lua chunk through it
and returns the console's YAML answer; :meth:`TarantoolInstance.admin_eval`
returns the chunk's results decoded from JSON. This talks to the server without
the library under test, so tests can promote/demote instances, count rows,
or inspect ``box.info`` independently of the client.

All processes are owned by a :class:`ServerManager`; the fixtures in
``tests/real/conftest.py`` create one per test (or per module) and its
``close()`` stops every process it started -- also when the test fails.

How other test directories (e.g. the pool tests) use this
---------------------------------------------------------
The fixtures live in ``tests/real/conftest.py``; to use them from another test
directory either put the tests under ``tests/real/`` or re-export them from that
directory's ``conftest.py``::

    from tests.real.conftest import (  # noqa: F401
        tarantool, tarantool_factory, replicaset, replicaset_factory, server_manager,
    )

Fixtures (each runs once per server kind, see "Two servers" below):

* ``server_kind`` (session scope, parametrized ``"2.6"`` / ``"3.8"``): the
  :class:`TarantoolBinary` of this variant; ``@pytest.mark.min_server_version(3, 0)``
  keeps a test to the newer kinds.
* ``tarantool`` (module scope): a standalone instance running
  ``instance.lua``; tests sharing it must use distinct keys or clean up.
  ``tarantool.host``, ``tarantool.port``, ``tarantool.user`` /
  ``tarantool.password`` (``'test'`` / ``'test-password'``).
* ``tarantool_factory`` (function scope): ``tarantool_factory(**kw)`` starts a
  fresh standalone instance for destructive tests (kill, freeze, restart).
  Keyword arguments are those of :meth:`ServerManager.start_instance`.
* ``replicaset`` (function scope): a fresh :class:`Replicaset` of 3
  (``rs.master``, ``rs.replicas``, ``rs.instances``, ``rs.addrs``).
  Helpers: ``rs.kill_master()``, ``rs.promote(inst)``, ``rs.demote(inst)``,
  ``rs.switch_master(inst)``, ``rs.restart(inst)`` (comes back read-only unless
  it is ``rs.master``), ``rs.start_loading(inst, seconds)`` (a stopped member
  answers ``ER_LOADING`` while a peer is down), ``rs.wait_replicated()``, and
  per instance
  ``inst.kill()`` / ``inst.stop()`` / ``inst.start()`` / ``inst.restart()``,
  ``inst.freeze()`` / ``inst.thaw()``, ``inst.admin(lua)`` (YAML text) and
  ``inst.admin_eval(lua)`` (decoded results).

A pool test typically does (see ``tests/real/test_pool.py``)::

    async def test_rw_goes_to_master(replicaset):
        async with open_pool(replicaset.addrs, user="test", password="test-password") as pool:
            resp = await pool.call("whoami", mode=Mode.RW)
            assert resp[0][2] == replicaset.master.listen     # box.cfg.listen
            replicaset.switch_master(replicaset.replicas[0])  # demote + promote
            replicaset.kill_master()                          # or a crash

``whoami()`` returns ``[box.info.id, box.info.uuid, box.cfg.listen, box.info.ro]``,
so a reply tells which member served it. Other Lua functions on every
instance: ``echo(...)``, ``push_n(n)``, ``sleep(s)``, ``raise_error()``,
``decimal_uuid()``, ``ro_set(flag)``, ``counter_inc()`` / ``counter_get()`` (a
per-process counter to count executions), ``gate_wait(name, ...)`` (held on
the server until the test calls ``inst.gate_open(name)``; the test waits for
it with ``inst.gate_arrivals(name, n)`` and ``inst.gate_departures(name, n)``),
and ``crud.*`` (the stand-in in ``lua/crud.lua``). Spaces: ``tester`` (id unsigned, name string; indexes
``primary``, non-unique ``name_idx``), ``multi`` (composite key a, b),
``wide`` (no format), ``typed`` (decimal and uuid fields) and ``customers``
(crud layout with ``bucket_id``).

Two servers
-----------
Every fixture depends on the session-scoped, parametrized ``server_kind``
fixture, so each real test runs once per server kind, with ids like
``test_x[2.6]`` and ``test_x[3.8]``. A kind names a binary
(:func:`find_binary`): ``"2.6"`` is Debian's ``tarantool`` (``$TARANTOOL`` or
``PATH``), ``"3.8"`` is the 3.x build at ``$TARANTOOL_3`` (default
``../shared/tarantool-3.8/tarantool`` from the project root). A
:class:`TarantoolBinary` knows its ``version`` (parsed from ``--version``), and
so does every instance (``inst.version``): a test whose expectation depends on
the server says so with ``if inst.version >= (3, 0): ...``. The Lua scripts
adapt ``box.cfg`` to the version themselves (``common.version_cfg()``).

The same manager runs the benchmark servers (``bench/servers.py``): it imports
this module, which therefore depends on nothing but the standard library.

Blocking helpers (start, stop, admin) are synchronous on purpose: they are
used from fixtures and rarely inside a trio test; inside one, wrap a slow call
with ``await trio.to_thread.run_sync(inst.restart)`` so the trio loop keeps
running (e.g. while the client is reconnecting).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Directory holding the Lua init scripts.
LUA_DIR = Path(__file__).resolve().parent / "lua"
#: The standalone instance's init script.
INSTANCE_LUA = LUA_DIR / "instance.lua"
#: The replicaset member's init script.
REPLICA_LUA = LUA_DIR / "replica.lua"

#: Credentials created by the init scripts.
TEST_USER = "test"
TEST_PASSWORD = "test-password"
REPLICATOR_USER = "replicator"
REPLICATOR_PASSWORD = "replicator-password"

#: How long a start (or restart) may take before it is declared failed.
START_TIMEOUT = 30.0
#: How long SIGTERM gets before SIGKILL follows.
STOP_GRACE = 5.0
#: replication_timeout of the members while a replicaset bootstraps (the retry
#: interval between members that are not up yet; 0.5 s afterwards).
BOOT_REPLICATION_TIMEOUT = 0.1
#: election_timeout of replicasets started with ``election=True`` (seconds).
ELECTION_TIMEOUT = 0.3
#: Size of the IPROTO greeting.
GREETING_SIZE = 128


class ServerStartError(RuntimeError):
    """A tarantool process did not become ready; the message holds its log tail."""


class AdminError(RuntimeError):
    """A Lua chunk sent through the admin console raised an error."""


class ServerBinaryMissingError(ServerStartError):
    """The binary of a server kind is not there (or does not run)."""


#: The project's root (``tests/real/_servers.py`` -> ``..``/``..``/``..``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Where the 3.x binary lives on developer machines and in CI (``$TARANTOOL_3``
#: overrides it).
DEFAULT_TARANTOOL_3 = PROJECT_ROOT.parent / "shared" / "tarantool-3.8" / "tarantool"
#: The server kinds every real test runs against, oldest first.
SERVER_KINDS = ("2.6", "3.8")


@dataclass(frozen=True)
class TarantoolBinary:
    """A tarantool executable and the version it reports.

    Attributes:
        kind: The label of the kind it was found for (``"2.6"``, ``"3.8"``),
            used in test ids.
        path: The executable.
        version: ``(major, minor, patch)`` from ``tarantool --version``.
    """

    kind: str
    path: str
    version: tuple[int, int, int]

    def __str__(self) -> str:
        return f"Tarantool {'.'.join(map(str, self.version))} ({self.path})"


def in_ci() -> bool:
    """True when running in CI (``$CI`` set to ``true``/``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def parse_version(text: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` from ``tarantool --version``'s first line.

    Raises:
        ValueError: no ``Tarantool X.Y.Z`` in ``text``.
    """
    match = re.search(r"Tarantool\s+(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(f"no 'Tarantool X.Y.Z' in {text[:200]!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def binary_path(kind: str) -> str:
    """Where the binary of server ``kind`` should be (it may be missing).

    ``"2.6"``: ``$TARANTOOL``, else ``tarantool`` on ``PATH`` (Debian's
    package). ``"3.8"``: ``$TARANTOOL_3``, else :data:`DEFAULT_TARANTOOL_3`.

    Raises:
        ServerBinaryMissingError: ``kind`` is not one of :data:`SERVER_KINDS`,
            or nothing named ``tarantool`` is on ``PATH`` for ``"2.6"``.
    """
    if kind == "2.6":
        explicit = os.environ.get("TARANTOOL")
        if explicit:
            return explicit
        found = shutil.which("tarantool")
        if found is None:
            raise ServerBinaryMissingError(
                "server kind 2.6: no 'tarantool' executable on PATH (install Debian's "
                "tarantool package or set $TARANTOOL)"
            )
        return found
    if kind == "3.8":
        return os.environ.get("TARANTOOL_3") or str(DEFAULT_TARANTOOL_3)
    raise ServerBinaryMissingError(f"unknown server kind {kind!r}; known: {', '.join(SERVER_KINDS)}")


@functools.cache
def find_binary(kind: str = "2.6") -> TarantoolBinary:
    """The binary of server ``kind``, with its version (cached per kind).

    Raises:
        ServerBinaryMissingError: the executable is missing, does not run, or
            does not report a version; the message names the path and the
            variable that sets it.
    """
    path = binary_path(kind)
    variable = "$TARANTOOL" if kind == "2.6" else "$TARANTOOL_3"
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        raise ServerBinaryMissingError(
            f"server kind {kind}: no tarantool executable at {path} (set {variable})"
        )
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        version = parse_version(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ServerBinaryMissingError(
            f"server kind {kind}: {path} --version failed: {exc} (set {variable})"
        ) from exc
    return TarantoolBinary(kind=kind, path=path, version=version)


def tarantool_binary() -> str:
    """Path to the default (2.6) tarantool executable (``$TARANTOOL`` or ``PATH``)."""
    return find_binary("2.6").path


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0); there is an unavoidable window until
    tarantool binds it, so callers retry a failed start with another port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def read_greeting(host: str, port: int, timeout: float = 2.0) -> bytes:
    """Connect with a plain socket and return the 128-byte IPROTO greeting."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        buf = b""
        while len(buf) < GREETING_SIZE:
            chunk = sock.recv(GREETING_SIZE - len(buf))
            if not chunk:
                raise ConnectionError(f"{host}:{port} closed before the full greeting")
            buf += chunk
        return buf


def read_unix_greeting(path: str | os.PathLike[str], timeout: float = 2.0) -> bytes:
    """Like :func:`read_greeting`, over a unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        buf = b""
        while len(buf) < GREETING_SIZE:
            chunk = sock.recv(GREETING_SIZE - len(buf))
            if not chunk:
                raise ConnectionError(f"{path} closed before the full greeting")
            buf += chunk
        return buf


def lua_quote(text: str) -> str:
    """``text`` as a one-line Lua string literal (the console reads lines)."""
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class TarantoolInstance:
    """One tarantool process (see the module docstring for the life cycle).

    Attributes:
        name: A label used in logs and error messages.
        script: The Lua init script.
        host: Always ``127.0.0.1``.
        port: The listen port (kept across restarts).
        work_dir: Data directory (kept across restarts, removed by ``cleanup``).
        env: The ``TT_*`` variables given to the script (without the paths
            this class sets itself).
        user, password: Credentials of the test user.
        binary: The :class:`TarantoolBinary` it runs (default: the 2.6 one).
        version: ``binary.version``, e.g. ``(3, 8, 0)``.
        preexec_fn: Called in the child before ``exec`` (e.g. CPU pinning in
            the benchmarks); None for nothing.
    """

    def __init__(
        self,
        script: Path,
        *,
        name: str = "tarantool",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        work_dir: Path | None = None,
        unix_listen: bool = False,
        binary: TarantoolBinary | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.binary = binary if binary is not None else find_binary("2.6")
        self.preexec_fn = preexec_fn
        self.name = name
        self.unix_listen = unix_listen
        self.script = Path(script)
        self.host = "127.0.0.1"
        self.port = port if port is not None else find_free_port(self.host)
        self._own_work_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="tt-")) if work_dir is None else Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = dict(env or {})
        self.user = TEST_USER
        self.password = TEST_PASSWORD
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._frozen = False

    # ----------------------------------------------------------------- paths
    @property
    def version(self) -> tuple[int, int, int]:
        """The server's ``(major, minor, patch)``."""
        return self.binary.version

    @property
    def listen(self) -> str:
        """The value of ``box.cfg.listen``: ``host:port``, or the unix socket path."""
        if self.unix_listen:
            return str(self.unix_socket)
        return f"{self.host}:{self.port}"

    @property
    def unix_socket(self) -> Path:
        """The IPROTO unix socket (used only when created with ``unix_listen=True``)."""
        return self.work_dir / "iproto.sock"

    @property
    def admin_socket(self) -> Path:
        """Unix socket of the admin console."""
        return self.work_dir / "admin.sock"

    @property
    def ready_file(self) -> Path:
        """Marker the init script writes as its last step."""
        return self.work_dir / "ready"

    @property
    def log_path(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.work_dir / "tarantool.log"

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the process exists (a frozen process is running)."""
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else ("running" if self.is_running() else "stopped")
        version = ".".join(map(str, self.version))
        return f"<TarantoolInstance {self.name} {version} {self.listen} pid={self.pid} {state}>"

    # ------------------------------------------------------------ life cycle
    def _full_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.update(
            {
                "TT_LISTEN": self.listen,
                "TT_WORK_DIR": str(self.work_dir),
                "TT_ADMIN_SOCKET": str(self.admin_socket),
                "TT_READY_FILE": str(self.ready_file),
                # The Lua side exits (and removes its temp dir) if we die.
                "TT_PARENT_PID": str(os.getpid()),
            }
        )
        if self._own_work_dir:
            env["TT_REMOVE_ON_ORPHAN"] = str(self.work_dir)
        return env

    def spawn(self) -> None:
        """Start the process without waiting (see :meth:`wait_ready`)."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running")
        with contextlib.suppress(FileNotFoundError):
            self.ready_file.unlink()
        self._close_log()
        self._log_file = open(self.log_path, "ab")  # closed in _close_log
        self._proc = subprocess.Popen(
            [self.binary.path, str(self.script)],
            cwd=self.work_dir,
            env=self._full_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of pytest does not hit it first
            preexec_fn=self.preexec_fn,
        )
        self._frozen = False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the ready marker exists and the port sends a greeting.

        Raises:
            ServerStartError: the process exited or did not get ready in time;
                the message includes the log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ServerStartError(
                    f"{self.name} exited with code {code} during start-up\n{self.log_tail()}"
                )
            if self.ready_file.exists():
                try:
                    if self.unix_listen:
                        greeting = read_unix_greeting(self.unix_socket)
                    else:
                        greeting = read_greeting(self.host, self.port)
                except OSError:
                    pass
                else:
                    if greeting.startswith(b"Tarantool"):
                        return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} not ready after {timeout} s\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until it is ready; stop it if that fails."""
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if the process is still there after ``grace`` s."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if self._frozen:
                self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        self._proc = None
        self._frozen = False
        self._close_log()

    def kill(self) -> None:
        """SIGKILL at once (a crash: no graceful close of the client sockets)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
        self._proc = None
        self._frozen = False
        self._close_log()

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets open but answers nothing."""
        self._require_running()
        self._signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT: undo :meth:`freeze`."""
        self._require_running()
        self._signal(signal.SIGCONT)
        self._frozen = False

    def restart(self, timeout: float = START_TIMEOUT, *, graceful: bool = True) -> None:
        """Stop (or kill) and start again on the same port and work dir (data survives)."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start(timeout)

    def cleanup(self) -> None:
        """Kill the process and remove the work dir if this object created it."""
        self.kill()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, sig)

    def _require_running(self) -> None:
        if not self.is_running():
            raise RuntimeError(f"{self.name} is not running")

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} log lines of {self.name} ({self.log_path}) ---\n" + "\n".join(
            tail
        )

    # -------------------------------------------------------- admin console
    def admin(self, lua: str, timeout: float = 10.0) -> str:
        """Run a Lua chunk through the admin console; return its YAML answer.

        The chunk may span lines and use ``return``; it runs as a function
        body. The answer is the console's YAML document (``---`` ... ``...``).

        Raises:
            AdminError: the chunk raised (the YAML answer is an ``error`` map).
        """
        line = f"return assert(loadstring({lua_quote(lua)}))()\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.admin_socket))
            self._recv_until(sock, b"\n")  # "Tarantool 2.x (Lua console)"
            self._recv_until(sock, b"\n")  # "type 'help' for interactive help"
            sock.sendall(line.encode())
            answer = self._recv_until(sock, b"\n...\n").decode(errors="replace")
        if answer.startswith("---\n- error:"):
            raise AdminError(f"{self.name}: {answer.strip()}")
        return answer

    def admin_eval(self, lua: str, timeout: float = 10.0) -> list[Any]:
        """Run a Lua chunk through the admin console; return its results.

        The results go through ``json.encode`` on the server and come back as
        a hex string (immune to YAML quoting and folding), so they arrive as
        Python lists/dicts/numbers/strings/None. Values JSON cannot express
        (cdata, functions) come back as strings or fail on the server side.
        """
        wrapped = (
            "local r = {pcall(assert(loadstring(" + lua_quote(lua) + ")))}\n"
            "if not r[1] then error(r[2], 0) end\n"
            "local out = {}\n"
            "for i = 2, table.maxn(r) do out[i - 1] = r[i] end\n"
            "local n = table.maxn(r) - 1\n"
            "local json = require('json').new()\n"
            "json.cfg{encode_use_tostring = true, encode_sparse_convert = true,"
            " encode_invalid_numbers = true}\n"
            "local list = {}\n"
            "for i = 1, n do list[i] = out[i] == nil and json.NULL or out[i] end\n"
            "return 'x' .. string.hex(json.encode(list))"
        )
        answer = self.admin(wrapped, timeout)
        for raw_line in answer.splitlines():
            text = raw_line.strip()
            if text.startswith("- "):
                token = text[2:].strip().strip("'\"")
                if token.startswith("x"):
                    decoded: list[Any] = json.loads(bytes.fromhex(token[1:]).decode())
                    return decoded
        raise AdminError(f"{self.name}: unexpected console answer {answer!r}")

    # ----------------------------------------------------------------- gates
    # Server-side synchronisation instead of sleeps (see define_gates in
    # lua/common.lua): a request calling ``gate_wait(name, ...)`` is held on the
    # server until the test opens the gate; these block the calling thread, so
    # call them through ``trio.to_thread.run_sync`` inside a trio test.

    def gate_arrivals(self, name: str, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` requests are held by (or passed) gate ``name``.

        Raises:
            AdminError: fewer arrived within ``timeout`` seconds.
        """
        (arrived,) = self.admin_eval(
            f"return gate_arrived({lua_quote(name)}, {int(count)}, {float(timeout)})",
            timeout + 5,
        )
        return int(arrived)

    def gate_open(self, name: str) -> int:
        """Open gate ``name``: every held request (and every later one) goes on.

        Returns how many requests had arrived.
        """
        (arrived,) = self.admin_eval(f"return gate_open({lua_quote(name)})")
        return int(arrived)

    def gate_departures(self, name: str, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` requests have left gate ``name`` (their replies are queued)."""
        (left,) = self.admin_eval(
            f"return gate_left({lua_quote(name)}, {int(count)}, {float(timeout)})", timeout + 5
        )
        return int(left)

    @staticmethod
    def _recv_until(sock: socket.socket, terminator: bytes) -> bytes:
        buf = b""
        while not buf.endswith(terminator):
            chunk = sock.recv(4096 if terminator != b"\n" else 1)
            if not chunk:
                raise AdminError(f"admin console closed; got so far {buf!r}")
            buf += chunk
        return buf


class ServerManager:
    """Owns every process a test (or module) starts; :meth:`close` stops them all.

    Args:
        binary: The server every instance it starts runs (default: the 2.6
            one, :func:`find_binary`).
        preexec_fn: Given to every instance it starts (see
            :class:`TarantoolInstance`).
    """

    def __init__(
        self,
        binary: TarantoolBinary | None = None,
        *,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.binary = binary if binary is not None else find_binary("2.6")
        self.preexec_fn = preexec_fn
        self.instances: list[TarantoolInstance] = []

    @property
    def version(self) -> tuple[int, int, int]:
        """The version of the server this manager starts."""
        return self.binary.version

    def start_instance(
        self,
        *,
        script: Path = INSTANCE_LUA,
        name: str | None = None,
        wal_mode: str = "write",
        read_only: bool = False,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        retries: int = 3,
        unix_listen: bool = False,
    ) -> TarantoolInstance:
        """Create (and by default start) a standalone instance.

        Args:
            script: The init script (default ``instance.lua``).
            name: Label in logs; defaults to ``standalone-<n>``.
            wal_mode: ``box.cfg.wal_mode``.
            read_only: Start read-only (the schema is created first).
            env: Extra ``TT_*`` variables for the script.
            start: If False the instance is only created (call ``start()``).
            retries: Attempts with a new port if another process took the
                chosen one in between.
            unix_listen: Listen for IPROTO on ``<work_dir>/iproto.sock``
                instead of a TCP port (``inst.unix_socket``).
        """
        full_env = {"TT_WAL_MODE": wal_mode, "TT_READ_ONLY": "true" if read_only else "false"}
        full_env.update(env or {})
        label = name or f"standalone-{len(self.instances) + 1}"
        for attempt in range(retries):
            inst = TarantoolInstance(
                script,
                name=label,
                env=full_env,
                unix_listen=unix_listen,
                binary=self.binary,
                preexec_fn=self.preexec_fn,
            )
            self.instances.append(inst)
            if not start:
                return inst
            try:
                inst.start()
            except ServerStartError as exc:
                port_taken = "Address already in use" in str(exc)
                if not port_taken or attempt == retries - 1:
                    raise
                continue
            return inst
        raise AssertionError("unreachable")

    def start_replicaset(
        self,
        size: int = 3,
        *,
        wal_mode: str = "write",
        retries: int = 3,
        script: Path = REPLICA_LUA,
        env: Mapping[str, str] | None = None,
        replication_credentials: tuple[str, str] = (REPLICATOR_USER, REPLICATOR_PASSWORD),
        name: str = "replica",
        election: bool = False,
        election_timeout: float = ELECTION_TIMEOUT,
    ) -> Replicaset:
        """Start ``size`` members of one replicaset (member 1 is the master).

        All members are spawned at once (they wait for each other during
        bootstrap), then each is waited for; a replica is ready once it has
        replicated the schema. If a chosen port was taken meanwhile, the whole
        set is discarded and started again on new ports (``retries`` times).

        Args:
            size: Number of members.
            wal_mode: ``box.cfg.wal_mode`` of every member.
            retries: Attempts on new ports when one was taken meanwhile.
            script: The members' init script (default ``replica.lua``; the
                benchmarks pass theirs). It reads ``TT_REPLICATION``,
                ``TT_READ_ONLY``, ``TT_WAL_MODE`` and the variables every
                instance gets, and writes the ready marker last.
            env: Extra variables for every member.
            replication_credentials: ``(user, password)`` in the replication
                URIs (a user the script creates with the replication grant).
            name: Members are labelled ``<name>-1`` .. ``<name>-<size>``.
            election: Raft elections decide the leader (Tarantool 3.x):
                after the usual bootstrap every member becomes an
                ``election_mode='candidate'`` with ``replication_synchro_quorum=2``
                and ``election_timeout``; member 1 is promoted
                (``box.ctl.promote()``) and creates the synchronous space
                ``sync_w`` (id unsigned, name string). Restarts keep the
                election settings. See :meth:`Replicaset.leader`.
            election_timeout: ``box.cfg.election_timeout`` (seconds) with ``election``.
        """
        for attempt in range(retries):
            members = self._spawn_replicaset(
                size, wal_mode, script, dict(env or {}), replication_credentials, name
            )
            try:
                for inst in members:
                    inst.wait_ready()
            except ServerStartError as exc:
                for inst in members:
                    inst.cleanup()
                    self.instances.remove(inst)
                if "Address already in use" not in str(exc) or attempt == retries - 1:
                    raise
                continue
            # Later restarts must not wait for dead peers: one connection is enough;
            # and they run with the steady replication_timeout from the start.
            for inst in members:
                inst.env["TT_QUORUM"] = "1"
                inst.env["TT_CONNECT_TIMEOUT"] = "1"
                del inst.env["TT_BOOT_REPLICATION_TIMEOUT"]
            if election:
                _enable_elections(members, election_timeout)
            return Replicaset(members)
        raise AssertionError("unreachable")

    def _spawn_replicaset(
        self,
        size: int,
        wal_mode: str,
        script: Path,
        env: dict[str, str],
        credentials: tuple[str, str],
        name: str,
    ) -> list[TarantoolInstance]:
        ports = [find_free_port() for _ in range(size)]
        while len(set(ports)) < size:
            ports = [find_free_port() for _ in range(size)]
        user, password = credentials
        uris = [f"{user}:{password}@127.0.0.1:{p}" for p in ports]
        members: list[TarantoolInstance] = []
        for i, port in enumerate(ports, start=1):
            member_env = dict(env)
            member_env.update(
                {
                    "TT_REPLICATION": ",".join(uris),
                    "TT_READ_ONLY": "false" if i == 1 else "true",
                    "TT_WAL_MODE": wal_mode,
                    # Members retry each other every 0.1 s (not 0.5) during
                    # this first, simultaneous bootstrap (see replica.lua).
                    "TT_BOOT_REPLICATION_TIMEOUT": str(BOOT_REPLICATION_TIMEOUT),
                }
            )
            inst = TarantoolInstance(
                script,
                name=f"{name}-{i}",
                port=port,
                env=member_env,
                binary=self.binary,
                preexec_fn=self.preexec_fn,
            )
            self.instances.append(inst)
            members.append(inst)
        for inst in members:
            inst.spawn()
        return members

    def close(self) -> None:
        """Stop every process (SIGCONT first if frozen) and remove the work dirs."""
        errors: list[BaseException] = []
        for inst in self.instances:
            try:
                inst.cleanup()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        self.instances.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> ServerManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Replicaset:
    """A master + replicas started by :meth:`ServerManager.start_replicaset`.

    ``master`` is the member that was last made writable through this object
    (initially member 1); the others are ``replicas``.
    """

    def __init__(self, members: Sequence[TarantoolInstance]) -> None:
        self.instances: list[TarantoolInstance] = list(members)
        self.master: TarantoolInstance = self.instances[0]

    @property
    def replicas(self) -> list[TarantoolInstance]:
        """Every member except the current master."""
        return [i for i in self.instances if i is not self.master]

    @property
    def addrs(self) -> list[dict[str, Any]]:
        """``[{'host': ..., 'port': ...}, ...]`` as ConnectionPool takes them."""
        return [{"host": i.host, "port": i.port} for i in self.instances]

    def __iter__(self) -> Iterator[TarantoolInstance]:
        return iter(self.instances)

    def promote(self, inst: TarantoolInstance) -> None:
        """Make ``inst`` writable (``box.cfg{read_only=false}``) and call it master.

        The previous master is left as it is; demote it too for a clean
        switch-over, or kill it for a failover.
        """
        inst.admin("box.cfg{read_only = false}")
        self.master = inst

    def demote(self, inst: TarantoolInstance) -> None:
        """Make ``inst`` read-only."""
        inst.admin("box.cfg{read_only = true}")

    def switch_master(self, new_master: TarantoolInstance) -> None:
        """Demote the current master (if running) and promote ``new_master``."""
        old = self.master
        if old is not new_master and old.is_running():
            self.demote(old)
        self.promote(new_master)

    def kill_master(self) -> TarantoolInstance:
        """SIGKILL the current master; return it (restart it with ``restart()``)."""
        old = self.master
        old.kill()
        return old

    def restart(
        self, inst: TarantoolInstance, *, read_only: bool | None = None, graceful: bool = True
    ) -> None:
        """Restart a member (also a killed one) in the role it should have.

        ``read_only`` defaults to "not the current master", so a killed old
        master comes back as a replica after :meth:`promote` moved the role,
        instead of as a second writable instance.
        """
        if read_only is None:
            read_only = inst is not self.master
        inst.env["TT_READ_ONLY"] = "true" if read_only else "false"
        if graceful:
            inst.stop()
        else:
            inst.kill()
        inst.start()

    def start_loading(self, inst: TarantoolInstance, seconds: float = 3.0) -> None:
        """Start a stopped member so that it stays in Tarantool's *loading* state.

        The member is spawned with a replication quorum of every member and a
        connect timeout of ``seconds``: while at least one peer is down,
        ``box.cfg`` keeps waiting, and every request (authentication
        included) is refused with ``ER_LOADING`` (116). After ``seconds`` it
        gives up waiting and runs as an ``orphan`` (read-only). Nothing here
        blocks: call ``inst.wait_ready()`` to wait for the end of loading.
        Later restarts use the normal settings again.
        """
        if inst.is_running():
            raise RuntimeError(f"{inst.name} is running; stop or kill it first")
        saved = {k: inst.env.get(k) for k in ("TT_QUORUM", "TT_CONNECT_TIMEOUT")}
        inst.env["TT_QUORUM"] = str(len(self.instances))
        inst.env["TT_CONNECT_TIMEOUT"] = str(seconds)
        try:
            inst.spawn()
        finally:
            for key, value in saved.items():
                if value is None:
                    inst.env.pop(key, None)
                else:
                    inst.env[key] = value

    def leader(self, timeout: float = 10.0) -> TarantoolInstance:
        """The running member that is the writable election leader (waits for one).

        Also makes it :attr:`master`. For replicasets started with ``election=True``.
        """
        deadline = time.monotonic() + timeout
        while True:
            for inst in self.instances:
                if not inst.is_running():
                    continue
                try:
                    state, ro = inst.admin_eval("return box.info.election.state, box.info.ro")
                except (AdminError, OSError):
                    continue
                if state == "leader" and ro is False:
                    self.master = inst
                    return inst
            if time.monotonic() > deadline:
                raise TimeoutError(f"no writable election leader after {timeout} s")
            time.sleep(0.02)

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Block until every running replica has applied the master's vclock."""
        vclock = self.master.admin_eval("return box.info.vclock")[0]
        deadline = time.monotonic() + timeout
        for inst in self.replicas:
            if not inst.is_running():
                continue
            while True:
                theirs = inst.admin_eval("return box.info.vclock")[0]
                if _vclock_ge(theirs, vclock):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{inst.name} vclock {theirs} behind {vclock}")
                time.sleep(0.02)


def _enable_elections(members: Sequence[TarantoolInstance], election_timeout: float) -> None:
    """Turn a bootstrapped replicaset (member 1 writable) into an election one.

    Replicas become voters first, so that member 1 wins its promotion; then
    they become candidates too (read_only off: the election decides). The
    settings go into each member's environment, so restarts keep them.
    """
    first, others = members[0], members[1:]
    for inst in members:
        inst.env["TT_ELECTION_MODE"] = "candidate"
        inst.env["TT_SYNCHRO_QUORUM"] = "2"
        inst.env["TT_ELECTION_TIMEOUT"] = str(election_timeout)
    common = f"replication_synchro_quorum = 2, election_timeout = {election_timeout}"
    for inst in others:
        inst.admin(f"box.cfg{{election_mode = 'voter', {common}}}")
    # promote() refuses until enough peers are connected: retry for a while.
    first.admin(
        f"box.cfg{{election_mode = 'candidate', {common}}} "
        "local deadline = require('clock').monotonic() + 10 "
        "while true do local ok, err = pcall(box.ctl.promote) if ok then break end "
        "if require('clock').monotonic() > deadline then error(err) end "
        "require('fiber').sleep(0.02) end "
        "box.ctl.wait_rw(10)",
        timeout=20,
    )
    for inst in others:
        inst.admin(f"box.cfg{{election_mode = 'candidate', read_only = false, {common}}}")
    first.admin(
        "box.schema.space.create('sync_w', {is_sync = true, if_not_exists = true, "
        "format = {{name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'}}}) "
        "box.space.sync_w:create_index('primary', {parts = {'id'}, if_not_exists = true})"
    )
    rs = Replicaset(members)
    rs.wait_replicated()


def _vclock_ge(theirs: Any, ours: Any) -> bool:
    """True if vclock ``theirs`` includes every component of ``ours``."""

    def as_map(v: Any) -> dict[int, int]:
        if isinstance(v, dict):
            return {int(k): int(x) for k, x in v.items()}
        if isinstance(v, list):
            return {i + 1: int(x) for i, x in enumerate(v) if x is not None}
        return {}

    t, o = as_map(theirs), as_map(ours)
    # Component 0 counts local (unreplicated) rows: ignore it.
    return all(t.get(k, 0) >= n for k, n in o.items() if k != 0)


def connect_to(inst: TarantoolInstance, **kwargs: Any) -> Any:
    """``trio_tarantool.connect()`` to ``inst`` as the test user (keyword arguments override)."""
    from trio_tarantool import connect

    kwargs.setdefault("user", inst.user)
    kwargs.setdefault("password", inst.password)
    return connect(inst.host, inst.port, **kwargs)
