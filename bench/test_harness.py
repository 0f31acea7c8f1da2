"""Tests of the benchmark harness itself: ``.venv/bin/python -m pytest bench``.

They check what the numbers rest on: every request is issued exactly once, replies
are really checked, statistics and tables are computed from the runs given, the
docs are rewritten only between their markers, and servers never outlive the harness.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bench import machine, report, servers
from bench.__main__ import Run, plan_pool, plan_single, rerender, results_markdown, smoke_failures
from bench.workload import (
    WORKLOADS,
    Meter,
    Tally,
    check,
    cpu_seconds,
    key_of,
    replace_tuple,
    task_indices,
)


@pytest.mark.parametrize("tasks", [1, 3, 100, 1000])
@pytest.mark.parametrize("n", [0, 1, 999, 1000, 20_001])
def test_tasks_split_every_request_exactly_once(tasks: int, n: int) -> None:
    seen = [i for t in range(tasks) for i in task_indices(t, tasks, n)]
    assert sorted(seen) == list(range(n))


def test_keys_are_distinct_across_a_window_of_rows() -> None:
    window = [key_of(i) for i in range(500, 500 + servers.ROWS)]
    assert len(set(window)) == servers.ROWS
    assert min(window) == 1 and max(window) == servers.ROWS


@pytest.mark.parametrize("workload", ["select", "call", "sql"])
def test_read_replies_are_checked_against_the_key(workload: str) -> None:
    good = [[key_of(7), servers.expected_value(key_of(7))]]
    assert check(workload, 7, good)
    assert not check(workload, 7, [[key_of(8), servers.expected_value(key_of(8))]])
    assert not check(workload, 7, [])
    assert not check(workload, 7, good * 2)
    assert not check(workload, 7, None)


def test_replace_reply_must_echo_its_own_tuple() -> None:
    assert check("replace", 12, [replace_tuple(12)])
    assert not check("replace", 12, [replace_tuple(13)])
    assert not check("replace", 12, [[key_of(12), "r13"]])


def test_plans_cover_every_client_and_keep_sync_sequential() -> None:
    clients = ["trio_tarantool", "floor", "asynctnt", "asynctnt+uvloop", "tarantool-python"]
    cases = plan_single(clients, list(WORKLOADS), [1, 100, 1000], 10, 20)
    assert len(cases) == len(WORKLOADS) * 3
    for case in cases:
        names = [r.client for r in case]
        assert ("tarantool-python" in names) == (case[0].tasks == 1)
        assert ("floor" in names) == (case[0].workload != "sql")  # the floor has no SQL
        assert all(r.n == (10 if r.tasks == 1 else 20) for r in case)
    pool = plan_pool(clients, True, 50)
    assert [[(r.client, r.threads) for r in c] for c in pool] == [
        [
            ("trio_tarantool-pool", 0),
            ("trio_tarantool", 0),
            ("tarantool-python-pool", 1),
            ("tarantool-python-pool", 8),
        ]
    ] * 3


def test_pool_cases_run_one_connection_to_the_master_beside_the_pool() -> None:
    clients = ["trio_tarantool", "tarantool-python"]
    cases = plan_pool(clients, True, 50)
    assert [(c[0].workload, c[0].mode) for c in cases] == [
        ("select", "ANY"),
        ("select", "PREFER_RO"),
        ("replace", "RW"),
    ]
    addrs = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    for case in cases:
        pool, one = case[0], case[1]
        assert (one.client, one.tasks, one.n, one.mode) == ("trio_tarantool", 100, 50, pool.mode)
        assert (pool.tasks, pool.n, pool.instance) == (100, 50, None)
        argv = one.argv(addrs, 5.0)
        assert [argv[k + 1] for k, a in enumerate(argv) if a == "--addr"] == addrs[:1]
        assert argv[argv.index("--mode") + 1] == pool.mode
        pool_argv = pool.argv(addrs, 5.0)
        assert [pool_argv[k + 1] for k, a in enumerate(pool_argv) if a == "--addr"] == addrs
    # The row is the pool's baseline: only beside our pool, only if trio_tarantool is wanted.
    names = {r.client for c in plan_pool(["tarantool-python"], True, 50) for r in c}
    assert names == {"trio_tarantool-pool", "tarantool-python-pool"}
    names = {r.client for c in plan_pool(clients, False, 50) for r in c}
    assert names == {"tarantool-python-pool"}
    assert plan_pool(["trio_tarantool"], False, 50) == []


def test_worker_labels_the_one_connection_run_with_the_pool_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import worker

    seen: list[argparse.Namespace] = []

    def fake_run_trio(args: argparse.Namespace, tally: Tally) -> None:
        seen.append(args)
        tally.record("replace", 0, [replace_tuple(0)])
        tally.record("replace", 1, [replace_tuple(2)])  # a wrong answer is counted
        tally.elapsed = 1.0

    monkeypatch.setattr(worker, "run_trio", fake_run_trio)
    argv = Run("trio_tarantool", "replace", 100, 2, mode="RW", instance=0).argv(
        ["127.0.0.1:7", "127.0.0.1:8", "127.0.0.1:9"], 5.0
    )
    worker.main(argv[3:])  # after "python -m bench.worker"
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["client"], out["mode"], out["tasks"], out["ok"], out["wrong"]) == (
        "trio_tarantool",
        "RW",
        100,
        1,
        1,
    )
    assert [a.addr for a in seen] == [["127.0.0.1:7"]]
    assert len(smoke_failures([out])) == 1  # our wrong answer fails the smoke run
    # A single-connection run has no mode; a pool run defaults to ANY.
    monkeypatch.setattr(worker, "run_trio_pool", fake_run_trio)
    for client, mode in (("trio_tarantool", ""), ("trio_tarantool-pool", "ANY")):
        worker.main(["--client", client, "--workload", "ping", "--n", "1", "--addr", "h:1"])
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mode"] == mode


def _run(client: str, rps: float, rnd: int, **kw: float) -> dict[str, object]:
    return {
        "cpu_us": kw.get("cpu_us", 0.0),
        "client": client,
        "workload": "select",
        "tasks": 100,
        "mode": "",
        "threads": 0,
        "rps": rps,
        "ok": 10,
        "wrong": kw.get("wrong", 0),
        "errors": kw.get("errors", 0),
        "hung": 0,
        "round": rnd,
    }


def test_summary_is_median_min_max_and_skips_failed_runs() -> None:
    runs = [_run("asynctnt", v, k) for k, v in enumerate([30.0, 10.0, 20.0])]
    runs.append(
        {"client": "asynctnt", "workload": "select", "tasks": 100, "failed": True, "why": "x"}
    )
    s = report.group(runs)[("select", "asynctnt", 100, "", 0)]
    assert (s.median, s.low, s.high, s.rounds, s.failed) == (20.0, 10.0, 30.0, 3, 1)


def test_table_ratio_is_ours_over_peer() -> None:
    runs = [_run("trio_tarantool", 30.0, 0), _run("asynctnt", 20.0, 0)]
    table = report.single_table(runs, ["select"], [100], ["trio_tarantool", "asynctnt"])
    row = next(ln for ln in table.splitlines() if ln.startswith("| select"))
    assert row.rstrip(" |").endswith("1.50x")


def test_summary_is_the_geometric_mean_of_ratios() -> None:
    runs = [_run("trio_tarantool", 40.0, 0), _run("asynctnt", 20.0, 0)]
    other = [
        dict(r, workload="ping")
        for r in (_run("trio_tarantool", 10.0, 0), _run("asynctnt", 20.0, 0))
    ]
    table = report.ratio_summary(
        runs + other, ["select", "ping"], [100], ["trio_tarantool", "asynctnt"]
    )
    assert "| 100 tasks | 1.00x; 1.00x (2 workloads) |" in table
    table = report.ratio_summary(runs, ["select", "ping"], [100], ["trio_tarantool", "asynctnt"])
    assert "| 100 tasks | 2.00x; 2.00x (1 workloads) |" in table


def test_smoke_fails_on_our_wrong_answers_but_reports_peers_only() -> None:
    assert smoke_failures([_run("asynctnt", 1.0, 0, wrong=3)]) == []
    assert len(smoke_failures([_run("trio_tarantool", 1.0, 0, wrong=1)])) == 1
    assert len(smoke_failures([_run("trio_tarantool", 1.0, 0, errors=1)])) == 1
    failed = {"client": "asynctnt", "workload": "ping", "tasks": 1, "failed": True, "why": "boom"}
    assert len(smoke_failures([failed])) == 1
    nothing = dict(_run("tarantool-python-pool", 0.0, 0), ok=0, errors=5)
    assert len(smoke_failures([nothing])) == 1
    assert smoke_failures([dict(nothing, errors=0, hung=8)]) == []
    assert len(smoke_failures([dict(nothing, client="trio_tarantool-pool", errors=0, hung=8)])) == 1


def _pool_run(
    client: str, mode: str, rps: float, cpu_us: float, rnd: int, **kw: int
) -> dict[str, object]:
    return dict(
        _run(client, rps, rnd, cpu_us=cpu_us),
        workload="replace" if mode == "RW" else "select",
        mode=mode,
        tasks=kw.get("tasks", 100),
        threads=kw.get("threads", 0),
        wrong=kw.get("wrong", 0),
    )


def _pool_raw() -> list[dict[str, object]]:
    """Three rounds of the RW case and one of select ANY: pool, one connection, reference."""
    runs = []
    for rnd, (pool, one) in enumerate([(90.0, 100.0), (80.0, 120.0), (95.0, 110.0)]):
        runs.append(_pool_run("trio_tarantool-pool", "RW", pool, 22.0 + rnd, rnd))
        runs.append(_pool_run("trio_tarantool", "RW", one, 20.0, rnd))
        runs.append(_pool_run("tarantool-python-pool", "RW", 45.0, 100.0, rnd, tasks=1, threads=8))
    runs.append(_pool_run("trio_tarantool-pool", "ANY", 95.0, 10.5, 0))
    runs.append(_pool_run("trio_tarantool", "ANY", 100.0, 10.0, 0, wrong=2))
    return runs


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_pool_table_shows_the_one_connection_row_beside_the_pool() -> None:
    rows = [_cells(ln) for ln in report.pool_table(_pool_raw()).splitlines()[2:]]
    # Per case: the pool, then one connection, then the reference by threads.
    assert [r[:4] for r in rows] == [
        ["select", "ANY", "trio_tarantool pool", "100 trio tasks"],
        ["select", "ANY", "trio_tarantool one connection", "100 trio tasks"],
        ["replace", "RW", "trio_tarantool pool", "100 trio tasks"],
        ["replace", "RW", "trio_tarantool one connection", "100 trio tasks"],
        ["replace", "RW", "tarantool-python pool", "8 threads"],
    ]
    one = rows[3]
    assert one[4:] == ["110 [100-120]", "20.0 µs", "0 / 30", "0", "0", "0.82x"]
    assert rows[1][6] == "2 / 12"  # its wrong answers are counted like anyone's
    assert rows[4][-1] == "2.00x"  # ours / this: still our pool over the reference


def test_pool_over_one_connection_ratios_and_issue_11_targets() -> None:
    table = report.pool_vs_connection(_pool_raw())
    rows = {tuple(_cells(ln)[:2]): _cells(ln)[2:] for ln in table.splitlines()[2:]}
    # RW: req/s medians 90 / 110; CPU medians 23 / 20.
    assert rows[("replace", "RW")] == ["0.82x", "1.15x", "missed: req/s, CPU"]
    assert rows[("select", "ANY")] == ["0.95x", "1.05x", "met"]
    assert ">= 0.9x" in table and "<= 1.1x" in table
    md = results_markdown(_META, [], _pool_raw(), ["select"], [100], [])
    assert "**Pool / one connection**" in md and table in md
    # Without the one-connection row (raw files from before it): no ratios.
    old = [r for r in _pool_raw() if r["client"] != "trio_tarantool"]
    assert report.pool_vs_connection(old) == ""
    md = results_markdown(_META, [], old, ["select"], [100], [])
    assert "Pool / one connection" not in md and "one connection" not in md
    assert "| replace | RW | tarantool-python pool | 8 threads |" in md


_META = {
    "date": "2026-01-01 00:00 UTC",
    "cpus": 2,
    "versions": {"python": "3.11"},
    "rounds": 3,
    "n_seq": 1,
    "n_conc": 1,
    "n_pool": 1,
    "cap": 1.0,
    "notes": [],
}


def test_report_rerenders_an_old_raw_file_without_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = [r for r in _pool_raw() if r["client"] != "trio_tarantool"]
    for r in old:  # as old workers wrote it: no cpu_us
        r.pop("cpu_us")
    raw = tmp_path / "old.json"
    raw.write_text(json.dumps({"meta": _META, "single": [], "pool": old}))
    assert rerender(raw, write=False) == 0
    out = capsys.readouterr().out
    assert "| replace | RW | trio_tarantool pool | 100 trio tasks | 90 [80-95] | - |" in out
    assert "Pool / one connection" not in out
    raw.write_text(json.dumps({"meta": _META, "single": [], "pool": _pool_raw()}))
    assert rerender(raw, write=False) == 0
    assert "| replace | RW | 0.82x | 1.15x | missed: req/s, CPU |" in capsys.readouterr().out


def test_replace_section_touches_only_its_markers(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n")
    report.replace_section(doc, "results", "new table")
    assert (
        doc.read_text() == "intro\n<!-- results:start -->\nnew table\n<!-- results:end -->\noutro\n"
    )
    with pytest.raises(ValueError, match="memory"):
        report.replace_section(doc, "memory", "x")


def test_svg_is_well_formed_with_one_bar_per_measured_cell() -> None:
    runs = [_run("trio_tarantool", 30.0, 0), _run("asynctnt", 20.0, 0), _run("asynctnt", 25.0, 1)]
    pool = [dict(_run("tarantool-python-pool", 5.0, 0, wrong=4), mode="ANY", threads=8)]
    svg = report.render_svg(runs, pool, ["select"], [100], ["trio_tarantool", "asynctnt"])
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(bars) == 3
    assert any("wrong" in (t.text or "") for t in root.iter(f"{ns}text"))


@pytest.mark.real
@pytest.mark.skipif(shutil.which("tarantool") is None, reason="needs a tarantool binary")
def test_single_server_starts_answers_and_stops() -> None:
    with servers.single() as cluster:
        inst = cluster.instances[0]
        assert "running" in inst.admin("return box.info.status")
        assert f"- {servers.ROWS}" in inst.admin("return box.space.bench:len()")
        assert inst.admin_eval("return box.cfg.feedback_enabled") == [False]
        assert inst.binary == servers.server_binary()
        pid = inst.pid
        assert pid is not None and inst.is_running()
        work_dir = inst.work_dir
    assert not inst.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not work_dir.exists()


@pytest.mark.real
@pytest.mark.skipif(shutil.which("tarantool") is None, reason="needs a tarantool binary")
def test_replicaset_replicates_the_data_set_and_switches_roles() -> None:
    with servers.replicaset() as cluster:
        master, *replicas = cluster.instances
        assert [
            i.admin_eval("return box.info.ro, box.space.bench:len()") for i in cluster.instances
        ] == [
            [False, servers.ROWS],
            [True, servers.ROWS],
            [True, servers.ROWS],
        ]
        servers.demote(master)
        servers.promote(replicas[0])
        assert replicas[0].admin_eval("return box.info.ro") == [False]
        assert master.admin_eval("return box.info.ro") == [True]
        assert len(cluster.addrs) == 3


def _burn_cpu(seconds: float) -> None:
    """Spend at least ``seconds`` of this process's CPU (measured, not timed)."""
    until = cpu_seconds() + seconds
    while cpu_seconds() < until:
        sum(range(1000))


