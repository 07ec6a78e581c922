-- bench/cell.lua - one Lua benchmark cell, run as its own process by
-- bench/run.lua; prints one JSON line like the raw C programs.
--
-- Owns: timing one operation for one Lua implementation (bench/peers/*):
--   --tasks 0   blocking: the main chunk calls op(k) in a loop; latency is
--               the time of each call;
--   --tasks N   switchboard only: N sb.spawn tasks share one counter and
--               each loops `op(k)` until the time box ends; latency is from
--               just before the call (the submit) to its return in the
--               task (the result), so it includes waiting to be resumed.
--   --tasks N --rate R   switchboard only, open loop: N tasks, each one
--               call in flight asking for op(k) at Poisson arrivals, R per
--               second in all; latency is from the scheduled arrival.
--               --tasks 0 --rate R: the same arrivals served one at a
--               time by blocking calls (the floor under the tasks' cell).
-- A warm-up phase (statements prepared, caches filled) runs first and is
-- not recorded.  ops/s = measured ops / wall time of the measured phase
-- (for tasks: from sb.run() until the last in-flight op finished);
-- cpu_us_per_op = CPU time of the whole process (all threads) / ops.
-- Does not own: the SQL (bench/ops.lua) or the data (bench/run.lua).
--
-- Usage: lua5.4 bench/cell.lua --backend sqlite|postgresql --db FILE
--          --impl sb|luasql|luadbi --tasks N --op NAME --secs S --warm S
--          --max N --base ID [--warmops N] [--pgdb NAME]
--          (PostgreSQL: $SB_TEST_PG_URL, with database NAME if given)
-- --warmops N makes the warm-up exactly N operations, whatever the time
-- (bench/profile.lua: equal start-up costs in runs it subtracts).

local sb = require "switchboard"
local json = require "lib.json"
local stats = require "lib.stats"

local now = sb.now

local function parse(argv)
  local a = { tasks = 0, secs = 1, warm = 0.2, max = math.maxinteger, base = 0 }
  for i = 1, #argv, 2 do
    local k, v = argv[i]:match("^%-%-(.+)$"), argv[i + 1]
    if not k or v == nil then error("cell.lua: bad arguments near " .. tostring(argv[i])) end
    a[k] = tonumber(v) or v
  end
  return a
end

local a = parse(arg)
local target = a.backend == "sqlite" and a.db or assert(os.getenv("SB_TEST_PG_URL"), "SB_TEST_PG_URL not set")
if a.backend ~= "sqlite" and a.pgdb then target = require("lib.pgurl").with_dbname(target, a.pgdb) end
local peer = require("peers." .. a.impl)
local h = peer.open(a.backend, target)
local op = assert(peer.ops(h, a.backend, a.base, a.op == "routing" and "routing" or nil)[a.op],
  "no such op for this peer: " .. tostring(a.op))

local k = 0
local first_error

local function failed(err)
  if not first_error then
    first_error = tostring(err)
    io.stderr:write("cell ", a.impl, " ", a.op, ": ", first_error, "\n")
  end
end

-- One op (the k-th), tallied in st; its latency runs from `since`.
local function one(st, lat, since)
  local my = k
  k = k + 1
  local ok, c = pcall(op, my)
  if lat then lat[#lat + 1] = now() - since end
  st.done = st.done + 1
  if ok then st.check = c else st.errors = st.errors + 1 failed(c) end
end

-- Blocking: call op in a loop until secs passed or max ops started.
local function blocking_phase(secs, lat)
  local stop, st = now() + secs, { done = 0, errors = 0 }
  while k < a.max do
    local t0 = now()
    if t0 >= stop then break end
    one(st, lat, t0)
  end
  return st
end

-- n tasks running worker(st), one sb.run()
local function in_tasks(n, worker)
  local st = { done = 0, errors = 0 }
  for _ = 1, n do sb.spawn(worker, st) end
  sb.run()
  return st
end

-- Tasks: n tasks share k; each loops until the time box ends.
local function tasks_phase(n, secs, lat)
  local stop = now() + secs
  return in_tasks(n, function(st)
    while k < a.max do
      local t0 = now()
      if t0 >= stop then return end
      one(st, lat, t0)
    end
  end)
end

-- Open loop (--rate R): n tasks, each one call in flight that asks for an
-- operation at Poisson arrivals (together R per second), whatever the
-- others are doing; latency runs from the scheduled arrival, so a late
-- start counts (no coordinated omission).
local function open_phase(n, rate, secs, lat)
  local t_start = now()
  if n == 0 then  -- blocking, one call at a time, at the same arrivals
    local st, due, stop = { done = 0, errors = 0 }, t_start, t_start + secs
    while k < a.max do
      due = due - math.log(1 - math.random()) / rate
      if due >= stop then break end
      local wait = due - now()
      if wait > 0 then sb.sleep(wait) end
      one(st, lat, due)
    end
    return st
  end
  local stop, mean = t_start + secs, n / rate
  return in_tasks(n, function(st)
    local due = t_start - mean * math.log(1 - math.random())
    while due < stop and k < a.max do
      local wait = due - now()
      if wait > 0 then sb.sleep(wait) end
      one(st, lat, due)
      due = due - mean * math.log(1 - math.random())
    end
  end)
end

local function phase(secs, lat)
  if a.rate then return open_phase(a.tasks, a.rate, secs, lat) end
  if a.tasks > 0 then return tasks_phase(a.tasks, secs, lat) end
  return blocking_phase(secs, lat)
end

if a.warmops then
  local max = a.max
  a.max = a.warmops
  phase(1e9, nil)
  a.max = max < math.maxinteger - a.warmops and max + a.warmops or max
else
  phase(a.warm, nil)
end
collectgarbage()
local lat = {}
local t0, cpu0 = now(), os.clock()  -- os.clock: CPU time of all threads
local st = phase(a.secs, lat)
local ops, errors, check = st.done, st.errors, st.check
local secs, cpu = now() - t0, os.clock() - cpu0
local p50, p99 = stats.latencies(lat)
peer.close(h)

local impl = a.impl == "sb" and (a.rate and (a.tasks > 0 and "sb_calls" or "sb_block_open")
                                 or a.tasks > 0 and ("sb_" .. a.tasks) or "sb_block") or a.impl
print(json.encode({
  impl = impl, op = a.op, ops = ops, ops_all = k, secs = secs, ops_per_s = ops / secs,
  cpu_us_per_op = ops > 0 and cpu * 1e6 / ops or 0,
  p50_us = p50, p99_us = p99, errors = errors, check = math.tointeger(check) or check,
  error = first_error,
}))
