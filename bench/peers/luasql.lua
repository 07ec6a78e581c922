-- bench/peers/luasql.lua - the LuaSQL peer (Debian lua-sql-sqlite3 and
-- lua-sql-postgres): one blocking connection.
--
-- Owns: connecting (SQLite with the pragmas switchboard sets; PostgreSQL
-- with $SB_TEST_PG_URL, which libpq takes as is) and one function per op.
-- LuaSQL 2.6 has no bind parameters and no prepared statements: each op
-- runs the SAME SQL text of bench/ops.lua with every $n replaced by a
-- literal (integers as digits, strings quoted with con:escape), through
-- con:execute, so the server parses and plans every statement.  Rows are
-- read as tables keyed by column name (cur:fetch({}, "a")).
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

function M.ops(h, backend, base)
  local con = h.con
  local function lit(v)
    if math.type(v) == "integer" then return v end
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
