-- spec/fault/f4_deadlines.lua - fault 4 of issue #6: deadlines.
--
-- A db opened with {timeout = 200} (the per-db default deadline), and a
-- per-call view db:with{timeout = 200} of a db without one, run a
-- statement that would take far longer: PostgreSQL `SELECT pg_sleep(10)`, SQLite a runaway recursive CTE
-- (read, on a reader) and a runaway INSERT (write, on the writer).  Each
-- must fail with class "timeout" within 300 ms, be cancelled where it runs
-- (the server's backend is idle again / sqlite3_interrupt), and the same
-- connection must answer right after (pool = 1, so it IS the same one).
-- Both waiting modes: blocking (main chunk) and yielding (sb.spawn task),
-- and the view in blocking mode.
--
-- Usage: lua5.4 f4_deadlines.lua pg|sqlite   (SB_TEST_PG_URL, SB_TEST_TMP)
local sb = require "switchboard"
local F = require "fault"

local which = arg[1] or "pg"
local ROUNDS = 10           -- per waiting mode (block, task, view)
local LIMIT = F.T(0.300)    -- seconds until the timeout error
local calls, max_late, max_rec = 0, 0, 0

local function in_task(fn)
  local res
  sb.spawn(function() res = table.pack(fn()) end)
  sb.run()
  return table.unpack(res, 1, res.n)
end

-- one deadline round: slow sql must time out, then probe must answer
local function round(db, slow, probe, mode, check_server)
  local run = mode == "task" and in_task or function(fn) return fn() end
  local t0 = F.now()
  local row, err = run(function() return db:first(slow) end)
  local dt = F.now() - t0
  calls = calls + 1
  F.check(row == nil and err and err.class == "timeout",
    "%s/%s: expected a timeout error, got %s", which, mode, F.errstr(err or row))
  F.check(dt < LIMIT, "%s/%s: timeout took %.0f ms (limit %.0f)", which, mode, dt * 1000, LIMIT * 1000)
  if dt > max_late then max_late = dt end
  if check_server then check_server() end
  local t1 = F.now()
  local ok, perr = run(function() return db:first(probe) end)
  calls = calls + 1
  local rec = F.now() - t0
  F.check(ok, "%s/%s: the connection is not usable after the timeout: %s", which, mode, F.errstr(perr))
  F.check(F.now() - t1 < F.T(0.5), "%s/%s: next query took %.0f ms", which, mode, (F.now() - t1) * 1000)
  if rec > max_rec then max_rec = rec end
end

if which == "pg" then
  local url = F.env("SB_TEST_PG_URL")
  local sep = url:find("?", 1, true) and "&" or "?"
  local db = assert(sb.open(url .. sep .. "application_name=sbfault_deadline", { timeout = 200, pool = 1 }))
  local admin = assert(sb.open(url, { pool = 1 }))
  -- the server must not be running the sleep any more (cancelled, not abandoned)
  local function server_idle()
    local deadline = F.now() + F.T(0.5)
    local n
    repeat
      local r = assert(admin:first([[SELECT count(*) AS n FROM pg_stat_activity
        WHERE application_name = 'sbfault_deadline' AND state = 'active'
          AND query LIKE 'SELECT pg_sleep%']]))
      n = r.n
      if n > 0 then sb.sleep(0.01) end
    until n == 0 or F.now() > deadline
    F.check(n == 0, "pg: pg_sleep still running on the server 500 ms after the timeout")
  end
  for _, mode in ipairs{ "block", "task" } do
    for _ = 1, ROUNDS do
      round(db, "SELECT pg_sleep(10)", "SELECT 1 AS one", mode, server_idle)
    end
  end
  db:close()
  local plain = assert(sb.open(url .. sep .. "application_name=sbfault_deadline", { pool = 1 }))
  local view = plain:with{ timeout = 200 }
  for _ = 1, ROUNDS do
    round(view, "SELECT pg_sleep(10)", "SELECT 1 AS one", "view", server_idle)
  end
  plain:close()
  admin:close()
else
  local path = F.env("SB_TEST_TMP") .. "/f4-deadline.db"
  os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
  local db = assert(sb.open("sqlite:" .. path, { timeout = 200, readers = 1 }))
  local setup = assert(sb.open("sqlite:" .. path))
  assert(setup:exec("CREATE TABLE t (x INTEGER)"))
  setup:close()
  local runaway_read = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
  local runaway_write = "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
  local plain = assert(sb.open("sqlite:" .. path, { readers = 1 }))
  local view = plain:with{ timeout = 200 }
  for _, mode in ipairs{ "block", "task", "view" } do
    for _ = 1, ROUNDS / 2 do
      local h = mode == "view" and view or db
      round(h, runaway_read, "SELECT 1 AS one", mode)
      round(h, runaway_write, "SELECT count(*) AS n FROM t", mode)
    end
  end
  plain:close()
  -- the interrupted INSERTs left nothing behind, and the writer still writes
  local r = assert(db:first("SELECT count(*) AS n FROM t"))
  F.check(r.n == 0, "sqlite: interrupted INSERTs left %d rows", r.n)
  F.check(db:exec("INSERT INTO t VALUES (1)") == 1, "sqlite: the writer does not write after the timeouts")
  db:close()
  os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
end

F.row{ id = "f4_" .. which, fault = "4 deadline 200ms (" .. (which == "pg" and "postgresql" or "sqlite") .. ")",
       runs = ROUNDS * 3, calls = calls, duplicates = 0, lost = 0, recovery_ms = max_rec * 1000,
       note = string.format("timeout error after <= %.0f ms (opts.timeout and db:with)", max_late * 1000) }
F.finish()
