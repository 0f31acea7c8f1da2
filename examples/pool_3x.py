"""docs/pool.md's Tarantool >= 2.10 examples: elections, a transaction, a
stream and watchers, through a pool.

Needs a replicaset with streams and watchers (Tarantool 2.10 or later; tested
on 3.8), ``memtx_use_mvcc_engine = true`` and the schema and grants of
examples/schema.lua on every instance (``accounts``, ``log``, the user
``app``). The instances come from ``TARANTOOL_ADDRS``:

    TARANTOOL_ADDRS=10.0.0.1:3301,10.0.0.2:3301,10.0.0.3:3301 python examples/pool_3x.py
"""

import os

import trio

from trio_tarantool import Mode, open_pool

ADDRS = os.environ.get("TARANTOOL_ADDRS", "10.0.0.1:3301,10.0.0.2:3301,10.0.0.3:3301")


async def main() -> None:
    addrs = [{"host": host, "port": int(port)}
             for host, port in (addr.rsplit(":", 1) for addr in ADDRS.split(","))]

    # Elections: a probe_timeout longer than an election makes writes wait for
    # the new leader instead of failing.
    async with open_pool(addrs, user="app", password="secret", probe_timeout=5) as pool:
        await pool.replace("accounts", [1, 100])   # RW: the current leader, whoever it is
        await pool.replace("accounts", [2, 0])

    async with open_pool(addrs, user="app", password="secret") as pool:
        async with pool.transaction(isolation="read-committed", timeout=5) as tx:
            await tx.update("accounts", 1, [("-", 1, 10)])
            await tx.update("accounts", 2, [("+", 1, 10)])
        # committed here; rolled back if the block raised or was cancelled
        print("balances:", (await pool.select("accounts", mode=Mode.RW)).data)

        stream = await pool.stream(mode=Mode.RW)        # requests run in order, on one instance
        await stream.begin()
        await stream.insert("log", [1, "a"])
        await stream.commit()

        await pool.call("box.broadcast", "config.version", 2, mode=Mode.RW)
        async with pool.watch("config.version", mode=Mode.RW) as values:   # one instance of a mode
            async for value in values:
                print("leader says", value)
                break                     # (the example stops at the first value)

        seen = set()
        async with pool.watch_all("box.status") as events:                  # every instance
            async for instance, value in events:
                print(instance, "is_ro" if value["is_ro"] else "rw")
                seen.add(instance)
                if len(seen) == len(addrs):   # (the example stops once each has answered)
                    break


trio.run(main)
