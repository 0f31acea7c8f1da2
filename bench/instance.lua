-- Tarantool init script for the benchmark harness. bench/servers.py starts it
-- through the test suite's process manager (tests/real/_servers.py), which
-- sets the TT_* variables:
--   TT_LISTEN          "127.0.0.1:PORT" for IPROTO
--   TT_WORK_DIR        data directory (a fresh temporary one per instance)
--   TT_ADMIN_SOCKET    unix socket of the Lua console: the harness drives roles
--                      through it, independent of any client library under test
--   TT_READY_FILE      written last, once the instance holds the full data set
--   TT_WAL_MODE        'none' for the single instance, 'write' for the replicaset
--   TT_READ_ONLY       'true' on replicas
--   TT_REPLICATION     comma separated "user:pass@host:port" peers ('' = standalone)
--   TT_QUORUM          replication_connect_quorum (default: every peer)
-- and the harness adds:
--   BENCH_ROWS         number of rows pre-filled into space 'bench' (bootstrap only)
local fiber = require('fiber')
local fio = require('fio')

local function env(name, default)
    local v = os.getenv(name)
    if v == nil or v == '' then return default end
    return v
end

-- The console first, so that a start-up that hangs can still be inspected.
local admin = env('TT_ADMIN_SOCKET', nil)
if admin ~= nil then
    fio.unlink(admin)
    require('console').listen('unix/:' .. admin)
end

local replication = {}
for peer in string.gmatch(env('TT_REPLICATION', ''), '[^,]+') do
    table.insert(replication, peer)
end
local rows = tonumber(env('BENCH_ROWS', '10000'))

box.cfg{
    listen = env('TT_LISTEN', '127.0.0.1:3301'),
    work_dir = env('TT_WORK_DIR', nil),
    wal_mode = env('TT_WAL_MODE', 'none'),
    read_only = env('TT_READ_ONLY', 'false') == 'true',
    replication = #replication > 0 and replication or nil,
    replication_connect_quorum = #replication > 0
        and tonumber(env('TT_QUORUM', tostring(#replication))) or nil,
    replication_timeout = 0.5,
    memtx_memory = 256 * 1024 * 1024,
    net_msg_max = 4096,          -- 1000 concurrent requests on one connection
    readahead = 1024 * 1024,
    log_level = 4,
    feedback_enabled = false,    -- on by default (2.x and 3.x): no phoning home
    custom_proc_title = 'bench ' .. env('TT_LISTEN', ''),
}

-- Schema and data are created once on the bootstrap master and replicate to the
-- replicas. Replicas skip this: box.once waits for the instance to become writable,
-- which would hold a replica's init script forever.
local function bootstrap()
    box.schema.user.create('bench', {password = 'bench', if_not_exists = true})
    box.schema.user.grant('bench', 'read,write,execute,create,drop', 'universe',
                          nil, {if_not_exists = true})
    box.schema.user.grant('bench', 'replication', nil, nil, {if_not_exists = true})
    local fmt = {{name = 'id', type = 'unsigned'}, {name = 'val', type = 'string'}}
    -- 'bench' is read by select/call/sql; 'bench_w' takes the replace workload so
    -- that writes never disturb what the readers check.
    local s = box.schema.space.create('bench', {format = fmt, if_not_exists = true})
    s:create_index('pk', {parts = {'id'}, if_not_exists = true})
    local w = box.schema.space.create('bench_w', {format = fmt, if_not_exists = true})
    w:create_index('pk', {parts = {'id'}, if_not_exists = true})
    box.begin()
    for i = 1, rows do
        s:replace{i, string.format('value-%08d', i)}
    end
    box.commit()
end
if not box.cfg.read_only then
    box.once('bench_schema_v1', bootstrap)
end

-- Stored procedure for the "call" workload: a primary-key read, so the reply can be
-- checked against the key that was asked for.
function bench_get(id)
    return box.space.bench:get(id)
end

-- Ready means: running, with every row (a replica waits for replication).
while box.info.status ~= 'running' or box.space.bench == nil or box.space.bench_w == nil
        or box.space.bench:len() ~= rows do
    fiber.sleep(0.05)
end
local ready = env('TT_READY_FILE', nil)
if ready ~= nil then
    local fh = assert(fio.open(ready .. '.tmp', {'O_WRONLY', 'O_CREAT', 'O_TRUNC'},
                               tonumber('644', 8)))
    fh:write(tostring(box.info.uuid) .. '\n')
    fh:close()
    assert(fio.rename(ready .. '.tmp', ready))
end
