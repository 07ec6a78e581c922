-- bench/lib/setup.lua - the data under the benchmark, through the
-- databases' own command-line clients (sqlite3, psql), so that setting up
-- never depends on the code being measured.
--
-- Owns: creating the schema (bench/schema.sql) and the seed data on a
-- fresh SQLite file or a freshly emptied PostgreSQL database, and running
-- the reset before each cell (bench/ops.lua's prep_sql); the same for the
-- routing op's own database (the call-center schema of
-- migrations/NNNN_*.sql in order, fed to the clients as they are: a fresh
-- SQLite file next to bench.db, or a fresh database on the same
-- PostgreSQL server, which needs the CREATEDB privilege), and where each
-- op's database is (M.target).
-- Does not own: the SQL itself (bench/schema.sql, bench/ops.lua,
-- migrations/).
--
-- To run on issue #3's migrations instead of bench/schema.sql, make
-- schema_sql() return migrations/NNNN_*.sql concatenated in order.

local O = require "ops"

local M = {}

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

function M.schema_sql()
  return read("bench/schema.sql")
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.sh_quote = sh_quote

-- Run a shell command --> ok, its standard output.
local function sh(cmd)
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end
M.sh = sh

-- Where op's data lives: --> target (SQLite file or the server URL), pgdb
-- (PostgreSQL: the database to use instead of the URL's, or nil).
function M.target(backend, op, build)
  local routing = op and O.ops[op].database == "routing"
  if backend == "sqlite" then
    return build .. "/bench/data/" .. (routing and O.ROUTE.sqlite_file or "bench.db"), nil
  end
  return os.getenv("SB_TEST_PG_URL"), routing and O.ROUTE.pg_database or nil
end

-- Run an SQL script with the backend's client; raise with its output on
-- failure.  pgdb: run it in that database of the server instead.
function M.run_sql(backend, target, script, pgdb)
  if pgdb then script = "\\connect " .. pgdb .. "\n" .. script end
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(script)
  f:close()
  local cmd
  if backend == "sqlite" then
    cmd = "sqlite3 -bail " .. sh_quote(target) .. " < " .. sh_quote(tmp)
  else
    cmd = 'psql "$SB_TEST_PG_URL" -X -q -v ON_ERROR_STOP=1 -f ' .. sh_quote(tmp)
  end
  local ok, out = sh(cmd .. " 2>&1")
  os.remove(tmp)
  if not ok then error("setup: " .. backend .. " client failed:\n" .. out) end
  return out
end

-- Fresh schema and seed data.  SQLite: a new file at `target` (WAL).
function M.create(backend, target)
  local pre
  if backend == "sqlite" then
    for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(target .. suffix) end
    pre = "PRAGMA journal_mode=WAL;\n"
  else
    pre = "SET client_min_messages = warning;\n" .. O.DROP_PG
  end
  M.run_sql(backend, target, pre .. M.schema_sql() .. O.seed_sql(backend))
end

-- The routing op's database: call-center schema (the migration files as
-- they are) and seed (bench/ops.lua).
function M.create_routing(backend, target)
  local mig = {}
  local ls = assert(io.popen("ls migrations/*." .. (backend == "sqlite" and "sqlite" or "postgres") .. ".sql"))
  for f in ls:lines() do mig[#mig + 1] = read(f) end  -- ls sorts: NNNN_ order
  ls:close()
  mig = table.concat(mig, "\n")
  if backend == "sqlite" then
    for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(target .. suffix) end
    M.run_sql(backend, target, "PRAGMA journal_mode=WAL;\n" .. mig .. O.route_seed_sql(backend))
  else
    local name = O.ROUTE.pg_database
    M.run_sql(backend, target, "SET client_min_messages = warning;\nDROP DATABASE IF EXISTS " .. name
      .. ";\nCREATE DATABASE " .. name .. ";\n")
    M.run_sql(backend, target, mig .. O.route_seed_sql(backend), name)
  end
end

-- The reset before a cell of op `name` (`supply` waiting calls for the
-- assign and routing ops).
function M.prep(backend, target, name, supply)
  local _, pgdb = M.target(backend, name, "")
  M.run_sql(backend, target, O.prep_sql(backend, name, supply), pgdb)
end

return M
