-- The schema and grants the examples in examples/ (and the README and docs/)
-- expect on a real Tarantool. Run it on every instance after box.cfg{}, e.g.
-- at the end of the init script: dofile('examples/schema.lua'). Schema changes
-- are made on the writable instance only (they replicate); the Lua function
-- is defined on each instance.
--
-- tests/real/test_examples.py loads this very file into its test servers
-- before it runs the examples.

-- whoami(): which instance answered (docs/pool.md calls it on a replica).
rawset(_G, 'whoami', function()
    return {box.info.id, box.info.uuid, box.cfg.listen, box.info.ro}
end)

if box.info.ro then
    return
end

box.once('trio_tarantool_examples', function()
    -- The user the examples log in as.
    box.schema.user.create('app', {password = 'secret', if_not_exists = true})

    -- README quick start: users (id, name), a unique index on name, SQL too.
    local users = box.schema.space.create('users', {
        if_not_exists = true,
        format = {{name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'}},
    })
    users:create_index('primary', {parts = {'id'}, if_not_exists = true})
    users:create_index('name', {parts = {'name'}, if_not_exists = true})

    -- docs/pool.md: demo (a string key).
    local demo = box.schema.space.create('demo', {
        if_not_exists = true,
        format = {{name = 'code', type = 'string'}, {name = 'name', type = 'string'}},
    })
    demo:create_index('primary', {parts = {'code'}, if_not_exists = true})

    -- docs/connection.md and docs/pool.md transactions: accounts (id, balance).
    local accounts = box.schema.space.create('accounts', {
        if_not_exists = true,
        format = {{name = 'id', type = 'unsigned'}, {name = 'balance', type = 'integer'}},
    })
    accounts:create_index('primary', {parts = {'id'}, if_not_exists = true})

    -- docs/pool.md streams: log (id, text).
    local log = box.schema.space.create('log', {
        if_not_exists = true,
        format = {{name = 'id', type = 'unsigned'}, {name = 'text', type = 'string'}},
    })
    log:create_index('primary', {parts = {'id'}, if_not_exists = true})

    -- Reads and writes on these spaces only.
    for _, space in ipairs({'users', 'demo', 'accounts', 'log'}) do
        box.schema.user.grant('app', 'read,write', 'space', space, {if_not_exists = true})
    end
    -- crud_get on the test servers: their crud stand-in (tests/real/lua/crud.lua)
    -- reads the local space with the caller's rights. On a real crud cluster
    -- the router's crud functions need only 'execute' (below).
    if box.space.customers ~= nil then
        box.schema.user.grant('app', 'read,write', 'space', 'customers', {if_not_exists = true})
    end
    -- CALL and EVAL (box.info, whoami, the pool's probes: "return box.info.ro,
    -- box.info.status"), and SQL on 3.x: 'execute' on 'universe'.
    box.schema.user.grant('app', 'execute', 'universe', nil, {if_not_exists = true})
end)
