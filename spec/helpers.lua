-- spec/helpers.lua - shared setup for the busted specs of the `switchboard`
-- Lua module.
--
-- Every spec runs on real databases: a fresh SQLite file per test, and the
-- PostgreSQL server named by SB_TEST_PG_URL (one database shared by all spec
-- files of a run, and possibly by other runs: tables get a per-process
-- suffix, are dropped before they are created and dropped again afterwards).
--
-- PostgreSQL never skips silently.  When SB_TEST_PG_URL is unset or the
-- server is unreachable the PostgreSQL part of every spec FAILS, unless
-- SB_SKIP_PG=1 is set (and CI is not "true"): then a loud warning is printed
-- and the PostgreSQL specs are marked pending.
--
--   helpers.each_backend(function(backend) ... end)
--       runs the body inside describe("[sqlite]") and describe("[postgresql]").
--       backend.name   "sqlite" | "postgresql"
--       backend.url    the database of the current test (SQLite: a fresh file
--                      per test, made in before_each; PostgreSQL: SB_TEST_PG_URL)
--       backend.fresh_url()  another, empty database (SQLite) / the same (PG)
--       backend.is_pg, backend.blob_type, backend.password (PG)
--   helpers.open(backend [, opts [, url]]) -> db (asserts it opened); closed
--       automatically after the test
--   helpers.table(db, base, columns) -> unique table name, dropped + created
--   helpers.run_tasks(f1, f2, ...) -> runs each fi as an sb.spawn task under
--       sb.run(); re-raises the first failure of any task (busted asserts
--       included) and fails when a task did not finish
--   helpers.now() -> monotonic seconds (float)
--   helpers.pg_url() -> SB_TEST_PG_URL, or nil when skipping is allowed;
--       raises otherwise
--   helpers.calibrate_cte(db, seconds) -> sql, n : a recursive CTE that takes
--       about `seconds` on SQLite
--   helpers.count(db, t [, where, ...]) -> rows of table t (matching the
--       WHERE clause `where` with parameters ...); asserts the query worked
local sb = require "switchboard"
-- busted puts describe/it/... into each spec file's environment, not into
-- _G: reach them through the busted API table from this module.
local busted = require "busted"

local helpers = {}

local unpack = table.unpack

function helpers.count(db, t, where, ...)
  local row, err = db:first("SELECT count(*) AS n FROM " .. t .. (where and (" WHERE " .. where) or ""), ...)
  assert(row, err)
  return row.n
end

-- ------------------------------------------------------------------ clock
do
  local ok, cq = pcall(require, "cqueues")
  if ok and cq.monotime then
    helpers.now = cq.monotime
  else
    helpers.now = function()
      local p = assert(io.popen("date +%s.%N"))
      local s = p:read("l")
      p:close()
      return tonumber(s)
    end
  end
end

-- Upper time limits in the specs are multiplied by SB_TEST_TIME_FACTOR (the
-- sanitizer run sets it): helpers.T(seconds).
helpers.time_factor = tonumber(os.getenv("SB_TEST_TIME_FACTOR") or "") or 1
function helpers.T(seconds) return seconds * helpers.time_factor end

-- A suffix unique to this process, so that concurrent runs sharing one
-- PostgreSQL database never see each other's tables.
local SUFFIX
do
  local f = io.open("/proc/self/stat")
  local pid = f and f:read("n")
  if f then f:close() end
  -- pid plus microseconds of the monotonic clock: distinct per process and
  -- per load of this module (busted reloads it for every spec file)
  SUFFIX = string.format("%d_%06d", pid or 0, math.floor(helpers.now() * 1e6) % 1000000)
end
helpers.suffix = SUFFIX

-- ------------------------------------------------------------ temp files
local tmpdir
local created_files = {}
local file_counter = 0

local function get_tmpdir()
  if tmpdir then return tmpdir end
  local base = os.getenv("SB_TEST_TMP")
  if base and base ~= "" then
    tmpdir = base .. "/sbspec-" .. SUFFIX
  else
    tmpdir = os.tmpname()      -- a fresh name; make it a directory
    os.remove(tmpdir)
  end
  assert(os.execute("mkdir -p '" .. tmpdir .. "'"), "cannot create " .. tmpdir)
  return tmpdir
end

