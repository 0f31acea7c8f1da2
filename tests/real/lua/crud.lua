-- A single-storage stand-in for the tarantool/crud module, for tests.
--
-- The real crud module needs vshard (a router and storages); neither is
-- installed here.  This file implements crud's *call interface* on one
-- instance, so the client's crud_* methods can be tested against a real
-- server: the same function names (crud.insert, crud.select, ...), the same
-- arguments, and the same answer shapes:
--
--   * result, nil     with result = {metadata = {{name=, type=, is_nullable=}...},
--                                    rows = {tuple...}}
--   * nil, err        with err = {class_name=, err=, str=, file=, line=, stack=}
--   * *_many:         result (or nil when nothing went through), errs (a list of
--                     errors, each with operation_data = the failed tuple/object)
--   * count:          number, nil;   len: number;   truncate: true
--   * storage_info:   {[instance uuid] = {status = 'running', is_master = bool}}
--   * stats:          {} (statistics are disabled, as by default in crud)
--
-- What differs from the real module: a single storage (no sharding, so
-- bucket_id is computed but only stored), select supports the options
-- `first` (positive), `after`, `fields`; other options (timeout, mode,
-- bucket_id, batch_size, prefer_replica, balance, ...) are accepted and ignored.

local digest = require('digest')
local msgpack = require('msgpack')

local crud = {}

local BUCKET_COUNT = 3000

-- ------------------------------------------------------------------ errors

local function make_error(class_name, message, operation_data)
    local info = debug.getinfo(2, 'Sl') or {}
    local err = {
        class_name = class_name,
        err = message,
        str = class_name .. ': ' .. message,
        file = info.short_src or 'crud.lua',
        line = info.currentline or 0,
        stack = debug.traceback('', 2),
    }
    if operation_data ~= nil then
        err.operation_data = operation_data
    end
    return err
end

local function error_text(e)
    if type(e) == 'cdata' or type(e) == 'userdata' then
        return tostring(e.message or e)
    end
    return tostring(e)
end

-- ------------------------------------------------------------------ schema

local function get_space(space_name)
    local space = box.space[space_name]
    if space == nil then
        return nil, string.format('Space %q doesn\'t exist', tostring(space_name))
    end
    return space
end

local function metadata(space)
    local result = {}
    for _, field in ipairs(space:format()) do
        table.insert(result, {
            name = field.name,
            type = field.type,
            is_nullable = field.is_nullable or false,
        })
    end
    return result
end

local function field_numbers(space)
    local numbers = {}
    for i, field in ipairs(space:format()) do
        numbers[field.name] = i
    end
    return numbers
end

-- The primary key of a tuple (as a Lua table).
local function primary_key(space, tuple)
    local key = {}
    for _, part in ipairs(space.index[0].parts) do
        table.insert(key, tuple[part.fieldno])
    end
    return key
end

-- Fill bucket_id (when the space has that field and it is empty) from the
-- primary key, as vshard.router.bucket_id_strcrc32 does.
local function with_bucket_id(space, tuple)
    local fieldno = field_numbers(space)['bucket_id']
    if fieldno == nil then
        return tuple
    end
    local copy = {}
    for i = 1, table.maxn(tuple) do
        copy[i] = tuple[i]
    end
    if copy[fieldno] == nil then
        local key = primary_key(space, copy)
        copy[fieldno] = digest.crc32(msgpack.encode(key)) % BUCKET_COUNT + 1
    end
    return copy
end

-- An object (field name -> value) as a tuple in the space's field order.
local function flatten(space, object)
    if type(object) ~= 'table' then
        return nil, 'Object should be a table, got ' .. type(object)
    end
    local numbers = field_numbers(space)
    for name in pairs(object) do
        if numbers[name] == nil then
            return nil, string.format('Unknown field %q is specified', tostring(name))
        end
    end
    local tuple = {}
    for i, field in ipairs(space:format()) do
        local value = object[field.name]
        if value == nil and not field.is_nullable and field.name ~= 'bucket_id' then
            return nil, string.format('Field %q isn\'t nullable', field.name)
        end
        tuple[i] = value
    end
    return tuple
