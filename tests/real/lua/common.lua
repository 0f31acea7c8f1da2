-- Shared helpers for the test instances: environment parsing, the test
-- user and schema, the Lua functions the tests call, the admin console and the
-- readiness marker.  Loaded by instance.lua and replica.lua with dofile().

local fiber = require('fiber')
local decimal = require('decimal')
local uuid = require('uuid')
local console = require('console')
local fio = require('fio')
local log = require('log')

local M = {}

-- Directory of this file (the other test Lua files live beside it).
local lua_dir = debug.getinfo(1, 'S').source:sub(2):match('(.*/)') or './'

--- Read an environment variable, with a default when unset or empty.
function M.env(name, default)
    local value = os.getenv(name)
    if value == nil or value == '' then
        return default
    end
    return value
end

--- Read a boolean environment variable ('true'/'1'/'yes' are true).
function M.env_bool(name, default)
    local value = os.getenv(name)
    if value == nil or value == '' then
        return default
    end
    value = value:lower()
    return value == 'true' or value == '1' or value == 'yes'
end

--- Exit when the test runner that started this process is gone.
-- A killed pytest (SIGKILL, a CI timeout) runs no finalizer, so the instance
-- watches its parent itself: once reparented, it removes its work dir (if
-- TT_REMOVE_ON_ORPHAN names it) and exits.
function M.watch_parent()
    local ppid = tonumber(M.env('TT_PARENT_PID', nil))
    if ppid == nil then
        return
    end
    local ffi = require('ffi')
    pcall(ffi.cdef, 'int getppid(void);')
    fiber.create(function()
        fiber.name('parent-watch')
        while true do
            if ffi.C.getppid() ~= ppid then
                log.warn('test runner (pid %d) is gone: exiting', ppid)
                local dir = M.env('TT_REMOVE_ON_ORPHAN', nil)
                if dir ~= nil then
                    fio.rmtree(dir)
                end
                os.exit(1)
            end
            fiber.sleep(0.5)
        end
    end)
end

--- The server's (major, minor) from _TARANTOOL ('3.8.0-0-g...').
function M.version()
    local major, minor = _TARANTOOL:match('^(%d+)%.(%d+)')
    return tonumber(major), tonumber(minor)
end

--- box.cfg options that depend on the server version, merged into opts:
-- every version: no feedback daemon (it phones home and logs on failure);
-- 3.x: the MVCC engine, which streams and interactive transactions need
-- (2.6.0 does not know the option and refuses it).
function M.version_cfg(opts)
    opts.feedback_enabled = false
    local major = M.version()
    if major >= 3 then
        opts.memtx_use_mvcc_engine = true
    end
    return opts
end

--- Open the admin console on a unix socket (path given by TT_ADMIN_SOCKET).
-- Opened before box.cfg so a hung start-up can still be inspected.
function M.listen_admin()
    local path = M.env('TT_ADMIN_SOCKET', nil)
    if path ~= nil then
        fio.unlink(path)
        console.listen('unix/:' .. path)
    end
end

