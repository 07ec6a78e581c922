-- spec/fault/lib/assign.lua - the call assignment the fault scripts put
-- under load: "assign waiting call C to agent A, exactly once".
--
-- Owns: two interchangeable models with the same methods and the queries
-- that verify the outcome afterwards (lookup by the call's unique id,
-- totals):
--   "cc"  issue #3's data layer: sb.migrate, cc:add_agent, cc:assign (the
--         default whenever switchboard.callcenter loads);
--   "sql" a small schema of its own (fault_agents/_waiting/_active) and an
--         assign written with plain db:transaction (the fallback, and what
--         f5_sqlite_procs uses: it needs retries = 0 to see every busy);
--   "batch" the "sql" schema, the assignment as ONE db:batch (on
--         PostgreSQL one round trip, one implicit transaction).
-- SB_FAULT_ASSIGN=sql|cc|batch overrides the default.
--
--   local A = require "assign"
--   local m = A.open(db [, kind])         -- model on an open db
--   m:setup{ agents = 100, max_calls = 200, calls = 10000 }
--   m:assign(call_id, agent_id [, retries]) --> true | nil, err (class "conflict", ...)
--   m.assign_in(tx, call_id, agent_id)   --> true, or raises (inside db:transaction)
--   m:lookup(call_id)           --> agent_id | false | nil, err
--   m:totals()                  --> { active =, current =, waiting = } | nil, err
--   m:active()                  --> { [call_id] = agent_id } | nil, err
--   A.call(i), A.agent(i)       --> ids "call-<i>", "agent-<i>"
local sb = require "switchboard"

local A = {}

function A.call(i) return "call-" .. i end
function A.agent(i) return "agent-" .. i end

local SQL = {}
SQL.__index = SQL

local function conflict(msg)
  return sb.error{ class = "conflict", sqlstate = "40000", message = msg }
end

-- raise a statement error inside a transaction body (rolls back)
local function ok(n, err)
  if n == nil then error(err, 0) end
  return n
end

function SQL:setup(o)
  local db = self.db
  for _, t in ipairs{ "fault_active", "fault_waiting", "fault_agents" } do
    assert(db:exec("DROP TABLE IF EXISTS " .. t))
  end
  assert(db:exec([[CREATE TABLE fault_agents (id TEXT PRIMARY KEY, status TEXT NOT NULL,
    current_calls INTEGER NOT NULL DEFAULT 0, max_calls INTEGER NOT NULL,
    CHECK (current_calls >= 0 AND current_calls <= max_calls))]]))
  assert(db:exec([[CREATE TABLE fault_waiting (session_id TEXT PRIMARY KEY, queue TEXT NOT NULL,
    enqueued_at BIGINT NOT NULL)]]))
  assert(db:exec([[CREATE TABLE fault_active (session_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL,
    assigned_at BIGINT NOT NULL)]]))
  assert(db:transaction(function(tx)
    for i = 1, o.agents do
      ok(tx:exec("INSERT INTO fault_agents (id, status, current_calls, max_calls) VALUES ($1, 'AVAILABLE', 0, $2)",
        A.agent(i), o.max_calls))
    end
    return true
  end))
  if db:backend() == "postgresql" then
    assert(db:exec([[INSERT INTO fault_waiting SELECT 'call-' || g, 'q', 0
      FROM generate_series(1, $1) AS g]], o.calls))
  else
    assert(db:exec([[WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $1)
      INSERT INTO fault_waiting SELECT 'call-' || x, 'q', 0 FROM g]], o.calls))
  end
end