-- A path for a new, not yet existing SQLite file.
function helpers.tmpfile(tag)
  file_counter = file_counter + 1
  local p = string.format("%s/%s-%d.db", get_tmpdir(), tag or "t", file_counter)
  created_files[#created_files + 1] = p
  return p
end

function helpers.remove_tmpfiles()
  for _, p in ipairs(created_files) do
    os.remove(p); os.remove(p .. "-wal"); os.remove(p .. "-shm"); os.remove(p .. "-journal")
  end
  created_files = {}
  if tmpdir then
    os.remove(tmpdir)  -- our own directory, only if it is empty now
    tmpdir = nil
  end
end

-- ------------------------------------------------------------ PostgreSQL
local pg_checked, pg_result, pg_error

local function loud_warning(msg)
  io.stderr:write("\n", string.rep("!", 72), "\n",
    "!!! WARNING: PostgreSQL specs are SKIPPED (SB_SKIP_PG=1): ", msg, "\n",
    "!!! Nothing was tested on PostgreSQL.\n", string.rep("!", 72), "\n\n")
end

-- Returns SB_TEST_PG_URL when the server answers.  When it is unset or
-- unreachable: returns nil (after a loud warning) if SB_SKIP_PG=1 and CI is
-- not "true"; raises otherwise.
function helpers.pg_url()
  if not pg_checked then
    pg_checked = true
    local url = os.getenv("SB_TEST_PG_URL")
    if not url or url == "" then
      pg_error = "SB_TEST_PG_URL is not set"
    else
      local db, err = sb.open(url)
      if db then
        local row
        row, err = db:first("SELECT 1 AS one")
        db:close()
        if row and row.one == 1 then
          pg_result = url
        else
          pg_error = "PostgreSQL at SB_TEST_PG_URL does not answer: " .. tostring(err)
        end
      else
        pg_error = "cannot open SB_TEST_PG_URL: " .. tostring(err)
      end
    end
  end
  if pg_result then return pg_result end
  local ci = os.getenv("CI") == "true"
  if os.getenv("SB_SKIP_PG") == "1" and not ci then
    loud_warning(pg_error)
    return nil
  end
  error("PostgreSQL specs cannot run: " .. pg_error ..
        (ci and " (CI=true: PostgreSQL specs must not be skipped)"
            or " (set SB_SKIP_PG=1 to skip them explicitly)"), 0)
end

-- The password inside a PostgreSQL URL or conninfo string, or nil.
function helpers.url_password(url)
  local pw = url:match("^%a+://[^:/@]*:([^@]*)@")
  if not pw then pw = url:match("password%s*=%s*'([^']*)'") or url:match("password%s*=%s*(%S+)") end
  if pw == "" then pw = nil end
  return pw
end

-- Parts of a postgresql:// URI (single host), or nil.
function helpers.parse_pg_url(url)
  local scheme, user, pw, host, port, dbname, rest =
    url:match("^(%a+)://([^:/@]*):?([^@]*)@([^:/?,]+):?(%d*)/([^?]*)(.*)$")
  if not scheme then return nil end
  return { scheme = scheme, user = user, password = pw, host = host,
           port = port ~= "" and port or "5432", dbname = dbname, query = rest }
end

-- ------------------------------------------------------------- backends
local open_dbs = {}
local made_tables = {}

local function new_backend(name)
  local b = { name = name, is_pg = name == "postgresql", is_sqlite = name == "sqlite" }
  b.blob_type = b.is_pg and "bytea" or "blob"
  if b.is_pg then
    b.fresh_url = function() return b.url end
  else
    b.fresh_url = function() return "sqlite:" .. helpers.tmpfile("sqlite") end
  end
  return b
end

-- Open a database of `backend` (at `url`, default backend.url).  Asserts that
-- it opened; the handle is closed after the current test.
function helpers.open(backend, opts, url)
  url = url or backend.url
  assert(url, "backend has no url (is this called outside an it/before_each?)")
  local db, err = sb.open(url, opts)
  assert(db, "sb.open(" .. backend.name .. ") failed: " .. tostring(err))
  open_dbs[#open_dbs + 1] = db
  return db
end

-- Remember a handle opened by hand so that it is closed after the test.
function helpers.track(db)
  open_dbs[#open_dbs + 1] = db
  return db
end

function helpers.close_all()
  for i = #open_dbs, 1, -1 do
    pcall(open_dbs[i].close, open_dbs[i])
    open_dbs[i] = nil
  end
end

-- A table name unique to this process: "<base>_<pid>_<rand>".  The table is
-- dropped if it exists, created with `columns` (SQL column list) and dropped
-- again at the end of the backend's describe block.
function helpers.table(db, base, columns)
  local name = string.format("sbt_%s_%s", base, SUFFIX)
  local ok, err = db:exec("DROP TABLE IF EXISTS " .. name)
  assert(ok, "DROP TABLE " .. name .. ": " .. tostring(err))
  ok, err = db:exec("CREATE TABLE " .. name .. " (" .. columns .. ")")
  assert(ok, "CREATE TABLE " .. name .. ": " .. tostring(err))
  made_tables[name] = true
  return name
end

local function drop_made_tables(url)
  if not next(made_tables) then return end
  local db = sb.open(url)
  if not db then return end
  for name in pairs(made_tables) do pcall(db.exec, db, "DROP TABLE IF EXISTS " .. name) end
  db:close()
  made_tables = {}
end

-- Run `body(backend)` once per backend, each inside its own describe block.
function helpers.each_backend(body)
  -- SQLite: a fresh file per test.
  busted.describe("[sqlite]", function()
    local backend = new_backend("sqlite")
    busted.before_each(function() backend.url = backend.fresh_url() end)
    busted.after_each(function()
      helpers.close_all()
      made_tables = {}
      helpers.remove_tmpfiles()
    end)
    body(backend)
  end)

  busted.describe("[postgresql]", function()
    local ok, url = pcall(helpers.pg_url)
    if not ok then
      local msg = url
      busted.it("needs a reachable PostgreSQL server (SB_TEST_PG_URL)", function()
        error(msg, 0)
      end)
      return
    end
    if not url then
      busted.pending("PostgreSQL specs skipped by SB_SKIP_PG=1")
      return
    end
    local backend = new_backend("postgresql")
    backend.url = url
    backend.password = helpers.url_password(url)
    busted.after_each(function() helpers.close_all(); helpers.remove_tmpfiles() end)
    busted.teardown(function() drop_made_tables(url) end)
    body(backend)
  end)
end

-- Only the PostgreSQL half of each_backend (same skip/fail rules).
function helpers.pg_only(body)
  busted.describe("[postgresql]", function()
    local ok, url = pcall(helpers.pg_url)
    if not ok then
      local msg = url
      busted.it("needs a reachable PostgreSQL server (SB_TEST_PG_URL)", function() error(msg, 0) end)
      return
    end
    if not url then busted.pending("PostgreSQL specs skipped by SB_SKIP_PG=1"); return end
    local backend = new_backend("postgresql")
    backend.url = url
    backend.password = helpers.url_password(url)
    busted.after_each(function() helpers.close_all(); helpers.remove_tmpfiles() end)
    busted.teardown(function() drop_made_tables(url) end)
    body(backend)
  end)
end

-- Only the SQLite half of each_backend.
function helpers.sqlite_only(body)
  busted.describe("[sqlite]", function()
    local backend = new_backend("sqlite")
    busted.before_each(function() backend.url = backend.fresh_url() end)
    busted.after_each(function()
      helpers.close_all()
      made_tables = {}
      helpers.remove_tmpfiles()
    end)
    body(backend)
  end)
end

-- ---------------------------------------------------------------- tasks
-- Run each function as an sb.spawn task, drive them all with sb.run(), and
-- re-raise the first error (assertion failures included) so that busted sees
-- it.  Fails when sb.run returns while a task has not finished.
function helpers.run_tasks(...)
  local fns = { ... }
  local done, failures = {}, {}
  for i, fn in ipairs(fns) do
    sb.spawn(function()
      local ok, err = xpcall(fn, function(e)
        if type(e) == "string" then return debug.traceback(e, 2) end
        return e
      end)
      if not ok then failures[#failures + 1] = err end
      done[i] = true
    end)
  end
  sb.run()
  if failures[1] ~= nil then error(failures[1], 0) end
  for i = 1, #fns do
    assert(done[i], "task " .. i .. " had not finished when sb.run() returned")
  end
end

-- Run fn(...) inside one task and return its results.
function helpers.in_task(fn, ...)
  local args, n = { ... }, select("#", ...)
  local res
  helpers.run_tasks(function() res = table.pack(fn(unpack(args, 1, n))) end)
  return unpack(res, 1, res.n)
end

-- ------------------------------------------------------------ scripts
local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
helpers.shell_quote = shell_quote

-- Run Lua `code` in a separate lua5.4 process (same package paths), with
-- os.getenv("SBSPEC_URL") == url, killed after `limit` seconds (default 20).
-- Returns ok (exit status 0), the combined stdout+stderr.
function helpers.run_script(code, url, limit)
  local script = helpers.tmpfile("script") .. ".lua"
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local cmd = string.format("SBSPEC_URL=%s LUA_PATH=%s LUA_CPATH=%s timeout -s KILL %d lua5.4 %s 2>&1",
    shell_quote(url or ""), shell_quote(package.path), shell_quote(package.cpath),
    math.ceil(helpers.T(limit or 20)), shell_quote(script))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  os.remove(script)
  return ok == true, out
end

-- ------------------------------------------------------------ slow SQL
-- A recursive CTE that keeps SQLite busy for about `seconds`: measured once
-- per db with the blocking API, then scaled.
function helpers.cte_sql(n)
  return "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < "
         .. math.floor(n) .. ") SELECT count(*) AS n FROM c", math.floor(n)
end

function helpers.calibrate_cte(db, seconds)
  local function time(n)
    local t0 = helpers.now()
    local row, err = db:first((helpers.cte_sql(n)))
    assert(row, err)
    return helpers.now() - t0
  end
  local n = 100000
  while true do
    -- the fastest of two runs: a busy machine must not make the query short
    local dt = math.min(time(n), time(n))
    if dt >= 0.08 or n >= 1e9 then
      return (helpers.cte_sql(math.floor(n * seconds / dt * 1.1)))  -- the SQL only
    end
    n = n * 4
  end
end

-- Deep comparison of two query results (rows and rows.columns).
function helpers.same_rows(a, b)
  if #a ~= #b then return false end
  if #a.columns ~= #b.columns then return false end
  for i, c in ipairs(a.columns) do if b.columns[i] ~= c then return false end end
  for i = 1, #a do
    for _, c in ipairs(a.columns) do
      if a[i][c] ~= b[i][c] or math.type(a[i][c]) ~= math.type(b[i][c]) then return false end
    end
  end
  return true
end

function helpers.log(fmt, ...)
  io.stderr:write("[switchboard spec] ", string.format(fmt, ...), "\n")
end

return helpers