--- Create the schema shared by every test instance (run once per data dir,
-- on a writable instance; replicas receive it through replication).
function M.create_schema()
    box.once('trio_tarantool_test_schema_v1', function()
        box.schema.user.create('test', {password = 'test-password', if_not_exists = true})
        box.schema.user.grant('test', 'read,write,execute,create,drop,alter', 'universe',
            nil, {if_not_exists = true})
        box.schema.user.grant('guest', 'execute', 'universe', nil, {if_not_exists = true})

        -- Ids are left to the server (tester gets 512, the first user id):
        -- Tarantool 2.6 hands out ids from a counter that explicit ids do not
        -- advance, so explicit ids would collide with later auto-assigned ones.
        local tester = box.schema.space.create('tester', {
            format = {{name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'}},
        })
        tester:create_index('primary', {type = 'tree', parts = {'id'}})
        tester:create_index('name_idx', {type = 'tree', unique = false, parts = {'name'}})

        local multi = box.schema.space.create('multi', {
            format = {
                {name = 'a', type = 'unsigned'},
                {name = 'b', type = 'string'},
                {name = 'value', type = 'any', is_nullable = true},
            },
        })
        multi:create_index('primary', {type = 'tree', parts = {'a', 'b'}})

        -- Many loosely typed fields, for update/upsert operation tests.
        local wide = box.schema.space.create('wide')
        wide:create_index('primary', {type = 'tree', parts = {{1, 'unsigned'}}})

        -- Decimal and uuid values stored in fields of those types.
        local typed = box.schema.space.create('typed', {
            format = {
                {name = 'id', type = 'unsigned'},
                {name = 'dec', type = 'decimal', is_nullable = true},
                {name = 'uid', type = 'uuid', is_nullable = true},
            },
        })
        typed:create_index('primary', {type = 'tree', parts = {'id'}})

        -- A crud-style space (bucket_id filled by the crud stand-in).
        local customers = box.schema.space.create('customers', {
            format = {
                {name = 'id', type = 'unsigned'},
                {name = 'bucket_id', type = 'unsigned'},
                {name = 'name', type = 'string'},
                {name = 'age', type = 'number'},
            },
        })
        customers:create_index('id', {parts = {'id'}})
        customers:create_index('bucket_id', {parts = {'bucket_id'}, unique = false})
        customers:create_index('age', {parts = {'age'}, unique = false})

        local funcs = {'echo', 'whoami', 'push_n', 'sleep', 'raise_error',
                       'decimal_uuid', 'ro_set', 'counter_inc', 'counter_get'}
        for _, name in ipairs(funcs) do
            box.schema.func.create(name, {if_not_exists = true})
        end
    end)
end

--- Define the global Lua functions the tests call (on every start: globals
-- do not survive a restart).
function M.define_functions()
    -- The crud stand-in (tests/real/lua/crud.lua), as the global 'crud' that
    -- clients call as 'crud.insert' etc., and as require('crud').
    local crud = dofile(lua_dir .. 'crud.lua')
    package.loaded['crud'] = crud
    rawset(_G, 'crud', crud)

    -- Returns all its arguments unchanged.
    rawset(_G, 'echo', function(...) return ... end)

    -- Identifies the instance that answered (pool routing tests).
    rawset(_G, 'whoami', function()
        return {box.info.id, box.info.uuid, box.cfg.listen, box.info.ro}
    end)

    -- Sends n out-of-band messages (box.session.push) then returns 'done'.
    rawset(_G, 'push_n', function(n)
        for i = 1, n do
            box.session.push(i)
        end
        return 'done'
    end)

    -- Sleeps s seconds then returns s (slow requests, cancellation, kills).
    rawset(_G, 'sleep', function(s)
        fiber.sleep(s)
        return s
    end)

    -- Raises a custom error, so the reply carries an extended error stack.
    rawset(_G, 'raise_error', function()
        box.error({type = 'TestError', reason = 'raised on purpose', code = 4242})
    end)

    -- Returns a decimal and a uuid (MP_EXT values produced by the server).
    rawset(_G, 'decimal_uuid', function()
        return decimal.new('123.456'), uuid.fromstr('f6423bdf-b49e-4913-b361-09740c5c76cb')
    end)

    -- Switches the instance between read-only and writable.
    rawset(_G, 'ro_set', function(flag)
        box.cfg{read_only = flag}
        return box.info.ro
    end)

    -- A per-process counter, to count how many times a request really ran.
    local counter = 0
    rawset(_G, 'counter_inc', function()
        counter = counter + 1
        return counter
    end)
    rawset(_G, 'counter_get', function() return counter end)
    rawset(_G, 'counter_reset', function() counter = 0 end)

    M.define_gates()
end

--- How long a request may stay held by a gate that is never opened (seconds).
local GATE_MAX_WAIT = 60

--- Gates: server-side synchronisation for tests, instead of sleeps.
-- A request calling gate_wait(name, ...) is counted as arrived and held until
-- the test opens the gate through the admin console (gate_open(name)); it
-- then returns its extra arguments and is counted as left. The test waits for
-- arrivals / departures with gate_arrived(name, n) / gate_left(name, n),
-- which block (on a fiber.cond, no polling) until n requests got that far.
-- Names keep the gates of different tests apart.
function M.define_gates()
    local gates = {}
    local function gate_of(name)
        name = name or 'gate'
        local g = gates[name]
        if g == nil then
            g = {name = name, open = false, arrived = 0, left = 0, cond = fiber.cond()}
            gates[name] = g
        end
        return g
    end

    -- Block until g[field] >= n; error after timeout seconds.
    local function await(g, field, n, timeout)
        local deadline = fiber.clock() + (timeout or 10)
        while g[field] < n do
            local remaining = deadline - fiber.clock()
            if remaining <= 0 then
                error(string.format('gate %s: %d of %d requests %s after %s s',
                    g.name, g[field], n, field, tostring(timeout or 10)), 0)
            end
            g.cond:wait(remaining)
        end
        return g[field]
    end

    rawset(_G, 'gate_wait', function(name, ...)
        local g = gate_of(name)
        g.arrived = g.arrived + 1
        g.cond:broadcast()
        local deadline = fiber.clock() + GATE_MAX_WAIT
        while not g.open and fiber.clock() < deadline do
            g.cond:wait(deadline - fiber.clock())
        end
        g.left = g.left + 1
        g.cond:broadcast()
        if not g.open then
            error(string.format('gate %s was never opened', g.name), 0)
        end
        return ...
    end)
    rawset(_G, 'gate_arrived', function(name, n, timeout)
        return await(gate_of(name), 'arrived', n, timeout)
    end)
    rawset(_G, 'gate_left', function(name, n, timeout)
        return await(gate_of(name), 'left', n, timeout)
    end)
    rawset(_G, 'gate_open', function(name)
        local g = gate_of(name)
        g.open = true
        g.cond:broadcast()
        return g.arrived
    end)
end

--- Write the readiness marker the Python side polls for (atomically: the
-- file appears complete or not at all).
function M.mark_ready()
    local path = M.env('TT_READY_FILE', nil)
    if path == nil then
        return
    end
    local tmp = path .. '.tmp'
    local fh = assert(fio.open(tmp, {'O_WRONLY', 'O_CREAT', 'O_TRUNC'}, tonumber('644', 8)))
    fh:write(tostring(box.info.uuid) .. '\n')
    fh:close()
    assert(fio.rename(tmp, path))
    log.info('test instance ready: %s', tostring(box.cfg.listen))
end

return M
