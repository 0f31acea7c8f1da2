"""docs/sim.md's first example: a simulated replicaset, a write, a crash, a failover.

Runs in virtual time with no server (only trio-tarantool itself; CI runs it on
the installed wheel too) and prints the world's trace:

    python examples/sim_replicaset.py
"""

import trio
import trio.testing

import trio_tarantool as tt
from trio_tarantool import sim


async def main() -> None:
    async with sim.open_replicaset(n=3, seed=7, lag=0.05, users={"u": "p"}) as rs:
        rs.create_space("demo", [("id", "unsigned"), ("v", "string")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        async with tt.connect("tt1.sim", 3301, user="u", password="p") as conn:
            await conn.insert("demo", [1, "a"])
        rs.crash(0)                      # connections close, new ones are refused
        new_master = await rs.failover() # no-master window drawn from the seed
        await rs.advance(10)             # virtual seconds
        print("new master:", new_master)
        print("\n".join(rs.trace))

trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
