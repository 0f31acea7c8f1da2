-- One member of a test replicaset (all members run this script).
--
-- Environment (set by tests/real/_servers.py):
--   TT_LISTEN        this member's listen address (host:port)
--   TT_REPLICATION   comma-separated replication URIs of every member,
--                    e.g. replicator:replicator-password@127.0.0.1:40001
--   TT_READ_ONLY     'true' for replicas, 'false' for the master
--   TT_QUORUM        replication_connect_quorum (default: every member)
--   TT_CONNECT_TIMEOUT  replication_connect_timeout (default 10)
--   TT_BOOT_REPLICATION_TIMEOUT  replication_timeout while box.cfg runs
--                    (default: the steady 0.5); see below
--   TT_WORK_DIR, TT_WAL_MODE, TT_ADMIN_SOCKET, TT_READY_FILE as in instance.lua
--   TT_ELECTION_MODE  when set (e.g. 'candidate', Tarantool >= 2.6.1): raft
--                    elections decide the leader (TT_READ_ONLY is ignored), with
--   TT_SYNCHRO_QUORUM replication_synchro_quorum (default 2) and
--   TT_ELECTION_TIMEOUT election_timeout in seconds (default 0.3); set by
--                    _servers.py after the first bootstrap (see start_replicaset)
--
-- The master creates the schema (users, spaces, functions); a replica is
-- ready once it has replicated the space 'tester'.
local fiber = require('fiber')
local script_dir = debug.getinfo(1, 'S').source:sub(2):match('(.*/)') or './'
local common = dofile(script_dir .. 'common.lua')

common.watch_parent()
common.listen_admin()
common.define_functions()

local replication = {}
for uri in common.env('TT_REPLICATION', ''):gmatch('[^,]+') do
    table.insert(replication, uri)
end
local read_only = common.env_bool('TT_READ_ONLY', true)
local election_mode = common.env('TT_ELECTION_MODE', nil)

-- replication_timeout is the heartbeat period (a peer silent for 4 times
-- that is disconnected) and also how long a member waits before it retries a
-- peer that refused it (not listening yet, or still bootstrapping). When a
-- whole set starts at once every member hits such retries, so the first
-- bootstrap runs with a short value (TT_BOOT_REPLICATION_TIMEOUT, set by
-- _servers.py for that start only) and switches to the steady one as soon as
-- box.cfg returns.
local steady_timeout = 0.5
local boot_timeout = tonumber(common.env('TT_BOOT_REPLICATION_TIMEOUT', tostring(steady_timeout)))

local cfg = common.version_cfg{
    listen = common.env('TT_LISTEN', '127.0.0.1:3301'),
    work_dir = common.env('TT_WORK_DIR', nil),
    memtx_memory = 64 * 1024 * 1024,
    memtx_max_tuple_size = 8 * 1024 * 1024,
    wal_mode = common.env('TT_WAL_MODE', 'write'),
    replication = replication,
    read_only = read_only,
    replication_connect_quorum = tonumber(common.env('TT_QUORUM', tostring(#replication))),
    replication_connect_timeout = tonumber(common.env('TT_CONNECT_TIMEOUT', '10')),
    replication_timeout = boot_timeout,
    replication_sync_timeout = 5,
    checkpoint_interval = 0,
}
if election_mode ~= nil then
    -- A (re)started member of an election replicaset: the election decides
    -- who is writable, from the first box.cfg on.
    cfg.election_mode = election_mode
    cfg.replication_synchro_quorum = tonumber(common.env('TT_SYNCHRO_QUORUM', '2'))
    cfg.election_timeout = tonumber(common.env('TT_ELECTION_TIMEOUT', '0.3'))
    cfg.read_only = false
end
box.cfg(cfg)
if boot_timeout ~= steady_timeout then
    box.cfg{replication_timeout = steady_timeout}
end

if not box.info.ro then
    box.once('trio_tarantool_replicator_v1', function()
        box.schema.user.create('replicator', {password = 'replicator-password',
                                              if_not_exists = true})
        box.schema.user.grant('replicator', 'replication', nil, nil, {if_not_exists = true})
    end)
    common.create_schema()
end

-- A replica serves the tests only once it has the schema.
while box.space.tester == nil or box.space._func.index.name:get('whoami') == nil do
    fiber.sleep(0.05)
end
common.mark_ready()
