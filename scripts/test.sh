#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine (as root) or a dev box.
# Installs what is missing: tarantool (apt), a virtualenv with the package and
# its test extras. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
ensure_tarantool
ensure_venv test
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
