-- bench/ops.lua - THE one place for the benchmark's SQL and data.
--
-- Owns: the statements of the timed operations (every implementation, the
-- raw C programs included, runs exactly this text: run.lua hands it to
-- them on the command line), the parameters of the k-th operation (the C
-- twins are in bench/raw_common.c; run.lua checks they agree before
-- measuring), the seed data and the per-cell reset, per backend.
-- Does not own: the schema (bench/schema.sql), how a cell is timed
-- (bench/cell.lua, bench/raw_*.c) or what is reported (bench/lib/report.lua).
--
-- Placeholders are $1..$n and every $n first appears in increasing order
-- with each used once, so raw SQLite (?N), LuaDBI and LuaSQL (literals) can
-- all read the same text.  Checked by M.check_sql at load.  The routing op
-- is the exception: its statements are switchboard.callcenter's own text
-- (read from that module, see M.route_statements), which reuses $n.

local M = {}

M.N_AGENTS = 200            -- half AVAILABLE (even ids), half BUSY
M.N_RECORDS = 100000        -- call_records: 1,000 per day over 100 days
M.DAY_MS = 86400000
M.T_AGENT0 = 1700000000000  -- agents' available_since base (ms)
M.T_REC0 = 1690000000000    -- first call record's enqueued_at (ms)
M.T_CALL0 = 1710000000000   -- started_at base of assigned calls (ms)
M.CALL_BASE = 1000000       -- id of the first pre-created waiting call
M.WINDOW_DAYS = 10          -- analytics window: 10 of 100 days = 10%

-- The operations, in report order.  kind: what the caller reads back
-- (exec: affected count; query: all rows as tables; first: one row).
-- expect: the affected count each statement must report (checked).
M.order = { "update", "available", "assign", "assign1", "analytics", "routing" }

M.ops = {
  -- (1) update one agent's status (and its idle-since time)
  update = {
    title = "update agent status",
    write = true,
    sql = "UPDATE agents SET status = $1, available_since = $2 WHERE id = $3",
    kind = "exec", expect = 1,
  },
  -- (2) available agents, longest idle first: 100 of 200 rows, 6 columns
  available = {
    title = "list available agents",
    sql = "SELECT id, name, extension, current_calls, max_calls, available_since"
       .. " FROM agents WHERE status = $1 AND current_calls < max_calls"
       .. " ORDER BY available_since",
    kind = "query",
  },
  -- (3) assign a call atomically: one transaction of three statements.
  -- BEGIN is the backend's (what db:transaction sends), then COMMIT.
  assign = {
    title = "assign call (transaction)",
    write = true,
    tx = {
      { sql = "DELETE FROM waiting_calls WHERE id = $1", kind = "exec", expect = 1 },
      { sql = "INSERT INTO active_calls (call_id, agent_id, caller, started_at)"
           .. " VALUES ($1, $2, $3, $4)", kind = "exec", expect = 1 },
      { sql = "UPDATE agents SET current_calls = current_calls + 1 WHERE id = $1",
        kind = "exec", expect = 1 },
    },
  },
  -- (3') PostgreSQL only: the same assignment as ONE statement (data-
  -- modifying CTEs run in one snapshot, atomically, in one round trip).
  -- SQLite has no data-modifying CTEs.
  assign1 = {
    title = "assign call (1 statement, PG)",
    write = true,
    backends = { postgresql = true },
    sql = "WITH w AS (DELETE FROM waiting_calls WHERE id = $1 RETURNING id, caller),"
       .. " a AS (UPDATE agents SET current_calls = current_calls + 1"
       .. " WHERE id = $2 AND EXISTS (SELECT 1 FROM w) RETURNING id)"
       .. " INSERT INTO active_calls (call_id, agent_id, caller, started_at)"
       .. " SELECT w.id, a.id, w.caller, $3 FROM w, a",
    kind = "exec", expect = 1,
  },
  -- (4) call analytics over a 10-day window (10,000 of 100,000 records)
  analytics = {
    title = "call analytics (10% range)",
    sql = "SELECT COUNT(*) AS calls, AVG(wait_ms) AS avg_wait_ms, AVG(talk_ms) AS avg_talk_ms"
       .. " FROM call_records WHERE enqueued_at >= $1 AND enqueued_at < $2",
    kind = "first",
  },
}

