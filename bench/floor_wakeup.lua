-- bench/floor_wakeup.lua - the floor that the machine's timer wake-ups put
-- under the routing row's open-loop latency (bench/README.md).
--
-- Owns: the open loop of bench/cell.lua (--tasks 256 --rate 200) with no
-- work in it: 256 sb.spawn tasks sleep to Poisson arrivals, 200 per second
-- in all, and record how late each wakes after its scheduled arrival.  A
-- routing decision's latency in that cell cannot be lower than this.
-- Usage: lua5.4 bench/floor_wakeup.lua [tasks] [rate] [seconds]
--        (LUA_PATH/LUA_CPATH as for bench/cell.lua)

local sb = require "switchboard"
local stats = require "lib.stats"

local n, rate, secs = tonumber(arg[1]) or 256, tonumber(arg[2]) or 200, tonumber(arg[3]) or 3
local late = {}
local t0 = sb.now()
local stop, mean = t0 + secs, n / rate
for _ = 1, n do
  sb.spawn(function()
    local due = t0 - mean * math.log(1 - math.random())
    while due < stop do
      local wait = due - sb.now()
      if wait > 0 then sb.sleep(wait) end
      late[#late + 1] = sb.now() - due
      due = due - mean * math.log(1 - math.random())
    end
  end)
end
sb.run()
local p50, p99 = stats.latencies(late)
print(string.format("wake-up floor: %d tasks, %d arrivals/s, %d wake-ups: lateness p50 %.0f us, p99 %.0f us",
  n, rate, #late, p50, p99))
