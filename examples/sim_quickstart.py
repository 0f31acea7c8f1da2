"""The README's pool example, run against a simulated replicaset (no server needed).

Opens three simulated instances (``tt1.sim`` .. ``tt3.sim``, the first the
master) in virtual time, a pool on them, does what the README's "A pool"
section shows, then crashes the master and writes again through the new one.

    python examples/sim_quickstart.py

Needs only trio-tarantool itself (no test extras); CI runs it on the
installed wheel.
"""

from __future__ import annotations

import trio
import trio.testing

from trio_tarantool import Mode, open_pool
from trio_tarantool.sim import open_replicaset


async def main() -> None:
    async with open_replicaset(3, seed=1, users={"app": "secret"}) as rs:
        rs.create_space("users", [("id", "unsigned"), ("name", "string")],
                        indexes=[("primary", [("id", "unsigned")], True)])
        addrs = rs.addrs                                                # the simulated instances
        async with open_pool(addrs, user="app", password="secret") as pool:
            await pool.insert("users", [2, "Grace"])                    # RW by default
            await rs.advance(0.1)                                       # let it replicate
            rows = await pool.select("users", 2, mode=Mode.PREFER_RO)
            info = await pool.call("box.info", mode=Mode.ANY)           # call/eval/execute/ping need a mode
            print("read from a replica:", rows.data, "| an instance says:", info.data[0]["status"])
            assert rows.data == [[2, "Grace"]] and info.data[0]["status"] == "running"

            rs.crash(0)                 # the master dies ...
            await rs.failover()         # ... and after a no-master window a replica is promoted
            await pool.replace("users", [3, "Ada"])
            rows = await pool.select("users", 3, mode=Mode.RW)
            print("written after the failover:", rows.data, "| roles now:", rs.roles())
            assert rows.data == [[3, "Ada"]]


if __name__ == "__main__":
    # Virtual time: sleeps and timeouts cost nothing.
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