-- (5) the full routing decision of issue #4: sb.router with
-- scripts/policies/longest_idle.lua (sandboxed, default budgets) over
-- sb.callcenter routes ONE waiting call end to end: router:route(call) -->
-- policy --> cc:available_agents{queue, skills, limit = 1} --> cc:assign.
-- It runs on its own database with the call-center schema of
-- migrations/NNNN_*.sql (M.ROUTE; bench/lib/setup.lua), seeded
-- like the others: 200 agents, 100 AVAILABLE, all in queue "sales" with
-- skill "english", and before each cell a supply of waiting calls.  The
-- available agents' max_calls is large, so capacity never runs out within
-- a cell: no per-op reset, nothing but the route is timed (the agent with
-- the fewest calls comes first, so assignments rotate over the 100).
-- The statements (M.statements) are the ones callcenter.lua sends: SQLite
-- available_queue, then BEGIN IMMEDIATE, take_call, take_agent,
-- insert_active, COMMIT (db:transaction); PostgreSQL available_queue, then
-- the one-statement assign.  The raw C twins run them with the policy
-- replaced by "take the first row"; bench/peers/sb.lua checks that a route
-- sends exactly these.
M.ROUTE = {
  policy = "scripts/policies/longest_idle.lua",
  queue = "sales",
  skills = { english = 1 },        -- every call requires this
  skills_json = '{"english":1}',   -- as callcenter encodes it (twin: raw_common.c)
  max_calls = 100000,              -- of every agent: never reached in a cell
  sqlite_file = "routing.db",      -- in build/bench/data/
  pg_database = "switchboard_bench_routing",  -- on the server of $SB_TEST_PG_URL
}
M.ops.routing = {
  title = "routing decision (policy + available + assign)",
  write = true,
  database = "routing",            -- not bench/schema.sql's tables
  foreign_sql = true,              -- callcenter.lua's text: not check_sql'd
  -- waiting calls to make per second of a cell (more than any cell reached)
  supply_rate = { sqlite = 20000, postgresql = 5000 },
  -- The latency target's cell (impl sb_calls): 256 calls in flight that
  -- together ask for routing decisions at this many per second (Poisson
  -- arrivals, open loop): each call asks every 1.3 s on average, about a
  -- hundred times what a contact center's arrivals and transfers ask of
  -- 256 calls (a 3-minute call is routed once or twice), so it measures the
  -- latency of a decision under heavy load rather than the length of a
  -- queue.  BENCH_OPEN_RATE=R sets it for both backends (experiments).
  open_rate = { sqlite = tonumber(os.getenv("BENCH_OPEN_RATE")) or 200,
                postgresql = tonumber(os.getenv("BENCH_OPEN_RATE")) or 200 },
  -- its time box in seconds (BENCH_SECS if longer): 5 s at 200/s is about
  -- 1,000 decisions, so the p99 is not just the second-slowest of 200
  open_secs = tonumber(os.getenv("BENCH_OPEN_SECS")) or 5,
  -- cells that cannot run this op faithfully: backend -> impl id -> why
  skip = { sqlite = { luasql = "LuaSQL 2.6's SQLite driver loses the rows of DELETE/INSERT .. RETURNING,"
                               .. " which callcenter's assign reads" } },
}

-- The memory cell (bench/mem.lua): 10,000 tasks each run this once, at once.
-- A read, so that on SQLite it goes to the reader threads and really waits
-- in flight (a write from a task may run inline on an idle writer).
M.MEM_SQL = "SELECT id, status, current_calls FROM agents WHERE id = $1"
function M.mem_args(i)
  return 1 + i % M.N_AGENTS
end

M.BEGIN = { sqlite = "BEGIN IMMEDIATE", postgresql = "BEGIN" }
M.COMMIT = "COMMIT"

