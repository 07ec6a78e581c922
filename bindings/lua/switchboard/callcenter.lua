-- switchboard/callcenter.lua - the call-center data API (sb.callcenter(db),
-- require "switchboard.callcenter"): agents, queues, waiting calls,
-- exactly-once assignment, completion, abandonment and statistics, on the
-- schema of migrations/0001_callcenter.*.sql.
--
-- Owns: argument checking (bad input raises), the SQL of every call (values
-- only as $n parameters; per-backend text where the dialects differ), the
-- flat {skill = level} JSON that carries skills to SQL, and the error
-- objects for refusals (class "conflict" from assign/claim_next, "not_found"
-- elsewhere).  Exactly-once is the database's job: PostgreSQL runs assign,
-- claim_next and complete as one statement with data-modifying CTEs and row
-- locks; SQLite runs them in one BEGIN IMMEDIATE transaction.  Timestamps
-- are integer milliseconds since the Unix epoch (UTC), taken from one clock
-- (core.time_ms, or opts.now) and passed as parameters.
-- The full contract is docs/callcenter.md.

local core = require "switchboard.core"

local type, error, assert, pairs, ipairs, tostring, tonumber, setmetatable, string, table, math, next =
  type, error, assert, pairs, ipairs, tostring, tonumber, setmetatable, string, table, math, next

local M = {}
local CC = {}
CC.__index = CC
M.methods = CC

local STATUS = { AVAILABLE = true, BUSY = true, PAUSED = true, OFFLINE = true }
local OUTCOME = { answered = true, abandoned = true, overflowed = true, rejected = true }
local ALL = math.maxinteger  -- LIMIT when none is given

------------------------------------------------------------ arguments

-- level: of the API function's caller, seen from argerror (default: argerror
-- called by a checker called by the API function)
local function argerror(fname, what, msg, level)
  error(string.format("bad %s to '%s' (%s)", what, fname, msg), level or 4)
end

local function check_fields(fname, t, allowed, what)
  what = what or "argument #1"
  if type(t) ~= "table" then argerror(fname, what, "table expected, got " .. type(t)) end
  for k in pairs(t) do
    if not allowed[k] then argerror(fname, what, "unknown field '" .. tostring(k) .. "'") end
  end
end

-- Agent ids and session ids: non-empty strings, or integers (stored as
-- their decimal text).
local function id_arg(fname, what, v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) ~= "string" or v == "" then
    argerror(fname, what, "non-empty string or integer expected, got " .. (v == "" and "empty string" or type(v)))
  end
  return v
end

local function int_arg(fname, what, v, default, min)
  if v == nil then return default end
  local i = type(v) == "number" and math.tointeger(v)
  if not i then argerror(fname, what, "integer expected, got " .. (math.type(v) or type(v))) end
  if min and i < min then argerror(fname, what, "must be >= " .. min .. ", got " .. i) end
  return i
end

local function opt_string(fname, what, v)
  if v ~= nil and type(v) ~= "string" then argerror(fname, what, "string expected, got " .. type(v)) end
  return v
end

------------------------------------------------------------------ JSON
-- Flat { name = level } maps only, for skills and queue memberships.
-- Array entries ("english") mean level 1.  Keys are sorted, so equal maps
-- encode equally.

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function level_map(fname, what, t)
  if t == nil then return {} end
  if type(t) ~= "table" then argerror(fname, what, "table expected, got " .. type(t)) end
  local map = {}
  for k, v in pairs(t) do
    local name, level
    if math.type(k) == "integer" then
      name, level = v, 1
      if type(name) ~= "string" then argerror(fname, what, "array entries must be names (strings)") end
    else
      name, level = k, type(v) == "number" and math.tointeger(v)
      if type(name) ~= "string" then argerror(fname, what, "keys must be strings, got " .. type(name)) end
      if not level then argerror(fname, what, "level of '" .. name .. "' must be an integer, got " .. type(v)) end
    end
    if name == "" then argerror(fname, what, "names must not be empty") end
    if level < 0 then argerror(fname, what, "level of '" .. name .. "' must be >= 0, got " .. level) end
    if map[name] then argerror(fname, what, "'" .. name .. "' given twice") end
    map[name] = level
  end
  return map
end

local function encode(map)
  local keys = {}
  for k in pairs(map) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = json_string(k) .. ":" .. map[k] end
  return "{" .. table.concat(keys, ",") .. "}"
end

