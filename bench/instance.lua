-- Tarantool init script for the benchmark harness (bench/servers.py starts it).
--
-- One script serves both set-ups, configured through environment variables so the
-- harness needs no templating:
--   BENCH_LISTEN       "127.0.0.1:PORT" for IPROTO
--   BENCH_ADMIN        path of a unix socket for the Lua console (the harness
--                      drives roles and readiness through it, independent of any
--                      client library under test)
--   BENCH_WAL_MODE     'none' for the single instance, 'write' for the replicaset
--   BENCH_REPLICATION  comma separated "user:pass@host:port" peers ('' = standalone)
--   BENCH_READ_ONLY    'true' on replicas
--   BENCH_ROWS         number of rows pre-filled into space 'bench' (bootstrap only)
--   BENCH_INSTANCE     instance name, only used in logs

local function env(name, default)
    local v = os.getenv(name)
    if v == nil or v == '' then return default end
    return v
end

local replication = {}
for peer in string.gmatch(env('BENCH_REPLICATION', ''), '[^,]+') do
    table.insert(replication, peer)
end

box.cfg{
    listen = env('BENCH_LISTEN', '127.0.0.1:3301'),
    wal_mode = env('BENCH_WAL_MODE', 'none'),
    read_only = env('BENCH_READ_ONLY', 'false') == 'true',
    replication = #replication > 0 and replication or nil,
    replication_connect_quorum = #replication > 0 and #replication or nil,
    replication_timeout = 0.5,
    memtx_memory = 256 * 1024 * 1024,
    net_msg_max = 4096,          -- 1000 concurrent requests on one connection
    readahead = 1024 * 1024,
    log_level = 4,
    custom_proc_title = env('BENCH_INSTANCE', 'bench'),
}

-- Schema and data are created once on the bootstrap master and replicate to the
-- replicas. Replicas skip this: box.once waits for the instance to become writable,
-- which would hold a replica's init script (and its console) forever.
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
    local rows = tonumber(env('BENCH_ROWS', '10000'))
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

require('console').listen(env('BENCH_ADMIN', 'admin.sock'))
