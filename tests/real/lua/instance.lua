-- A standalone test instance.
--
-- Environment (set by tests/real/_servers.py):
--   TT_LISTEN        what box.cfg.listen gets (host:port or a unix socket path)
--   TT_WORK_DIR      data directory (snapshots, xlogs)
--   TT_WAL_MODE      'write' (default), 'fsync' or 'none'
--   TT_READ_ONLY     'true' to start read-only (after the schema exists)
--   TT_ADMIN_SOCKET  unix socket path for the admin console
--   TT_READY_FILE    written at the very end, once the instance serves requests
local script_dir = debug.getinfo(1, 'S').source:sub(2):match('(.*/)') or './'
local common = dofile(script_dir .. 'common.lua')

common.watch_parent()
common.listen_admin()
common.define_functions()

local read_only = common.env_bool('TT_READ_ONLY', false)
box.cfg(common.version_cfg{
    listen = common.env('TT_LISTEN', '127.0.0.1:3301'),
    work_dir = common.env('TT_WORK_DIR', nil),
    memtx_memory = 64 * 1024 * 1024,
    memtx_max_tuple_size = 8 * 1024 * 1024,
    wal_mode = common.env('TT_WAL_MODE', 'write'),
    read_only = false,
    checkpoint_interval = 0,
})

common.create_schema()
if read_only then
    box.cfg{read_only = true}
end
common.mark_ready()
