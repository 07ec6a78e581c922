-- bench/run.lua - the benchmark of issue #5 (`make bench` runs it inside a
-- throwaway PostgreSQL; bench/README.md explains the method).
--
-- Owns: the run: check that the raw C programs generate the same
-- parameters as bench/ops.lua, then per backend: seed fresh data (and the
-- routing op's own call-center database when it runs), and for each
-- repetition, each operation, each implementation: reset the data
-- (bench/lib/setup.lua) and run ONE cell as its own process (raw C binary
-- or bench/cell.lua), collecting its JSON line (cells an op cannot run
-- faithfully, ops.lua's `skip`, are reported as not run); then the memory
-- cell (bench/mem.lua).  Prints the markdown tables to stdout (progress to
-- stderr) and writes the JSON results.
-- Does not own: the SQL (bench/ops.lua), cells (raw_*.c, cell.lua),
-- statistics and verdicts (bench/lib/report.lua).
--
-- Environment:
--   BENCH_QUICK=1      smoke run: 1 repetition of 0.1 s cells (not for ratios)
--   BENCH_REPS, BENCH_SECS, BENCH_WARM   repetitions (3), seconds per cell
--                      (1.0), warm-up seconds per cell (0.2)
--   BENCH_BACKENDS     "sqlite,postgresql" (PostgreSQL needs SB_TEST_PG_URL)
--   BENCH_OPS, BENCH_IMPLS  comma lists to run a subset (e.g. "routing",
--                      "raw,sb_block")
--   BENCH_INFLIGHT     requests of the memory cell (10000)
--   BENCH_OUT          JSON path (bench/results.json; quick:
--                      build/bench/results-quick.json)
--   BENCH_BUILD, BENCH_LUA  set by the Makefile (build dir, lua5.4)
--   BENCH_COMMIT       what to print as the code's version (default: git)
-- Exit status: 1 if a cell failed or reported errors, else 0 (a missed
-- target is a result, not a failure).

local json = require "lib.json"
local O = require "ops"
local impls = require "lib.impls"
local setup = require "lib.setup"
local report = require "lib.report"
local servercpu = require "lib.servercpu"

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local quick = env("BENCH_QUICK", "0") == "1"
local cfg = {
  quick = quick,
  reps = tonumber(env("BENCH_REPS", quick and "1" or "3")),
  secs = tonumber(env("BENCH_SECS", quick and "0.1" or "1.0")),
  warm = tonumber(env("BENCH_WARM", quick and "0.05" or "0.2")),
  inflight = tonumber(env("BENCH_INFLIGHT", "10000")),
  build = env("BENCH_BUILD", "build"),
  lua = env("BENCH_LUA", "lua5.4"),
  out = env("BENCH_OUT", quick and "build/bench/results-quick.json" or "bench/results.json"),
}
-- Highest plausible ops/s of an assign cell: how many waiting calls to make.
local ASSIGN_RATE_CAP = { sqlite = 60000, postgresql = 30000 }

local function set_of(list)
  if not list then return nil end
  local s = {}
  for x in list:gmatch("[^,%s]+") do s[x] = true end
  return s
end
local only_ops, only_impls = set_of(env("BENCH_OPS")), set_of(env("BENCH_IMPLS"))

local function log(...)
  io.stderr:write(string.format(...), "\n")
  io.stderr:flush()
end

local sh = setup.sh

local function file_line(path, pattern)
  local f = io.open(path, "r")
  if not f then return nil end
  for line in f:lines() do
    local v = line:match(pattern)
    if v then f:close() return v end
  end
  f:close()
end

------------------------------------------------------------ checks

-- The C programs must compute the parameters exactly as ops.lua does.
local function check_args()
  for _, bin in ipairs({ "raw_sqlite", "raw_pg" }) do
    for _, op in ipairs(O.order) do
      local ok, out = sh(string.format("%s/bench/%s --op %s --base %d --check-args 500",
        cfg.build, bin, op, O.CALL_BASE))
      assert(ok, bin .. " --check-args failed (run `make bench-bin`)")
      local k = 0
      for line in out:gmatch("[^\n]+") do
        local want = k .. " " .. O.args_line(op, k, O.CALL_BASE)
        if line ~= want then
          error(string.format("%s and bench/ops.lua disagree on %s's parameters at k=%d:\n  C:   %s\n  Lua: %s",
            bin, op, k, line, want))
        end
        k = k + 1
      end
      assert(k == 500, bin .. " printed " .. k .. " parameter lines")
    end
  end
end

------------------------------------------------------------ cells

local function run_cell(impl, c)
  local ok, out = sh(impls.command(impl, c, cfg))
  local line
  for l in out:gmatch("[^\n]+") do
    if l:sub(1, 1) == "{" then line = l end
  end
  if not ok or not line then
    return { failed = (out:match("[^\n]+$") or "exited with an error") }
  end
  local res = json.decode(line)
  if res.errors and res.errors > 0 then
    log("  %s %s: %d errors (%s)", impl.id, c.op, res.errors, tostring(res.error))
  end
  return res
end

-- bench/fsync_probe beside a cell, on the filesystem of the database's
-- data (PostgreSQL: $SB_TEST_PG_DIR, else /tmp; SQLite: the file's
-- directory) --> the file its JSON line goes to
local function disk_probe_start(backend, optarget, secs)
  local dir = backend == "sqlite" and optarget:match("^(.*)/[^/]*$") or os.getenv("SB_TEST_PG_DIR") or "/tmp"
  local out = os.tmpname()
  sh(("%s/bench/fsync_probe %s %.1f > %s 2>/dev/null &"):format(cfg.build, setup.sh_quote(dir), secs,
    setup.sh_quote(out)))
  return out
end

-- its result once it is done (it runs as long as the cell's time boxes)
local function disk_probe_result(out)
  for _ = 1, 100 do
    local f = io.open(out)
    local line = f and f:read("l")
    if f then f:close() end
    if line and line:sub(1, 1) == "{" then
      os.remove(out)
      return json.decode(line)
    end
    sh("sleep 0.1")
  end
  os.remove(out)
  return nil
end

local function run_backend(backend, all_cells)
  local ops = {}
  for _, op in ipairs(O.list(backend)) do
    if not only_ops or only_ops[op] then ops[#ops + 1] = op end
  end
  local target = setup.target(backend, nil, cfg.build)
  local db = backend == "sqlite" and target or nil
  log("== %s: creating schema and seed data", backend)
  setup.create(backend, target)
  for _, op in ipairs(ops) do
    if op == "routing" then
      log("== %s: creating the routing database (call-center schema of migrations/)", backend)
      setup.create_routing(backend, (setup.target(backend, op, cfg.build)))
    end
  end
  local reps = {}
  for r = 1, cfg.reps do
    local rep = {}
    reps[r] = rep
    for _, op in ipairs(ops) do
      rep[op] = {}
      local fill = O.fills(op)
      local rate = (O.ops[op].supply_rate or ASSIGN_RATE_CAP)[backend]
      local supply = fill and math.ceil(rate * (cfg.secs + cfg.warm)) + 1000 or 0
      local optarget, pgdb = setup.target(backend, op, cfg.build)
      local skip = (O.ops[op].skip or {})[backend] or {}
      for _, im in ipairs(impls[backend]) do
        if im.only and not im.only[op] then
          -- a cell of another row only
        elseif skip[im.id] and (not only_impls or only_impls[im.id]) then
          rep[op][im.id] = { skipped = skip[im.id] }
          if r == 1 then log("[%s] %-9s %-13s not run: %s", backend, op, im.id, skip[im.id]) end
        elseif not only_impls or only_impls[im.id] then
          setup.prep(backend, optarget, op, supply)
          -- the open loop asks for few ops a second: a longer box, so its
          -- p99 rests on about a thousand decisions rather than a handful
          local secs = im.open_loop and not cfg.quick and math.max(cfg.secs, O.ops[op].open_secs) or cfg.secs
          local c = {
            backend = backend, db = backend == "sqlite" and optarget or nil, op = op, secs = secs,
            warm = cfg.warm, max = fill and supply or 2000000000, base = O.CALL_BASE,
            timeout = math.ceil(secs * 10 + cfg.warm * 10 + 60), pgdb = pgdb,
          }
          local s0 = backend == "postgresql" and servercpu.seconds()
          -- an open-loop cell's tail follows the disk's flushes: sample them beside it
          local probe = im.open_loop and not cfg.quick and disk_probe_start(backend, optarget, secs + cfg.warm)
          local res = run_cell(im, c)
          if probe then res.disk = disk_probe_result(probe) end
          if s0 and not res.failed and (res.ops_all or 0) > 0 then
            sh("sleep 0.2")  -- the cell's backends exit and are reaped
            res.server_cpu_us_per_op = (servercpu.seconds() - s0) * 1e6 / res.ops_all
          end
          rep[op][im.id] = res
          all_cells[#all_cells + 1] = { backend = backend, rep = r, op = op, impl = im.id, result = res }
          if res.failed then
            log("[%s %d/%d] %-9s %-13s FAILED: %s", backend, r, cfg.reps, op, im.id, res.failed)
          else
            log("[%s %d/%d] %-9s %-13s %9.0f ops/s  p50 %8.1f us  p99 %8.1f us  check %s",
              backend, r, cfg.reps, op, im.id, res.ops_per_s, res.p50_us, res.p99_us, tostring(res.check))
          end
        end
      end
    end
  end
  -- memory: N requests in flight at once
  setup.prep(backend, target, "update", 0)
  local ok, out = sh(string.format("timeout -k 5 300 %s bench/mem.lua --backend %s --db %s --n %d",
    cfg.lua, backend, setup.sh_quote(db or "-"), cfg.inflight))
  local line = out:match("({[^\n]*})%s*$")
  local mem = (ok and line) and json.decode(line) or { failed = out:match("[^\n]+$") or "failed" }
  mem.backend = backend
  if mem.failed then log("[%s] memory cell FAILED: %s", backend, mem.failed)
  else log("[%s] memory: %d requests, %d in flight at most, peak RSS %.1f MiB",
    backend, mem.requests, mem.max_in_flight, mem.peak_hwm_kib / 1024) end
  return reps, ops, mem
end

------------------------------------------------------------ main

local function meta()
  local _, nproc = sh("nproc")
  local _, sqlite_v = sh("sqlite3 --version")
  local pg_v
  if os.getenv("SB_TEST_PG_URL") then
    local _, v = sh('psql "$SB_TEST_PG_URL" -XAtc "SHOW server_version" 2>/dev/null')
    pg_v = v:match("[^\n]+")
  end
  local _, commit = sh("git rev-parse --short HEAD 2>/dev/null")
  local _, dirty = sh("git status --porcelain --untracked-files=no 2>/dev/null")
  return {
    date = os.date("!%Y-%m-%d %H:%M UTC"),
    command = env("BENCH_COMMAND", quick and "make bench BENCH_QUICK=1" or "make bench"),
    cpu = file_line("/proc/cpuinfo", "^model name%s*:%s*(.+)$"),
    nproc = tonumber(nproc:match("%d+")),
    loadavg_start = file_line("/proc/loadavg", "^(%S+ %S+ %S+)"),
    sqlite = sqlite_v:match("^(%S+)"),
    postgresql = pg_v,
    lua = _VERSION,
    switchboard = require("switchboard").version,
    commit = env("BENCH_COMMIT",
      (commit:match("%w+") or "?") .. ((dirty ~= "" and dirty) and " (with uncommitted changes)" or "")),
    reps = cfg.reps, secs = cfg.secs, warm = cfg.warm, quick = cfg.quick,
  }
end

local function main()
  os.execute("mkdir -p " .. setup.sh_quote(cfg.build .. "/bench/data"))
  check_args()
  local m = meta()
  local backends = {}
  for b in env("BENCH_BACKENDS", "sqlite,postgresql"):gmatch("[^,%s]+") do
    if b == "postgresql" and not os.getenv("SB_TEST_PG_URL") then
      log("== postgresql: skipped (SB_TEST_PG_URL is not set; `make bench` starts a server)")
    else
      backends[#backends + 1] = b
    end
  end
  local all_cells, summary, mems, texts = {}, {}, {}, {}
  local bad = 0
  for _, b in ipairs(backends) do
    local reps, ops, mem = run_backend(b, all_cells)
    local rows = report.summarize(b, reps, ops)
    for _, r in ipairs(rows) do
      summary[#summary + 1] = r
      if r.failed or r.errors > 0 then bad = bad + 1 end
    end
    mems[#mems + 1] = mem
    if mem.failed or (mem.errors or 0) > 0 then bad = bad + 1 end
    texts[#texts + 1] = report.table(b, rows, m)
  end
  m.loadavg_end = file_line("/proc/loadavg", "^(%S+ %S+ %S+)")
  texts[#texts + 1] = report.memory_table(mems)
  local met, missed = report.tally(summary, mems)
  local head = string.format(
    "## switchboard benchmark: %s\n\n`%s` on %s (%s cores); SQLite %s, PostgreSQL %s, %s; switchboard %s at %s. "
      .. "Load average %s at the start, %s at the end.%s\n",
    m.date, m.command, m.cpu or "?", tostring(m.nproc), m.sqlite or "?", m.postgresql or "-", m.lua,
    m.switchboard, m.commit, m.loadavg_start or "?", m.loadavg_end or "?",
    quick and "\n\n**QUICK smoke run: one short repetition; do not read the ratios.**" or "")
  local text = head .. "\n" .. table.concat(texts, "\n\n") ..
    string.format("\n\nTargets: %d met, %d missed.\n", met, missed)
  print(text)
  local f = assert(io.open(cfg.out, "w"))
  f:write(json.encode({ meta = m, summary = summary, memory = mems, cells = all_cells,
    routing = report.routing_summary(summary) }, "  "), "\n")
  f:close()
  local md = assert(io.open(cfg.build .. "/bench/results.md", "w"))
  md:write(text)
  md:close()
  log("wrote %s and %s/bench/results.md", cfg.out, cfg.build)
  if bad > 0 then
    log("%d cells failed or reported errors", bad)
    os.exit(1)
  end
end

main()
