-- spec/fault/f5_sqlite_procs.lua - fault 5b of issue #6: eight processes
-- writing one SQLite file.  Each process (f5_writer.lua) runs 4 coroutines
-- making PROC_CALLS assignments with db:transaction{retries = 0}, so any
-- `busy` error would reach the caller: none may, within the default
-- busy_timeout (5000 ms).  Afterwards every acknowledged assignment is in
-- the file, exactly once, and the books balance.
--
-- Usage: lua5.4 f5_sqlite_procs.lua   (SB_TEST_TMP, SB_FAULT_ROOT)
local sb = require "switchboard"
local F = require "fault"
local A = require "assign"

local PROCS, PROC_CALLS = 8, tonumber(arg[1]) or 500
local N = PROCS * PROC_CALLS
local dir = F.env("SB_TEST_TMP") .. "/f5procs"
local root = F.env("SB_FAULT_ROOT", ".")
local path = dir .. "/cc.db"
assert(os.execute("rm -rf " .. F.quote(dir) .. " && mkdir -p " .. F.quote(dir)))

do
  local db = assert(sb.open("sqlite:" .. path))
  A.open(db, "sql"):setup{ agents = 100, max_calls = N, calls = N }
  db:close()
end

local function read_all(p)
  local f = io.open(p)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local t0 = F.now()
for p = 1, PROCS do
  local first = (p - 1) * PROC_CALLS + 1
  assert(os.execute(string.format("SB_FAULT_ASSIGN=sql lua5.4 %s %s %d %d 4 %s 0 >%s 2>&1 </dev/null &",
    root .. "/spec/fault/f5_writer.lua", path, first, first + PROC_CALLS - 1,
    dir .. "/ack" .. p, dir .. "/out" .. p)))
end

local busy, other, acked, max_ms = 0, 0, 0, 0
for p = 1, PROCS do
  local out
  repeat
    out = read_all(dir .. "/out" .. p)
    if not (out and out:find("summary")) then sb.sleep(0.05) end
  until (out and out:find("summary")) or F.now() - t0 > F.T(120)
  local a, b, o, ms = (out or ""):match("summary acked=(%d+) busy=(%d+) other=(%d+) max_ms=(%d+)")
  F.check(a, "process %d did not finish: %s", p, out or "(no output)")
  if a then
    acked, busy, other = acked + a, busy + b, other + o
    max_ms = math.max(max_ms, tonumber(ms))
  end
  for line in (out or ""):gmatch("[^\n]+") do
    if not line:find("^summary") then F.log("process %d: %s", p, line) end
  end
end
local elapsed = F.now() - t0

local db = assert(sb.open("sqlite:" .. path))
local lost, dups, seen = 0, 0, {}
for p = 1, PROCS do
  for call in (read_all(dir .. "/ack" .. p) or ""):gmatch("[^\n]+") do
    if seen[call] then dups = dups + 1 end
    seen[call] = true
    if not db:first("SELECT 1 AS x FROM fault_active WHERE session_id = $1", call) then lost = lost + 1 end
  end
end
local tot = assert(A.open(db, "sql"):totals())
local ic = db:first("PRAGMA integrity_check")
db:close()
F.check(busy == 0, "%d busy errors reached callers", busy)
F.check(other == 0, "%d other errors", other)
F.check(acked == N, "%d of %d assignments acknowledged", acked, N)
F.check(tot.active == acked and tot.current == tot.active, "books: active %d, current %d, acked %d",
  tot.active, tot.current, acked)
F.check(ic and ic.integrity_check == "ok", "integrity_check failed")
dups = dups + math.max(0, tot.current - tot.active)
assert(os.execute("rm -rf " .. F.quote(dir)))

F.row{ id = "f5_procs", fault = "5 eight processes, one file (sqlite)", runs = PROCS, calls = N,
       duplicates = dups, lost = lost,
       note = string.format("0 busy reached callers; slowest assign %d ms (busy_timeout 5000); %.1f s",
                            max_ms, elapsed) }
F.finish()
