"""What the benchmark ran on: CPU model and a Python speed figure.

Per-request CPU depends on the machine far more than ratios do, so every report
states the CPU model (``/proc/cpuinfo``) and how long this Python takes for a
fixed loop: ``for i in range(10_000_000): total += i``. Two machines' numbers
compare after scaling by that figure (issue 11: 1.67 s on a 2.0 GHz Xeon).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

LOOP_ITERATIONS = 10_000_000


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``model name`` of the first CPU (with its MHz when the kernel gives it)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    model = mhz = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not model:
            model = value
        elif key == "cpu MHz" and not mhz:
            mhz = value
    if not model:
        return platform.machine() or "unknown"
    if mhz and "Hz" not in model:
        return f"{model} ({float(mhz):,.0f} MHz)"
    return model


def loop_seconds(iterations: int = LOOP_ITERATIONS) -> float:
    """Seconds this interpreter takes for ``total += i`` over ``range(iterations)``."""
    total = 0
    start = time.perf_counter()
    for i in range(iterations):
        total += i
    elapsed = time.perf_counter() - start
    assert total == iterations * (iterations - 1) // 2
    return elapsed


def python_speed(repeats: int = 3) -> float:
    """Best of ``repeats`` runs of :func:`loop_seconds`, each in a fresh interpreter
    (so nothing the harness imported or allocated weighs on it)."""
    best = float("inf")
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", "from bench.machine import loop_seconds; print(loop_seconds())"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=True,
        )
        best = min(best, float(out.stdout.strip()))
    return best


def describe(repeats: int = 3) -> dict[str, object]:
    """``{"cpu_model", "cpus", "python", "loop_10m_s"}`` for the report header
    (``loop_10m_s`` None when ``repeats`` is 0: the smoke run saves its seconds)."""
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loop_10m_s": round(python_speed(repeats), 3) if repeats > 0 else None,
    }


def header(machine: dict[str, object]) -> str:
    """One line for a report: ``Machine: <CPU>, 2 CPUs; Python 3.11.7: ...``."""
    loop = machine.get("loop_10m_s")
    speed = f"; a 10M-iteration Python loop (`total += i`) takes {loop:.2f} s" if loop else ""
    return (
        f"Machine: {machine.get('cpu_model', 'unknown CPU')}, {machine.get('cpus', '?')} CPUs; "
        f"Python {machine.get('python', '?')}{speed}."
    )
