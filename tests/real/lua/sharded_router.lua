-- One vshard router of the test cluster (tests/real/_cluster.py) with crud's
-- router part: the instance the clients under test talk to.
--
-- Environment: the TT_* every instance gets (see common.lua) and LUA_ROCKS_DIR /
-- TT_SHARDING / TT_BUCKET_COUNT (see sharded_common.lua). The cluster is
-- bootstrapped by the Python side (vshard.router.bootstrap through the admin
-- console of one router) once every storage is up.
local script_dir = debug.getinfo(1, 'S').source:sub(2):match('(.*/)') or './'
local common = dofile(script_dir .. 'common.lua')
local sharded = dofile(script_dir .. 'sharded_common.lua')

local vshard, crud = sharded.start(common)

local cfg = common.version_cfg(sharded.vshard_cfg(common))
cfg.listen = common.env('TT_LISTEN', '127.0.0.1:3301')
cfg.work_dir = common.env('TT_WORK_DIR', nil)
cfg.memtx_memory = 64 * 1024 * 1024
cfg.checkpoint_interval = 0
vshard.router.cfg(cfg)

box.once('trio_tarantool_router_v1', function()
    box.schema.user.create('test', {password = 'test-password', if_not_exists = true})
    box.schema.user.grant('test', 'read,write,execute,create,drop,alter', 'universe',
        nil, {if_not_exists = true})
    box.schema.func.create('whoami', {if_not_exists = true})
end)

crud.init_router()
crud.cfg{stats = true}
rawset(_G, 'crud', crud)
common.mark_ready()
