-- One vshard storage of the test cluster (tests/real/_cluster.py): the real
-- vshard storage and crud's storage part, and the sharded space 'customers'.
--
-- Environment (besides the TT_* every instance gets, see common.lua, and
-- LUA_ROCKS_DIR / TT_SHARDING / TT_BUCKET_COUNT, see sharded_common.lua):
--   TT_INSTANCE_UUID  this storage's uuid in TT_SHARDING
--   TT_READ_ONLY      'false' for the replicaset's master, 'true' for its replica
--   TT_QUORUM         replication_connect_quorum (default: both members)
--   TT_BOOT_REPLICATION_TIMEOUT  replication_timeout while box.cfg runs (as in
--                    replica.lua: short during the first, simultaneous start)
--
-- The master creates the schema (vshard creates its own user and _bucket);
-- a replica is ready once it has replicated 'customers'.
local fiber = require('fiber')
local script_dir = debug.getinfo(1, 'S').source:sub(2):match('(.*/)') or './'
local common = dofile(script_dir .. 'common.lua')
local sharded = dofile(script_dir .. 'sharded_common.lua')

local vshard, crud = sharded.start(common)

local steady_timeout = 0.5
local cfg = common.version_cfg(sharded.vshard_cfg(common))
cfg.listen = common.env('TT_LISTEN', '127.0.0.1:3301')
cfg.work_dir = common.env('TT_WORK_DIR', nil)
cfg.memtx_memory = 64 * 1024 * 1024
cfg.read_only = common.env_bool('TT_READ_ONLY', true)
cfg.replication_connect_timeout = 10
cfg.replication_timeout = tonumber(common.env('TT_BOOT_REPLICATION_TIMEOUT',
                                              tostring(steady_timeout)))
cfg.checkpoint_interval = 0
local quorum = common.env('TT_QUORUM', nil)
if quorum ~= nil then
    cfg.replication_connect_quorum = tonumber(quorum)
end
vshard.storage.cfg(cfg, assert(common.env('TT_INSTANCE_UUID', nil), 'TT_INSTANCE_UUID'))
box.cfg{replication_timeout = steady_timeout}

if not box.info.ro then
    box.once('trio_tarantool_sharded_v1', function()
        box.schema.user.create('test', {password = 'test-password', if_not_exists = true})
        box.schema.user.grant('test', 'read,write,execute,create,drop,alter', 'universe',
            nil, {if_not_exists = true})
        local customers = box.schema.space.create('customers', {
            format = {
                {name = 'id', type = 'unsigned'},
                {name = 'bucket_id', type = 'unsigned'},
                {name = 'name', type = 'string'},
                {name = 'age', type = 'number'},
            },
            if_not_exists = true,
        })
        customers:create_index('id', {parts = {'id'}, if_not_exists = true})
        -- crud and vshard find a tuple's bucket through this index.
        customers:create_index('bucket_id', {parts = {'bucket_id'}, unique = false,
                                             if_not_exists = true})
        customers:create_index('age', {parts = {'age'}, unique = false, if_not_exists = true})
    end)
end
while box.space.customers == nil or box.space.customers.index.age == nil do
    fiber.sleep(0.05)
end
crud.init_storage()
rawset(_G, 'crud', crud)
common.mark_ready()
