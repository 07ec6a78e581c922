-- spec/fault/f5_sqlite_crash.lua - fault 5a of issue #6: SQLite crash
-- safety.  ROUNDS times: start a writer process (f5_writer.lua, 8
-- coroutines assigning calls, synchronous=NORMAL), let it write for a
-- random 0-120 ms, kill -9 it.  After every kill, a fresh sb.open of the
-- same file must find PRAGMA integrity_check = ok, every assignment the
-- writer acknowledged (its ack file) present, and the books balanced
-- (agents' current_calls sum = active calls; active + waiting = all calls).
--
-- Usage: lua5.4 f5_sqlite_crash.lua [rounds]   (SB_TEST_TMP, SB_FAULT_ROOT)
local sb = require "switchboard"
local F = require "fault"
local A = require "assign"

local ROUNDS = tonumber(arg[1]) or 100
local PER_ROUND = 600            -- calls a writer may take (it is killed long before)
local N = ROUNDS * PER_ROUND
local dir = F.env("SB_TEST_TMP") .. "/f5crash"
local root = F.env("SB_FAULT_ROOT", ".")
local path = dir .. "/cc.db"
assert(os.execute("rm -rf " .. F.quote(dir) .. " && mkdir -p " .. F.quote(dir)))
math.randomseed(tonumber(os.getenv("SB_FAULT_SEED") or "") or os.time())

do
  local db = assert(sb.open("sqlite:" .. path))
  A.open(db):setup{ agents = 100, max_calls = N, calls = N }
  db:close()
end

local function exists(p)
  local f = io.open(p)
  if f then f:close() end
  return f ~= nil
end

local function read_all(p)
  local f = io.open(p)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- dead: gone, or a zombie (which holds no file locks any more)
local function dead(pid)
  local s = read_all("/proc/" .. pid .. "/stat")
  return s == "" or s:match("^%d+ %b() (%a)") == "Z"
end

local acked_total, lost, dups, max_rec, kills, empty_rounds = 0, 0, 0, 0, 0, 0
local seen = {}
for round = 1, ROUNDS do
  local first = (round - 1) * PER_ROUND + 1
  local ackf, ready, pidf = dir .. "/ack" .. round, dir .. "/ready" .. round, dir .. "/pid" .. round
  local cmd = string.format("sh -c 'echo $$ > %s; exec lua5.4 %s %s %d %d 8 %s 3 %s' >%s 2>&1 </dev/null &",
    pidf, root .. "/spec/fault/f5_writer.lua", path, first, first + PER_ROUND - 1, ackf, ready,
    dir .. "/out" .. round)
  assert(os.execute(cmd))
  local t0 = F.now()
  while not exists(ready) and F.now() - t0 < F.T(10) do sb.sleep(0.002) end
  F.check(exists(ready), "round %d: the writer did not start", round)
  sb.sleep(math.random() * 0.12)
  local pid = tonumber(read_all(pidf))
  local ok_kill = pid and os.execute("kill -9 " .. pid .. " 2>/dev/null")
  kills = kills + (ok_kill and 1 or 0)
  local tk = F.now()
  while pid and not dead(pid) and F.now() - tk < F.T(10) do sb.sleep(0.002) end
  F.check(pid and dead(pid), "round %d: writer %s did not die", round, tostring(pid))

  -- after the crash: a fresh open recovers the WAL
  local db, err = sb.open("sqlite:" .. path)
  F.check(db, "round %d: cannot open after the crash: %s", round, F.errstr(err))
  if not db then break end
  local ic = db:first("PRAGMA integrity_check")
  F.check(ic and ic.integrity_check == "ok", "round %d: integrity_check: %s", round,
    ic and ic.integrity_check or "failed")
  local rec = (F.now() - tk) * 1000  -- kill -> reopened and checked
  if rec > max_rec then max_rec = rec end
  local n = 0
  for call in read_all(ackf):gmatch("[^\n]+") do
    n = n + 1
    if seen[call] then dups = dups + 1 end
    seen[call] = true
    local owner, lerr = A.open(db):lookup(call)
    F.check(owner ~= nil, "round %d: lookup failed: %s", round, F.errstr(lerr))
    if not owner then lost = lost + 1; F.log("round %d: acknowledged %s is missing", round, call) end
  end
  acked_total = acked_total + n
  if n == 0 then empty_rounds = empty_rounds + 1 end
  local tot = assert(A.open(db):totals())
  F.check(tot.current == tot.active, "round %d: current_calls sum %d ~= active %d", round, tot.current, tot.active)
  F.check(tot.active + tot.waiting == N, "round %d: active %d + waiting %d ~= %d", round, tot.active, tot.waiting, N)
  F.check(tot.active >= acked_total, "round %d: %d active < %d acknowledged", round, tot.active, acked_total)
  if tot.current > tot.active then dups = dups + tot.current - tot.active end
  db:close()
end
F.check(kills == ROUNDS, "only %d of %d kills happened", kills, ROUNDS)
F.check(lost == 0 and dups == 0, "%d acknowledged assignments lost, %d duplicates", lost, dups)
F.check(empty_rounds < ROUNDS / 2, "%d of %d rounds were killed before any write", empty_rounds, ROUNDS)
F.log("f5 crash: %d kills, %d acknowledged assignments, %d rounds killed before the first ack", kills, acked_total,
  empty_rounds)
assert(os.execute("rm -rf " .. F.quote(dir)))

F.row{ id = "f5_crash", fault = "5 kill -9 writer (sqlite)", runs = kills, calls = acked_total,
       duplicates = dups, lost = lost, recovery_ms = max_rec,
       note = "integrity_check ok after every kill" }
F.finish()
