-- bench/profile.lua - where the instructions of one benchmark cell go.
--
-- Owns: running ONE cell of `make bench` (same command line as run.lua,
-- bench/lib/impls.lua) on fresh data under valgrind's callgrind, twice
-- (N/5 and N operations), and printing instructions per operation (the
-- difference of the two totals divided by the difference of the counts,
-- so start-up cancels out; Lua cells warm up with a fixed op count), the top functions of the N run, and, with
-- PROFILE_STRACE=1, system calls per operation (strace -f -c).  Callgrind
-- counts instructions of every thread of the client process (not of the
-- PostgreSQL server); it does not see time spent waiting.
-- Does not own: the cells themselves.
--
-- Usage (what `make bench-profile` runs; PostgreSQL needs SB_TEST_PG_URL):
--   lua5.4 bench/profile.lua BACKEND IMPL OP [N]
--   e.g. lua5.4 bench/profile.lua sqlite sb_block available 20000
-- Output files stay in build/bench/profile/ for callgrind_annotate.

local O = require "ops"
local impls = require "lib.impls"
local setup = require "lib.setup"

local backend, impl_id, op, n = arg[1], arg[2], arg[3], tonumber(arg[4] or "20000")
if not (backend and impl_id and op) then
  io.stderr:write("usage: lua5.4 bench/profile.lua sqlite|postgresql IMPL OP [N]\n")
  os.exit(2)
end
local impl
for _, im in ipairs(impls[backend] or {}) do
  if im.id == impl_id then impl = im end
end
assert(impl, "no implementation " .. impl_id .. " for " .. backend)
assert(O.ops[op], "no operation " .. op)

local cfg = { build = os.getenv("BENCH_BUILD") or "build", lua = os.getenv("BENCH_LUA") or "lua5.4" }
local dir = cfg.build .. "/bench/profile"
os.execute("mkdir -p " .. setup.sh_quote(dir) .. " " .. setup.sh_quote(cfg.build .. "/bench/data"))
-- the routing op has its own database (call-center schema; bench/lib/setup.lua)
local routing = O.ops[op].database == "routing"
local target = backend == "sqlite" and (cfg.build .. "/bench/data/" .. (routing and "profile-routing.db" or "profile.db"))
  or os.getenv("SB_TEST_PG_URL")
assert(target, "SB_TEST_PG_URL is not set")
local _, pgdb = setup.target(backend, op, cfg.build)
if routing then setup.create_routing(backend, target) else setup.create(backend, target) end

local sh = setup.sh

local fill = O.fills(op)
-- Lua cells first run this many ops unrecorded, so that both runs start
-- from the same state (every pool connection up, statements prepared);
-- the raw C programs connect and prepare before their first op anyway.
local WARMOPS = 1000
local function cell(count, wrap)
  setup.prep(backend, target, op, fill and count + WARMOPS + 1000 or 0)
  local c = { backend = backend, db = backend == "sqlite" and target or nil, op = op,
              secs = 100000, warm = 0, max = count, base = O.CALL_BASE, timeout = 3600,
              warmops = not impl.raw and WARMOPS or nil, pgdb = pgdb }
  local cmd = impls.command(impl, c, cfg)
  -- put the wrapper after `timeout -k 5 3600`
  cmd = cmd:gsub("^(timeout %-k '?5'? '?3600'?) ", "%1 " .. wrap .. " ")
  local ok, out = sh(cmd .. " 2>&1")
  if not ok then error("cell failed:\n" .. out) end
  return out
end

local function total_ir(file)
  for line in io.lines(file) do
    local v = line:match("^totals:%s*(%d+)") or line:match("^summary:%s*(%d+)")
    if v then return tonumber(v) end
  end
end

local small = math.max(n // 5, 1)
local base = string.format("%s/%s-%s-%s", dir, backend, impl_id, op)
local irs = {}
for _, count in ipairs({ small, n }) do
  local file = string.format("%s-%d.out", base, count)
  cell(count, "valgrind --tool=callgrind --callgrind-out-file=" .. setup.sh_quote(file))
  irs[count] = total_ir(file)
end
local per_op = (irs[n] - irs[small]) / (n - small)
print(string.format("%s %s %s: %.0f instructions per operation (callgrind, %d vs %d ops)",
  backend, impl_id, op, per_op, n, small))
-- Per-function instructions per op: the same difference of two runs, so
-- that start-up (SCRAM, dlopen, prepares) drops out of the breakdown too.
local function per_function(inclusive)
  local runs = {}
  for _, count in ipairs({ small, n }) do
    local file = string.format("%s-%d.out", base, count)
    local _, ann = sh("callgrind_annotate --threshold=100 " .. (inclusive and "--inclusive=yes " or "")
      .. setup.sh_quote(file) .. " 2>/dev/null")
    local t = {}
    for line in ann:gmatch("[^\n]+") do
      local ir, fn = line:match("^%s*([%d,]+)%s+%(%s*[%d.]+%%%)%s+(.+)$")
      if ir and not fn:match("PROGRAM TOTALS") and not fn:match("'%d") then
        fn = fn:gsub("%s*%[.-%]%s*$", ""):gsub("^%?%?%?:", "")
        t[fn] = math.max(t[fn] or 0, tonumber((ir:gsub(",", ""))))
      end
    end
    runs[#runs + 1] = t
  end
  local rows = {}
  for fn, v in pairs(runs[2]) do
    local d = (v - (runs[1][fn] or 0)) / (n - small)
    if d >= 50 then rows[#rows + 1] = { fn, d } end
  end
  table.sort(rows, function(x, y) return x[2] > y[2] end)
  return rows
end

for _, mode in ipairs({ false, true }) do
  print(mode and "inclusive per op (top 30):" or "exclusive per op (top 25):")
  for i, r in ipairs(per_function(mode)) do
    if i > (mode and 30 or 25) then break end
    print(string.format("  %9.0f  %s", r[2], r[1]:sub(1, 110)))
  end
end
if os.getenv("PROFILE_STRACE") == "1" then
  local sfile = base .. "-strace.txt"
  cell(n, "strace -f -c -o " .. setup.sh_quote(sfile))
  local ops = n + (impl.raw and 0 or WARMOPS)
  print("system calls per operation (strace -f -c over " .. ops .. " ops, warm-up included):")
  for line in io.lines(sfile) do
    local calls, name = line:match("^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*(%S+)$")
    if calls and tonumber(calls) >= ops / 10 then
      print(string.format("  %8.2f /op  %s", tonumber(calls) / ops, name))
    end
  end
end
print("files: " .. base .. "-*.out (callgrind_annotate --inclusive=yes FILE)")
