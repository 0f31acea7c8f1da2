"""Soak runner for the pool-on-simulator proofs (tests/sim/test_pool_failover.py).

Runs many more Hypothesis examples than CI does, or replays one scenario::

    .venv/bin/python -m tests.sim.soak --examples 5000 --seed 1
    .venv/bin/python -m tests.sim.soak --server 3.x --examples 3000          # events + transactions
    .venv/bin/python -m tests.sim.soak --server election --examples 1000     # elections + a writer
    .venv/bin/python -m tests.sim.soak --replay '{"config": {...}, "steps": [...]}'

``--seed`` seeds Hypothesis (so a soak run can be repeated); every example
also carries its own world seed, printed with the scenario when it fails.
A failure is shrunk to a minimal scenario and printed with its trace and its
``--replay`` line; the exit status is 1. ``--replay`` prints the full trace of
one scenario whether it fails or not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.sim._pool_harness import PoolConfig, Step, run_scenario, scenario_from_json
from tests.sim._pool_strategies import (
    configs,
    configs_3x,
    election_steps,
    scenario_steps,
    scenario_steps_3x,
)

#: ``--server``: which property's scenarios to draw (see tests/sim/test_pool_failover.py and test_pool_3x.py).
SERVERS = ("2.6", "3.x", "election")


def _strategies(server: str, max_steps: int) -> tuple[Any, Any]:
    if server == "3.x":
        return configs_3x(), scenario_steps_3x(max_size=max_steps)
    if server == "election":
        return configs_3x(election=True), election_steps()
    return configs(), scenario_steps(max_size=max_steps)


def soak(examples: int, hypothesis_seed: int, max_steps: int, shrink: bool, server: str = "2.6") -> int:
    totals: Counter[str] = Counter()
    failure: list[str] = []
    phases = [Phase.generate, Phase.target] + ([Phase.shrink] if shrink else [])
    config_strategy, steps_strategy = _strategies(server, max_steps)

    @seed(hypothesis_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=phases, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(config=config_strategy, steps=steps_strategy)
    def one(config: PoolConfig, steps: list[Step]) -> None:
        result = run_scenario(config, steps)
        totals["examples"] += 1
        totals["steps"] += len(steps)
        totals["requests"] += result.requests
        for name, n in result.outcomes.items():
            totals[f"outcome {name}"] += n
        if result.violations:
            failure[:] = [result.report()]
            raise AssertionError(result.violations[0])

    wall0 = time.perf_counter()  # reporting only
    status = 0
    try:
        one()
    except AssertionError:
        status = 1
    wall = time.perf_counter() - wall0
    if failure:
        print(failure[0])
    print(f"server {server}, hypothesis seed {hypothesis_seed}: {totals['examples']} scenarios run (shrinking included), "
          f"{totals['steps']} steps, {totals['requests']} requests in {wall:.1f} s wall")
    print("outcomes: " + ", ".join(f"{k[8:]}={v}" for k, v in sorted(totals.items()) if k.startswith("outcome ")))
    print("violations: none" if status == 0 else "violations: see above")
    return status


def replay(text: str) -> int:
    config, steps = scenario_from_json(text)
    result = run_scenario(config, steps, world_trace=True)
    print("simulator trace (time, who, what):")
    print("\n".join(result.world_trace))
    print(result.report(tail=10**9))
    print(f"requests: {result.requests}; outcomes: {dict(result.outcomes)}")
    return 1 if result.violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="Hypothesis examples to run")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed")
    parser.add_argument("--max-steps", type=int, default=40, help="longest scenario")
    parser.add_argument("--no-shrink", action="store_true", help="report the first failure as found")
    parser.add_argument("--server", choices=SERVERS, default="2.6",
                        help="2.6: polling (test_pool_failover); 3.x: box.status events and transactions; "
                             "election: Raft elections under a writer (test_pool_3x)")
    parser.add_argument("--replay", metavar="JSON", help="run one scenario and print its full trace")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    return soak(args.examples, args.seed, args.max_steps, not args.no_shrink, args.server)


if __name__ == "__main__":
    sys.exit(main())