end

-- Keep only `fields` (by name) of every row; the metadata shrinks alike.
local function cut(space, rows, fields)
    local meta = metadata(space)
    if fields == nil then
        return {metadata = meta, rows = rows}
    end
    local numbers = field_numbers(space)
    local new_meta, picks = {}, {}
    for _, name in ipairs(fields) do
        local n = numbers[name]
        if n == nil then
            return nil, string.format('Space format doesn\'t contain field named %q', tostring(name))
        end
        table.insert(picks, n)
        table.insert(new_meta, meta[n])
    end
    local new_rows = {}
    for _, row in ipairs(rows) do
        local r = {}
        for i, n in ipairs(picks) do
            r[i] = row[n]
        end
        table.insert(new_rows, r)
    end
    return {metadata = new_meta, rows = new_rows}
end

local function result_of(space, rows, opts)
    local result, err = cut(space, rows, opts and opts.fields)
    if result == nil then
        return nil, make_error('FieldsError', err)
    end
    return result
end

-- ------------------------------------------------------ single-tuple DML

local function write_one(class_name, space_name, opts, fn)
    local space, err = get_space(space_name)
    if space == nil then
        return nil, make_error(class_name, err)
    end
    local ok, out = pcall(fn, space)
    if not ok then
        return nil, make_error(class_name, error_text(out))
    end
    local rows = {}
    if out ~= nil then
        rows = {out}
    end
    return result_of(space, rows, opts)
end

function crud.insert(space_name, tuple, opts)
    return write_one('InsertError', space_name, opts, function(space)
        return space:insert(with_bucket_id(space, tuple))
    end)
end

function crud.insert_object(space_name, object, opts)
    return write_one('InsertError', space_name, opts, function(space)
        local tuple, err = flatten(space, object)
        if tuple == nil then error(err, 0) end
        return space:insert(with_bucket_id(space, tuple))
    end)
end

function crud.replace(space_name, tuple, opts)
    return write_one('ReplaceError', space_name, opts, function(space)
        return space:replace(with_bucket_id(space, tuple))
    end)
end

function crud.replace_object(space_name, object, opts)
    return write_one('ReplaceError', space_name, opts, function(space)
        local tuple, err = flatten(space, object)
        if tuple == nil then error(err, 0) end
        return space:replace(with_bucket_id(space, tuple))
    end)
end

function crud.get(space_name, key, opts)
    return write_one('GetError', space_name, opts, function(space)
        return space:get(key)
    end)
end

function crud.update(space_name, key, operations, opts)
    return write_one('UpdateError', space_name, opts, function(space)
        return space:update(key, operations)
    end)
end

function crud.delete(space_name, key, opts)
    return write_one('DeleteError', space_name, opts, function(space)
        return space:delete(key)
    end)
end

function crud.upsert(space_name, tuple, operations, opts)
    return write_one('UpsertError', space_name, opts, function(space)
        space:upsert(with_bucket_id(space, tuple), operations)
        return nil
    end)
end

function crud.upsert_object(space_name, object, operations, opts)
    return write_one('UpsertError', space_name, opts, function(space)
        local tuple, err = flatten(space, object)
        if tuple == nil then error(err, 0) end
        space:upsert(with_bucket_id(space, tuple), operations)
        return nil
    end)
end

-- --------------------------------------------------------------- batches

