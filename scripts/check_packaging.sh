#!/usr/bin/env bash
# The packaging checks (step 7 of scripts/test.sh): build the sdist and the
# wheel as a release would (`python -m build`: the wheel is built from the
# sdist), `twine check` them, check what each holds (scripts/check_dists.py:
# one top-level package in the wheel, tests/docs/sim/scripts/LICENSE in the
# sdist), then install the wheel alone -- no extras, no test tools -- into a
# fresh venv and, from outside the checkout, run examples/sim_*.py and both
# demos against the simulator. Needs .venv (scripts/_setup.sh ensure_venv dev).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! .venv/bin/python -m build --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1; then
    cat "$tmp/build.log" >&2
    exit 1
fi
ls "$tmp/dist" >&2
.venv/bin/python -m twine check --strict "$tmp"/dist/*
.venv/bin/python scripts/check_dists.py "$tmp"/dist/*

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$tmp"/dist/*.whl
cd "$tmp"  # not the checkout: everything below must come from the installed wheel
"$tmp/venv/bin/python" - <<'PY'
import importlib.util

import trio_tarantool
import trio_tarantool.sim

assert "site-packages" in trio_tarantool.__file__, trio_tarantool.__file__
for name in ("sim", "pytest", "hypothesis"):  # no top-level sim, no test tools
    assert importlib.util.find_spec(name) is None, f"{name} is importable in the wheel's venv"
print(f"wheel venv: trio_tarantool {trio_tarantool.__version__} from {trio_tarantool.__file__}")
PY
for example in "$repo"/examples/sim_*.py; do
    [ -e "$example" ] || continue
    echo "--- ${example#"$repo"/}" >&2
    "$tmp/venv/bin/python" "$example"
done
echo "--- python -m trio_tarantool.sim.demo --fast --duration 12" >&2
"$tmp/venv/bin/python" -m trio_tarantool.sim.demo --fast --duration 12 --svg "$tmp/demo.svg" | tail -n 1
echo "--- python -m trio_tarantool.sim --hours 0.01" >&2
"$tmp/venv/bin/python" -m trio_tarantool.sim --hours 0.01 | tail -n 1
