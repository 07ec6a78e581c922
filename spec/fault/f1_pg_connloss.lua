-- spec/fault/f1_pg_connloss.lua - fault 1 of issue #6: PostgreSQL
-- connection loss under assignment load.
--
-- 100 coroutines make 10,000 assignments (cc:assign of issue #3, see
-- lib/assign.lua; lib/load.lua handles errors as a routing script would)
-- on ONE db object while a chaos task terminates random backends of that
-- db (pg_terminate_backend) at random moments and restarts the server
-- twice, once in fast and once in immediate mode (scripts/fault-pg-ctl).
-- The db is never reopened.  A call whose assignment fails with a
-- connection error is retried; when the error says the outcome is unknown
-- (the link went after the statement or COMMIT was sent), it is resolved
-- by the call's unique id instead of guessed.  Then lib/load.lua verifies:
-- zero duplicates, zero acknowledged assignments missing, nothing assigned
-- that the script was told had failed, no request hung.
--
-- With "tx" as the second argument the assignment is lib/assign.lua's
-- plain BEGIN .. COMMIT transaction instead (cc:assign on PostgreSQL is one
-- autocommit statement): then the link also drops mid-transaction and
-- during COMMIT, which must say unknown_outcome.  With "batch" it is one
-- db:batch of the same three statements: one pipeline on a shared pool
-- connection, one implicit transaction; a batch reported failed without
-- unknown_outcome must have kept nothing (its retry would meet a conflict).
--
-- Usage: lua5.4 f1_pg_connloss.lua [calls [tx|batch]]  (SB_TEST_PG_URL, SB_TEST_PG_DIR)
local sb = require "switchboard"
local F = require "fault"
local A = require "assign"
local L = require "load"

local N = tonumber(arg[1]) or 10000
local URL = F.env("SB_TEST_PG_URL")
local PGDATA = F.env("SB_TEST_PG_DIR") .. "/data"
local CTL = F.env("SB_FAULT_ROOT", ".") .. "/scripts/fault-pg-ctl"
local sep = URL:find("?", 1, true) and "&" or "?"
math.randomseed(tonumber(os.getenv("SB_FAULT_SEED") or "") or os.time())

local db = assert(sb.open(URL .. sep .. "application_name=sbfault_load", { pool = 8 }))
local admin = assert(sb.open(URL, { pool = 1 }))
local MODE = arg[2]
local m = A.open(db, MODE == "tx" and "sql" or MODE == "batch" and "batch" or nil)
m:setup{ agents = 100, max_calls = 200, calls = N }

local ROW = MODE == "tx" and { id = "f1_pg_tx", fault = "1 connection loss, BEGIN..COMMIT (pg)" }
  or MODE == "batch" and { id = "f1_pg_batch", fault = "1 connection loss, db:batch (pg)" }
  or { id = "f1_pg", fault = "1 connection loss, " .. m.kind .. ":assign (pg)" }
local run = L.new{ m = m, calls = N, tasks = 100, agents = 100 }
local terminated, restarts = 0, 0

-- the outage of a restart: from its start to the first success of a call
-- started after the server was back
local function restart(mode)
  restarts = restarts + 1
  local t0 = F.now()
  local job = F.background(F.quote(CTL) .. " " .. F.quote(PGDATA) .. " restart " .. mode)
  local rc
  repeat sb.sleep(0.05); rc = job:done() until rc or F.now() - t0 > 90
  F.check(rc == 0, "restart %s failed: %s %s", mode, tostring(rc), job.output or "")
  run.rec:fault(t0, F.now())
  F.log("restart %s done in %.1f s at %d/%d calls", mode, F.now() - t0, run.finished, N)
end

-- chaos: terminations at random moments, a fast and an immediate restart
sb.spawn(function()
  local did_fast, did_immediate = false, false
  while not run:done() do
    sb.sleep(0.02 + math.random() * 0.13)
    -- a kill comes first: a quick load could otherwise see only the restarts
    if terminated > 0 and not did_fast and run.finished >= N * 0.25 then
      did_fast = true
      restart("fast")
    elseif did_fast and not did_immediate and run.finished >= N * 0.55 then
      did_immediate = true
      restart("immediate")
    elseif not run:done() then
      local rows = admin:query([[SELECT pg_terminate_backend(pid) AS t FROM
          (SELECT pid FROM pg_stat_activity WHERE application_name = 'sbfault_load'
           ORDER BY random() LIMIT $1) s]], math.random(1, 3))
      if rows and #rows > 0 then
        run.rec:fault()
        terminated = terminated + #rows
      end
    end
  end
  F.check(did_fast and did_immediate, "the load ended before both restarts happened")
end)

run:start(ROW)
sb.run()
local v = run:verify()
F.check(terminated > 0 and restarts == 2, "chaos did not happen (%d terminated, %d restarts)", terminated, restarts)
F.log("f1: %d backends terminated, %d restarts; db after the run: %s", terminated, restarts, tostring(db))
db:close()
admin:close()

ROW.runs, ROW.calls, ROW.duplicates, ROW.lost, ROW.recovery_ms = run.rec.n, N, v.dups, v.lost, run.rec.max
ROW.note = string.format("%d kills + 2 restarts; %d unknown outcomes resolved by id; %d reported",
  terminated, run.stats.unknown, run.stats.reported)
F.row(ROW)
F.finish()