-- Run `fn(space, item)` for every item; collect rows and per-item errors.
-- opts.stop_on_error stops at the first failure; opts.rollback_on_error
-- undoes everything if anything failed (one transaction).
local function write_many(class_name, space_name, items, opts, fn)
    opts = opts or {}
    local space, err = get_space(space_name)
    if space == nil then
        return nil, {make_error(class_name, err)}
    end
    if type(items) ~= 'table' then
        return nil, {make_error(class_name, 'Batch should be a table')}
    end
    local rows, errs = {}, {}
    local in_txn = opts.rollback_on_error == true
    if in_txn then box.begin() end
    for _, item in ipairs(items) do
        local ok, out = pcall(fn, space, item)
        if ok then
            if out ~= nil then table.insert(rows, out) end
        else
            table.insert(errs, make_error(class_name, error_text(out), item))
            if opts.stop_on_error then break end
        end
    end
    if in_txn then
        if #errs > 0 then
            box.rollback()
            rows = {}
        else
            box.commit()
        end
    end
    local result = nil
    if #rows > 0 or #errs == 0 then
        local cut_err
        result, cut_err = result_of(space, rows, opts)
        if result == nil then
            return nil, {cut_err}
        end
    end
    if #errs == 0 then
        return result, nil
    end
    return result, errs
end

function crud.insert_many(space_name, tuples, opts)
    return write_many('InsertManyError', space_name, tuples, opts, function(space, tuple)
        return space:insert(with_bucket_id(space, tuple))
    end)
end

function crud.insert_object_many(space_name, objects, opts)
    return write_many('InsertManyError', space_name, objects, opts, function(space, object)
        local tuple, err = flatten(space, object)
        if tuple == nil then error(err, 0) end
        return space:insert(with_bucket_id(space, tuple))
    end)
end

function crud.replace_many(space_name, tuples, opts)
    return write_many('ReplaceManyError', space_name, tuples, opts, function(space, tuple)
        return space:replace(with_bucket_id(space, tuple))
    end)
end

function crud.replace_object_many(space_name, objects, opts)
    return write_many('ReplaceManyError', space_name, objects, opts, function(space, object)
        local tuple, err = flatten(space, object)
        if tuple == nil then error(err, 0) end
        return space:replace(with_bucket_id(space, tuple))
    end)
end

function crud.upsert_many(space_name, tuples_operations, opts)
    return write_many('UpsertManyError', space_name, tuples_operations, opts,
        function(space, pair)
            space:upsert(with_bucket_id(space, pair[1]), pair[2] or {})
            return nil
        end)
end

function crud.upsert_object_many(space_name, objects_operations, opts)
    return write_many('UpsertManyError', space_name, objects_operations, opts,
        function(space, pair)
            local tuple, err = flatten(space, pair[1])
            if tuple == nil then error(err, 0) end
            space:upsert(with_bucket_id(space, tuple), pair[2] or {})
            return nil
        end)
end

-- ----------------------------------------------------------------- reads

local ITERATORS = {
    ['='] = 'EQ', ['=='] = 'EQ', ['<'] = 'LT', ['<='] = 'LE', ['>'] = 'GT', ['>='] = 'GE',
}

