-- spec/fault/lib/fault.lua - what every fault script of `make fault` shares.
--
-- Owns: the result row a script leaves for the table (scripts/fault-run
-- prints them), checks that count failures instead of stopping, the clock,
-- recovery-time bookkeeping, running shell helpers in the background, and
-- the environment the orchestrator passes (SB_FAULT_*).
-- Does not own: any database or server (each script opens its own; servers
-- belong to scripts/pg-test-env and scripts/fault-*-env).
--
--   local F = require "fault"
--   F.check(cond, fmt, ...)        count a failure (printed) and go on
--   F.row{ fault=, runs=, calls=, duplicates=, lost=, recovery_ms=, note= }
--   F.finish()                     write the row, exit 0/1 by F.failures
--   F.recovery()                   r:fault(t [, after]) / r:success(started, t) / r.max
--   F.background(cmd) -> job       job:done() -> nil | exit code
--   F.env(name [, default])        a required environment variable
local sb = require "switchboard"

local F = { failures = 0, now = sb.now }

local row = {}

function F.log(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
  io.stdout:flush()
end

function F.check(cond, fmt, ...)
  if not cond then
    F.failures = F.failures + 1
    F.log("FAIL: " .. fmt, ...)
  end
  return cond
end

function F.env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then
    if default ~= nil then return default end
    error("environment variable " .. name .. " is not set (run through `make fault`)", 2)
  end
  return v
end

-- Time limits are multiplied under sanitizers/valgrind like in the specs.
F.time_factor = tonumber(os.getenv("SB_TEST_TIME_FACTOR") or "") or 1
function F.T(seconds) return seconds * F.time_factor end

function F.row(fields)
  for k, v in pairs(fields) do row[k] = v end
end

-- Write the row (tab separated, in the order of the table) and exit.
function F.finish()
  local dir = os.getenv("SB_FAULT_ROWS")
  local status = F.failures == 0 and "ok" or "FAIL"
  local function n(v) return v == nil and "-" or tostring(v) end
  local rec = row.recovery_ms and string.format("%.0f ms", row.recovery_ms) or "-"
  local line = table.concat({ row.fault or arg[0], n(row.runs), n(row.calls), n(row.duplicates),
                              n(row.lost), rec, status, row.note or "" }, "\t")
  F.log("ROW %s", line)
  if dir then
    local name = (row.id or row.fault or "row"):gsub("[^%w_.-]", "_")
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(line, "\n")
    f:close()
  end
  os.exit(F.failures == 0 and 0 or 1)
end

-- Recovery time: from a fault to the first success of a call that started
-- after it.  r:fault(t [, after]) records a fault at t (default now) whose
-- recovery only a call started at or after `after` (default t) can show,
-- e.g. after a restart finished; r:success(started, t) records a success.
function F.recovery()
  local r = { max = 0, open = {}, n = 0 }
  function r:fault(t, after)
    t = t or F.now()
    self.open[#self.open + 1] = { t = t, after = after or t }
    self.n = self.n + 1
  end
  function r:success(started, t)
    t = t or F.now()
    local i = 1
    while i <= #self.open do
      local f = self.open[i]
      if started >= f.after then
        local ms = (t - f.t) * 1000
        if ms > self.max then self.max = ms end
        table.remove(self.open, i)
      else
        i = i + 1
      end
    end
  end
  -- faults never followed by a success
  function r:unrecovered() return #self.open end
  return r
end

-- Run a shell command in the background (it must not read stdin); poll
-- job:done() for its exit code.
local jobs = 0
function F.background(cmd)
  jobs = jobs + 1
  local base = os.tmpname()
  local rcfile = base .. ".rc"
  os.remove(base)
  -- server tools must not inherit an ASan preload (scripts/fault-asan)
  assert(os.execute(string.format("( ( unset LD_PRELOAD; %s ) >%s.out 2>&1 </dev/null; echo $? >%s.tmp; mv %s.tmp %s ) >/dev/null 2>&1 &",
    cmd, base, rcfile, rcfile, rcfile)))
  local job = { base = base }
  function job:done()
    local f = io.open(rcfile)
    if not f then return nil end
    local rc = f:read("n")
    f:close()
    os.remove(rcfile)
    local o = io.open(base .. ".out")
    self.output = o and o:read("a") or ""
    if o then o:close() end
    os.remove(base .. ".out")
    return rc or -1
  end
  return job
end

-- A string as one shell word.
function F.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Sleep inside a task (yields) or block outside one.
F.sleep = sb.sleep

-- A string for any error value; every error a script sees goes through
-- here into the log, so the canary grep of scripts/fault-run covers it.
function F.errstr(e)
  return tostring(e)
end

return F
