"""docs/pool.md's events example: a dashboard's view of a failover.

A task follows ``pool.events()`` while the simulated master fails over; it
prints each role change and ends when the pool is closed. Runs in virtual
time with no server (only trio-tarantool itself):

    python examples/sim_pool_events.py
"""

import trio
import trio.testing

from trio_tarantool import RoleChangeEvent, open_pool
from trio_tarantool.sim import open_replicaset


async def main() -> None:
    async with open_replicaset(3, seed=1) as rs, trio.open_nursery() as nursery:
        async with open_pool(rs.addrs) as pool:

            async def print_role_changes(
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                async with pool.events() as events:
                    task_status.started()         # subscribed: nothing from here on is missed
                    async for event in events:            # ends after the pool's close
                        if isinstance(event, RoleChangeEvent):   # or: event.kind == "role"
                            print(f"{event.time:.3f} {event.instance} became {event.new} (was {event.old})")

            await nursery.start(print_role_changes)
            await rs.failover()        # the master steps down; after a window a replica is promoted
            await rs.advance(3)        # the pool's probes (refresh_delay=1) see both changes
        # leaving the block closed the pool: the events task's loop has ended


trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
