-- bench/peers/luasql.lua - the LuaSQL peer (Debian lua-sql-sqlite3 and
-- lua-sql-postgres): one blocking connection.
--
-- Owns: connecting (SQLite with the pragmas switchboard sets; PostgreSQL
-- with $SB_TEST_PG_URL, which libpq takes as is) and one function per op.
-- LuaSQL 2.6 has no bind parameters and no prepared statements: each op
-- runs the SAME SQL text of bench/ops.lua with every $n replaced by a
-- literal (integers as digits, strings quoted with con:escape), through
-- con:execute, so the server parses and plans every statement.  Rows are
-- read as tables keyed by column name (cur:fetch({}, "a")).  The routing
-- op runs callcenter.lua's statements (bench/ops.lua; they reuse $n, so
-- each $n becomes its own literal wherever it appears) the way
-- sb.callcenter does, with the policy as a plain function (ops.lua's
-- plain_policy, no sandbox).
-- Does not own: timing (bench/cell.lua).

local O = require "ops"

local M = {}

function M.open(backend, target)
  local env, con
  if backend == "sqlite" then
    env = require("luasql.sqlite3").sqlite3()
    con = assert(env:connect(target))
    for _, p in ipairs({ "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                         "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000" }) do
      local cur = assert(con:execute(p))
      if type(cur) == "userdata" then cur:close() end
    end
  else
    env = require("luasql.postgres").postgres()
    con = assert(env:connect(target))
  end
  return { env = env, con = con }
end

-- "... $1 ... $2" --> "... %s ... %s" (ops.lua guarantees the order)
local function template(sql)
  return (sql:gsub("%%", "%%%%"):gsub("%$%d+", "%%s"))
end

-- "... $2 ... $1 ... $2" --> function(args) --> the text with args[n]
-- (already literals) for each $n, cut once into pieces
local function numbered(sql)
  local parts, nums, last = {}, {}, 1
  for at, n, after in sql:gmatch("()%$(%d+)()") do
    parts[#parts + 1] = sql:sub(last, at - 1)
    nums[#nums + 1] = tonumber(n)
    last = after
  end
  local tail = sql:sub(last)
  return function(args)
    local out = {}
    for i = 1, #nums do
      out[#out + 1] = parts[i]
      out[#out + 1] = args[nums[i]]
    end
    out[#out + 1] = tail
    return table.concat(out)
  end
end

local function routing(h, backend, base, lit, rows_of)
  local con = h.con
  local S = O.statements("routing", backend)
  local avail = numbered(S[1])
  local pname, pversion = O.route_policy()
  pname, pversion = lit(pname), lit(pversion)
  local policy, routing_args, route_call = O.plain_policy, O.routing_args, O.route_call
  local queue_l, skills_l = lit(O.ROUTE.queue), lit(O.ROUTE.skills_json)
  local begin, take_call, take_agent, insert, commit, assign
  if backend == "sqlite" then
    begin, take_call, take_agent, insert, commit = S[2], numbered(S[3]), numbered(S[4]), numbered(S[5]), S[6]
  else
    assign = numbered(S[2])
  end
  return function(k)
    local session = lit((routing_args(k, base)))
    local now = os.time() * 1000
    local rows = rows_of(avail({ now, skills_l, 1, queue_l }))
    local agent = policy(route_call(k, base), rows)
    if not agent then error("no agent available") end
    agent = lit(agent)
    if assign then
      if #rows_of(assign({ session, agent, now, pname, pversion })) ~= 1 then error("assign refused") end
      return 1
    end
    assert(con:execute(begin))
    local ok, err = pcall(function()
      local call = rows_of(take_call({ session }))[1]
      if not call then error("call not waiting") end
      local n = con:execute(take_agent({ agent, now }))
      if n ~= 1 then error("agent refused") end
      local row = rows_of(insert({ session, agent, lit(call.queue), lit(call.priority), lit(call.required_skills),
                                  lit(call.caller), lit(call.enqueued_at), now, pname, pversion }))[1]
      if not row then error("insert returned no row") end
    end)
    if not ok then con:execute("ROLLBACK") error(err) end
    assert(con:execute(commit))
    return 1
  end
end

-- ops(h, backend, base [, only]) --> { name = function(k) }; only =
-- "routing": just that one.
function M.ops(h, backend, base, only)
  local con = h.con
  local function lit(v)
    if math.type(v) == "integer" then return v end
    if v == nil then return "NULL" end
    if type(v) == "number" then return math.tointeger(v) or string.format("%.17g", v) end
    return "'" .. con:escape(v) .. "'"
  end
  local function one(n, err)
    if n ~= 1 then error(err or ("affected " .. tostring(n) .. " rows, want 1"), 2) end
    return 1
  end
  local function rows_of(sql)
    local cur = assert(con:execute(sql))
    local rows = {}
    local row = cur:fetch({}, "a")
    while row do
      rows[#rows + 1] = row
      row = cur:fetch({}, "a")
    end
    cur:close()
    return rows
  end
  if only == "routing" then return { routing = routing(h, backend, base, lit, rows_of) } end
  local upd, avail, an = template(O.ops.update.sql), template(O.ops.available.sql), template(O.ops.analytics.sql)
  local del, ins, bump =
    template(O.ops.assign.tx[1].sql), template(O.ops.assign.tx[2].sql), template(O.ops.assign.tx[3].sql)
  local assign1 = template(O.ops.assign1.sql)
  local begin, commit = O.BEGIN[backend], O.COMMIT
  local update_args, assign_args, analytics_args = O.update_args, O.assign_args, O.analytics_args
  return {
    update = function(k)
      local status, since, id = update_args(k)
      return one(con:execute(upd:format(lit(status), since, id)))
    end,
    available = function()
      return #rows_of(avail:format(lit("AVAILABLE")))
    end,
    assign = function(k)
      local call, agent, caller, at = assign_args(k, base)
      assert(con:execute(begin))
      local ok, err = pcall(function()
        one(con:execute(del:format(call)))
        one(con:execute(ins:format(call, agent, lit(caller), at)))
        one(con:execute(bump:format(agent)))
      end)
      if not ok then con:execute("ROLLBACK") error(err) end
      assert(con:execute(commit))
      return 1
    end,
    assign1 = function(k)
      local call, agent, _, at = assign_args(k, base)
      return one(con:execute(assign1:format(call, agent, at)))
    end,
    analytics = function(k)
      local from, to = analytics_args(k)
      return tonumber(rows_of(an:format(from, to))[1].calls)
    end,
  }
end

function M.close(h)
  h.con:close()
  h.env:close()
end

return M