-- The ops that exist on `backend`, in order.
function M.list(backend)
  local out = {}
  for _, name in ipairs(M.order) do
    local op = M.ops[name]
    if not op.backends or op.backends[backend] then out[#out + 1] = name end
  end
  return out
end

-- switchboard.callcenter's statement texts for backend, read from the
-- module itself (its local build_sql, reached with debug.getupvalue), so
-- the raw C twin and the peers cannot drift from what the library sends.
local cc_sql = {}
local function callcenter_sql(backend)
  if cc_sql[backend] then return cc_sql[backend] end
  local cc = require "switchboard.callcenter"
  local build
  for i = 1, 255 do
    local n, v = debug.getupvalue(cc.new, i)
    if n == nil then break end
    if n == "build_sql" then build = v end
  end
  assert(type(build) == "function", "bench/ops.lua: switchboard.callcenter has no build_sql upvalue any more")
  cc_sql[backend] = build(backend)
  return cc_sql[backend]
end

-- The routing op's statements on backend, in the order one route sends them.
function M.route_statements(backend)
  local S = callcenter_sql(backend)
  if backend == "sqlite" then
    return { S.available_queue, M.BEGIN.sqlite, S.take_call, S.take_agent, S.insert_active, M.COMMIT }
  end
  return { S.available_queue, S.assign }
end

-- The policy's name and version, as the router records them in every
-- assignment (the raw C twin and the peers write the same text).
local policy_id
function M.route_policy()
  if policy_id then return policy_id[1], policy_id[2] end
  local f = assert(io.open(M.ROUTE.policy, "r"))
  local text = f:read("a")
  f:close()
  local t = assert(load(text, "=" .. M.ROUTE.policy, "t", {}))()
  local name = t.name or M.ROUTE.policy:match("([^/]+)%.lua$")
  local version = t.version and tostring(t.version) or require("switchboard.core").sha256(text):sub(1, 12)
  policy_id = { name, version }
  return name, version
end

-- Does op need a fresh supply of waiting calls before each cell?
function M.fills(name)
  local op = M.ops[name]
  return op.tx ~= nil or name == "assign1" or name == "routing"
end

-- The statements of op on backend, as run one after the other.
function M.statements(name, backend)
  local op = M.ops[name]
  if name == "routing" then return M.route_statements(backend) end
  if not op.tx then return { op.sql } end
  local s = { M.BEGIN[backend] }
  for _, st in ipairs(op.tx) do s[#s + 1] = st.sql end
  s[#s + 1] = M.COMMIT
  return s
end

------------------------------------------------------------ parameters
-- The k-th operation of a cell (k = 0, 1, ...).  Twins: raw_common.c.

local N_AGENTS, T_AGENT0, T_REC0, T_CALL0, DAY_MS, WINDOW =
  M.N_AGENTS, M.T_AGENT0, M.T_REC0, M.T_CALL0, M.DAY_MS, M.WINDOW_DAYS

-- update: status, available_since, id.  An agent keeps its status, so
-- the available list keeps its 100 rows.
function M.update_args(k)
  local id = 1 + k % N_AGENTS
  return (id % 2 == 0) and "AVAILABLE" or "BUSY", T_AGENT0 + k, id
end

function M.available_args()
  return "AVAILABLE"
end

-- assign: call id, agent id (an AVAILABLE one), caller, started_at.
-- DELETE takes a1; INSERT a1..a4; UPDATE a2.  assign1: a1, a2, a4.
function M.assign_args(k, base)
  local c = base + k
  return c, 2 + 2 * (c % 100), "+1555" .. c, T_CALL0 + k
end

function M.analytics_args(k)
  local from = T_REC0 + (k % (100 - WINDOW + 1)) * DAY_MS
  return from, from + WINDOW * DAY_MS
end

-- routing: the waiting call's session id (text, as callcenter stores it),
-- its queue and its required skills (what the policy asks
-- available_agents for).  The call table router:route gets is route_call.
function M.routing_args(k, base)
  return tostring(base + k), M.ROUTE.queue, M.ROUTE.skills_json
end

function M.route_call(k, base)
  local c = base + k
  return { id = tostring(c), queue = M.ROUTE.queue, skills = M.ROUTE.skills, caller = "+1555" .. c,
           priority = 0, waited_ms = 0 }
end

-- What the peers (bench/peers/luasql.lua, luadbi.lua) run instead of the
-- sandboxed policy: longest_idle.lua's decision as a plain function of the
-- rows available_agents returned (the first one: fewest calls, longest idle).
function M.plain_policy(_, agents)
  local first = agents[1]
  return first and first.id
end

-- The parameters of op k as one line of text (compared with the C twins).
function M.args_line(name, k, base)
  local a
  if name == "routing" then a = table.pack(M.routing_args(k, base))
  elseif name == "update" then a = table.pack(M.update_args(k))
  elseif name == "available" then a = table.pack(M.available_args(k))
  elseif name == "assign" or name == "assign1" then a = table.pack(M.assign_args(k, base))
  else a = table.pack(M.analytics_args(k)) end
  for i = 1, a.n do a[i] = tostring(a[i]) end
  return table.concat(a, " ", 1, a.n)
end

------------------------------------------------------------ data

-- Seed after bench/schema.sql: 200 agents, 100,000 call records.
local SEED = {
  sqlite = [[
INSERT INTO agents (id, name, extension, status, available_since, current_calls, max_calls)
  WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
  SELECT i, 'agent-' || i, '' || (1000 + i), CASE WHEN i %% 2 = 0 THEN 'AVAILABLE' ELSE 'BUSY' END,
         %d + i * 1000, 0, 3 FROM s;
INSERT INTO call_records (id, agent_id, caller, queue, enqueued_at, wait_ms, talk_ms, outcome)
  WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < %d)
  SELECT i + 1, 1 + i %% 200, '+1444' || i, 'sales', %d + i * 86400,
         (i * 7919) %% 120000, (i * 104729) %% 600000, 'answered' FROM s;
ANALYZE;
]],
  postgresql = [[
INSERT INTO agents (id, name, extension, status, available_since, current_calls, max_calls)
  SELECT i, 'agent-' || i, '' || (1000 + i), CASE WHEN i %% 2 = 0 THEN 'AVAILABLE' ELSE 'BUSY' END,
         %d + i * 1000, 0, 3 FROM generate_series(1, %d) AS i;
INSERT INTO call_records (id, agent_id, caller, queue, enqueued_at, wait_ms, talk_ms, outcome)
  SELECT i + 1, 1 + i %% 200, '+1444' || i, 'sales', %d + i * 86400,
         (i * 7919) %% 120000, (i * 104729) %% 600000, 'answered'
  FROM generate_series(0::bigint, %d - 1) AS i;
VACUUM ANALYZE;
]],
}

function M.seed_sql(backend)
  if backend == "sqlite" then
    return SEED.sqlite:format(M.N_AGENTS, T_AGENT0, M.N_RECORDS, T_REC0)
  end
  return SEED.postgresql:format(T_AGENT0, M.N_AGENTS, T_REC0, M.N_RECORDS)
end

-- Tables dropped before the schema is (re)created on PostgreSQL.
M.DROP_PG = "DROP TABLE IF EXISTS active_calls, waiting_calls, call_records, agents;\n"

-- The routing database (M.ROUTE): after migrations/NNNN_*.sql,
-- one queue, 200 agents (even ids AVAILABLE, idle since T_AGENT0 + i s;
-- odd ones BUSY), each in the queue with skill english at level 1..5.
local ROUTE_SEED = [[
INSERT INTO queues (name) VALUES ('%s');
INSERT INTO agents (id, name, status, status_since, available_since, current_calls, max_calls, wrapup_seconds)
  SELECT 'agent-' || i, 'Agent ' || i, CASE WHEN i %% 2 = 0 THEN 'AVAILABLE' ELSE 'BUSY' END,
         %d, %d + i * 1000, 0, %d, 0 FROM %s;
INSERT INTO agent_skills (agent_id, skill, level)
  SELECT id, 'english', 1 + CAST(substr(id, 7) AS INTEGER) %% 5 FROM agents;
INSERT INTO agent_queues (agent_id, queue, level) SELECT id, '%s', 1 FROM agents;
%s
]]

function M.route_seed_sql(backend)
  local series = backend == "sqlite"
    and ("(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) SELECT i FROM s)"):format(M.N_AGENTS)
    or ("generate_series(1, %d) AS i"):format(M.N_AGENTS)
  return ROUTE_SEED:format(M.ROUTE.queue, T_AGENT0, T_AGENT0, M.ROUTE.max_calls, series, M.ROUTE.queue,
    backend == "sqlite" and "ANALYZE;" or "VACUUM ANALYZE;")
end

-- Before a routing cell: no call active, ended or waiting, every agent's
-- count 0, then `supply` waiting calls with session ids CALL_BASE - 1 ..
-- (CALL_BASE - 1 is the one bench/peers/sb.lua routes to check the SQL).
local function route_prep_sql(backend, supply)
  local q = { "UPDATE agents SET current_calls = 0 WHERE current_calls <> 0;" }
  local rows = ("'' || (%d + i), '%s', 0, '%s', '+1555' || (%d + i), %d + i"):format(
    M.CALL_BASE, M.ROUTE.queue, M.ROUTE.skills_json, M.CALL_BASE, T_CALL0)
  local cols = "INSERT INTO waiting_calls (session_id, queue, priority, required_skills, caller, enqueued_at)"
  if backend == "sqlite" then
    q[#q + 1] = "DELETE FROM active_calls; DELETE FROM waiting_calls; DELETE FROM call_records;"
    q[#q + 1] = ("%s WITH RECURSIVE s(i) AS (SELECT -1 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < %d) SELECT %s FROM s;")
      :format(cols, supply, rows)
    q[#q + 1] = "PRAGMA wal_checkpoint(TRUNCATE);"
  else
    q[#q + 1] = "TRUNCATE active_calls, waiting_calls, call_records;"
    q[#q + 1] = ("%s SELECT %s FROM generate_series(-1, %d - 1) AS i;"):format(cols, rows, supply)
    q[#q + 1] = "VACUUM ANALYZE waiting_calls;"
    q[#q + 1] = "VACUUM agents;"
    q[#q + 1] = "CHECKPOINT;"
  end
  return table.concat(q, "\n") .. "\n"
end

-- Before every cell: agents' counts back to 0; for the assign ops, `supply`
-- fresh waiting calls from M.CALL_BASE on and no active calls; then a
-- checkpoint so that every cell starts from the same on-disk state.
function M.prep_sql(backend, name, supply)
  if name == "routing" then return route_prep_sql(backend, supply) end
  local q = { "UPDATE agents SET current_calls = 0 WHERE current_calls <> 0;" }
  local fill = M.fills(name)
  if backend == "sqlite" then
    if fill then
      q[#q + 1] = "DELETE FROM active_calls; DELETE FROM waiting_calls;"
      q[#q + 1] = ("INSERT INTO waiting_calls (id, caller, queue, enqueued_at)"
        .. " WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < %d)"
        .. " SELECT %d + i, '+1555' || (%d + i), 'sales', %d + i FROM s;"):format(
          supply, M.CALL_BASE, M.CALL_BASE, T_CALL0)
    end
    q[#q + 1] = "PRAGMA wal_checkpoint(TRUNCATE);"
  else
    if fill then
      q[#q + 1] = "TRUNCATE active_calls, waiting_calls;"
      q[#q + 1] = ("INSERT INTO waiting_calls (id, caller, queue, enqueued_at)"
        .. " SELECT %d + i, '+1555' || (%d + i), 'sales', %d + i FROM generate_series(0, %d - 1) AS i;"):format(
          M.CALL_BASE, M.CALL_BASE, T_CALL0, supply)
      q[#q + 1] = "VACUUM ANALYZE waiting_calls;"
    end
    q[#q + 1] = "VACUUM agents;"
    q[#q + 1] = "CHECKPOINT;"
  end
  return table.concat(q, "\n") .. "\n"
end

------------------------------------------------------------ checks

-- Each $n first appears in order 1, 2, ... and is used once.
function M.check_sql(sql)
  local want = 1
  for n in sql:gmatch("%$(%d+)") do
    assert(tonumber(n) == want, "bench/ops.lua: placeholders out of order in: " .. sql)
    want = want + 1
  end
  return want - 1
end

for _, name in ipairs(M.order) do
  if not M.ops[name].foreign_sql then
    for _, s in ipairs(M.statements(name, "postgresql")) do M.check_sql(s) end
  end
end

return M
