-- switchboard/sim_db.lua - the simulator's side of the database: a fresh
-- call center to run on, every call-center operation counted, the two
-- call transitions switchboard.callcenter has no call for yet, and the
-- totals read back at the end.
--
-- Debt: move() (a waiting call to another queue or priority, for the
-- "overflow" and "queue" decisions) and reject() (a waiting call ended
-- with outcome "rejected") write the call-center tables directly; they
-- belong in switchboard.callcenter (cc:requeue / cc:reject).

local sb = require "switchboard"
local core = require "switchboard.core"

local ipairs, string, math, os, assert = ipairs, string, math, os, assert

local M = {}

function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -m 700 '" .. p .. "'"), "cannot make a temp dir")
  return p
end

-- url with the PostgreSQL search_path set to `schema` (URL or conninfo)
local function schema_url(url, schema)
  if url:match("^%a+://") then
    return url .. (url:find("?", 1, true) and "&" or "?") .. "options=-csearch_path%3D" .. schema
  end
  return url .. " options='-csearch_path=" .. schema .. "'"
end

-- A fresh call-center database: SQLite file in `dir` (no url), the given
-- sqlite: URL, or a new schema on PostgreSQL (dropped by cleanup unless keep).
-- --> db, where (text for the summary), cleanup function | nil, err
function M.open(url, dir, keep)
  if not url then
    local path = dir .. "/sim.db"
    local db, err = sb.open("sqlite:" .. path)
    if not db then return nil, err end
    return db, path, function()
      if keep then return end
      for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(path .. suffix) end
    end
  end
  if url:match("^sqlite:") then
    local db, err = sb.open(url)
    if not db then return nil, err end
    return db, url, function() end
  end
  local admin, err = sb.open(url)
  if not admin then return nil, err end
  local schema = string.format("sbsim_%d_%d", core.time_ms() % 1000000000, math.random(999999))
  local ok
  ok, err = admin:exec("CREATE SCHEMA " .. schema)
  if not ok then admin:close(); return nil, err end
  local db
  db, err = sb.open(schema_url(url, schema), { pool = 8 })
  if not db then
    admin:exec("DROP SCHEMA " .. schema .. " CASCADE")
    admin:close()
    return nil, err
  end
  return db, "schema " .. schema, function()
    if not keep then admin:exec("DROP SCHEMA IF EXISTS " .. schema .. " CASCADE") end
    admin:close()
  end
end

-- cc with every database operation counted (the router reads through it too)
local CC_CALLS = { "add_agent", "add_queue", "set_status", "agent", "available_agents", "enqueue",
                   "waiting", "assign", "claim_next", "complete", "abandon", "stats" }
function M.counting(cc, ops)
  local proxy = { now = function() return cc:now() end }
  for _, m in ipairs(CC_CALLS) do
    proxy[m] = function(_, ...)
      ops.n = ops.n + 1
      ops[m] = (ops[m] or 0) + 1
      return cc[m](cc, ...)
    end
  end
  return proxy
end

local SQL = {
  ensure_queue = "INSERT INTO queues (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
  move = "UPDATE waiting_calls SET queue = $2, priority = $3 WHERE session_id = $1",
  take = "DELETE FROM waiting_calls WHERE session_id = $1 RETURNING queue, caller, enqueued_at",
  rejected = "INSERT INTO call_records (call_id, queue, caller, enqueued_at, ended_at, wait_ms, outcome,"
    .. " policy_name, policy_version) VALUES ($1, $2, $3, $4, $5, $6, 'rejected', $7, $8)",
}

-- Move waiting call `id` to `queue` (made if missing) at `priority`.
-- --> rows moved (0: not waiting any more) | nil, err
function M.move(db, id, queue, priority)
  local ok, err = db:exec(SQL.ensure_queue, queue)
  if not ok then return nil, err end
  return db:exec(SQL.move, id, queue, priority)
end

-- End waiting call `id` as rejected at `now` (ms) by policy name@version.
-- --> true | nil (not waiting any more) | nil, err
function M.reject(db, id, now, policy, version)
  return db:transaction(function(tx)
    local w = tx:first(SQL.take, id)
    if not w then return nil end
    assert(tx:exec(SQL.rejected, id, w.queue, w.caller, w.enqueued_at, now, math.max(0, now - w.enqueued_at),
                   policy, version))
    return true
  end)
end

-- What the database says, to hold the run's own counts against.
function M.totals(db)
  local t = {}
  local rows = assert(db:query("SELECT outcome, count(*) AS n FROM call_records GROUP BY outcome"))
  for _, r in ipairs(rows) do t[r.outcome] = r.n end
  t.active = assert(db:first("SELECT count(*) AS n FROM active_calls")).n
  t.waiting = assert(db:first("SELECT count(*) AS n FROM waiting_calls")).n
  local versions = assert(db:query([[SELECT policy_name, policy_version, count(*) AS n FROM
      (SELECT policy_name, policy_version FROM call_records WHERE agent_id IS NOT NULL
       UNION ALL SELECT policy_name, policy_version FROM active_calls) x
      GROUP BY policy_name, policy_version ORDER BY policy_name, policy_version]]))
  t.versions = {}
  for _, r in ipairs(versions) do
    t.versions[#t.versions + 1] = { name = r.policy_name or "(agent pull)", version = r.policy_version, calls = r.n }
  end
  return {
    answered = (t.answered or 0) + t.active, abandoned = t.abandoned or 0, rejected = t.rejected or 0,
    waiting = t.waiting, talking = t.active, versions = t.versions,
    offered = (t.answered or 0) + (t.abandoned or 0) + (t.rejected or 0) + (t.overflowed or 0) + t.active + t.waiting,
  }
end

return M