def test_meter_counts_the_cpu_spent_inside_it_only() -> None:
    tally = Tally(client="floor", workload="select", tasks=1, requested=0)
    _burn_cpu(0.2)  # before the measured loop: must not count
    with Meter(tally):
        _burn_cpu(0.05)
    assert 0.05 <= tally.cpu < 0.2
    assert tally.elapsed > 0


def test_cpu_per_request_is_cpu_over_replies_in_microseconds() -> None:
    tally = Tally(client="floor", workload="select", tasks=1, requested=1000, ok=900, wrong=100)
    tally.cpu, tally.elapsed = 0.02, 0.5
    out = tally.to_json()
    assert out["cpu_us"] == pytest.approx(20.0)
    assert out["rps"] == pytest.approx(2000.0)
    assert Tally(client="floor", workload="select", tasks=1, requested=0).to_json()["cpu_us"] == 0


def test_worker_reports_cpu_per_request_of_a_real_run() -> None:
    """The worker's JSON carries the CPU it measured (a fake client: no server)."""
    from bench import worker

    tally = Tally(client="floor", workload="ping", tasks=1, requested=50)

    async def op(i: int) -> None:
        _burn_cpu(0.001)

    import trio

    trio.run(worker._trio_measure, op, tally, 50, 1, 30.0)
    out = tally.to_json()
    assert tally.ok == 50
    assert out["cpu_us"] >= 1000  # at least the millisecond each request burned


