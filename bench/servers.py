"""Start and stop the Tarantool instances the benchmarks run against.

The harness owns every server it starts: each one is a child process with its own
temporary work directory, killed (and its directory removed) when the ``with`` block
that started it ends, whatever the reason (error, Ctrl-C, SIGTERM). On Linux the
children also get ``PR_SET_PDEATHSIG`` so that even a SIGKILL of the harness does
not leave servers running.

Roles and readiness are driven through the Lua admin console on a unix socket
(a line-based text protocol), so the harness needs no Tarantool client library of
its own: it must work before any of the clients under test does.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
INIT_SCRIPT = BENCH_DIR / "instance.lua"
USER = "bench"
PASSWORD = "bench"
ROWS = 10_000
"""Rows pre-filled into space ``bench`` (keys 1..ROWS, value ``value-%08d``)."""


def tarantool_binary() -> str:
    """Return the tarantool executable to use (``$TARANTOOL`` or the one on PATH)."""
    exe = os.environ.get("TARANTOOL") or shutil.which("tarantool")
    if not exe:
        raise RuntimeError("tarantool not found: install it or set $TARANTOOL")
    return exe


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expected_value(key: int) -> str:
    """The value stored under ``key`` in space ``bench`` (used to check replies)."""
    return f"value-{key:08d}"


SERVER_CPUS: set[int] | None = None
"""CPUs the Tarantool servers are pinned to (None: not pinned); see ``pin_cpus``."""
CLIENT_CPUS: set[int] | None = None
"""CPUs the measured client processes are pinned to (None: not pinned)."""


def pin_cpus() -> bool:
    """Split the CPUs: servers on the last one, clients on the others.

    On a small machine the scheduler moving client and server between cores (and
    onto each other's core) is the main source of run-to-run noise in the latency
    bound sequential runs; pinning gives every client the same placement. Returns
    False (and pins nothing) with fewer than 2 usable CPUs.
    """
    global SERVER_CPUS, CLIENT_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return False
    SERVER_CPUS, CLIENT_CPUS = {cpus[-1]}, set(cpus[:-1])
    return True


def client_preexec() -> None:
    """preexec hook for measured clients: pin them (if pinning) and die with us."""
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)
    _die_with_parent()


def _server_preexec() -> None:
    if SERVER_CPUS:
        os.sched_setaffinity(0, SERVER_CPUS)
    _die_with_parent()


def _die_with_parent() -> None:
    """preexec hook: ask the kernel to SIGKILL the child when the harness dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the harness, so every
    ``with`` block that started servers stops them. SIGINT is set explicitly because
    a process started in the background by a non-interactive shell inherits it as
    ignored, and Python then never raises KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


class ConsoleError(RuntimeError):
    """The admin console did not answer as expected."""


def console_eval(sock_path: str, lua: str, timeout: float = 5.0) -> str:
    """Run one line of Lua on the admin console and return its YAML reply.

    The console answers every line with a YAML document ending in ``...``.
    """
    if "\n" in lua:
        raise ValueError("the console takes one line at a time")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        buf = b""
        while buf.count(b"\n") < 2:  # two greeting lines
            chunk = s.recv(4096)
            if not chunk:
                raise ConsoleError("console closed during greeting")
            buf += chunk
        s.sendall(lua.encode() + b"\n")
        reply = b""
        while not (reply.endswith(b"\n...\n") or reply == b"---\n...\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConsoleError(f"console closed while running {lua!r}")
            reply += chunk
        return reply.decode()


@dataclass
class Instance:
    """One running tarantool process."""

    name: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> str:
        """Path of the admin console socket."""
        return str(self.workdir / "admin.sock")

    @property
    def addr(self) -> dict[str, object]:
        """Address in the ``{'host': ..., 'port': ...}`` form the pools take."""
        return {"host": "127.0.0.1", "port": self.port}

    def eval(self, lua: str, timeout: float = 5.0) -> str:
        """Run one line of Lua on this instance's console."""
        return console_eval(self.admin, lua, timeout)

    def is_alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the instance's log, for error messages."""
        try:
            text = (self.workdir / "tarantool.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """A set of instances started together; ``instances[0]`` is the first master."""

    instances: list[Instance] = field(default_factory=list)

    @property
    def addrs(self) -> list[dict[str, object]]:
        """Addresses of all instances, master first."""
        return [i.addr for i in self.instances]


def _spawn(inst: Instance, *, wal_mode: str, read_only: bool, replication: list[str]) -> None:
    env = dict(os.environ)
    env.update(
        BENCH_LISTEN=f"127.0.0.1:{inst.port}",
        BENCH_ADMIN=inst.admin,
        BENCH_WAL_MODE=wal_mode,
        BENCH_READ_ONLY="true" if read_only else "false",
        BENCH_REPLICATION=",".join(replication),
        BENCH_ROWS=str(ROWS),
        BENCH_INSTANCE=inst.name,
    )
    log = open(inst.workdir / "tarantool.log", "wb")  # closed below; the child keeps its copy
    try:
        inst.proc = subprocess.Popen(
            [tarantool_binary(), str(INIT_SCRIPT)],
            cwd=inst.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_server_preexec,
            # Own process group: a Ctrl-C in the terminal reaches the harness, which
            # then stops the servers in order (and measures nothing half-dead).
            start_new_session=True,
        )
    finally:
        log.close()


def _wait_ready(inst: Instance, check: str, deadline: float) -> None:
    """Poll the console until the Lua expression ``check`` returns true."""
    last = ""
    while time.monotonic() < deadline:
        if not inst.is_alive():
            raise RuntimeError(f"{inst.name} exited during start-up:\n{inst.log_tail()}")
        if os.path.exists(inst.admin):
            try:
                last = inst.eval(f"return {check}")
                if "- true" in last:
                    return
            except (OSError, ConsoleError) as exc:
                last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{inst.name} not ready ({check}): {last}\n{inst.log_tail()}")


@contextlib.contextmanager
def _cluster(n: int, *, wal_mode: str, timeout: float = 30.0) -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="trio-tarantool-bench-"))
    cluster = Cluster()
    try:
        for k in range(n):
            wd = root / f"i{k}"
            wd.mkdir()
            cluster.instances.append(Instance(f"bench-{k}", free_port(), wd))
        peers = (
            [f"{USER}:{PASSWORD}@127.0.0.1:{i.port}" for i in cluster.instances] if n > 1 else []
        )
        for k, inst in enumerate(cluster.instances):
            _spawn(inst, wal_mode=wal_mode, read_only=k > 0, replication=peers)
        deadline = time.monotonic() + timeout
        ready = (
            f"box.info.status == 'running' and box.space.bench ~= nil"
            f" and box.space.bench:len() == {ROWS} and box.space.bench_w ~= nil"
        )
        for inst in cluster.instances:
            _wait_ready(inst, ready, deadline)
        yield cluster
    finally:
        for inst in cluster.instances:
            inst.kill(signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def single(timeout: float = 30.0) -> contextlib.AbstractContextManager[Cluster]:
    """One instance with ``wal_mode='none'`` (the single-connection workloads)."""
    return _cluster(1, wal_mode="none", timeout=timeout)


def replicaset(timeout: float = 30.0) -> contextlib.AbstractContextManager[Cluster]:
    """Three instances on loopback: a master and two read-only replicas, full mesh."""
    return _cluster(3, wal_mode="write", timeout=timeout)


def promote(inst: Instance) -> None:
    """Make ``inst`` writable."""
    inst.eval("box.cfg{read_only = false}")


def demote(inst: Instance) -> None:
    """Make ``inst`` read-only."""
    inst.eval("box.cfg{read_only = true}")
