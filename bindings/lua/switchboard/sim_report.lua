-- switchboard/sim_report.lua - the simulator's summary as text (for a
-- person) or JSON (for a program): a tiny JSON encoder and the layout.
--
-- Owns only formatting: every number comes from switchboard.sim's summary
-- table (sim.lua documents its fields and the invariant).

local type, pairs, ipairs, tostring, tonumber, math, string, table, next, rawlen =
  type, pairs, ipairs, tostring, tonumber, math, string, table, next, rawlen

local M = {}

------------------------------------------------------------------ JSON

-- Keys whose value is an array even when empty.
local ARRAYS = { queues = true, reload_events = true, log = true, routes = true, calls = true }

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
              ["\r"] = "\\r", ["\t"] = "\\t" }

local function jstring(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESC[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local function jnumber(n)
  if math.type(n) == "integer" then return tostring(n) end
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format("%d", n) end
  return string.format("%.6g", n)
end

local function is_array(t, key)
  local n = rawlen(t)
  if n == 0 then return next(t) == nil and ARRAYS[key] end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local function encode(v, key, out)
  local t = type(v)
  if t == "nil" then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = jnumber(v)
  elseif t == "string" then out[#out + 1] = jstring(v)
  elseif t == "table" then
    if is_array(v, key) then
      out[#out + 1] = "["
      for i = 1, rawlen(v) do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], nil, out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = jstring(k) .. ":"
        local x = v[k]
        if x == nil then x = v[math.tointeger(tonumber(k))] end
        encode(x, k, out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = jstring(tostring(v))
  end
end

-- M.json(value) --> JSON text (objects' keys sorted)
function M.json(v)
  local out = {}
  encode(v, nil, out)
  return table.concat(out)
end

------------------------------------------------------------------ text

local function fmt(n, unit, digits)
  if n == nil then return "-" end
  return string.format("%." .. (digits or 1) .. "f%s", n, unit or "")
end

-- M.text(summary) --> the summary as lines of text
function M.text(s)
  local L = {}
  local function line(...) L[#L + 1] = string.format(...) end
  local c, r, d = s.calls, s.routing, s.database_check
  line("switchboard-sim: scenario %q on %s (%s)", s.scenario, s.backend, s.database)
  line("  policy %s; %d simulated s in %.1f real s (speed x%g), seed %d",
       s.policy, s.simulated_seconds, s.real_seconds, s.speed, s.seed)
  line("")
  line("calls     offered %d, answered %d, abandoned %d, rejected %d, waiting %d",
       c.offered, c.answered, c.abandoned, c.rejected, c.waiting)
  line("          talking at the end %d, overflowed %d, most in flight at once %d",
       c.talking_at_end, c.overflowed, c.max_in_flight)
  line("          offered = answered + abandoned + rejected + waiting: %d = %d + %d + %d + %d  %s",
       c.offered, c.answered, c.abandoned, c.rejected, c.waiting, c.invariant_ok and "ok" or "VIOLATED")
  line("          database: %d = %d + %d + %d + %d  %s", d.offered, d.answered, d.abandoned, d.rejected,
       d.waiting, d.matches and "(agrees)" or "(DIFFERS)")
  line("")
  line("queue           offered answered abandoned overflowed  service level   avg wait   p90 wait")
  for _, q in ipairs(s.queues) do
    line("%-14s %8d %8d %9d %10d  %6s (%3ds) %9s %10s", q.name, q.offered, q.answered, q.abandoned,
         q.overflowed_out, fmt(q.service_level_pct, "%"), q.service_level_seconds,
         fmt(q.avg_wait_s, " s"), fmt(q.p90_wait_s, " s"))
  end
  line("")
  line("routing   %d routes; latency p50 %s, p99 %s, max %s (real time)", r.routes,
       fmt(r.latency_us.p50, " us", 0), fmt(r.latency_us.p99, " us", 0), fmt(r.latency_us.max, " us", 0))
  line("          conflicts retried %d, fallbacks %d (%d by a failing policy), calls pulled while routing %d, route errors %d",
       r.conflicts_retried, r.fallbacks, r.fallbacks_policy_failed, r.calls_gone, r.errors)
  line("database  %d operations, %.0f per second (real)", s.database_ops.total, s.database_ops.per_second)
  line("policy    %d reload(s) taken, %d refused%s; active %s", r.reloads, r.reload_failures,
       r.last_error and (" (last error: " .. r.last_error .. ")") or "", r.active_version)
  local calls = {}
  for _, v in ipairs(s.policy_versions.calls) do
    calls[v.version and (v.name .. "@" .. v.version) or v.name] = v.calls
  end
  for _, v in ipairs(s.policy_versions.routes) do
    line("          %-34s %7d routes %7d calls", v.version, v.routes, calls[v.version] or 0)
    calls[v.version] = nil
  end
  for v, n in pairs(calls) do line("          %-34s %7s        %7d calls", v, "", n) end
  for _, e in ipairs(s.reload_events) do
    line("reload    at %gs %s: %s", e.at, e.file, tostring(e.result))
  end
  local e = s.errors
  if e.task_failures > 0 or e.router_log_lines > 0 then
    line("log       %d task failure(s), %d router/simulator message(s); first ones:", e.task_failures,
         e.router_log_lines)
    for i = 1, math.min(5, #e.log) do line("          %s", e.log[i]) end
  end
  line("result    %s", s.ok and "OK" or "FAILED (see above)")
  return table.concat(L, "\n") .. "\n"
end

return M
