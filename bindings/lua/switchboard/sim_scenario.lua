-- switchboard/sim_scenario.lua - the simulator's scenario files: load one
-- as data and check it.
--
-- A scenario is a Lua file that returns a table (text only; run in an
-- empty environment under the sandbox's budget, so it can compute a value
-- but reach nothing).  Fields (times in simulated seconds):
--   name            string (default: the file name)
--   duration        seconds of traffic; the run stops then (default 600)
--   seed            integer seed of the random streams (default 1)
--   policy          policy file, relative to the scenario file
--   reroute         a waiting call asks the router again this often (10)
--   queues          array of { name=, rate= calls per second (0: only
--                   reached by overflow), talk= mean seconds, patience=
--                   mean seconds, priority=0, service_level=20 (target
--                   seconds), skills={ name = level | {lo, hi} } }
--   agents          array of groups { count=, prefix=, queues={...},
--                   skills={ name = level | {lo, hi} }, wrapup=0,
--                   max_calls=1, pause={ chance=, mean= } (after a call) }
-- Talk, patience and inter-arrival times are exponential with the given
-- means; {lo, hi} levels are drawn uniformly per agent (or per call).

local sandbox = require "switchboard.sandbox"

local type, pairs, ipairs, next, tostring, error, pcall, math, table =
  type, pairs, ipairs, next, tostring, error, pcall, math, table

local M = {}

local LIMITS = { instructions = 1000000, memory = 16 * 1024 * 1024 }

-- Plain data only: no functions, no metatables (copied with next).
local function data(v, where, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return v end
  if t ~= "table" then error(where .. ": " .. t .. " values are not allowed in a scenario", 0) end
  if depth > 10 then error(where .. ": nested too deeply", 0) end
  local c = {}
  for k, x in next, v do
    if type(k) ~= "string" and math.type(k) ~= "integer" then error(where .. ": keys must be strings or integers", 0) end
    c[k] = data(x, where .. "." .. tostring(k), depth + 1)
  end
  return c
end

local function check(cond, msg) if not cond then error(msg, 0) end end

local function number(t, k, where, default, min)
  local v = t[k]
  if v == nil then return default end
  check(type(v) == "number" and v == v, where .. "." .. k .. " must be a number")
  check(not min or v >= min, where .. "." .. k .. " must be >= " .. tostring(min))
  return v
end

-- { name = level | {lo, hi} } (array entries: level 1)
local function skills(t, where)
  if t == nil then return {} end
  check(type(t) == "table", where .. " must be a table")
  local c = {}
  for k, v in pairs(t) do
    if math.type(k) == "integer" then k, v = v, 1 end
    check(type(k) == "string" and k ~= "", where .. ": skill names must be strings")
    if type(v) == "table" then
      check(math.type(v[1]) == "integer" and math.type(v[2]) == "integer" and 0 <= v[1] and v[1] <= v[2],
            where .. "." .. k .. " must be a level or {lo, hi}")
    else
      check(math.type(v) == "integer" and v >= 0, where .. "." .. k .. " must be a level or {lo, hi}")
    end
    c[k] = v
  end
  return c
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- "a/../b/./c" -> "b/c" (".." at the start stays)
local function normalize(path)
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." and parts[1] and parts[#parts] ~= ".." then parts[#parts] = nil
    elseif part ~= "." then parts[#parts + 1] = part end
  end
  return (path:sub(1, 1) == "/" and "/" or "") .. table.concat(parts, "/")
end

-- Check and complete a scenario table; --> scenario (a fresh table)
function M.check(s, path)
  check(type(s) == "table", "a scenario must be a table")
  local sc = {
    name = s.name or (path and path:match("([^/]+)%.lua$")) or "scenario",
    duration = number(s, "duration", "scenario", 600, 1),
    seed = math.tointeger(s.seed or 1),
    reroute = number(s, "reroute", "scenario", 10, 0.1),
    queues = {}, agents = {}, queue_by_name = {},
  }
  check(type(sc.name) == "string", "scenario.name must be a string")
  check(sc.seed, "scenario.seed must be an integer")
  if s.policy ~= nil then
    check(type(s.policy) == "string", "scenario.policy must be a file name")
    sc.policy = normalize(s.policy:sub(1, 1) == "/" and s.policy or (path and dirname(path) .. "/" .. s.policy or s.policy))
  end
  check(type(s.queues) == "table" and s.queues[1], "scenario.queues must be a non-empty array")
  for i, q in ipairs(s.queues) do
    local w = "queues[" .. i .. "]"
    check(type(q) == "table" and type(q.name) == "string" and q.name ~= "", w .. ".name must be a string")
    check(not sc.queue_by_name[q.name], w .. ": queue '" .. q.name .. "' given twice")
    local c = {
      name = q.name,
      rate = number(q, "rate", w, 0, 0),
      talk = number(q, "talk", w, 180, 1),
      patience = number(q, "patience", w, 60, 1),
      priority = math.tointeger(q.priority or 0),
      service_level = number(q, "service_level", w, 20, 0),
      skills = skills(q.skills, w .. ".skills"),
    }
    check(c.priority, w .. ".priority must be an integer")
    sc.queues[#sc.queues + 1] = c
    sc.queue_by_name[c.name] = c
  end
  check(type(s.agents) == "table" and s.agents[1], "scenario.agents must be a non-empty array")
  for i, g in ipairs(s.agents) do
    local w = "agents[" .. i .. "]"
    check(type(g) == "table", w .. " must be a table")
    local c = {
      count = math.tointeger(g.count or 1),
      prefix = g.prefix or ("g" .. i),
      queues = g.queues,
      skills = skills(g.skills, w .. ".skills"),
      wrapup = number(g, "wrapup", w, 0, 0),
      max_calls = math.tointeger(g.max_calls or 1),
    }
    check(c.count and c.count >= 1, w .. ".count must be a positive integer")
    check(type(c.prefix) == "string", w .. ".prefix must be a string")
    check(c.max_calls and c.max_calls >= 1, w .. ".max_calls must be a positive integer")
    check(type(c.queues) == "table" and c.queues[1], w .. ".queues must be a non-empty array of queue names")
    for _, qn in ipairs(c.queues) do
      check(sc.queue_by_name[qn], w .. ": unknown queue '" .. tostring(qn) .. "'")
    end
    if g.pause ~= nil then
      check(type(g.pause) == "table", w .. ".pause must be a table")
      c.pause = { chance = number(g.pause, "chance", w .. ".pause", 0, 0),
                  mean = number(g.pause, "mean", w .. ".pause", 60, 1) }
    end
    sc.agents[#sc.agents + 1] = c
  end
  return sc
end

-- Load a scenario file.  --> scenario | nil, message
function M.load(path)
  local chunk, err = sandbox.loadfile(path, {})
  if not chunk then return nil, err end
  local ok, value = sandbox.run(LIMITS, chunk)
  if not ok then return nil, path .. ": " .. value end
  local cok, sc = pcall(function() return M.check(data(value, "scenario", 0), path) end)
  if not cok then return nil, path .. ": " .. tostring(sc) end
  return sc
end

return M
