-- bench/peers/sb.lua - switchboard's side of a benchmark cell.
--
-- Owns: opening the db the way a routing script would (sb.open with the
-- default options: pool 4 on PostgreSQL, 2 readers on SQLite) and one Lua
-- function per operation, written as a user would: db:exec / db:query /
-- db:first with the SQL of bench/ops.lua and $n parameters, and
-- db:transaction for the assign transaction.  The same functions run
-- blocking (called from the main chunk) and in sb.spawn tasks (they yield).
-- Does not own: timing (bench/cell.lua).
--
-- BENCH_SB_OPTS="pool=16,readers=4" (integers only) changes the options of
-- sb.open for experiments; `make bench` leaves it unset (the defaults).

local sb = require "switchboard"
local O = require "ops"

local M = {}

local function options()
  local spec = os.getenv("BENCH_SB_OPTS")
  if not spec or spec == "" then return nil end
  local opts = {}
  for k, v in spec:gmatch("(%w+)=(%d+)") do opts[k] = math.tointeger(tonumber(v)) end
  return opts
end

-- open(backend, target) --> db
function M.open(backend, target)
  local url = backend == "sqlite" and ("sqlite:" .. target) or target
  return assert(sb.open(url, options()))
end

local function one(n, err)
  if n ~= 1 then error(err or ("affected " .. tostring(n) .. " rows, want 1"), 2) end
  return n
end

-- ops(db, backend, base) --> { name = function(k) --> check value }
function M.ops(db, _, base)
  local upd, avail = O.ops.update.sql, O.ops.available.sql
  local del, ins, bump = O.ops.assign.tx[1].sql, O.ops.assign.tx[2].sql, O.ops.assign.tx[3].sql
  local assign1, an = O.ops.assign1.sql, O.ops.analytics.sql
  local update_args, assign_args, analytics_args = O.update_args, O.assign_args, O.analytics_args
  return {
    update = function(k)
      return one(db:exec(upd, update_args(k)))
    end,
    available = function()
      local rows = assert(db:query(avail, "AVAILABLE"))
      return #rows
    end,
    assign = function(k)
      local call, agent, caller, at = assign_args(k, base)
      return assert(db:transaction(function(tx)
        one(tx:exec(del, call))
        one(tx:exec(ins, call, agent, caller, at))
        return one(tx:exec(bump, agent))
      end))
    end,
    assign1 = function(k)
      local call, agent, _, at = assign_args(k, base)
      return one(db:exec(assign1, call, agent, at))
    end,
    analytics = function(k)
      local row = assert(db:first(an, analytics_args(k)))
      return row.calls
    end,
  }
end

function M.close(db)
  db:close()
end

return M
