#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine (as root) or a dev box.
#
# Installs what is missing: tarantool and openssl (apt; the TLS tests make
# their certificates with openssl), a virtualenv .venv with the package
# (editable) and the "dev" dependency group of pyproject.toml. Then runs, in order:
#   1. ruff check .                    (lint, the whole tree)
#   2. mypy                            (strict: trio_tarantool, the simulator included)
#   3. mypy tests examples scripts     (the tests, examples and scripts, same config)
#   4. pytest                          (extra arguments of this script go to pytest)
#   5. bench/run --smoke               (the benchmark harness still works: tiny N,
#                                       one round, its own venv with the peers)
#   6. pytest bench                    (the harness's own tests)
#   7. packaging                       (sdist + wheel with `python -m build`, twine
#                                       check, the wheel's only top-level name is
#                                       trio_tarantool, the sdist's contents; the
#                                       wheel alone -- no test tools -- in a fresh
#                                       venv runs examples/sim_*.py and both demos)
#  7b. docs                           (sphinx-build -W -n of docs/: the guides, the
#                                       README, the CHANGELOG and the API reference;
#                                       Sphinx in its own cached venv .venvs/docs,
#                                       the "docs" group of pyproject.toml)
#   8. minimum versions                (trio 0.25.1 + msgpack 1.0.0 on Python 3.10:
#                                       the unit tests and the sim subset below)
#   9. python 3.10 ... 3.13            (the unit tests and the sim subset on every
#                                       Python the package claims; the one .venv runs
#                                       is covered by step 4; a missing interpreter
#                                       is reported and skipped, not failed)
# Every step runs even if an earlier one failed; the exit code is non-zero if
# any failed. SKIP_LINT=1 skips steps 1-3 (handy while iterating on one test);
# SKIP_BENCH=1 skips steps 5-6; SKIP_PACKAGING=1 step 7; SKIP_COMPAT=1 steps 8-9;
# SKIP_DOCS=1 step 7b.
#
# The venvs of steps 8-9 are cached in .venvs/ (gitignored) and made again
# when pyproject.toml changes; interpreters come from pyenv
# ($PYENV_ROOT/versions/3.X.*) or PATH (python3.X).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
ensure_tarantool
ensure_command openssl
ensure_venv dev

#: Pythons the package claims (keep in step with the classifiers in pyproject.toml).
PYTHONS=(3.10 3.11 3.12 3.13)
#: What steps 8-9 run besides tests/unit. The full tests/sim suite takes minutes
#: (hypothesis pool scenarios, a long run of failovers, the fidelity differentials), too much
#: for five interpreters in the time budget; this subset covers everything the
#: simulator is made of -- the fake network (trio's socket factory), the IPROTO
#: server, spaces and replication -- plus the real client and crud on it, the
#: pytest plugin (fixture, opt-in loading, usage errors) and the demo's timeline and
#: plot, in about 30 s.
SIM_SUBSET=(
    tests/sim/test_net.py tests/sim/test_iproto_server.py tests/sim/test_spaces.py
    tests/sim/test_replicaset.py tests/sim/test_replication_property.py
    tests/sim/test_client_on_sim.py tests/sim/test_crud_fidelity.py
    tests/sim/test_user_kit.py tests/sim/test_plugin.py
    tests/sim/test_demo.py
    --deselect tests/sim/test_demo.py::test_pool_under_chaos_has_no_violations_and_is_repeatable
)

failed=()
timings=()
step() {
    local name="$1" start=$SECONDS
    shift
    echo "=== $name" >&2
    if ! "$@"; then
        failed+=("$name")
    fi
    timings+=("$name: $((SECONDS - start)) s")
}

# Steps 8-9 ("compat" jobs). Their venvs are prepared one after the other
# (pip, editable builds), then the test runs go two at a time -- each is one
# single-threaded pytest, and this is a 2-core machine -- with each job's
# output printed in order once it has ended.
compat_names=()   # job names, in order
compat_venvs=()   # .venvs/<dir> of each job, or "" when its Python is missing

