-- bench/lib/setup.lua - the data under the benchmark, through the
-- databases' own command-line clients (sqlite3, psql), so that setting up
-- never depends on the code being measured.
--
-- Owns: creating the schema (bench/schema.sql) and the seed data on a
-- fresh SQLite file or a freshly emptied PostgreSQL database, and running
-- the reset before each cell (bench/ops.lua's prep_sql).
-- Does not own: the SQL itself (bench/schema.sql, bench/ops.lua).
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

-- Run an SQL script with the backend's client; raise with its output on failure.
function M.run_sql(backend, target, script)
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
  local p = io.popen(cmd .. " 2>&1", "r")
  local out = p:read("a")
  local ok = p:close()
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

-- The reset before a cell of op `name` (`supply` waiting calls for assign).
function M.prep(backend, target, name, supply)
  M.run_sql(backend, target, O.prep_sql(backend, name, supply))
end

return M
