-- spec/fault/f2_failover.lua - fault 2 of issue #6: failover.
--
-- A primary and a synchronous streaming standby on loopback
-- (scripts/fault-failover-env); ONE db opened with both hosts and
-- target_session_attrs=read-write.  Under assignment load (lib/load.lua,
-- 32 coroutines), the chaos task promotes the standby and then stops the
-- old primary (immediate mode: a crash).  Writes must resume within 10 s
-- (from the promote to the first success of an assignment started after
-- it), no write may reach a read-only node (no SQLSTATE 25006, "read-only
-- transaction", anywhere), and nothing acknowledged may be lost: the new
-- primary holds every acknowledged assignment, none twice.
--
-- Usage: lua5.4 f2_failover.lua [calls]   (SB_FO_* from fault-failover-env)
local sb = require "switchboard"
local F = require "fault"
local A = require "assign"
local L = require "load"

local N = tonumber(arg[1]) or 4000
local CTL = F.env("SB_FAULT_ROOT", ".") .. "/scripts/fault-pg-ctl"
local PRIMARY, STANDBY = F.env("SB_FO_PRIMARY"), F.env("SB_FO_STANDBY")
local RESUME_LIMIT = F.T(10)

local db = assert(sb.open(F.env("SB_FO_URL"), { pool = 4 }))
local m = A.open(db)
m:setup{ agents = 100, max_calls = 200, calls = N }

-- the standby is read-only and has the schema (synchronous replication)
do
  local sdb = assert(sb.open(F.env("SB_FO_STANDBY_URL"), { pool = 1 }))
  local r = assert(sdb:first("SELECT pg_is_in_recovery() AS rec"))
  F.check(r.rec == true, "the standby is not in recovery")
  local n, err = sdb:exec("UPDATE agents SET max_calls = max_calls")
  F.check(n == nil and err.sqlstate == "25006", "a write on the standby was not refused: %s", F.errstr(err))
  sdb:close()
end

local read_only_writes = 0
local ROW = { id = "f2_failover", fault = "2 failover (promote + stop primary)" }
local run = L.new{ m = m, calls = N, tasks = 32, agents = 100,
                   on_error = function(err)
                     if type(err) == "table" and err.sqlstate == "25006" then
                       read_only_writes = read_only_writes + 1
                     end
                   end }

local function ctl(dir, action, mode)
  local t0 = F.now()
  local job = F.background(F.quote(CTL) .. " " .. F.quote(dir) .. " " .. action .. " " .. (mode or "fast"))
  local rc
  repeat sb.sleep(0.02); rc = job:done() until rc or F.now() - t0 > 90
  F.check(rc == 0, "%s %s failed: %s %s", action, dir, tostring(rc), job.output or "")
  return F.now() - t0
end

-- the write outage: from the promote to the first success of an
-- assignment that started after the old primary was gone
local t_fault, t_stop
sb.spawn(function()
  while run.finished < N * 0.3 do sb.sleep(0.02) end
  F.log("failover at %d/%d calls", run.finished, N)
  t_fault = F.now()
  local tp = ctl(STANDBY, "promote")
  local ts = ctl(PRIMARY, "stop", "immediate")
  t_stop = F.now()
  run.rec:fault(t_fault, t_stop)
  F.log("promoted the standby in %.2f s, stopped the old primary in %.2f s", tp, ts)
end)

run:start(ROW)
sb.run()
local v = run:verify()
F.check(t_fault ~= nil and t_stop ~= nil, "the failover did not happen")
local resume_ms = run.rec.max
F.check(resume_ms <= RESUME_LIMIT * 1000, "writes resumed after %.0f ms (limit %.0f)", resume_ms, RESUME_LIMIT * 1000)
F.check(read_only_writes == 0, "%d writes reached a read-only node", read_only_writes)
local r = db:first("SELECT pg_is_in_recovery() AS rec, current_setting('port') AS port")
F.check(r and r.rec == false, "the db does not talk to a primary after the failover")
F.log("f2: after the failover the db writes to port %s (the promoted standby); %s", r and r.port or "?",
  tostring(db))
db:close()

ROW.runs, ROW.calls, ROW.duplicates, ROW.lost, ROW.recovery_ms = 1, N, v.dups, v.lost, resume_ms
ROW.note = string.format("writes resumed in %.1f s (limit 10); 0 writes on a read-only node; %d unknown resolved",
  resume_ms / 1000, run.stats.unknown)
F.row(ROW)
F.finish()
