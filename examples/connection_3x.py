"""docs/connection.md's Tarantool >= 2.10 examples: a transaction and a watcher.

Needs a server with streams and watchers (Tarantool 2.10 or later; tested on
3.8) with ``memtx_use_mvcc_engine = true`` (interactive transactions on memtx)
and the schema and grants of examples/schema.lua (``accounts``, the user
``app``). The address comes from ``TARANTOOL_HOST`` / ``TARANTOOL_PORT``:

    TARANTOOL_PORT=3301 python examples/connection_3x.py
"""

import os

import trio

import trio_tarantool

HOST = os.environ.get("TARANTOOL_HOST", "127.0.0.1")
PORT = int(os.environ.get("TARANTOOL_PORT", "3301"))


async def main() -> None:
    async with trio_tarantool.connect(HOST, PORT, user="app", password="secret") as conn:
        await conn.replace("accounts", [1, 100])
        await conn.replace("accounts", [2, 0])

        # Move 10 from account 1 to account 2: both changes or neither.
        async with conn.transaction(isolation="read-committed", timeout=5) as tx:
            a = (await tx.select("accounts", 1)).data[0]
            b = (await tx.select("accounts", 2)).data[0]
            await tx.replace("accounts", [1, a[1] - 10])
            await tx.replace("accounts", [2, b[1] + 10])
        # committed here; an exception or a cancellation inside the block rolls it back
        print("balances:", (await conn.select("accounts")).data)   # [[1, 90], [2, 10]]

        async with conn.watch("box.status") as values:
            async for status in values:          # the current value first, then each change
                print(status["is_ro"], status["status"])
                break                            # (the example stops at the first one)


trio.run(main)
