#!/usr/bin/env bash
# The demo: a simulated 3-instance replicaset under traffic with a partition,
# a failover and a planned switch; a live timeline, then demo.svg. Needs no
# Tarantool. Extra arguments go to `python -m trio_tarantool.sim.demo`
# (--fast, --seed N, --svg PATH, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
ensure_venv
exec .venv/bin/python -m trio_tarantool.sim.demo "$@"
