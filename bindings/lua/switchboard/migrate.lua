-- switchboard/migrate.lua - the migration runner behind sb.migrate and
-- scripts/switchboard-migrate.
--
-- Owns: finding migration files (the call-center set embedded in
-- switchboard.migrations_data, or a user's folder), splitting a file into
-- statements (db:exec runs exactly one), the schema_migrations table,
-- applying pending versions one transaction each under a lock (PostgreSQL
-- pg_advisory_xact_lock, SQLite BEGIN IMMEDIATE), refusing changed
-- checksums unless accepted, status/check/accept, and generating
-- migrations_data.lua.  Not the schema itself: that is migrations/*.sql.
--
-- File names: NNNN_name.sql for both backends, or a NNNN_name.sqlite.sql /
-- NNNN_name.postgres.sql pair where the dialects differ.  See
-- docs/callcenter.md.

local core = require "switchboard.core"

local M = {}

local type, error, pairs, ipairs, tostring, tonumber, string, table, math, io =
  type, error, pairs, ipairs, tostring, tonumber, string, table, math, io

local TABLE = "schema_migrations"
-- pg_advisory_xact_lock key of every migration run ("sbmigrat")
M.LOCK_KEY = 0x73626D6967726174

local function new_error(fields)
  return core.error(fields)
end

------------------------------------------------------------ splitting

local TX_CONTROL = { BEGIN = true, COMMIT = true, ROLLBACK = true, END = true, START = true,
                     SAVEPOINT = true, RELEASE = true, ABORT = true }
local BLOCK_KIND = { TRIGGER = true, FUNCTION = true, PROCEDURE = true }

-- Index after the quoted run that opens at i with quote character q
-- (doubled quotes escape; backslashes too when bs).  Unterminated: #s + 1.
local function skip_quoted(s, i, q, bs)
  local close = q == "[" and "]" or q
  local pat = bs and ("[" .. close:gsub("%]", "%%]") .. "\\]") or nil
  local j = i + 1
  while true do
    local k = pat and s:find(pat, j) or s:find(close, j, true)
    if not k then return #s + 1 end
    if bs and s:sub(k, k) == "\\" then
      j = k + 2
    elseif close ~= "]" and s:sub(k + 1, k + 1) == close then
      j = k + 2
    else
      return k + 1
    end
  end
end

-- M.split(sql, backend) --> { { sql = text, line = n }, ... }
-- Splits at top-level semicolons, skipping quotes, comments, PostgreSQL
-- dollar-quoted bodies and E'' strings, and keeping CREATE TRIGGER /
-- FUNCTION / PROCEDURE ... BEGIN ... END blocks (CASE ... END counted)
-- whole.  Statements that are only comments are dropped.
function M.split(sql, backend)
  if type(sql) ~= "string" then error("bad argument #1 to 'split' (string expected)", 2) end
  local pg = backend == "postgresql"
  local out, n = {}, #sql
  local start, head, block, depth
  local line, line_pos = 1, 1  -- line number at position line_pos

  local function line_at(pos)
    while true do
      local nl = sql:find("\n", line_pos, true)
      if not nl or nl >= pos then return line end
      line, line_pos = line + 1, nl + 1
    end
  end

  local function reset() start, head, block, depth = nil, {}, false, 0 end
  local function flush(stop)
    if start then
      out[#out + 1] = { sql = sql:sub(start, stop - 1):gsub("%s+$", ""), line = line_at(start),
                        first_word = head[1] }
    end
    reset()
  end
  local function mark(i) if not start then start = i end end

  reset()
  local i = 1
  while i <= n do
    local c = sql:sub(i, i)
    local c2 = sql:sub(i + 1, i + 1)
    if c == "-" and c2 == "-" then
      i = (sql:find("\n", i, true) or n) + 1
    elseif c == "/" and c2 == "*" then
      local d, j = 1, i + 2
      while d > 0 and j <= n do
        local k = sql:find("[/*]", j)
        if not k then j = n + 1; break end
        local two = sql:sub(k, k + 1)
        if two == "*/" then d, j = d - 1, k + 2
        elseif two == "/*" and pg then d, j = d + 1, k + 2  -- PostgreSQL nests them
        else j = k + 1 end
      end
      i = j
    elseif c == "'" or c == '"' or c == "`" or (c == "[" and not pg) then
      mark(i)
      local prev, prev2 = sql:sub(i - 1, i - 1), sql:sub(i - 2, i - 2)
      local e_string = pg and c == "'" and (prev == "E" or prev == "e") and not prev2:find("[%w_$]")
      i = skip_quoted(sql, i, c, e_string)
    elseif c == "$" and pg and not sql:sub(i - 1, i - 1):find("[%w_$]") then
      mark(i)
      local tag = sql:match("^%$[%a_][%w_]*%$", i) or sql:match("^%$%$", i)
      if tag then
        local close = sql:find(tag, i + #tag, true)
        i = close and close + #tag or n + 1
      else
        i = i + 1
      end
    elseif c == ";" then
      if block and depth > 0 then i = i + 1 else flush(i); i = i + 1 end
    elseif c:find("[%a_]") then
      mark(i)
      local w = sql:match("^[%w_$]+", i)
      local W = w:upper()
      if #head < 5 then
        head[#head + 1] = W
        if head[1] == "CREATE" and BLOCK_KIND[W] then block = true end
      end
      if block then
        if W == "BEGIN" or W == "CASE" then depth = depth + 1
        elseif W == "END" and depth > 0 then depth = depth - 1 end
      end
      i = i + #w
    elseif c:find("%d") then
      mark(i)
      i = (sql:find("[^%w_.]", i) or n + 1)  -- a number (or 1e5, 0x1F): never a keyword
    else
      if not c:find("%s") then mark(i) end
      i = i + 1
    end
  end
  flush(n + 1)
  return out
end

----------------------------------------------------------- file sets

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Names of the entries of folder `dir` (via ls: no dependency on lfs).
local function list_dir(dir)
  local p = io.popen("ls -1A -- " .. shell_quote(dir) .. " 2>/dev/null")
  if not p then return nil, "cannot run ls" end
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  if not p:close() then return nil, "cannot list migrations folder '" .. dir .. "'" end
  return names
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- M.read_dir(dir) --> { [filename] = text } of every *.sql in dir | nil, msg
function M.read_dir(dir)
  local names, err = list_dir(dir)
  if not names then return nil, err end
  local files = {}
  for _, name in ipairs(names) do
    if name:sub(-4) == ".sql" then
      local text, rerr = read_file(dir .. "/" .. name)
      if not text then return nil, "cannot read " .. dir .. "/" .. name .. ": " .. tostring(rerr) end
      files[name] = text
    end
  end
  return files
end

local DIALECT = { sqlite = "sqlite", postgres = "postgresql" }

-- M.plan(files, backend) --> versions sorted by number, each
-- { version, name, file, sql, checksum } for `backend` | nil, msg
-- files: { [filename] = text }.  Every *.sql must be named NNNN_name.sql,
-- NNNN_name.sqlite.sql or NNNN_name.postgres.sql; a version has either one
-- shared file or per-dialect files, and must have one for `backend`.
function M.plan(files, backend)
  local by_version = {}
  for file, text in pairs(files) do
    local digits, rest = file:match("^(%d+)_(.+)%.sql$")
    local name, dialect
    if rest then name, dialect = rest:match("^([%w_%-]+)%.(%a+)$") end
    if dialect and not DIALECT[dialect] then name, dialect = nil, nil end
    if not dialect then name = rest and rest:match("^[%w_%-]+$") end
    if not name then
      return nil, "bad migration file name '" .. file .. "' (want NNNN_name.sql, NNNN_name.sqlite.sql or NNNN_name.postgres.sql)"
    end
    local version = math.tointeger(tonumber(digits, 10))
    if not version then return nil, "bad version number in '" .. file .. "'" end
    local v = by_version[version] or { version = version, files = {} }
    by_version[version] = v
    local key = dialect and DIALECT[dialect] or "shared"
    if v.files[key] then
      return nil, "two files for version " .. version .. ": '" .. v.files[key].file .. "' and '" .. file .. "'"
    end
    v.files[key] = { file = file, name = name, sql = text }
  end
  local list = {}
  for version, v in pairs(by_version) do
    local f = v.files.shared
    if f and (v.files.sqlite or v.files.postgresql) then
      return nil, "version " .. version .. " has both a shared file and a per-dialect file"
    end
    f = f or v.files[backend]
    if not f then
      return nil, "version " .. version .. " has no file for " .. backend
    end
    list[#list + 1] = { version = version, name = f.name, file = f.file, sql = f.sql,
                        checksum = core.sha256(f.sql) }
  end
  table.sort(list, function(a, b) return a.version < b.version end)
  return list
end

-- The files of `dir`, or the embedded call-center set when dir is nil.
local function source_files(dir)
  if dir == nil then return require("switchboard.migrations_data") end
  return M.read_dir(dir)
end

------------------------------------------------------------ database

local CREATE_TABLE = [[CREATE TABLE IF NOT EXISTS schema_migrations (
  version      BIGINT PRIMARY KEY,
  name         TEXT NOT NULL,
  file         TEXT NOT NULL,
  checksum     TEXT NOT NULL,
  applied_at   BIGINT NOT NULL,
  execution_ms BIGINT NOT NULL
)]]

-- Take the migration lock inside tx (PostgreSQL; SQLite's BEGIN IMMEDIATE
-- already holds the write lock).
local function lock(tx, backend)
  if backend ~= "postgresql" then return true end
  local ok, err = tx:exec("SELECT pg_advisory_xact_lock($1)", M.LOCK_KEY)
  if not ok then return nil, err end
  return true
end

local function table_exists(db)
  local row, err
  if db:backend() == "postgresql" then
    row, err = db:first("SELECT to_regclass($1) IS NOT NULL AS e", TABLE)
  else
    row, err = db:first("SELECT count(*) > 0 AS e FROM sqlite_master WHERE type = 'table' AND name = $1", TABLE)
  end
  if not row then return nil, err end
  return row.e == true or row.e == 1
end

-- version -> row of schema_migrations (empty when the table is missing)
local function applied_rows(q)
  local rows, err = q:query("SELECT version, name, file, checksum, applied_at FROM " .. TABLE .. " ORDER BY version")
  if not rows then return nil, err end
  local map = {}
  for _, r in ipairs(rows) do map[r.version] = r end
  return map
end

-- Create schema_migrations under the lock unless it exists (a run with
-- nothing to do takes no lock at all).
local function ensure_table(db)
  local backend = db:backend()
  local exists, err = table_exists(db)
  if exists == nil then return nil, err end
  if exists then return true end
  local tx
  tx, err = db:begin()
  if not tx then return nil, err end
  local ok
  ok, err = lock(tx, backend)
  if ok then ok, err = tx:exec(CREATE_TABLE) end
  if not ok then tx:rollback(); return nil, err end
  return tx:commit()
end

local function checksum_error(m, stored)
  return new_error{
    class = "checksum", sqlstate = "XX000",
    message = string.format("migration %d (%s) was applied with checksum %s but the file now has %s; "
      .. "review the change, then accept it with sb.migrate(db, dir, { accept_checksum = { [%d] = \"%s\" } }) "
      .. "or `switchboard-migrate URL accept %d %s`", m.version, m.file, stored, m.checksum,
      m.version, m.checksum, m.version, m.checksum),
    version = m.version, file = m.file, checksum = m.checksum, applied_checksum = stored,
  }
end

local function misuse(msg) return new_error{ class = "misuse", sqlstate = "08P01", message = msg } end

-- Check the applied versions' checksums against the files; update the
-- ones accepted in `accept` ({ [version] = sha }).
local function verify_checksums(db, plan, applied, accept)
  for _, m in ipairs(plan) do
    local row = applied[m.version]
    local want = accept[m.version]
    if row and row.checksum ~= m.checksum then
      if want ~= m.checksum then return nil, checksum_error(m, row.checksum) end
      local n, err = db:exec("UPDATE " .. TABLE .. " SET checksum = $1 WHERE version = $2 AND checksum = $3",
                             m.checksum, m.version, row.checksum)
      if not n then return nil, err end
      row.checksum = m.checksum
    elseif want ~= nil and want ~= m.checksum then
      return nil, misuse(string.format("accept_checksum[%d] is %s, but %s has checksum %s",
                                       m.version, tostring(want), m.file, m.checksum))
    end
  end
  for version in pairs(accept) do
    local found = false
    for _, m in ipairs(plan) do if m.version == version then found = true end end
    if not found then return nil, misuse("accept_checksum names version " .. tostring(version) .. ", which has no file") end
  end
  return true
end

local function first_line(s)
  local l = s:match("^[^\n]*")
  if #l > 80 then l = l:sub(1, 77) .. "..." end
  return l
end

-- Apply one version in its own transaction.  --> true (applied) | false
-- (another runner applied it meanwhile) | nil, err
local function apply(db, m, statements)
  local backend = db:backend()
  local tx, err = db:begin()
  if not tx then return nil, err end
  local ok
  ok, err = lock(tx, backend)
  local row
  if ok then
    row, err = tx:first("SELECT checksum FROM " .. TABLE .. " WHERE version = $1", m.version)
    ok = row ~= nil or err == nil
  end
  if not ok then tx:rollback(); return nil, err end
  if row then  -- applied by another runner after we looked
    tx:rollback()
    if row.checksum ~= m.checksum then return nil, checksum_error(m, row.checksum) end
    return false
  end
  local t0 = core.time_ms()
  for i, st in ipairs(statements) do
    ok, err = tx:exec(st.sql)
    if not ok then
      tx:rollback()
      return nil, new_error{
        class = err.class or "other", sqlstate = err.sqlstate, backend = err.backend, detail = err.detail,
        message = string.format("migration %d (%s) failed at statement %d (line %d: %s): %s",
                                m.version, m.file, i, st.line, first_line(st.sql), tostring(err.message or err)),
        version = m.version, file = m.file, statement = i, line = st.line, sql = st.sql, cause = err,
      }
    end
  end
  local now = core.time_ms()
  ok, err = tx:exec("INSERT INTO " .. TABLE .. " (version, name, file, checksum, applied_at, execution_ms) "
                    .. "VALUES ($1, $2, $3, $4, $5, $6)", m.version, m.name, m.file, m.checksum, now, now - t0)
  if not ok then tx:rollback(); return nil, err end
  ok, err = tx:commit()
  if not ok then return nil, err end
  return true
end

-- Split every file up front, so that a file the runner refuses (transaction
-- control inside) fails before anything runs.
local function split_all(plan, backend)
  local split = {}
  for _, m in ipairs(plan) do
    local sts = M.split(m.sql, backend)
    for i, st in ipairs(sts) do
      if TX_CONTROL[st.first_word or ""] then
        return nil, misuse(string.format("migration %d (%s), statement %d (line %d): %s is not allowed; "
          .. "each version runs in its own transaction", m.version, m.file, i, st.line, st.first_word))
      end
    end
    split[m.version] = sts
  end
  return split
end

local function check_args(db, dir, opts, fname)
  if type(db) ~= "userdata" or type(db.backend) ~= "function" then
    error("bad argument #1 to '" .. fname .. "' (switchboard.db expected, got " .. type(db) .. ")", 3)
  end
  if type(dir) == "table" and opts == nil then dir, opts = nil, dir end
  if dir ~= nil and type(dir) ~= "string" then
    error("bad argument #2 to '" .. fname .. "' (string expected, got " .. type(dir) .. ")", 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to '" .. fname .. "' (table expected, got " .. type(opts) .. ")", 3)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "accept_checksum" then error("bad option '" .. tostring(k) .. "' to '" .. fname .. "'", 3) end
  end
  local accept = opts.accept_checksum or {}
  if type(accept) ~= "table" then error("bad option 'accept_checksum' (table expected)", 3) end
  for v, sha in pairs(accept) do
    if math.type(v) ~= "integer" or type(sha) ~= "string" or not sha:match("^%x+$") or #sha ~= 64 then
      error("bad option 'accept_checksum' (want { [version] = \"64 hex digits\" })", 3)
    end
  end
  return dir, accept
end

local function load_plan(db, dir)
  local files, err = source_files(dir)
  if not files then return nil, misuse(err) end
  local plan
  plan, err = M.plan(files, db:backend())
  if not plan then return nil, misuse(err) end
  return plan
end

-- M.run(db [, dir [, opts]]) --> { applied = { {version, name, file, checksum}, ... }, version = n }
--                              | nil, err
-- Applies the pending versions of `dir` (default: the embedded call-center
-- migrations) in order, each in its own transaction.  opts.accept_checksum
-- = { [version] = "sha256 of the file now" } accepts a reviewed change of an
-- applied file.
function M.run(db, dir, opts)
  local accept
  dir, accept = check_args(db, dir, opts, "migrate")
  local plan, err = load_plan(db, dir)
  if not plan then return nil, err end
  local split
  split, err = split_all(plan, db:backend())
  if not split then return nil, err end
  local ok
  ok, err = ensure_table(db)
  if not ok then return nil, err end
  local applied
  applied, err = applied_rows(db)
  if not applied then return nil, err end
  ok, err = verify_checksums(db, plan, applied, accept)
  if not ok then return nil, err end
  local result = { applied = {}, version = 0 }
  for v in pairs(applied) do if v > result.version then result.version = v end end
  for _, m in ipairs(plan) do
    if not applied[m.version] then
      local did
      did, err = apply(db, m, split[m.version])
      if did == nil then return nil, err end
      if did then
        result.applied[#result.applied + 1] = { version = m.version, name = m.name, file = m.file, checksum = m.checksum }
      end
    end
    if m.version > result.version then result.version = m.version end
  end
  return result
end

-- M.status(db [, dir]) --> rows sorted by version, each { version, name,
-- file, checksum, state = "applied" | "pending" | "changed" | "missing",
-- applied_at, applied_checksum } | nil, err.  Changes nothing.
function M.status(db, dir)
  dir = check_args(db, dir, nil, "status")
  local plan, err = load_plan(db, dir)
  if not plan then return nil, err end
  local exists
  exists, err = table_exists(db)
  if exists == nil then return nil, err end
  local applied = {}
  if exists then
    applied, err = applied_rows(db)
    if not applied then return nil, err end
  end
  local rows, seen = {}, {}
  for _, m in ipairs(plan) do
    local a = applied[m.version]
    seen[m.version] = true
    rows[#rows + 1] = {
      version = m.version, name = m.name, file = m.file, checksum = m.checksum,
      state = not a and "pending" or a.checksum == m.checksum and "applied" or "changed",
      applied_at = a and a.applied_at, applied_checksum = a and a.checksum,
    }
  end
  for v, a in pairs(applied) do
    if not seen[v] then
      rows[#rows + 1] = { version = v, name = a.name, file = a.file, state = "missing",
                          applied_at = a.applied_at, applied_checksum = a.checksum }
    end
  end
  table.sort(rows, function(x, y) return x.version < y.version end)
  return rows
end

-- M.check(db [, dir]) --> true | nil, err (class "pending" or "checksum")
-- True when every file is applied unchanged.
function M.check(db, dir)
  local rows, err = M.status(db, dir)
  if not rows then return nil, err end
  local pending, changed = {}, {}
  for _, r in ipairs(rows) do
    if r.state == "pending" then pending[#pending + 1] = r.version end
    if r.state == "changed" then changed[#changed + 1] = r.version end
  end
  if changed[1] then
    return nil, new_error{ class = "checksum", message = "applied migrations changed: " .. table.concat(changed, ", ") }
  end
  if pending[1] then
    return nil, new_error{ class = "pending", message = "pending migrations: " .. table.concat(pending, ", ") }
  end
  return true
end

-- M.accept(db, version, sha [, dir]) --> true | nil, err
-- Records `sha` as the checksum of applied `version` if it is the file's
-- checksum now (the reviewed change is exactly this file).  Applies nothing.
function M.accept(db, version, sha, dir)
  dir = check_args(db, dir, nil, "accept")
  if math.type(version) ~= "integer" then error("bad argument #2 to 'accept' (integer expected)", 2) end
  if type(sha) ~= "string" then error("bad argument #3 to 'accept' (string expected)", 2) end
  local plan, err = load_plan(db, dir)
  if not plan then return nil, err end
  local m
  for _, x in ipairs(plan) do if x.version == version then m = x end end
  if not m then return nil, misuse("no migration file for version " .. version) end
  if m.checksum ~= sha:lower() then
    return nil, misuse(string.format("%s has checksum %s, not %s", m.file, m.checksum, sha))
  end
  local exists
  exists, err = table_exists(db)
  if exists == nil then return nil, err end
  local n = 0
  if exists then
    n, err = db:exec("UPDATE " .. TABLE .. " SET checksum = $1 WHERE version = $2", m.checksum, version)
    if not n then return nil, err end
  end
  if n == 0 then return nil, misuse("version " .. version .. " is not applied") end
  return true
end

------------------------------------------------------------ generation

-- M.generate(files) --> the text of switchboard/migrations_data.lua
function M.generate(files)
  local names = {}
  for name in pairs(files) do names[#names + 1] = name end
  table.sort(names)
  local out = {
    "-- switchboard/migrations_data.lua - GENERATED from migrations/*.sql by\n",
    "-- scripts/gen-migrations-data (`make` runs it); do not edit.  The call-center\n",
    "-- migrations embedded in the module, so that sb.migrate(db) needs no\n",
    "-- source tree: { [file name] = file text }.\n",
    "return {\n",
  }
  for _, name in ipairs(names) do
    local text = files[name]
    local eq = ""
    while text:find("]" .. eq .. "]", 1, true) or text:sub(-#eq - 1) == "]" .. eq do eq = eq .. "=" end
    out[#out + 1] = string.format("  [%q] = [%s[\n%s]%s],\n", name, eq, text, eq)
  end
  out[#out + 1] = "}\n"
  return table.concat(out)
end

return M
