-- Shared by sharded_storage.lua and sharded_router.lua: the real crud, vshard,
-- checks and errors modules on package.path, and the cluster settings that
-- tests/real/_cluster.py passes through the environment.
--
-- Environment:
--   LUA_ROCKS_DIR    the folder holding crud-1.7.5/, vshard-0.1.42/, checks-3.4.1/,
--                    errors-2.2.1/ (../shared/lua-rocks from the project root)
--   TT_SHARDING      the vshard 'sharding' table as JSON (replicaset uuid ->
--                    {master = 'auto', replicas = {instance uuid -> {uri, name}}})
--   TT_BUCKET_COUNT  vshard's bucket_count
local json = require('json')

local M = {}

--- Put the real modules first on package.path (nothing is installed system-wide).
function M.use_rocks()
    local root = os.getenv('LUA_ROCKS_DIR')
    if root == nil or root == '' then
        error('LUA_ROCKS_DIR is not set: it must name the lua-rocks folder', 0)
    end
    local paths = {}
    for _, d in ipairs({'crud-1.7.5', 'vshard-0.1.42', 'checks-3.4.1', 'errors-2.2.1'}) do
        table.insert(paths, root .. '/' .. d .. '/?.lua')
        table.insert(paths, root .. '/' .. d .. '/?/init.lua')
    end
    package.path = table.concat(paths, ';') .. ';' .. package.path
    -- Tarantool 3.x first searches the folder of the script that calls
    -- require(), which holds the crud stand-in (tests/real/lua/crud.lua): the
    -- real module is preloaded from its file, so require('crud') finds it first.
    package.preload['crud'] = assert(loadfile(root .. '/crud-1.7.5/crud.lua'))
end

--- The vshard configuration shared by every storage and router (box options
-- are added by each script).
function M.vshard_cfg(common)
    local sharding = json.decode(assert(os.getenv('TT_SHARDING'), 'TT_SHARDING is not set'))
    return {
        sharding = sharding,
        bucket_count = tonumber(common.env('TT_BUCKET_COUNT', '60')),
        -- Routers look for a replicaset's writable member by themselves
        -- (master = 'auto' in every replicaset), so a promotion needs no
        -- re-cfg; the failover fiber pings replicas once a second.
        failover_ping_timeout = 1,
        -- The tests create buckets once and never move them.
        rebalancer_mode = 'off',
    }
end

--- who: which instance answered (the tests ask a router which one it is).
function M.define_whoami()
    rawset(_G, 'whoami', function()
        return {box.info.id, box.info.uuid, box.cfg.listen, box.info.ro}
    end)
end

--- What every cluster instance does first: follow its parent, open the admin
--- console, put the real modules on package.path, define whoami, and load vshard
--- (a global: its remote calls resolve through _G) and crud. Returns vshard, crud.
function M.start(common)
    common.watch_parent()
    common.listen_admin()
    M.use_rocks()
    M.define_whoami()
    local vshard = require('vshard')
    rawset(_G, 'vshard', vshard)
    return vshard, require('crud')
end

return M