-- The body of one assignment inside an open transaction: true, or raises
-- (a conflict error, or the statement's error) so that the caller's
-- db:transaction rolls back.
function SQL.assign_in(tx, call, agent)
  if ok(tx:exec("DELETE FROM fault_waiting WHERE session_id = $1", call)) ~= 1 then
    error(conflict("call " .. call .. " is not waiting"), 0)
  end
  if ok(tx:exec([[UPDATE fault_agents SET current_calls = current_calls + 1
      WHERE id = $1 AND status = 'AVAILABLE' AND current_calls < max_calls]], agent)) ~= 1 then
    error(conflict("agent " .. agent .. " is not available"), 0)
  end
  ok(tx:exec("INSERT INTO fault_active (session_id, agent_id, assigned_at) VALUES ($1, $2, $3)",
    call, agent, os.time() * 1000))
  return true
end

function SQL:assign(call, agent, retries)
  return self.db:transaction(function(tx) return SQL.assign_in(tx, call, agent) end,
                             { retries = retries or 10 })
end

function SQL:lookup(call)
  local row, err = self.db:first("SELECT agent_id FROM fault_active WHERE session_id = $1", call)
  if err then return nil, err end
  return row and row.agent_id or false
end

function SQL:totals()
  local row, err = self.db:first([[SELECT
      (SELECT count(*) FROM fault_active) AS active,
      (SELECT coalesce(sum(current_calls), 0) FROM fault_agents) AS current,
      (SELECT count(*) FROM fault_waiting) AS waiting]])
  if not row then return nil, err end
  return { active = tonumber(row.active), current = tonumber(row.current), waiting = tonumber(row.waiting) }
end

function SQL:active()
  local rows, err = self.db:query("SELECT session_id, agent_id FROM fault_active")
  if not rows then return nil, err end
  local t = {}
  for _, r in ipairs(rows) do t[r.session_id] = r.agent_id end
  return t
end

------------------------------------------------------------ db:batch
-- The same three statements sent at once, every parameter known up front.
-- The constraints are the guards no Lua can check between statements: a
-- call that is not waiting any more deletes nothing and then breaks
-- fault_active's primary key, an agent at max_calls breaks the CHECK; either
-- way the whole batch rolls back (agents are all AVAILABLE in these runs).
local BATCH = setmetatable({}, { __index = SQL })
BATCH.__index = BATCH

function BATCH:assign(call, agent, retries)
  local res, err = self.db:batch({
    { "DELETE FROM fault_waiting WHERE session_id = $1", call },
    { "INSERT INTO fault_active (session_id, agent_id, assigned_at) VALUES ($1, $2, $3)",
      call, agent, os.time() * 1000 },
    { "UPDATE fault_agents SET current_calls = current_calls + 1 WHERE id = $1", agent },
  }, { retries = retries or 10 })
  if res then return true end
  if err.class == "constraint" then
    return nil, conflict(("call %s or agent %s: %s"):format(call, agent, err.message))
  end
  return nil, err
end

------------------------------------------------------------ #3's cc:assign
local CC = {}
CC.__index = CC

local CC_TABLES = { "active_calls", "call_records", "waiting_calls", "agent_queues", "agent_skills", "agents",
                    "queues" }

function CC:setup(o)
  local db, cc = self.db, self.cc
  assert(sb.migrate(db))
  -- the throwaway server is shared by the steps of one run: start empty
  for _, t in ipairs(CC_TABLES) do assert(db:exec("DELETE FROM " .. t)) end
  assert(cc:add_queue{ name = "q" })
  for i = 1, o.agents do
    assert(cc:add_agent{ id = A.agent(i), max_calls = o.max_calls, queues = { "q" } })
  end
  -- the waiting calls in bulk (what cc:enqueue inserts, one statement)
  local gen = db:backend() == "postgresql" and "SELECT g AS x FROM generate_series(1, $1) AS g"
    or "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $1) SELECT x FROM g"
  assert(db:exec("INSERT INTO waiting_calls (session_id, queue, priority, required_skills, enqueued_at) "
    .. "SELECT 'call-' || x, 'q', 0, '{}', $2 FROM (" .. gen .. ") s", o.calls, os.time() * 1000))
end

-- cc:assign runs its own transaction (PostgreSQL: one statement); retries
-- are its business (db:transaction's default on SQLite).
function CC:assign(call, agent)
  local a, err = self.cc:assign(call, agent)
  if a then return true end
  return nil, err
end

function CC:lookup(call)
  local row, err = self.db:first("SELECT agent_id FROM active_calls WHERE call_id = $1", call)
  if err then return nil, err end
  return row and row.agent_id or false
end

function CC:totals()
  local row, err = self.db:first([[SELECT
      (SELECT count(*) FROM active_calls) AS active,
      (SELECT coalesce(sum(current_calls), 0) FROM agents) AS current,
      (SELECT count(*) FROM waiting_calls) AS waiting]])
  if not row then return nil, err end
  return { active = tonumber(row.active), current = tonumber(row.current), waiting = tonumber(row.waiting) }
end

function CC:active()
  local rows, err = self.db:query("SELECT call_id, agent_id FROM active_calls")
  if not rows then return nil, err end
  local t = {}
  for _, r in ipairs(rows) do t[r.call_id] = r.agent_id end
  return t
end

-- The model for db.  kind: "cc" (default when switchboard.callcenter
-- loads), "sql" or "batch".
function A.open(db, kind)
  kind = kind or os.getenv("SB_FAULT_ASSIGN")
  if kind == nil or kind == "" then
    kind = pcall(require, "switchboard.callcenter") and "cc" or "sql"
  end
  if kind == "cc" then
    return setmetatable({ db = db, kind = "cc", cc = sb.callcenter(db) }, CC)
  end
  if kind == "batch" then return setmetatable({ db = db, kind = "batch" }, BATCH) end
  return setmetatable({ db = db, kind = "sql" }, SQL)
end

return A