# compat_prepare NAME PYTHON_VERSION [PIP REQUIREMENTS...]: the cached venv
# .venvs/<dir> with the package (editable), the "test" group and the given
# requirements on top; a missing interpreter is reported, not failed.
compat_prepare() {
    local name="$1" version="$2" dir="$3" py
    shift 3
    compat_names+=("$name")
    if ! py=$(python_for "$version"); then
        echo "=== $name: no python $version (pyenv: ${PYENV_ROOT:-$HOME/.pyenv}/versions/$version.*, PATH: python$version); skipped, not failed" >&2
        compat_venvs+=("")
        return 0
    fi
    if ensure_job_venv ".venvs/$dir" "$py" -e . --group test "$@"; then
        compat_venvs+=(".venvs/$dir")
    else
        compat_venvs+=("")
        failed+=("$name (venv)")
    fi
}

# compat_run VENV LOG: what the job runs (its output to LOG, its status to LOG.rc).
compat_run() {
    local venv="$1" log="$2" rc=0
    {
        "$venv/bin/python" -c 'import sys, trio, msgpack
print(f"{sys.executable}: python {sys.version.split()[0]}, trio {trio.__version__}, msgpack {msgpack.version}")'
        "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/unit "${SIM_SUBSET[@]}"
    } >"$log" 2>&1 || rc=$?
    echo "$rc" >"$log.rc"
}

# compat_all: run the prepared jobs two at a time; report each in order.
compat_all() {
    local logs i j pid rc
    logs=$(mktemp -d)
    for ((i = 0; i < ${#compat_names[@]}; i += 2)); do
        local pids=() pair_names=() start=$SECONDS
        for ((j = i; j < i + 2 && j < ${#compat_names[@]}; j++)); do
            [ -n "${compat_venvs[j]}" ] || continue
            compat_run "${compat_venvs[j]}" "$logs/$j" &
            pids+=($!)
            pair_names+=("${compat_names[j]}")
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || true
        done
        for ((j = i; j < i + 2 && j < ${#compat_names[@]}; j++)); do
            [ -n "${compat_venvs[j]}" ] || continue
            echo "=== ${compat_names[j]}" >&2
            cat "$logs/$j" >&2
            rc=$(cat "$logs/$j.rc" 2>/dev/null || echo 1)
            [ "$rc" = 0 ] || failed+=("${compat_names[j]}")
        done
        [ "${#pair_names[@]}" = 0 ] || timings+=("$(IFS=+; echo "${pair_names[*]}") (in parallel): $((SECONDS - start)) s")
    done
    rm -rf "$logs"
}

if [ -z "${SKIP_LINT:-}" ]; then
    step "ruff" .venv/bin/ruff check --no-cache .
    step "mypy (trio_tarantool with trio_tarantool.sim, strict)" .venv/bin/mypy
    step "mypy (tests, examples, scripts)" .venv/bin/mypy tests examples scripts
fi
# In CI the 15 slowest tests are listed too, to see the suite's time go.
step "pytest" .venv/bin/python -m pytest -p no:cacheprovider ${CI:+--durations=15} "$@"
if [ -z "${SKIP_BENCH:-}" ]; then
    step "bench smoke" bench/run --smoke
    step "bench harness tests" .venv/bin/python -m pytest -p no:cacheprovider -q bench
fi
if [ -z "${SKIP_PACKAGING:-}" ]; then
    step "packaging" bash scripts/check_packaging.sh
fi
# Step 7b: the docs, warnings as errors (about 15 s; the venv is made once).
build_docs() {
    ensure_job_venv .venvs/docs .venv/bin/python -e . --group docs || return 1
    .venvs/docs/bin/sphinx-build -W --keep-going -n -q -E -b html docs docs/_build
}
if [ -z "${SKIP_DOCS:-}" ]; then
    step "docs (sphinx-build -W -n)" build_docs
fi
if [ -z "${SKIP_COMPAT:-}" ]; then
    echo "=== preparing the venvs of the minimum-versions and Python jobs (.venvs/)" >&2
    compat_start=$SECONDS
    compat_prepare "minimum versions (python 3.10, trio 0.25.1, msgpack 1.0.0)" 3.10 min-py3.10 \
        "trio==0.25.1" "msgpack==1.0.0"
    main_version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    for version in "${PYTHONS[@]}"; do
        if [ "$version" = "$main_version" ]; then
            echo "=== python $version: the main .venv's Python, tested in full by the pytest step" >&2
            continue
        fi
        compat_prepare "python $version" "$version" "py$version"
    done
    compat_all
    timings+=("steps 8-9 in all (venvs included): $((SECONDS - compat_start)) s")
fi

echo "=== time per step" >&2
printf '    %s\n' "${timings[@]}" >&2

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}" >&2
    exit 1
fi
