#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine (as root) or a dev box.
#
# Installs what is missing: tarantool and openssl (apt; the TLS tests make
# their certificates with openssl), a virtualenv .venv with the
# package and its test + dev extras. Then runs, in order:
#   1. ruff check .                    (lint, the whole tree)
#   2. mypy                            (strict, trio_tarantool)
#   3. mypy tests sim                  (the tests and the simulator, same config)
#   4. pytest                          (extra arguments of this script go to pytest)
#   5. bench/run --smoke               (the benchmark harness still works: tiny N,
#                                       one round, its own venv with the peers)
#   6. pytest bench                    (the harness's own tests)
# Every step runs even if an earlier one failed; the exit code is non-zero if
# any failed. SKIP_LINT=1 skips steps 1-3 (handy while iterating on one test);
# SKIP_BENCH=1 skips steps 5-6.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
ensure_tarantool
ensure_command openssl
ensure_venv test,dev

failed=()
step() {
    local name="$1"
    shift
    echo "=== $name" >&2
    if ! "$@"; then
        failed+=("$name")
    fi
}

if [ -z "${SKIP_LINT:-}" ]; then
    step "ruff" .venv/bin/ruff check --no-cache .
    step "mypy (trio_tarantool, strict)" .venv/bin/mypy
    step "mypy (tests, sim)" .venv/bin/mypy tests sim
fi
# In CI the 15 slowest tests are listed too, to see the suite's time go.
step "pytest" .venv/bin/python -m pytest -p no:cacheprovider ${CI:+--durations=15} "$@"
if [ -z "${SKIP_BENCH:-}" ]; then
    step "bench smoke" bench/run --smoke
    step "bench harness tests" .venv/bin/python -m pytest -p no:cacheprovider -q bench
fi

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}" >&2
    exit 1
fi
