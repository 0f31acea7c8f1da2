"""docs/sim.md's Tarantool 3.x example: elections, a transaction, a promotion
and a graceful shutdown on the simulator playing 3.8, with a real pool.

Runs in virtual time with no server (only trio-tarantool itself):

    python examples/sim_3x.py
"""

import trio
import trio.testing

import trio_tarantool as tt
from trio_tarantool import sim


async def main() -> None:
    async with sim.open_replicaset(n=3, version=(3, 8), election=True) as rs:
        rs.create_space("t", [("id", "unsigned")], indexes=[("pk", [("id", "unsigned")], True)])
        async with tt.open_pool(rs.addrs) as pool:
            async with pool.transaction() as tx:        # all or nothing for readers
                await tx.insert("t", [1])
                await tx.insert("t", [2])
            await rs.promote(1)                          # a new term; box.status events
            await pool.insert("t", [3])                  # lands on the new leader
            await rs.shutdown(2)                         # box.shutdown; the pool lets go
            rows = await pool.select("t", mode=tt.Mode.RW)
            print("rows:", rows.data, "| roles:", rs.roles())
            assert rows.data == [[1], [2], [3]]


trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