-- Compare two scalars or two arrays of scalars (lexicographically): -1, 0, 1.
local function compare(a, b)
    if type(a) ~= 'table' then a = {a} end
    if type(b) ~= 'table' then b = {b} end
    for i = 1, math.min(#a, #b) do
        if a[i] ~= b[i] then
            if a[i] == nil then return -1 end
            if b[i] == nil then return 1 end
            return a[i] < b[i] and -1 or 1
        end
    end
    return 0
end

local function holds(op, cmp)
    if op == '=' or op == '==' then return cmp == 0 end
    if op == '<' then return cmp < 0 end
    if op == '<=' then return cmp <= 0 end
    if op == '>' then return cmp > 0 end
    if op == '>=' then return cmp >= 0 end
    error('Unknown operator ' .. tostring(op), 0)
end

-- The value a condition's field identifier picks from a tuple.
local function picker(space, identifier)
    local index = space.index[identifier]
    if type(identifier) == 'string' and index ~= nil then
        return function(tuple)
            local key = {}
            for _, part in ipairs(index.parts) do
                table.insert(key, tuple[part.fieldno])
            end
            return key
        end, index
    end
    local fieldno = identifier
    if type(identifier) == 'string' then
        fieldno = field_numbers(space)[identifier]
    end
    if fieldno == nil then
        error(string.format('No field or index %q found', tostring(identifier)), 0)
    end
    return function(tuple) return tuple[fieldno] end, nil
end

local function matching_rows(space, conditions, opts)
    conditions = conditions or {}
    opts = opts or {}
    if opts.first ~= nil and opts.first < 0 then
        error('Negative first is not supported by this test stand-in', 0)
    end
    local scan_index, scan_key, scan_iter = space.index[0], {}, 'GE'
    local scan_chosen = false
    local filters = {}
    for _, cond in ipairs(conditions) do
        local op, identifier, value = cond[1], cond[2], cond[3]
        if ITERATORS[op] == nil then
            error('Unknown operator ' .. tostring(op), 0)
        end
        local pick, index = picker(space, identifier)
        -- The first condition on an index name picks the index to scan.
        if index ~= nil and not scan_chosen then
            scan_chosen = true
            scan_index, scan_iter = index, ITERATORS[op]
            scan_key = type(value) == 'table' and value or {value}
        end
        table.insert(filters, {op = op, pick = pick, value = value})
    end
    -- Select scans in index order; '<' and '<=' walk backwards like box does.
    local rows = {}
    local after_key = nil
    if opts.after ~= nil then
        after_key = primary_key(space, opts.after)
    end
    local skipping = after_key ~= nil
    for _, tuple in scan_index:pairs(scan_key, {iterator = scan_iter}) do
        if skipping then
            if compare(primary_key(space, tuple), after_key) == 0 then
                skipping = false
            end
        else
            local ok = true
            for _, f in ipairs(filters) do
                if not holds(f.op, compare(f.pick(tuple), f.value)) then
                    ok = false
                    break
                end
            end
            if ok then
                table.insert(rows, tuple)
                if opts.first ~= nil and #rows >= opts.first then
                    break
                end
            end
        end
    end
    return rows
end

function crud.select(space_name, conditions, opts)
    local space, err = get_space(space_name)
    if space == nil then
        return nil, make_error('SelectError', err)
    end
    local ok, rows = pcall(matching_rows, space, conditions, opts)
    if not ok then
        return nil, make_error('SelectError', error_text(rows))
    end
    return result_of(space, rows, opts)
end

function crud.count(space_name, conditions, opts)
    local space, err = get_space(space_name)
    if space == nil then
        return nil, make_error('CountError', err)
    end
    local ok, rows = pcall(matching_rows, space, conditions, {})
    if not ok then
        return nil, make_error('CountError', error_text(rows))
    end
    return #rows, nil
end

local function border(class_name, method, space_name, index_name, opts)
    local space, err = get_space(space_name)
    if space == nil then
        return nil, make_error(class_name, err)
    end
    local index = space.index[index_name or 0]
    if index == nil then
        return nil, make_error(class_name,
            string.format('Index %q of space %q doesn\'t exist', tostring(index_name), space_name))
    end
    local tuple = index[method](index)
    local rows = {}
    if tuple ~= nil then rows = {tuple} end
    return result_of(space, rows, opts)
end

function crud.min(space_name, index_name, opts)
    return border('BorderError', 'min', space_name, index_name, opts)
end

function crud.max(space_name, index_name, opts)
    return border('BorderError', 'max', space_name, index_name, opts)
end

function crud.len(space_name, _opts)
    local space, err = get_space(space_name)
    if space == nil then
        return nil, make_error('LenError', err)
    end
    return space:len()
end

-- -------------------------------------------------------- administration

function crud.truncate(space_name, _opts)
    local space, err = get_space(space_name)
    if space == nil then
        return nil, make_error('TruncateError', err)
    end
    space:truncate()
    return true
end

function crud.storage_info(_opts)
    return {
        [box.info.uuid] = {status = 'running', is_master = not box.info.ro},
    }
end

function crud.stats(_space_name)
    return {}
end

--- Rows as objects, by the metadata names (a local helper in crud too).
function crud.unflatten_rows(rows, meta)
    local result = {}
    for _, row in ipairs(rows) do
        local object = {}
        for i, field in ipairs(meta) do
            object[field.name] = row[i]
        end
        table.insert(result, object)
    end
    return result
end

return crud
