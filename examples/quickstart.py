"""The README's quick start: one connection, a few requests, 100 tasks sharing it.

Needs a Tarantool with the schema and grants of examples/schema.lua (the
``users`` space, the user ``app``). The address comes from the environment
(``TARANTOOL_HOST``, ``TARANTOOL_PORT``), 127.0.0.1:3301 by default:

    TARANTOOL_PORT=3301 python examples/quickstart.py

tests/real/test_examples.py runs it against Tarantool 2.6 and 3.8.
"""

import os

import trio

import trio_tarantool

# Where the server listens (the test that runs this file points it at its own).
HOST = os.environ.get("TARANTOOL_HOST", "127.0.0.1")
PORT = int(os.environ.get("TARANTOOL_PORT", "3301"))


async def main() -> None:
    async with trio_tarantool.connect(HOST, PORT, user="app", password="secret") as conn:
        await conn.replace("users", [1, "Ada"])
        resp = await conn.select("users", "Ada", index="name")
        print(resp.data)                     # [[1, 'Ada']]
        print((await conn.call("box.info")).data[0]["status"])
        resp = await conn.execute("SELECT * FROM \"users\" WHERE \"id\" = ?", [1])

        # Any number of tasks share one connection; requests are pipelined.
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(conn.select, "users", i)

trio.run(main)
