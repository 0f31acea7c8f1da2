"""Start and stop the Tarantool instances the benchmarks run against.

The processes are run by the test suite's process manager
(``tests/real/_servers.py``: :class:`ServerManager`, one manager for the tests
and the benchmarks); this module only says what the benchmarks need: their
init script (``bench/instance.lua``), the data set, CPU pinning, and that the
servers die with the harness. Every server is a child process with its own
temporary work directory, killed (and its directory removed) when the ``with``
block that started it ends, whatever the reason (error, Ctrl-C, SIGTERM). On
Linux the children also get ``PR_SET_PDEATHSIG`` so that even a SIGKILL of the
harness does not leave servers running.

Roles and readiness go through the Lua admin console on a unix socket
(``inst.admin(lua)``), so the harness needs no Tarantool client library of its
own: it must work before any of the clients under test does.

The server kind is ``$BENCH_SERVER`` (``2.6``, the default, or ``3.8``; the
binaries are found as in the tests: ``$TARANTOOL``, ``$TARANTOOL_3``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.real._servers import ServerManager, TarantoolBinary, TarantoolInstance, find_binary

__all__ = ["Cluster", "TarantoolInstance", "demote", "promote", "replicaset", "single"]

BENCH_DIR = Path(__file__).resolve().parent
INIT_SCRIPT = BENCH_DIR / "instance.lua"
USER = "bench"
PASSWORD = "bench"
ROWS = 10_000
"""Rows pre-filled into space ``bench`` (keys 1..ROWS, value ``value-%08d``)."""


def server_binary() -> TarantoolBinary:
    """The server the benchmarks run: kind ``$BENCH_SERVER`` (default ``2.6``)."""
    return find_binary(os.environ.get("BENCH_SERVER") or "2.6")


def tarantool_binary() -> str:
    """Path of the tarantool executable the benchmarks run."""
    return server_binary().path


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


CLIENT_CGROUP: Path | None = None
"""The cgroup whose CPU quota the measured clients run under (None: no limit);
see :func:`limit_client_cpu`."""
_CGROUP_NAME = "trio_tarantool_bench_clients"


@contextlib.contextmanager
def limit_client_cpu(fraction: float, root: Path = Path("/sys/fs/cgroup")) -> Iterator[str]:
    """Hold every measured client to ``fraction`` of one CPU while the block runs.

    A client-bound run, as on a slower CPU: the servers keep their full speed,
    and a client's req/s becomes its quota over its CPU per request, so two
    clients' req/s compare as the inverse of their CPU per request (issue 11:
    trio_tarantool against asynctnt on a CPU ~2.5x slower than this one). A
    cgroup with a CFS quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``);
    needs root. Yields a one-line description for the report; the cgroup is
    removed afterwards. Raises OSError when the cgroup cannot be made.
    """
    global CLIENT_CGROUP
    if not 0.01 <= fraction <= 1.0:
        raise ValueError(f"--client-cpu must be between 0.01 and 1, got {fraction}")
    period = 100_000
    quota = int(period * fraction)
    if (root / "cgroup.controllers").exists():  # v2: one hierarchy
        group = root / _CGROUP_NAME
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} {period}")
    else:  # v1: the cpu controller's own hierarchy
        group = root / "cpu" / _CGROUP_NAME
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    CLIENT_CGROUP = group
    try:
        yield (f"clients held to {fraction:.0%} of one CPU (cgroup CPU quota {quota} µs per "
               f"{period} µs): a client-bound run, as on a slower CPU")  # fmt: skip
    finally:
        CLIENT_CGROUP = None
        with contextlib.suppress(OSError):  # (a straggler still in it keeps it; harmless)
            group.rmdir()


def client_preexec() -> None:
    """preexec hook for measured clients: pin them (if pinning), put them under
    the CPU quota (if limited), and die with us."""
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)
    if CLIENT_CGROUP is not None:
        (CLIENT_CGROUP / "cgroup.procs").write_text(str(os.getpid()))
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


@dataclass
class Cluster:
    """A set of instances started together; ``instances[0]`` is the first master."""

    instances: list[TarantoolInstance] = field(default_factory=list)

    @property
    def addrs(self) -> list[dict[str, object]]:
        """Addresses of all instances, master first."""
        return [{"host": i.host, "port": i.port} for i in self.instances]


@contextlib.contextmanager
def _cluster(n: int, *, wal_mode: str) -> Iterator[Cluster]:
    with ServerManager(server_binary(), preexec_fn=_server_preexec) as manager:
        env = {"BENCH_ROWS": str(ROWS)}
        if n == 1:
            inst = manager.start_instance(
                script=INIT_SCRIPT, name="bench-1", wal_mode=wal_mode, env=env
            )
            yield Cluster([inst])
        else:
            rs = manager.start_replicaset(
                n,
                wal_mode=wal_mode,
                script=INIT_SCRIPT,
                env=env,
                replication_credentials=(USER, PASSWORD),
                name="bench",
            )
            yield Cluster(list(rs.instances))


def single() -> contextlib.AbstractContextManager[Cluster]:
    """One instance with ``wal_mode='none'`` (the single-connection workloads)."""
    return _cluster(1, wal_mode="none")


def replicaset() -> contextlib.AbstractContextManager[Cluster]:
    """Three instances on loopback: a master and two read-only replicas, full mesh."""
    return _cluster(3, wal_mode="write")


def promote(inst: TarantoolInstance) -> None:
    """Make ``inst`` writable."""
    inst.admin("box.cfg{read_only = false}")


def demote(inst: TarantoolInstance) -> None:
    """Make ``inst`` read-only."""
    inst.admin("box.cfg{read_only = true}")
