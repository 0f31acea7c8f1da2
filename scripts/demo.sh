#!/usr/bin/env bash
# The demo: a simulated 3-instance replicaset under traffic with a partition,
# a failover and a planned switch; a live timeline, then demo.svg. Needs no
# Tarantool. Extra arguments go to `python -m sim.demo` (--fast, --seed N, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
ensure_venv test
exec .venv/bin/python -m sim.demo "$@"