def test_table_shows_cpu_per_request_and_the_ratio_to_the_floor() -> None:
    runs = [
        _run("trio_tarantool", 30.0, 0, cpu_us=15.0),
        _run("floor", 40.0, 0, cpu_us=10.0),
        _run("asynctnt", 20.0, 0, cpu_us=12.0),
    ]
    table = report.single_table(runs, ["select"], [100], ["trio_tarantool", "floor", "asynctnt"])
    row = next(ln for ln in table.splitlines() if ln.startswith("| select"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:5] == ["30; 15.0 µs", "40; 10.0 µs", "20; 12.0 µs"]
    assert cells[5:] == ["0.75x", "1.50x", "1.50x"]  # req/s vs floor, vs asynctnt; CPU vs floor
    summary = report.cpu_summary(runs, ["select"], [100], ["trio_tarantool", "floor", "asynctnt"])
    assert "| 100 tasks | 1.50x (1 workloads) | 1.25x (1 workloads) |" in summary
    # Runs from before CPU was measured: no µs, no ratio, no summary.
    old = [dict(r, cpu_us=0.0) for r in runs]
    table = report.single_table(old, ["select"], [100], ["trio_tarantool", "floor"])
    assert "µs" not in table and table.rstrip().endswith("| - |")
    assert report.cpu_summary(old, ["select"], [100], ["trio_tarantool", "floor"]) == ""


def test_machine_header_names_the_cpu_and_the_python_speed(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.00GHz\ncpu MHz\t\t: 2000.1\n"
        "processor\t: 1\nmodel name\t: other\n"
    )
    assert machine.cpu_model(info) == "Intel(R) Xeon(R) CPU @ 2.00GHz"
    info.write_text("model name\t: AMD EPYC\ncpu MHz\t\t: 2596.0\n")
    assert machine.cpu_model(info) == "AMD EPYC (2,596 MHz)"
    line = machine.header(
        {"cpu_model": "AMD EPYC", "cpus": 2, "python": "3.11.7", "loop_10m_s": 1.666}
    )
    assert line == (
        "Machine: AMD EPYC, 2 CPUs; Python 3.11.7; a 10M-iteration Python loop "
        "(`total += i`) takes 1.67 s."
    )
    assert machine.loop_seconds(1000) > 0


def test_profile_layers_follow_the_files_and_builtins_follow_their_callers() -> None:
    import cProfile
    import pstats

    from bench import profile

    lib = str(Path(profile.__file__).resolve().parent.parent / "trio_tarantool")
    assert profile.layer_of(f"{lib}/_request.py", "select") == "request building"
    assert profile.layer_of(f"{lib}/_iproto/_requests.py", "frame") == "framing / encoding"
    assert profile.layer_of(f"{lib}/_iproto/_decoder.py", "_next_packet") == "decoding"
    assert profile.layer_of(f"{lib}/_connection.py", "_reader") == "reader / writer tasks"
    assert profile.layer_of(f"{lib}/_connection.py", "perform") == "dispatch: submit, park, finish"
    assert profile.layer_of(f"{lib}/_response.py", "__init__") == "Response construction"
    assert profile.layer_of(f"{lib}/_pool.py", "_take") == "pool routing"
    assert profile.layer_of(f"{lib}/_strategy.py", "getnext") == "pool routing"
    site = "/x/.venv/lib/python3.11/site-packages"
    assert profile.layer_of(f"{site}/trio/_core/_run.py", "reschedule") == "trio scheduler"
    assert profile.layer_of("~", "<built-in method posix.read>") == "socket syscalls + epoll"
    assert profile.layer_of("~", "<built-in method builtins.len>") is None

    def benchmark_loop() -> int:  # this file is under bench/: the benchmark loop's layer
        return sum(len(str(i)) for i in range(2000))

    prof = cProfile.Profile()
    prof.runcall(benchmark_loop)
    layers, top, calls = profile.layer_times(pstats.Stats(prof))
    assert calls > 4000
    spent = {k: v for k, v in layers.items() if v > 0}
    assert set(spent) == {"benchmark loop"}  # len() and str() counted in their caller's layer
    assert any("len" in name for name, _ in top["benchmark loop"])


def test_profile_report_puts_the_pool_beside_one_connection() -> None:
    """Every row of the profile table has as many cells as its header, with the
    floor and the pool (pool - one connection) columns, and without the pool."""
    from bench import profile

    def result(cpu: float, **layers: float) -> dict[str, Any]:
        return {"plain": {"cpu_us": cpu},
                "profile": {"layers": {name: layers.get(name.split()[0], 0.1) for name in profile.LAYERS},
                            "top": {name: [("f.py:1(f)", 0.1)] for name in profile.LAYERS},
                            "calls": 40 * 1000, "n": 1000},
                "allocs": {"obj": 30.0, "mem": 6.0}, "retained_bytes_per_request": 0.0}  # fmt: skip

    meta = {"date": "2026-12-08 03:00 UTC", "tasks": 100, "n": 1000,
            "machine": {"cpu_model": "X", "cpus": 2, "python": "3.11", "loop_10m_s": 0.3}}  # fmt: skip
    full = {"trio_tarantool": result(10.0), "floor": result(8.0), "trio_tarantool-pool": result(11.0, pool=2.0)}
    for results, columns in ((full, 6), ({k: full[k] for k in ("trio_tarantool", "floor")}, 4)):
        md = profile.render(meta, results)
        table = [line for line in md.splitlines() if line.startswith("| ")]
        assert table and all(line.count("|") == columns + 1 for line in table), table
    md = profile.render(meta, full)
    assert "pool - one connection" in md
    assert "**+1.00** (1.10x)" in md  # pool over one connection: 11.0 / 10.0


@pytest.mark.parametrize("version", [1, 2])
def test_client_cpu_limit_writes_the_quota_and_cleans_up(tmp_path: Path, version: int) -> None:
    """--client-cpu: a cgroup with the CFS quota (v2 cpu.max, v1 cfs_*), set as
    the clients' while the block runs, removed afterwards; a bad fraction is refused."""
    if version == 2:
        (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
        group = tmp_path / servers._CGROUP_NAME
    else:
        (tmp_path / "cpu").mkdir()
        group = tmp_path / "cpu" / servers._CGROUP_NAME
    with servers.limit_client_cpu(0.4, root=tmp_path) as note:
        assert servers.CLIENT_CGROUP == group
        assert "40% of one CPU" in note
        if version == 2:
            assert (group / "cpu.max").read_text() == "40000 100000"
        else:
            assert (group / "cpu.cfs_quota_us").read_text() == "40000"
            assert (group / "cpu.cfs_period_us").read_text() == "100000"
        for name in ("cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us"):  # (a real cgroup's files vanish with it)
            (group / name).unlink(missing_ok=True)
    assert servers.CLIENT_CGROUP is None
    assert not group.exists()
    with pytest.raises(ValueError, match="--client-cpu"):
        with servers.limit_client_cpu(1.5, root=tmp_path):
            pass
