-- bench/mem.lua - peak memory with N requests in flight (default 10,000),
-- run as its own process by bench/run.lua; prints one JSON line.
--
-- Owns: the memory cell: open the db with the default options, run one
-- warm-up query, read VmHWM, then spawn N sb tasks that each issue ONE
-- point read (bench/ops.lua's MEM_SQL) at once and run them to completion; report
-- the process's peak RSS (VmHWM of /proc/self/status) before and after, and
-- the most requests that were in flight together (submitted, not returned).
-- Does not own: the data (bench/run.lua).
--
-- Usage: lua5.4 bench/mem.lua --backend sqlite|postgresql --db FILE --n 10000

local sb = require "switchboard"
local json = require "lib.json"
local O = require "ops"

local a = {}
for i = 1, #arg, 2 do a[arg[i]:gsub("^%-%-", "")] = tonumber(arg[i + 1]) or arg[i + 1] end
local n = a.n or 10000

local function vm(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s*(%d+)")
    if v then return tonumber(v) end
  end
end

local url = a.backend == "sqlite" and ("sqlite:" .. a.db) or assert(os.getenv("SB_TEST_PG_URL"))
local db = assert(sb.open(url))
local sql = O.MEM_SQL
assert(db:first(sql, O.mem_args(0)))
collectgarbage()
local base_hwm, base_rss = vm("VmHWM"), vm("VmRSS")

local inflight, max_inflight, done, errors = 0, 0, 0, 0
for i = 1, n do
  sb.spawn(function()
    inflight = inflight + 1
    if inflight > max_inflight then max_inflight = inflight end
    local row = db:first(sql, O.mem_args(i))
    inflight = inflight - 1
    if row and row.id == O.mem_args(i) then done = done + 1 else errors = errors + 1 end
  end)
end
local t0 = sb.now()
sb.run()
local secs = sb.now() - t0
local peak = vm("VmHWM")
db:close()

print(json.encode({
  backend = a.backend, requests = n, done = done, errors = errors,
  max_in_flight = max_inflight, secs = secs,
  base_hwm_kib = base_hwm, base_rss_kib = base_rss, peak_hwm_kib = peak,
  peak_mib = peak / 1024,
}))
