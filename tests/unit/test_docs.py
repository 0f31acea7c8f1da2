"""The docs cannot rot: every public name is in the API reference, every code
block of the README and docs/ is a runnable example (or says what it is), and
every example is run by a test.

* docs/api.rst must hold an entry (an autodoc or py directive) for each public
  name of ``trio_tarantool``, ``trio_tarantool.sim`` and
  ``trio_tarantool.testing``: a new export without one fails here.
* Each fenced ``python`` block of README.md and docs/*.md is preceded by a
  marker comment saying what it is, and the marker is checked:

  - ``<!-- example: examples/X.py -->``: the block is the file's text (after
    its docstring: the lines appear in it contiguously, at one indent);
  - ``<!-- fragment of examples/X.py -->``: every line of the block appears in
    the file, in order (the file adds set-up, addresses and an end to loops);
    runs of spaces count as one (aligned comments);
  - ``<!-- run by tests/X.py -->``: that test reads this very block;
  - ``<!-- signature of trio_tarantool.F -->``: the keyword defaults shown are
    F's real ones.
* Every examples/*.py is run by tests/real/test_examples.py or
  tests/sim/test_examples.py (the Sphinx build itself, with warnings as
  errors, is a step of scripts/test.sh).
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import pytest

import trio_tarantool
import trio_tarantool.sim

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api.rst"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = ROOT / "examples"

#: The testing module's public names are the plugin's hooks and its fixture,
#: and the failover kit; the hooks are not API (they are pytest's business).
TESTING_PUBLIC = ["tarantool_sim", "fault_schedules", "run_schedule", "check_at_most_once",
                  "check_no_lost_acknowledged_writes", "check_reads_served_by_mode",
                  "check_liveness_after_healing", "Schedule", "Fault", "History",
                  "RecordedRequest", "Execution", "Recorder", "RecordedClient"]

_DIRECTIVE = re.compile(
    r"^\s*\.\. (?:auto|py:)?(?:class|function|exception|data|attribute|method)::\s+(\S+)",
    re.M,
)
_CURRENT = re.compile(r"^\s*\.\. (?:currentmodule|module)::\s+(\S+)", re.M)
_BLOCK = re.compile(r"(?:<!--\s*(?P<marker>.*?)\s*-->\n)?```python\n(?P<code>.*?)```", re.S)


def public_names(module: types.ModuleType) -> list[str]:
    """The names a user imports from ``module``: its ``__all__`` if it has one,
    else every name without an underscore that is not a submodule."""
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    return sorted(
        name for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    )


def documented_names() -> set[str]:
    """Fully qualified names that docs/api.rst has an entry for."""
    text = API.read_text()
    names: set[str] = set()
    current = ""
    # Walk the directives in order, tracking the current module.
    directives = sorted(
        [(m.start(), True, m.group(1)) for m in _CURRENT.finditer(text)]
        + [(m.start(), False, m.group(1)) for m in _DIRECTIVE.finditer(text)]
    )
    for _, sets_module, value in directives:
        if sets_module:
            current = value
        elif value.startswith("trio_tarantool."):
            names.add(value)
        else:
            names.add(f"{current}.{value}")
    return names


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (trio_tarantool, [*public_names(trio_tarantool), "__version__"]),
        (trio_tarantool.sim, public_names(trio_tarantool.sim)),
        (types.SimpleNamespace(__name__="trio_tarantool.testing"), TESTING_PUBLIC),
    ],
    ids=["trio_tarantool", "trio_tarantool.sim", "trio_tarantool.testing"],
)
def test_every_public_name_is_in_the_api_reference(module: types.ModuleType, names: list[str]) -> None:
    documented = documented_names()
    missing = [name for name in names if f"{module.__name__}.{name}" not in documented]
    assert not missing, f"docs/api.rst has no entry for {module.__name__}: {missing}"


def test_the_api_page_names_nothing_that_is_not_there() -> None:
    """An entry for a removed or renamed name fails too (not only at sphinx-build)."""
    modules = {"trio_tarantool": trio_tarantool, "trio_tarantool.sim": trio_tarantool.sim}
    stale = []
    for qualified in sorted(documented_names()):
        owner, _, name = qualified.rpartition(".")
        if owner in modules and not hasattr(modules[owner], name):
            stale.append(qualified)
    assert not stale, f"docs/api.rst documents names that do not exist: {stale}"


def code_blocks() -> list[tuple[str, str | None, str]]:
    """``(where, marker, code)`` of every fenced python block in README and docs/."""
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group("marker"), match.group("code")))
    return blocks


BLOCKS = code_blocks()


def _contiguous(block: list[str], lines: list[str]) -> bool:
    """``block`` appears in ``lines`` as consecutive lines, all at one extra indent."""
    first = next(i for i, line in enumerate(block) if line.strip())
    for start in range(len(lines) - len(block) + 1):
        candidate = lines[start + first]
        if not candidate.endswith(block[first]) or candidate.strip() != block[first].strip():
            continue
        indent = candidate[: len(candidate) - len(block[first])]
        if indent.strip():
            continue
        window = lines[start:start + len(block)]
        if all((b == w == "") or (b and w == indent + b) for b, w in zip(block, window, strict=True)):
            return True
    return False


def _in_order(block: list[str], lines: list[str]) -> list[str]:
    """The lines of ``block`` not found in ``lines`` in order (spaces runs as one)."""
    wanted = [" ".join(line.split()) for line in block if line.strip()]
    have = iter(" ".join(line.split()) for line in lines)
    return [line for line in wanted if line not in have]


def _signature_defaults(code: str) -> dict[str, str]:
    """``name=default`` pairs written in a signature block."""
    return {name: value.strip() for name, value in re.findall(r"(\w+)=([^,()\n]+(?:\(\))?)", code)}


@pytest.mark.parametrize(("where", "marker", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_every_code_block_is_checked(where: str, marker: str | None, code: str) -> None:
    assert marker, (
        f"{where}: a python block needs a marker comment on the line before it: "
        "<!-- example: examples/X.py -->, <!-- fragment of examples/X.py -->, "
        "<!-- run by tests/X.py --> or <!-- signature of trio_tarantool.F --> "
        "(see tests/unit/test_docs.py)"
    )
    block = code.rstrip("\n").split("\n")
    kind, _, target = marker.partition(" ")
    if kind in ("example:", "fragment"):
        path = ROOT / target.removeprefix("of ").strip()
        assert path.is_file(), f"{where}: {marker!r} names no file"
        assert path.parent == EXAMPLES, f"{where}: examples live in examples/, not {path}"
        lines = path.read_text().split("\n")
        if kind == "example:":
            assert _contiguous(block, lines), f"{where}: the block is not the text of {path.name}"
        else:
            missing = _in_order(block, lines)
            assert not missing, f"{where}: lines not in {path.name} (in this order): {missing}"
    elif kind == "run":
        path = ROOT / target.removeprefix("by ").strip()
        assert path.is_file(), f"{where}: {marker!r} names no file"
        doc = where.split(":")[0]
        assert Path(doc).name in path.read_text(), f"{where}: {path.name} does not read {doc}"
    elif kind == "signature":
        name = target.removeprefix("of ").strip()
        assert name.startswith("trio_tarantool."), f"{where}: {marker!r}"
        func = getattr(trio_tarantool, name.removeprefix("trio_tarantool."))
        real = {
            p.name: repr(p.default) for p in inspect.signature(func).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        shown = {k: repr(ast.literal_eval(v)) for k, v in _signature_defaults(code).items()}
        assert shown == {k: real[k] for k in shown}, f"{where}: defaults differ from {name}'s"
        assert set(shown) == set(real), f"{where}: keywords shown {sorted(set(shown) ^ set(real))} differ"
    else:
        pytest.fail(f"{where}: unknown marker {marker!r}")


def test_the_block_checks_can_fail() -> None:
    """The matchers refuse what they must (a check that cannot fail checks nothing)."""
    lines = ["def f():", "    x = 1", "    y = 2", ""]
    assert _contiguous(["x = 1", "y = 2"], lines)
    assert not _contiguous(["y = 2", "x = 1"], lines)
    assert not _contiguous(["x = 1", "z = 3"], lines)
    assert _in_order(["x  =  1", "y = 2"], lines) == []
    assert _in_order(["y = 2", "x = 1"], lines) == ["x = 1"]
    assert _signature_defaults("f(a, *, b=None, c=10, d='x')") == {"b": "None", "c": "10", "d": "'x'"}


def _dict_keys(path: Path, name: str) -> set[str]:
    """The keys of the dict literal assigned to ``name`` in ``path`` (read, not
    imported: importing a test module outside its directory's conftest would
    trip --strict-markers)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == name:
                return set(ast.literal_eval(node.value))
    raise AssertionError(f"{path}: no {name} = {{...}}")


def test_every_example_is_run_by_a_test() -> None:
    run = _dict_keys(ROOT / "tests" / "real" / "test_examples.py", "REAL_EXAMPLES")
    run |= _dict_keys(ROOT / "tests" / "sim" / "test_examples.py", "SIM_EXAMPLES")
    present = {path.name for path in EXAMPLES.glob("*.py")}
    assert present - run == set(), f"examples no test runs: {sorted(present - run)}"
    assert run - present == set(), f"tests run examples that are not there: {sorted(run - present)}"


def test_every_example_is_shown_in_the_docs() -> None:
    """An example file nobody links from the README or docs/ is dead weight."""
    shown = "\n".join(path.read_text() for path in DOCS)
    unshown = [p.name for p in EXAMPLES.glob("*.py") if f"examples/{p.name}" not in shown]
    assert not unshown, f"examples/ files no doc mentions: {unshown}"
