"""Self-tests of the process infrastructure in ``_servers.py`` (no client library used)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.real._servers import (
    AdminError,
    Replicaset,
    ServerBinaryMissingError,
    ServerManager,
    ServerStartError,
    TarantoolBinary,
    TarantoolInstance,
    find_binary,
    parse_version,
    read_greeting,
    read_unix_greeting,
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists" for kill(0): check its state.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_greeting_and_schema(tarantool: TarantoolInstance) -> None:
    greeting = read_greeting(tarantool.host, tarantool.port)
    assert len(greeting) == 128
    first_line = greeting[:64].decode()
    # The greeting names the server's own version: "Tarantool 2.6.0 (Binary) <uuid>"
    # on Debian's 2.6 (whose --version says 2.6.0-0-g47aa4e01e), "Tarantool 3.8.0
    # (Binary) <uuid>" on the 3.8 build: the binary's, not something the client sends.
    major, minor, patch = tarantool.version
    assert first_line.startswith(f"Tarantool {major}.{minor}.{patch} (Binary) ")
    ro, tester_id, funcs = tarantool.admin_eval(
        "local f = {} for _, t in box.space._func:pairs() do f[#f + 1] = t.name end "
        "return box.info.ro, box.space.tester.id, f"
    )
    assert ro is False
    assert tester_id == 512
    assert {"echo", "whoami", "push_n", "sleep", "raise_error", "decimal_uuid", "ro_set"} <= set(
        funcs
    )


def test_admin_console_errors_and_values(tarantool: TarantoolInstance) -> None:
    assert tarantool.admin_eval("return 1, nil, 'two', {3}") == [1, None, "two", [3]]
    assert tarantool.admin_eval("return echo(1, 'a')") == [1, "a"]
    with pytest.raises(AdminError, match="boom"):
        tarantool.admin("error('boom')")
    yaml = tarantool.admin("return 'multi'\n")
    assert yaml.startswith("---\n") and "multi" in yaml


def test_stop_kill_and_cleanup(server_manager: ServerManager) -> None:
    inst = server_manager.start_instance()
    pid = inst.pid
    assert pid is not None and _pid_alive(pid)
    inst.stop()
    assert not _pid_alive(pid)
    assert not _port_open(inst.host, inst.port)
    inst.start()
    pid2 = inst.pid
    assert pid2 is not None and pid2 != pid
    inst.kill()
    assert not _pid_alive(pid2)
    work_dir = inst.work_dir
    server_manager.close()
    assert not work_dir.exists()


def test_restart_keeps_data_and_port(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    inst = tarantool_factory()
    port = inst.port
    inst.admin("box.space.tester:insert{1, 'kept'}")
    inst.restart(graceful=False)
    assert inst.port == port
    assert inst.admin_eval("return box.space.tester:get(1)") == [[1, "kept"]]


def test_freeze_and_thaw(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    inst = tarantool_factory()
    inst.freeze()
    with socket.create_connection((inst.host, inst.port), timeout=2) as sock:
        # The kernel accepts the connection but the frozen process sends nothing.
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(128)
        inst.thaw()
        sock.settimeout(5)
        data = b""
        while len(data) < 128:
            chunk = sock.recv(128 - len(data))
            assert chunk
            data += chunk
        assert data.startswith(b"Tarantool")


def test_frozen_instance_is_stopped_by_manager(server_manager: ServerManager) -> None:
    inst = server_manager.start_instance()
    pid = inst.pid
    assert pid is not None
    inst.freeze()
    server_manager.close()
    assert not _pid_alive(pid)


def test_read_only_start(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    inst = tarantool_factory(read_only=True, wal_mode="none")
    assert inst.admin_eval("return box.info.ro, box.cfg.wal_mode") == [True, "none"]
    with pytest.raises(AdminError, match="read-only"):
        inst.admin("box.space.tester:insert{1, 'x'}")


def test_start_failure_shows_log(server_manager: ServerManager) -> None:
    inst = server_manager.start_instance(env={"TT_WAL_MODE": "bogus"}, start=False)
    with pytest.raises(ServerStartError, match="wal_mode"):
        inst.start(timeout=10)
    assert not inst.is_running()


def test_processes_gone_after_test_failure(server_kind: TarantoolBinary) -> None:
    pids: list[int] = []
    with (
        pytest.raises(RuntimeError, match="simulated test failure"),
        ServerManager(server_kind) as manager,
    ):
        for _ in range(2):
            pid = manager.start_instance().pid
            assert pid is not None
            pids.append(pid)
        raise RuntimeError("simulated test failure")
    assert pids and not any(_pid_alive(p) for p in pids)


def test_replicaset_roles_and_replication(replicaset: Replicaset) -> None:
    master, r2, r3 = replicaset.instances
    assert replicaset.master is master
    for inst, expect_ro in ((master, False), (r2, True), (r3, True)):
        ro, has_tester, listen, timeout = inst.admin_eval(
            "return box.info.ro, box.space.tester ~= nil, box.cfg.listen, box.cfg.replication_timeout"
        )
        # The short bootstrap replication_timeout is gone once the set is up.
        assert (ro, has_tester, listen, timeout) == (expect_ro, True, inst.listen, 0.5)
    master.admin("box.space.tester:insert{7, 'replicated'}")
    replicaset.wait_replicated()
    for inst in replicaset.replicas:
        assert inst.admin_eval("return box.space.tester:get(7)") == [[7, "replicated"]]
    ids = sorted(inst.admin_eval("return box.info.id")[0] for inst in replicaset)
    assert ids == [1, 2, 3]


def test_replicaset_failover_and_restart(replicaset: Replicaset) -> None:
    old = replicaset.kill_master()
    assert not old.is_running()
    new = replicaset.replicas[0]
    replicaset.promote(new)
    assert replicaset.master is new
    assert new.admin_eval("return box.info.ro") == [False]
    new.admin("box.space.tester:insert{8, 'after failover'}")
    # The old master comes back read-only (no longer the master) and catches up.
    replicaset.restart(old)
    replicaset.wait_replicated()
    assert old.admin_eval(
        "return box.info.ro, box.space.tester:get(8), box.cfg.replication_timeout"
    ) == [True, [8, "after failover"], 0.5]


def test_unix_socket_listen(tarantool_factory: Callable[..., TarantoolInstance]) -> None:
    inst = tarantool_factory(unix_listen=True)
    assert read_unix_greeting(inst.unix_socket).startswith(b"Tarantool")
    assert inst.admin_eval("return box.cfg.listen") == [str(inst.unix_socket)]


def test_instance_exits_when_the_runner_dies(server_kind: TarantoolBinary) -> None:
    """A killed pytest runs no finalizer: the instance notices and exits by itself."""
    code = (
        "import sys, time\n"
        "from tests.real._servers import ServerManager, find_binary\n"
        f"inst = ServerManager(find_binary({server_kind.kind!r})).start_instance()\n"
        "print(inst.pid, inst.work_dir, flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    with runner:
        try:
            assert runner.stdout is not None
            pid_text, work_dir = runner.stdout.readline().split()
            pid = int(pid_text)
            assert _pid_alive(pid)
        finally:
            runner.kill()
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid)
    assert not Path(work_dir).exists()


# ------------------------------------------------------------- server kinds


def test_instance_knows_its_binary_and_version(
    server_kind: TarantoolBinary, tarantool: TarantoolInstance
) -> None:
    """The version parsed from ``--version`` is the one the running server reports."""
    assert tarantool.binary == server_kind
    (box_version,) = tarantool.admin_eval("return box.info.version")
    assert parse_version(f"Tarantool {box_version}") == tarantool.version
    assert ".".join(map(str, tarantool.version)) in repr(tarantool)


def test_version_dependent_box_cfg(tarantool: TarantoolInstance) -> None:
    """common.version_cfg(): no feedback daemon anywhere; MVCC (for streams) on 3.x."""
    feedback, mvcc = tarantool.admin_eval(
        "return box.cfg.feedback_enabled, box.cfg.memtx_use_mvcc_engine == true"
    )
    assert feedback is False
    # 2.6.0 has no such option (box.cfg refuses it), so it stays off there.
    assert mvcc is (tarantool.version >= (3, 0))


def test_replicaset_members_run_the_managers_binary(
    server_kind: TarantoolBinary, replicaset: Replicaset
) -> None:
    for inst in replicaset:
        assert inst.binary == server_kind
        (box_version,) = inst.admin_eval("return box.info.version")
        assert parse_version(f"Tarantool {box_version}") == server_kind.version


def test_parse_version() -> None:
    assert parse_version("Tarantool 3.8.0-0-gdce7be8a79\nTarget: Linux") == (3, 8, 0)
    assert parse_version("Tarantool 2.6.0-0-g47aa4e01e") == (2, 6, 0)
    with pytest.raises(ValueError, match=r"no 'Tarantool X\.Y\.Z'"):
        parse_version("tt 1.0")


def test_missing_binary_is_reported_with_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-tarantool"
    monkeypatch.setenv("TARANTOOL_3", str(missing))
    find_binary.cache_clear()
    try:
        with pytest.raises(ServerBinaryMissingError, match=r"\$TARANTOOL_3") as info:
            find_binary("3.8")
        assert str(missing) in str(info.value)
    finally:
        monkeypatch.undo()
        find_binary.cache_clear()


def _run_greeting_test_without_3x(ci: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the 3.8 variant of one test in a child pytest whose 3.x binary is missing."""
    env = dict(os.environ)
    env["TARANTOOL_3"] = str(tmp_path / "no-such-tarantool")
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            "tests/real/test_servers.py::test_greeting_and_schema[3.8]",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_3x_binary_skips_with_a_reason_outside_ci(tmp_path: Path) -> None:
    result = _run_greeting_test_without_3x(False, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "no tarantool executable at" in result.stdout
    assert "TARANTOOL_3" in result.stdout


def test_missing_3x_binary_fails_the_run_in_ci(tmp_path: Path) -> None:
    result = _run_greeting_test_without_3x(True, tmp_path)
    assert result.returncode != 0, result.stdout
    assert "CI must run the 3.8 variants" in result.stdout
    assert "skipped" not in result.stdout


def test_gate_holds_requests_until_opened(tarantool: TarantoolInstance) -> None:
    """gate_wait() calls are held on the server; the test sees them arrive and leave."""
    gate = "self-test"
    results: list[str] = []
    holders = [
        threading.Thread(
            target=lambda n=n: results.append(tarantool.admin(f"return gate_wait('{gate}', {n})"))
        )
        for n in (101, 102)
    ]
    for holder in holders:
        holder.start()
    try:
        assert tarantool.gate_arrivals(gate, 2) == 2
        with pytest.raises(AdminError, match="0 of 1 requests left"):
            tarantool.gate_departures(gate, 1, timeout=0.2)
        assert results == []
    finally:
        assert tarantool.gate_open(gate) == 2
        for holder in holders:
            holder.join(10)
    assert tarantool.gate_departures(gate, 2) == 2
    assert sorted(results) == ["---\n- 101\n...\n", "---\n- 102\n...\n"]
    # An open gate holds nobody.
    assert tarantool.admin_eval(f"return gate_wait('{gate}', 'late')") == ["late"]


@pytest.mark.min_server_version(3, 0)
def test_min_server_version_marker_keeps_only_newer_kinds(
    request: pytest.FixtureRequest, tarantool: TarantoolInstance
) -> None:
    """The marker leaves out the 2.6 variant (not generated, not skipped)."""
    assert tarantool.version >= (3, 0)
    assert request.node.name == "test_min_server_version_marker_keeps_only_newer_kinds[3.8]"
