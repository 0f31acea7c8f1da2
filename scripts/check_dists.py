"""Check the built sdist and wheel (scripts/check_packaging.sh): ``python scripts/check_dists.py DIST...``.

The wheel must install exactly one import package, ``trio_tarantool`` (the
simulator inside it as ``trio_tarantool.sim``, typed), carry the LICENSE and
the metadata the package claims, and register no pytest plugin (the plugin is
opt-in). The sdist must hold what it takes to test the package: tests, docs,
the simulator's source, scripts, examples and the LICENSE. Exit status 1 with
one line per problem.
"""

from __future__ import annotations

import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path

#: Classifiers the metadata must carry.
CLASSIFIERS = {
    "Framework :: Trio",
    "Framework :: Pytest",
    "Typing :: Typed",
    "Topic :: Database",
    *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
}
#: Files the wheel must hold (beyond the top-level rule).
WHEEL_FILES = [
    "trio_tarantool/__init__.py",
    "trio_tarantool/_version.py",
    "trio_tarantool/py.typed",
    "trio_tarantool/sim/__init__.py",
    "trio_tarantool/sim/__main__.py",
    "trio_tarantool/sim/demo.py",
    "trio_tarantool/testing/__init__.py",
]
#: Paths (files or directories) the sdist must hold, relative to its root.
SDIST_PATHS = [
    "LICENSE", "README.md", "pyproject.toml", "MANIFEST.in",
    "tests/conftest.py", "tests/unit", "tests/real", "tests/sim", "tests/hostile.py",
    "docs/sim.md", "sim/__init__.py", "sim/demo.py", "scripts/test.sh", "scripts/_setup.sh",
    "examples/sim_quickstart.py", "trio_tarantool/sim/__init__.py", "trio_tarantool/py.typed",
]


def check_wheel(path: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        record = wheel.read(f"{dist_info}/RECORD").decode().splitlines()
        recorded = [line.rsplit(",", 2)[0] for line in record if line]
        for listing, what in ((names, "zip"), (recorded, "RECORD")):
            tops = sorted({n.split("/")[0] for n in listing} - {dist_info})
            if tops != ["trio_tarantool"]:
                problems.append(f"{path.name}: top-level names in its {what}: {tops}, want ['trio_tarantool']")
        problems += [f"{path.name}: no {f}" for f in WHEEL_FILES if f not in names]
        if not any(n.startswith(f"{dist_info}/licenses/") and n.endswith("LICENSE") for n in names):
            problems.append(f"{path.name}: no LICENSE under {dist_info}/licenses/")
        top_level = f"{dist_info}/top_level.txt"
        if top_level in names and wheel.read(top_level).decode().split() != ["trio_tarantool"]:
            problems.append(f"{path.name}: top_level.txt says {wheel.read(top_level).decode().split()}")
        entry_points = f"{dist_info}/entry_points.txt"
        if entry_points in names and "pytest11" in wheel.read(entry_points).decode():
            problems.append(f"{path.name}: registers a pytest11 entry point (the plugin is opt-in)")
        meta = email.parser.Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
    missing = CLASSIFIERS - set(meta.get_all("Classifier") or [])
    if missing:
        problems.append(f"{path.name}: classifiers missing: {sorted(missing)}")
    expected = {
        "Requires-Python": ">=3.10",
        "License-Expression": "BSD-2-Clause",
    }
    for field, value in expected.items():
        if meta.get(field) != value:
            problems.append(f"{path.name}: {field} is {meta.get(field)!r}, want {value!r}")
    if "pytest" not in (meta.get_all("Provides-Extra") or []):
        problems.append(f"{path.name}: no [pytest] extra")
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        names = sdist.getnames()
    root = names[0].split("/")[0]
    inside = {n[len(root) + 1:] for n in names if n.startswith(root + "/")}
    problems = [f"{path.name}: no {p}" for p in SDIST_PATHS if p not in inside]
    junk = sorted(n for n in inside if "__pycache__" in n or n.endswith(".pyc") or "/.venv/" in n
                  or n.startswith(".venv") or ".hypothesis" in n)
    if junk:
        problems.append(f"{path.name}: holds build junk, e.g. {junk[:5]}")
    return problems


def main(argv: list[str]) -> int:
    problems = []
    kinds = set()
    for arg in argv:
        path = Path(arg)
        if path.name.endswith(".whl"):
            kinds.add("wheel")
            problems += check_wheel(path)
        elif path.name.endswith(".tar.gz"):
            kinds.add("sdist")
            problems += check_sdist(path)
        else:
            problems.append(f"{path.name}: neither a wheel nor an sdist")
    problems += [f"no {kind} given" for kind in ("wheel", "sdist") if kind not in kinds]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"distributions OK: {', '.join(Path(a).name for a in argv)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