-- Decodes what encode wrote (stored in waiting_calls.required_skills).
local function decode(s)
  local map, i = {}, 2
  if s == "{}" then return map end
  while true do
    local j = i + 1
    local buf = {}
    while true do  -- the key, from the opening quote at i
      local c = s:sub(j, j)
      if c == '"' then break end
      if c == "\\" then
        local e = s:sub(j + 1, j + 1)
        if e == "u" then buf[#buf + 1] = string.char(tonumber(s:sub(j + 2, j + 5), 16)); j = j + 6
        else buf[#buf + 1] = e; j = j + 2 end
      elseif c == "" then error("bad skills JSON: " .. s)
      else buf[#buf + 1] = c; j = j + 1 end
    end
    local num, after = s:match("^:(%-?%d+)()", j + 1)
    if not num then error("bad skills JSON: " .. s) end
    map[table.concat(buf)] = math.tointeger(tonumber(num))
    local sep = s:sub(after, after)
    if sep == "}" then return map end
    if sep ~= "," then error("bad skills JSON: " .. s) end
    i = after + 1
  end
end

------------------------------------------------------------------ SQL
-- Skills as one JSON parameter: rows (key, value) of that object.
local EACH = {
  sqlite = "json_each(%s)",
  postgresql = "jsonb_each_text(%s::jsonb)",
}
local LEVEL = { sqlite = "r.value", postgresql = "r.value::integer" }

-- "agent `who` has every skill of JSON `skills` at the level asked"
local function skills_met(backend, who, skills)
  return string.format("NOT EXISTS (SELECT 1 FROM %s r WHERE NOT EXISTS (SELECT 1 FROM agent_skills s"
    .. " WHERE s.agent_id = %s AND s.skill = r.key AND s.level >= %s))",
    EACH[backend]:format(skills), who, LEVEL[backend])
end

-- An agent who can take a call now ($now = current time in ms).
local function can_take(alias, now)
  return string.format("%s.status = 'AVAILABLE' AND %s.current_calls < %s.max_calls AND +%s.available_since <= %s",
    alias, alias, alias, alias, now)
end

local function clamp0(expr) return "CASE WHEN " .. expr .. " < 0 THEN 0 ELSE " .. expr .. " END" end

local ACTIVE_COLS = "call_id, agent_id, queue, priority, required_skills, caller, enqueued_at, assigned_at, policy_name, policy_version"
local RECORD_COLS = "call_id, agent_id, queue, caller, enqueued_at, assigned_at, ended_at, wait_ms, talk_ms, outcome, policy_name, policy_version"
local ASSIGN_RETURNING = "call_id, agent_id, queue, priority, caller, enqueued_at, assigned_at, policy_name, policy_version"

-- Built once per backend: every statement's text.
local function build_sql(backend)
  local S = {}
  local pg = backend == "postgresql"

  S.queue = "INSERT INTO queues (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
  S.add_agent = "INSERT INTO agents (id, name, status, status_since, available_since, current_calls, max_calls, wrapup_seconds)"
    .. " VALUES ($1, $2, $3, $4, $4, 0, $5, $6)"
  S.agent_skills = "INSERT INTO agent_skills (agent_id, skill, level) SELECT $1, r.key, " .. LEVEL[backend]
    .. " FROM " .. EACH[backend]:format("$2") .. " r"
  -- SQLite needs a WHERE before ON CONFLICT in INSERT .. SELECT
  S.member_queues = "INSERT INTO queues (name) SELECT r.key FROM " .. EACH[backend]:format("$1")
    .. " r WHERE true ON CONFLICT (name) DO NOTHING"
  S.agent_queues = "INSERT INTO agent_queues (agent_id, queue, level) SELECT $1, r.key, " .. LEVEL[backend]
    .. " FROM " .. EACH[backend]:format("$2") .. " r"
  S.add_queue = "INSERT INTO queues (name, priority_weight, max_wait_seconds, overflow_queue, service_level_seconds)"
    .. " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET priority_weight = $2,"
    .. " max_wait_seconds = $3, overflow_queue = $4, service_level_seconds = $5"

  S.set_status = "UPDATE agents SET status = $2, status_reason = $3,"
    .. " status_since = CASE WHEN status = $2 THEN status_since ELSE $4 END,"
    .. " available_since = CASE WHEN $2 = 'AVAILABLE' AND status <> 'AVAILABLE' AND available_since < $4"
    .. " THEN $4 ELSE available_since END WHERE id = $1"

  local agent_cols = "a.id, a.name, a.status, a.status_reason, a.status_since, a.available_since,"
    .. " a.current_calls, a.max_calls, a.wrapup_seconds"
  -- Available agents, least loaded then longest idle first, limited to a
  -- queue's members ($4) if one is given; skill_level is the agent's levels
  -- in the skills asked ($2, JSON), summed.  The ORDER BY is the index
  -- agents_pick (migration 0002): the scan walks agents in that order and
  -- stops once LIMIT agents qualify.  The unary + keeps SQLite from
  -- preferring the available_since index (and a sort of every candidate).
  -- With no skills asked the statement has no skill clauses at all.
  local order = " ORDER BY a.current_calls, a.available_since, a.id"
  local in_queue = " AND EXISTS (SELECT 1 FROM agent_queues q WHERE q.agent_id = a.id AND q.queue = $%d)"
  local skilled = "SELECT " .. agent_cols .. ", (SELECT COALESCE(SUM(s.level), 0) FROM agent_skills s JOIN "
    .. EACH[backend]:format("$2") .. " r ON s.skill = r.key WHERE s.agent_id = a.id) AS skill_level"
    .. " FROM agents a WHERE " .. can_take("a", "$1")
  local tail = " AND " .. skills_met(backend, "a.id", "$2") .. order .. " LIMIT $3"
  S.available = skilled .. tail
  S.available_queue = skilled .. in_queue:format(4) .. tail
  local any = "SELECT " .. agent_cols .. ", 0 AS skill_level FROM agents a WHERE " .. can_take("a", "$1")
  S.available_any = any .. order .. " LIMIT $2"
  S.available_any_queue = any .. in_queue:format(3) .. order .. " LIMIT $2"
  S.agent = "SELECT " .. agent_cols .. " FROM agents a WHERE a.id = $1"

  -- a session id names one call for ever: not waiting (unique), not active,
  -- not ended.  PostgreSQL makes the queue in the same statement.
  S.enqueue = (pg and "WITH q AS (INSERT INTO queues (name) VALUES ($2) ON CONFLICT (name) DO NOTHING) " or "")
    .. "INSERT INTO waiting_calls (session_id, queue, priority, required_skills, caller, enqueued_at)"
    .. " SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM active_calls WHERE call_id = $1)"
    .. " AND NOT EXISTS (SELECT 1 FROM call_records WHERE call_id = $1)"
  local wcols = "session_id, queue, priority, required_skills, caller, enqueued_at"
  local order = " ORDER BY priority DESC, enqueued_at, seq LIMIT $1"
  S.waiting = "SELECT " .. wcols .. " FROM waiting_calls" .. order
  S.waiting_queue = "SELECT " .. wcols .. " FROM waiting_calls WHERE queue = $2" .. order

  -- Why an assignment did not happen (read after the fact, for the message).
  S.diagnose = "SELECT (SELECT count(*) FROM waiting_calls WHERE session_id = $1) AS waiting,"
    .. " a.status, a.current_calls, a.max_calls, a.available_since"
    .. " FROM (SELECT 1 AS one) x LEFT JOIN agents a ON a.id = $2"

  -- the best waiting call for agent $1: in one of its queues, skills met
  local best = "SELECT w.session_id FROM waiting_calls w"
    .. " WHERE EXISTS (SELECT 1 FROM agent_queues q WHERE q.agent_id = $1 AND q.queue = w.queue)"
    .. " AND " .. skills_met(backend, "$1", "w.required_skills")
    .. " ORDER BY w.priority DESC, w.enqueued_at, w.seq LIMIT 1"

  if pg then
    -- One statement, autocommit.  c locks the call row: competing assigns
    -- of the same call queue behind it and then find it gone.  a re-checks
    -- the agent's state and capacity after any wait for its row lock (READ
    -- COMMITTED re-evaluates the WHERE on the newest row version).  d and
    -- the INSERT happen only when both did.  Locks are always taken call
    -- first, agent second (complete: active call, then agent): no
    -- deadlock cycle.
    local tail = ", a AS (UPDATE agents SET current_calls = current_calls + 1"
      .. " WHERE id = $2 AND " .. can_take("agents", "$3") .. " AND EXISTS (SELECT 1 FROM c) RETURNING id),"
      .. " d AS (DELETE FROM waiting_calls w USING c, a WHERE w.session_id = c.session_id"
      .. " RETURNING w.session_id, w.queue, w.priority, w.required_skills, w.caller, w.enqueued_at)"
      .. " INSERT INTO active_calls (" .. ACTIVE_COLS .. ")"
      .. " SELECT d.session_id, a.id, d.queue, d.priority, d.required_skills, d.caller, d.enqueued_at, $3, $4, $5"
      .. " FROM d, a RETURNING " .. ASSIGN_RETURNING
    S.assign = "WITH c AS MATERIALIZED (SELECT session_id FROM waiting_calls WHERE session_id = $1 FOR UPDATE)" .. tail
    -- claim_next: the same with the best call that nobody has locked;
    -- $2 = $1 (the agent), so that `tail` serves both
    -- (and lock nothing when the agent cannot take a call anyway)
    S.claim = "WITH c AS MATERIALIZED (" .. best:gsub(" ORDER BY .*$", "")
      .. " AND EXISTS (SELECT 1 FROM agents g WHERE g.id = $2 AND " .. can_take("g", "$3") .. ")"
      .. " ORDER BY w.priority DESC, w.enqueued_at, w.seq LIMIT 1 FOR UPDATE OF w SKIP LOCKED)" .. tail
    S.complete = "WITH d AS (DELETE FROM active_calls WHERE call_id = $1 RETURNING *),"
      .. " a AS (UPDATE agents g SET current_calls = g.current_calls - 1,"
      .. " available_since = CASE WHEN g.available_since > $2 + g.wrapup_seconds * 1000"
      .. " THEN g.available_since ELSE $2 + g.wrapup_seconds * 1000 END"
      .. " FROM d WHERE g.id = d.agent_id RETURNING g.id)"
      .. " INSERT INTO call_records (" .. RECORD_COLS .. ")"
      .. " SELECT d.call_id, d.agent_id, d.queue, d.caller, d.enqueued_at, d.assigned_at, $2, "
      .. clamp0("d.assigned_at - d.enqueued_at") .. ", COALESCE($4, CASE WHEN $3 = 'answered' THEN "
      .. clamp0("$2 - d.assigned_at") .. " END), $3, d.policy_name, d.policy_version FROM d, a"
      .. " RETURNING " .. RECORD_COLS
    S.abandon = "WITH d AS (DELETE FROM waiting_calls WHERE session_id = $1 RETURNING *)"
      .. " INSERT INTO call_records (" .. RECORD_COLS .. ")"
      .. " SELECT d.session_id, NULL, d.queue, d.caller, d.enqueued_at, NULL, $2, "
      .. clamp0("$2 - d.enqueued_at") .. ", NULL, 'abandoned', NULL, NULL FROM d RETURNING " .. RECORD_COLS
  else
    -- SQLite: the same steps inside one BEGIN IMMEDIATE transaction (the
    -- write lock is held from the first statement, across processes too);
    -- a refusal rolls back.
    S.take_call = "DELETE FROM waiting_calls WHERE session_id = $1"
      .. " RETURNING session_id, queue, priority, required_skills, caller, enqueued_at"
    S.take_agent = "UPDATE agents SET current_calls = current_calls + 1 WHERE id = $1 AND " .. can_take("agents", "$2")
    S.insert_active = "INSERT INTO active_calls (" .. ACTIVE_COLS .. ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
      .. " RETURNING " .. ASSIGN_RETURNING
    S.best = best
    S.end_active = "DELETE FROM active_calls WHERE call_id = $1 RETURNING *"
    S.give_back = "UPDATE agents SET current_calls = current_calls - 1,"
      .. " available_since = CASE WHEN available_since > $2 + wrapup_seconds * 1000"
      .. " THEN available_since ELSE $2 + wrapup_seconds * 1000 END WHERE id = $1"
    S.insert_record = "INSERT INTO call_records (" .. RECORD_COLS .. ")"
      .. " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING " .. RECORD_COLS
    S.take_waiting = "DELETE FROM waiting_calls WHERE session_id = $1 RETURNING *"
  end

  -- stats over call records with enqueued_at in [$1, $2) (and queue = $3)
  local function stats(where)
    local answered = "r.outcome = 'answered'"
    local function count_if(cond) return "CAST(COALESCE(SUM(CASE WHEN " .. cond .. " THEN 1 ELSE 0 END), 0) AS BIGINT)" end
    return "SELECT count(*) AS offered, "
      .. count_if(answered) .. " AS answered, "
      .. count_if("r.outcome = 'abandoned'") .. " AS abandoned, "
      .. count_if("r.outcome = 'rejected'") .. " AS rejected, "
      .. count_if("r.outcome = 'overflowed'") .. " AS overflowed, "
      .. "CAST(SUM(CASE WHEN " .. answered .. " THEN r.wait_ms END) AS BIGINT) AS wait_sum, "
      .. "CAST(SUM(CASE WHEN " .. answered .. " THEN r.talk_ms END) AS BIGINT) AS talk_sum, "
      .. count_if(answered .. " AND r.talk_ms IS NOT NULL") .. " AS talk_n, "
      .. count_if(answered .. " AND r.wait_ms <= COALESCE(q.service_level_seconds, 20) * 1000") .. " AS within, "
      -- p90 by nearest rank: the ceil(0.9 n)-th smallest wait of the answered calls
      .. "(SELECT x.wait_ms FROM (SELECT r.wait_ms, row_number() OVER (ORDER BY r.wait_ms) AS rn,"
      .. " count(*) OVER () AS n FROM call_records r WHERE " .. where .. " AND " .. answered .. ") x"
      .. " WHERE x.rn = (9 * x.n + 9) / 10) AS p90_wait_ms"
      .. " FROM call_records r LEFT JOIN queues q ON q.name = r.queue WHERE " .. where
  end
  S.stats = stats("r.enqueued_at >= $1 AND r.enqueued_at < $2")
  S.stats_queue = stats("r.enqueued_at >= $1 AND r.enqueued_at < $2 AND r.queue = $3")
  return S
end

local SQL = {}  -- backend -> statements

------------------------------------------------------------------ errors

function CC:_error(class, reason, msg)
  return core.error{ class = class, reason = reason, message = msg, backend = self.backend,
                     sqlstate = class == "conflict" and "55000" or "02000" }
end

-- A database error, or (for 0 rows) the refusal `class` with a reason.
-- Reasons: not_waiting, unknown_agent, agent_not_available, agent_in_wrapup,
-- agent_full, lost_race.
function CC:_refusal(q, session, agent, now)
  local row, err = q:first(SQL[self.backend].diagnose, session, agent)
  if not row then return err end
  local reason, msg
  if session and row.waiting == 0 then
    reason, msg = "not_waiting", "call '" .. session .. "' is not waiting"
  elseif row.status == nil then
    reason, msg = "unknown_agent", "no agent '" .. agent .. "'"
  elseif row.status ~= "AVAILABLE" then
    reason, msg = "agent_not_available", "agent '" .. agent .. "' is " .. row.status
  elseif row.current_calls >= row.max_calls then
    reason, msg = "agent_full", string.format("agent '%s' has %d of %d calls", agent, row.current_calls, row.max_calls)
  elseif row.available_since > now then
    reason, msg = "agent_in_wrapup", "agent '" .. agent .. "' is in wrap-up"
  else
    reason, msg = "lost_race", "the call or the agent changed meanwhile"
  end
  return self:_error("conflict", reason, msg)
end

------------------------------------------------------------------ API

-- M.new(db [, opts]) --> cc.  opts.now: function returning integer ms
-- (default core.time_ms, the wall clock).
function M.new(db, opts)
  if type(db) ~= "userdata" or type(db.backend) ~= "function" then
    error("bad argument #1 to 'callcenter' (switchboard.db expected, got " .. type(db) .. ")", 2)
  end
  if opts ~= nil then
    check_fields("callcenter", opts, { now = true })
    if opts.now ~= nil and type(opts.now) ~= "function" then error("bad option 'now' (function expected)", 2) end
  end
  local backend = db:backend()
  SQL[backend] = SQL[backend] or build_sql(backend)
  return setmetatable({ db = db, backend = backend, clock = opts and opts.now or core.time_ms }, CC)
end

setmetatable(M, { __call = function(_, ...) return M.new(...) end })

function CC:now()
  local t = self.clock()
  t = type(t) == "number" and math.tointeger(t)
  if not t then error("the callcenter clock must return integer milliseconds", 3) end
  return t
end

-- cc:add_agent{ id=, name=, max_calls=1, wrapup_seconds=0, status="AVAILABLE",
--               skills={ english=5 }, queues={ "sales" } | { sales=2 } }
-- --> agent table | nil, err (class "constraint" for a duplicate id)
local ADD_AGENT = { id = true, name = true, max_calls = true, wrapup_seconds = true, status = true,
                    skills = true, queues = true }
function CC:add_agent(t)
  check_fields("add_agent", t, ADD_AGENT)
  local F = "add_agent"
  local id = id_arg(F, "field 'id'", t.id)
  local name = t.name == nil and id or opt_string(F, "field 'name'", t.name)
  local max_calls = int_arg(F, "field 'max_calls'", t.max_calls, 1, 0)
  local wrapup = int_arg(F, "field 'wrapup_seconds'", t.wrapup_seconds, 0, 0)
  local status = t.status == nil and "AVAILABLE" or t.status
  if not STATUS[status] then argerror(F, "field 'status'", "unknown status '" .. tostring(status) .. "'", 3) end
  local skills = level_map(F, "field 'skills'", t.skills)
  local queues = level_map(F, "field 'queues'", t.queues)
  local now = self:now()
  local S = SQL[self.backend]
  return self.db:transaction(function(tx)
    assert(tx:exec(S.add_agent, id, name, status, now, max_calls, wrapup))
    if next(skills) then assert(tx:exec(S.agent_skills, id, encode(skills))) end
    if next(queues) then
      local json = encode(queues)
      assert(tx:exec(S.member_queues, json))
      assert(tx:exec(S.agent_queues, id, json))
    end
    return { id = id, name = name, status = status, max_calls = max_calls, wrapup_seconds = wrapup,
             current_calls = 0, status_since = now, available_since = now, skills = skills, queues = queues }
  end)
end

-- cc:add_queue{ name=, priority_weight=1, max_wait_seconds=, overflow_queue=,
--               service_level_seconds=20 } --> true | nil, err  (insert or update)
local ADD_QUEUE = { name = true, priority_weight = true, max_wait_seconds = true, overflow_queue = true,
                    service_level_seconds = true }
function CC:add_queue(t)
  check_fields("add_queue", t, ADD_QUEUE)
  local F = "add_queue"
  if type(t.name) ~= "string" or t.name == "" then argerror(F, "field 'name'", "non-empty string expected", 3) end
  local weight = int_arg(F, "field 'priority_weight'", t.priority_weight, 1, 0)
  local max_wait = int_arg(F, "field 'max_wait_seconds'", t.max_wait_seconds, nil, 1)
  local overflow = opt_string(F, "field 'overflow_queue'", t.overflow_queue)
  local sl = int_arg(F, "field 'service_level_seconds'", t.service_level_seconds, 20, 0)
  local S = SQL[self.backend]
  return self.db:transaction(function(tx)
    if overflow then assert(tx:exec(S.queue, overflow)) end
    assert(tx:exec(S.add_queue, t.name, weight, max_wait, overflow, sl))
    return true
  end)
end

-- cc:set_status(agent_id, status [, reason]) --> true | nil, err (class "not_found")
function CC:set_status(agent, status, reason)
  local F = "set_status"
  agent = id_arg(F, "argument #1", agent)
  if not STATUS[status] then
    argerror(F, "argument #2", "unknown status '" .. tostring(status) .. "' (AVAILABLE, BUSY, PAUSED or OFFLINE)", 3)
  end
  opt_string(F, "argument #3", reason)
  local n, err = self.db:exec(SQL[self.backend].set_status, agent, status, reason, self:now())
  if not n then return nil, err end
  if n == 0 then return nil, self:_error("not_found", "unknown_agent", "no agent '" .. agent .. "'") end
  return true
end

-- cc:agent(agent_id) --> agent row | nil (no such agent) | nil, err
function CC:agent(agent)
  agent = id_arg("agent", "argument #1", agent)
  return self.db:first(SQL[self.backend].agent, agent)
end

-- cc:available_agents{ queue=, skills=, limit= } --> array of agent rows
-- (AVAILABLE, not in wrap-up, capacity left, in `queue`, skills met), fewest
-- calls first, then longest idle | nil, err.  Each row also has
-- skill_level: the agent's levels in the skills asked, summed.
local AVAILABLE = { queue = true, skills = true, limit = true }
function CC:available_agents(t)
  t = t or {}
  check_fields("available_agents", t, AVAILABLE)
  local F = "available_agents"
  local queue = opt_string(F, "field 'queue'", t.queue)
  local skills = level_map(F, "field 'skills'", t.skills)
  local limit = int_arg(F, "field 'limit'", t.limit, ALL, 0)
  local S = SQL[self.backend]
  local rows, err
  if next(skills) == nil then
    if queue then rows, err = self.db:query(S.available_any_queue, self:now(), limit, queue)
    else rows, err = self.db:query(S.available_any, self:now(), limit) end
  elseif queue then
    rows, err = self.db:query(S.available_queue, self:now(), encode(skills), limit, queue)
  else
    rows, err = self.db:query(S.available, self:now(), encode(skills), limit)
  end
  if not rows then return nil, err end
  rows.columns = nil
  return rows
end

-- cc:enqueue{ session_id=, queue=, priority=0, skills={}, caller= }
-- --> waiting call table | nil, err (class "constraint" for a session id
-- that is or was in use)
local ENQUEUE = { session_id = true, queue = true, priority = true, skills = true, caller = true }
function CC:enqueue(t)
  check_fields("enqueue", t, ENQUEUE)
  local F = "enqueue"
  local session = id_arg(F, "field 'session_id'", t.session_id)
  if type(t.queue) ~= "string" or t.queue == "" then
    argerror(F, "field 'queue'", "non-empty string expected, got " .. type(t.queue), 3)
  end
  local priority = int_arg(F, "field 'priority'", t.priority, 0)
  local skills = level_map(F, "field 'skills'", t.skills)
  local caller = opt_string(F, "field 'caller'", t.caller)
  local now = self:now()
  local S = SQL[self.backend]
  if self.backend == "sqlite" then
    local ok, err = self.db:exec(S.queue, t.queue)
    if not ok then return nil, err end
  end
  local n, err = self.db:exec(S.enqueue, session, t.queue, priority, encode(skills), caller, now)
  if not n then return nil, err end
  if n == 0 then
    return nil, core.error{ class = "constraint", sqlstate = "23505", backend = self.backend,
                            message = "session id '" .. session .. "' is already in use (active or ended call)" }
  end
  return { session_id = session, queue = t.queue, priority = priority, skills = skills, caller = caller,
           enqueued_at = now }
end

-- cc:waiting{ queue=, limit= } --> array of waiting calls (session_id,
-- queue, priority, skills, caller, enqueued_at, wait_ms), higher priority
-- first, then longest waiting | nil, err
local WAITING = { queue = true, limit = true }
function CC:waiting(t)
  t = t or {}
  check_fields("waiting", t, WAITING)
  local queue = opt_string("waiting", "field 'queue'", t.queue)
  local limit = int_arg("waiting", "field 'limit'", t.limit, ALL, 0)
  local S = SQL[self.backend]
  local rows, err
  if queue then rows, err = self.db:query(S.waiting_queue, limit, queue)
  else rows, err = self.db:query(S.waiting, limit) end
  if not rows then return nil, err end
  local now = self:now()
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { session_id = r.session_id, queue = r.queue, priority = r.priority, skills = decode(r.required_skills),
               caller = r.caller, enqueued_at = r.enqueued_at, wait_ms = now - r.enqueued_at }
  end
  return out
end

local function assignment(row)
  return { call_id = row.call_id, agent_id = row.agent_id, queue = row.queue, assigned_at = row.assigned_at,
           enqueued_at = row.enqueued_at, priority = row.priority, caller = row.caller,
           wait_ms = row.assigned_at - row.enqueued_at,
           policy_name = row.policy_name, policy_version = row.policy_version }
end

-- SQLite: move `session` to `agent` inside tx, or raise the refusal (which
-- rolls the transaction back).
function CC:_sqlite_take(tx, session, agent, now, policy, version)
  local S = SQL.sqlite
  local call, err = tx:first(S.take_call, session)
  if not call then error(err or self:_refusal(tx, session, agent, now), 0) end
  local n
  n, err = tx:exec(S.take_agent, agent, now)
  if n ~= 1 then error(err or self:_refusal(tx, nil, agent, now), 0) end
  local row = assert(tx:first(S.insert_active, session, agent, call.queue, call.priority, call.required_skills,
                              call.caller, call.enqueued_at, now, policy, version))
  return assignment(row)
end

local function info_arg(info)
  if info == nil then return nil, nil end
  check_fields("assign", info, { policy = true, policy_name = true, version = true, policy_version = true },
               "argument #3")
  local policy = info.policy_name or info.policy
  local version = info.policy_version or info.version
  if math.type(version) == "integer" then version = tostring(version) end
  if policy ~= nil and type(policy) ~= "string" then argerror("assign", "field 'policy_name'", "string expected") end
  if version ~= nil and type(version) ~= "string" then argerror("assign", "field 'policy_version'", "string expected") end
  return policy, version
end

-- cc:assign(session_id, agent_id [, { policy_name=, policy_version= }])
-- --> { call_id, agent_id, queue, assigned_at, enqueued_at, wait_ms, ... }
--   | nil, err (class "conflict", err.reason says why; or a database error)
-- Exactly once: succeeds only while the call waits and the agent is
-- AVAILABLE, out of wrap-up, with capacity left; otherwise changes nothing.
function CC:assign(session, agent, info)
  session = id_arg("assign", "argument #1", session)
  agent = id_arg("assign", "argument #2", agent)
  local policy, version = info_arg(info)
  local now = self:now()
  if self.backend == "postgresql" then
    local row, err = self.db:first(SQL.postgresql.assign, session, agent, now, policy, version)
    if row then return assignment(row) end
    return nil, err or self:_refusal(self.db, session, agent, now)
  end
  return self.db:transaction(function(tx) return self:_sqlite_take(tx, session, agent, now, policy, version) end)
end

-- cc:claim_next(agent_id) --> assignment | nil (no call for this agent)
--   | nil, err (class "conflict": the agent cannot take a call now)
-- The highest-priority, longest-waiting call in one of the agent's queues
-- whose skills the agent meets.  PostgreSQL skips calls other claimers
-- hold locked (FOR UPDATE SKIP LOCKED); SQLite's write lock serializes.
function CC:claim_next(agent)
  agent = id_arg("claim_next", "argument #1", agent)
  local now = self:now()
  if self.backend == "postgresql" then
    local row, err = self.db:first(SQL.postgresql.claim, agent, agent, now, nil, nil)
    if row then return assignment(row) end
    if err then return nil, err end
    local refusal = self:_refusal(self.db, nil, agent, now)
    if refusal.reason == "lost_race" then return nil end  -- the agent could: no call for it
    return nil, refusal
  end
  return self.db:transaction(function(tx)
    local a = tx:first(SQL.sqlite.agent, agent)
    if not a or a.status ~= "AVAILABLE" or a.current_calls >= a.max_calls or a.available_since > now then
      error(self:_refusal(tx, nil, agent, now), 0)
    end
    local best, err = tx:first(SQL.sqlite.best, agent)
    if not best then
      if err then error(err, 0) end
      return nil
    end
    return self:_sqlite_take(tx, best.session_id, agent, now)
  end)
end

-- cc:complete(call_id [, { outcome="answered", talk_ms= }])
-- --> call record | nil, err (class "not_found": no such active call)
-- Writes the call record, gives the agent's capacity back and starts its
-- wrap-up (available again at now + wrapup_seconds).
local COMPLETE = { outcome = true, talk_ms = true }
function CC:complete(call, opts)
  local F = "complete"
  call = id_arg(F, "argument #1", call)
  local outcome, talk = "answered", nil
  if opts ~= nil then
    check_fields(F, opts, COMPLETE)
    outcome = opts.outcome == nil and "answered" or opts.outcome
    if not OUTCOME[outcome] then argerror(F, "field 'outcome'", "unknown outcome '" .. tostring(outcome) .. "'", 3) end
    talk = int_arg(F, "field 'talk_ms'", opts.talk_ms, nil, 0)
  end
  local now = self:now()
  local function not_found() return self:_error("not_found", "not_active", "call '" .. call .. "' is not active") end
  if self.backend == "postgresql" then
    local row, err = self.db:first(SQL.postgresql.complete, call, now, outcome, talk)
    if row then return row end
    return nil, err or not_found()
  end
  local S = SQL.sqlite
  return self.db:transaction(function(tx)
    local a, err = tx:first(S.end_active, call)
    if not a then error(err or not_found(), 0) end
    assert(tx:exec(S.give_back, a.agent_id, now))
    if talk == nil and outcome == "answered" then talk = math.max(0, now - a.assigned_at) end
    return assert(tx:first(S.insert_record, call, a.agent_id, a.queue, a.caller, a.enqueued_at, a.assigned_at, now,
                           math.max(0, a.assigned_at - a.enqueued_at), talk, outcome, a.policy_name, a.policy_version))
  end)
end

-- cc:abandon(session_id) --> call record (outcome "abandoned")
--   | nil, err (class "not_found": the call is not waiting)
function CC:abandon(session)
  session = id_arg("abandon", "argument #1", session)
  local now = self:now()
  local function not_found()
    return self:_error("not_found", "not_waiting", "call '" .. session .. "' is not waiting")
  end
  if self.backend == "postgresql" then
    local row, err = self.db:first(SQL.postgresql.abandon, session, now)
    if row then return row end
    return nil, err or not_found()
  end
  local S = SQL.sqlite
  return self.db:transaction(function(tx)
    local w, err = tx:first(S.take_waiting, session)
    if not w then error(err or not_found(), 0) end
    return assert(tx:first(S.insert_record, session, nil, w.queue, w.caller, w.enqueued_at, nil, now,
                           math.max(0, now - w.enqueued_at), nil, "abandoned", nil, nil))
  end)
end

-- cc:stats{ from=, to= [, queue=] } --> { offered, answered, abandoned,
-- rejected, overflowed, avg_wait_ms, p90_wait_ms, avg_talk_ms,
-- service_level } over call records with enqueued_at in [from, to) | nil, err
local STATS = { from = true, to = true, queue = true }
function CC:stats(t)
  check_fields("stats", t, STATS)
  local F = "stats"
  if t.from == nil or t.to == nil then argerror(F, "argument #1", "fields 'from' and 'to' are required", 3) end
  local from = int_arg(F, "field 'from'", t.from)
  local to = int_arg(F, "field 'to'", t.to)
  local queue = opt_string(F, "field 'queue'", t.queue)
  local S = SQL[self.backend]
  local r, err
  if queue then r, err = self.db:first(S.stats_queue, from, to, queue)
  else r, err = self.db:first(S.stats, from, to) end
  if not r then return nil, err end
  return {
    offered = r.offered, answered = r.answered, abandoned = r.abandoned,
    rejected = r.rejected, overflowed = r.overflowed,
    avg_wait_ms = r.answered > 0 and r.wait_sum / r.answered or nil,
    p90_wait_ms = r.p90_wait_ms,
    avg_talk_ms = r.talk_n > 0 and r.talk_sum / r.talk_n or nil,
    service_level = r.offered > 0 and 100 * r.within / r.offered or nil,
  }
end

return M
