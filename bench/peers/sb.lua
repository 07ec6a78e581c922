-- bench/peers/sb.lua - switchboard's side of a benchmark cell.
--
-- Owns: opening the db the way a routing script would (sb.open with the
-- default options: a pool of up to 16 on PostgreSQL, 2 readers on SQLite)
-- and one Lua function per operation, written as a user would: db:exec /
-- db:query / db:first with the SQL of bench/ops.lua and $n parameters, and
-- db:batch for the assign transaction (its parameters are known up front:
-- one round trip on PostgreSQL, where db:transaction makes four).  The same
-- functions run blocking (called from the main chunk) and in sb.spawn tasks
-- (they yield).
-- The routing op is the real thing: sb.router (default options: sandbox,
-- budgets, reload "auto") with bench/ops.lua's M.ROUTE.policy over
-- sb.callcenter, one router:route(call) per op; before the cell, one route
-- with the database wrapped in a recorder checks that it sends exactly the
-- statements bench/ops.lua gives the raw C twin and the peers.
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

-- A stand-in for db (or a tx) that logs the SQL of every exec / query /
-- first into `log`; db:transaction logs the BEGIN and COMMIT it sends
-- (switchboard/init.lua) around the body's statements.
local function recorder(obj, backend, log)
  return setmetatable({}, { __index = function(_, name)
    local f = obj[name]
    if name == "transaction" then
      return function(_, fn, opts)
        log[#log + 1] = O.BEGIN[backend]
        local res = table.pack(obj:transaction(function(tx) return fn(recorder(tx, backend, log)) end, opts))
        if res[1] ~= nil then log[#log + 1] = O.COMMIT end
        return table.unpack(res, 1, res.n)
      end
    end
    if type(f) ~= "function" then return f end
    return function(_, sql, ...)
      if name == "exec" or name == "query" or name == "first" then log[#log + 1] = sql end
      return f(obj, sql, ...)
    end
  end })
end

local function routing(db, backend, base)
  local router = assert(sb.router{ db = db, policy = O.ROUTE.policy })
  local st = router:status()
  local name, version = O.route_policy()
  if st.name ~= name or st.version ~= version then
    error(("router loaded %s@%s, bench/ops.lua says %s@%s"):format(st.name, st.version, name, version))
  end
  -- the check route (waiting call base - 1), outside the timed phases
  local cc, log = router.cc, {}
  cc.db = recorder(db, backend, log)
  local d, err = router:route(O.route_call(-1, base))
  cc.db = db
  if not d or d.action ~= "assign" then error("check route: " .. tostring(d and d.reason or err)) end
  local want = O.statements("routing", backend)
  for i = 1, math.max(#want, #log) do
    if want[i] ~= log[i] then
      error(("a route sent statement %d:\n  %s\nbench/ops.lua has:\n  %s"):format(i, tostring(log[i]), tostring(want[i])))
    end
  end
  local route_call = O.route_call
  return function(k)
    local dec, rerr = router:route(route_call(k, base))
    if not dec then error(rerr, 0) end
    if dec.action ~= "assign" then error("decision " .. tostring(dec.action) .. ": " .. tostring(dec.reason), 0) end
    return 1
  end
end

-- ops(db, backend, base [, only]) --> { name = function(k) --> check value }
-- only = "routing": just that one (it loads the policy, whose self_test
-- needs the call-center schema, which only the routing database has).
function M.ops(db, backend, base, only)
  if only == "routing" then return { routing = routing(db, backend, base) } end
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
      local res = assert(db:batch{ { del, call }, { ins, call, agent, caller, at }, { bump, agent } })
      one(res[1])
      one(res[2])
      return one(res[3])
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
