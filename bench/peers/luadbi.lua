-- bench/peers/luadbi.lua - the LuaDBI peer (Debian lua-dbi-sqlite3 and
-- lua-dbi-postgresql): one blocking connection, used at its best.
--
-- Owns: connecting (SQLite with the pragmas switchboard sets; PostgreSQL
-- from the parts of $SB_TEST_PG_URL), autocommit on, every statement of
-- bench/ops.lua prepared ONCE (SQLite: $n written ?n) and executed per op;
-- rows read as tables keyed by column name (sth:rows(true)), as switchboard
-- returns them.  The assign transaction runs the same BEGIN [IMMEDIATE],
-- three statements, COMMIT as prepared statements.  The routing op runs
-- callcenter.lua's statements (bench/ops.lua) the way sb.callcenter does,
-- with the policy as a plain function (ops.lua's plain_policy, no sandbox):
-- the available-agents query, then on SQLite BEGIN IMMEDIATE, take_call,
-- take_agent, insert_active (its values from take_call's row), COMMIT; on
-- PostgreSQL the one-statement assign.
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

local function first_row(st)
  local first
  for row in st:rows(true) do first = first or row end
  return first
end

-- routing on the call-center database (prepared on first use: the bench
-- database has no such tables)
local function routing(h, backend, base)
  local S = O.statements("routing", backend)
  local avail = prepare(h, S[1])
  local pname, pversion = O.route_policy()
  local policy, routing_args, route_call = O.plain_policy, O.routing_args, O.route_call
  local begin, take_call, take_agent, insert, commit, assign
  if backend == "sqlite" then
    begin, take_call, take_agent, insert, commit =
      prepare(h, S[2]), prepare(h, S[3]), prepare(h, S[4]), prepare(h, S[5]), prepare(h, S[6])
  else
    assign = prepare(h, S[2])
  end
  return function(k)
    local session, queue, skills = routing_args(k, base)
    local now = os.time() * 1000
    assert(avail:execute(now, skills, 1, queue))
    local rows = {}
    for row in avail:rows(true) do rows[#rows + 1] = row end
    local agent = policy(route_call(k, base), rows)
    if not agent then error("no agent available") end
    if assign then
      assert(assign:execute(session, agent, now, pname, pversion))
      if not first_row(assign) then error("assign refused") end
      return 1
    end
    assert(begin:execute())
    local ok, err = pcall(function()
      assert(take_call:execute(session))
      local call = first_row(take_call)
      if not call then error("call not waiting") end
      one(take_agent, take_agent:execute(agent, now))
      assert(insert:execute(session, agent, call.queue, call.priority, call.required_skills, call.caller,
                            call.enqueued_at, now, pname, pversion))
      if not first_row(insert) then error("insert returned no row") end
    end)
    if not ok then h.dbh:rollback() error(err) end
    assert(commit:execute())
    return 1
  end
end

-- ops(h, backend, base [, only]) --> { name = function(k) }; only =
-- "routing": just that one (the others' statements do not prepare on the
-- routing database).
function M.ops(h, backend, base, only)
  if only == "routing" then return { routing = routing(h, backend, base) } end
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
