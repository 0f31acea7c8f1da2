"""docs/pool.md's first example: a pool over a replicaset, requests by mode.

Needs every instance to run examples/schema.lua (the ``demo`` space, the
``whoami`` function, the user ``app`` with ``execute`` on ``universe``, which
the pool's ``box.info`` probes need), and for ``crud_get`` the crud module
with a ``customers`` space (tests/real/test_examples.py runs it on the test
replicaset, whose instances have a crud stand-in). The instances come from
``TARANTOOL_ADDRS`` (``host:port,host:port,...``):

    TARANTOOL_ADDRS=10.0.0.1:3301,10.0.0.2:3301,10.0.0.3:3301 python examples/pool.py
"""

import os

import trio

from trio_tarantool import Mode, open_pool  # or ConnectionPool

# The replicaset's instances, "host:port" each (the test points it at its own).
ADDRS = os.environ.get("TARANTOOL_ADDRS", "10.0.0.1:3301,10.0.0.2:3301,10.0.0.3:3301")


async def main() -> None:
    addrs = [{"host": host, "port": int(port)}
             for host, port in (addr.rsplit(":", 1) for addr in ADDRS.split(","))]
    async with open_pool(addrs, user="app", password="secret", refresh_delay=1) as pool:
        await pool.insert("demo", ["AAAA", "Alpha"])                 # RW by default
        rows = await pool.select("demo", "AAAA", mode=Mode.PREFER_RO) # ANY by default
        me = await pool.call("whoami", mode=Mode.RO)                 # mode required
        res = await pool.crud_get("customers", 1)                    # ANY by default
        print(rows.data, "| a replica:", me.data[0][2], "| crud:", res.rows)

trio.run(main)
