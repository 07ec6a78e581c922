-- bench/peers/luadbi.lua - the LuaDBI peer (Debian lua-dbi-sqlite3 and
-- lua-dbi-postgresql): one blocking connection, used at its best.
--
-- Owns: connecting (SQLite with the pragmas switchboard sets; PostgreSQL
-- from the parts of $SB_TEST_PG_URL), autocommit on, every statement of
-- bench/ops.lua prepared ONCE (SQLite: $n written ?n) and executed per op;
-- rows read as tables keyed by column name (sth:rows(true)), as switchboard
-- returns them.  The assign transaction runs the same BEGIN [IMMEDIATE],
-- three statements, COMMIT as prepared statements.
-- Does not own: timing (bench/cell.lua).

local DBI = require "DBI"
local O = require "ops"
local pgurl = require "lib.pgurl"

local M = {}

function M.open(backend, target)
  local dbh
  if backend == "sqlite" then
    dbh = assert(DBI.Connect("SQLite3", target))
    dbh:autocommit(true)  -- before the pragmas: off means an implicit BEGIN
    for _, p in ipairs({ "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                         "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000" }) do
      local st = assert(dbh:prepare(p))
      assert(st:execute())
      st:close()
    end
  else
    local u = assert(pgurl.parse(target))
    dbh = assert(DBI.Connect("PostgreSQL", u.dbname, u.user, u.password, u.host, u.port))
  end
  dbh:autocommit(true)
  return { dbh = dbh, backend = backend, sts = {} }
end

local function prepare(h, sql)
  if h.backend == "sqlite" then sql = sql:gsub("%$(%d)", "?%1") end
  local st = assert(h.dbh:prepare(sql))
  h.sts[#h.sts + 1] = st
  return st
end

local function one(st, ok, err)
  if not ok then error(err, 2) end
  local n = st:affected()
  if n ~= 1 then error("affected " .. tostring(n) .. " rows, want 1", 2) end
  return n
end

function M.ops(h, backend, base)
  local upd = prepare(h, O.ops.update.sql)
  local avail = prepare(h, O.ops.available.sql)
  local an = prepare(h, O.ops.analytics.sql)
  local begin, commit = prepare(h, O.BEGIN[backend]), prepare(h, O.COMMIT)
  local del, ins, bump =
    prepare(h, O.ops.assign.tx[1].sql), prepare(h, O.ops.assign.tx[2].sql), prepare(h, O.ops.assign.tx[3].sql)
  local assign1 = backend == "postgresql" and prepare(h, O.ops.assign1.sql)
  local update_args, assign_args, analytics_args = O.update_args, O.assign_args, O.analytics_args
  return {
    update = function(k)
      return one(upd, upd:execute(update_args(k)))
    end,
    available = function()
      assert(avail:execute("AVAILABLE"))
      local rows = {}
      for row in avail:rows(true) do rows[#rows + 1] = row end
      return #rows
    end,
    assign = function(k)
      local call, agent, caller, at = assign_args(k, base)
      assert(begin:execute())
      local ok, err = pcall(function()
        one(del, del:execute(call))
        one(ins, ins:execute(call, agent, caller, at))
        one(bump, bump:execute(agent))
      end)
      if not ok then h.dbh:rollback() error(err) end
      assert(commit:execute())
      return 1
    end,
    assign1 = assign1 and function(k)
      local call, agent, _, at = assign_args(k, base)
      return one(assign1, assign1:execute(call, agent, at))
    end,
    analytics = function(k)
      assert(an:execute(analytics_args(k)))
      local first
      for row in an:rows(true) do first = first or row end
      return tonumber(first.calls)
    end,
  }
end

function M.close(h)
  for _, st in ipairs(h.sts) do st:close() end
  h.dbh:close()
end

return M
