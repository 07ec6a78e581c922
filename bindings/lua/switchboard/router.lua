-- switchboard/router.lua - sb.router: runs a routing policy for each call,
-- and swaps in new versions of the policy file while calls flow.
--
-- Owns: loading a version (compile in a fresh sandbox, run the chunk, check
-- it returns a table with `route`, run init and self_test, all under the
-- budget), the atomic swap and the "broken version" rule (the old version
-- keeps serving; the broken file is not retried until it changes again),
-- checking the file for changes (mtime, size, inode; at most once per
-- check_interval), validating decisions, performing "assign" through
-- cc:assign (asking the policy again after a conflict, a bounded number of
-- times), the fallback decision for a policy that fails, and the counters
-- of router:status().  The policy only ever sees a read-only ctx.
--
-- Host-safety rule: no code of a policy runs outside its budget.  The host
-- reads a policy's tables with rawget/next only (the policy table, its
-- decisions), copies what it hands in and what ctx.cc returns (so the
-- policy holds no host table with a shared metatable), and describes a
-- policy's errors without tostring (sandbox.describe).  What a policy
-- writes that the host keeps or passes on is bounded: error texts (the
-- fallback's reason, last_error, log lines) and a decision's reason are
-- cut to MAX_TEXT bytes, ids it names (agent, queue, its name and
-- version, which end up in every assignment row) are refused past MAX_ID.

local sb = require "switchboard"
local core = require "switchboard.core"
local sandbox = require "switchboard.sandbox"
local callcenter = require "switchboard.callcenter"

local type, pairs, ipairs, tostring, error, setmetatable, next, rawget =
  type, pairs, ipairs, tostring, error, setmetatable, next, rawget
local math, string, table, io = math, string, table, io

local Router = {}
Router.__index = Router

local DEFAULT_BUDGET = { instructions = 1000000, memory = 8 * 1024 * 1024 }
local MAX_TEXT, MAX_ID = 1024, 256

-- A policy's text, cut to MAX_TEXT bytes (a 7 MB error message must not
-- become 7 MB of log per call, nor stay in status().last_error).
local function clip(s)
  s = tostring(s)
  if #s <= MAX_TEXT then return s end
  return string.sub(s, 1, MAX_TEXT) .. "... (" .. #s .. " bytes)"
end

local ACTIONS = { assign = true, queue = true, overflow = true, reject = true }

local function bad(name, msg) error("bad option '" .. name .. "' to 'router' (" .. msg .. ")", 3) end

-- A deep copy of plain data (what a policy is given, or gets from ctx.cc):
-- raw traversal (next), so no __pairs/__index of anybody's runs here, and
-- no metatables in the copy (a host error object becomes a plain table).
local function plain(v, depth)
  if type(v) ~= "table" then return v end
  depth = depth or 0
  if depth > 8 then error("table nested too deeply", 0) end
  local c = {}
  for k, x in next, v do
    local tk, tx = type(k), type(x)
    if (tk == "string" or tk == "number") and (tx == "string" or tx == "number" or tx == "boolean" or tx == "table") then
      c[k] = plain(x, depth + 1)
    end
  end
  return c
end

-- The fields a decision may carry, by type; anything else is dropped.
local function field(d, k, want)
  local v = rawget(d, k)
  if v == nil then return nil end
  if want == "id" then
    if math.type(v) == "integer" or (type(v) == "string" and v ~= "" and #v <= MAX_ID) then return v end
    return nil, k .. " must be a non-empty string (at most " .. MAX_ID .. " bytes) or an integer"
  elseif want == "integer" then
    if math.type(v) == "integer" then return v end
    return nil, k .. " must be an integer"
  elseif type(v) ~= want then
    return nil, k .. " must be a " .. want
  elseif k == "queue" and #v > MAX_ID then
    return nil, k .. " must be at most " .. MAX_ID .. " bytes"
  elseif k == "reason" then
    return clip(v)
  end
  return v
end

local FIELDS = { { "action", "string" }, { "agent", "id" }, { "queue", "string" },
                 { "priority", "integer" }, { "reason", "string" } }

-- What a decision must look like; --> a fresh copy | nil, why.  Only
-- rawget on the policy's table: its metamethods never run in the host.
local function check_decision(d)
  if type(d) ~= "table" then return nil, "route returned " .. type(d) .. ", not a decision table" end
  local copy = {}
  for _, f in ipairs(FIELDS) do
    local v, why = field(d, f[1], f[2])
    if why then return nil, "decision: " .. why end
    copy[f[1]] = v
  end
  local action = copy.action
  if not ACTIONS[action] then return nil, "unknown action " .. tostring(action) end
  if action == "assign" and copy.agent == nil then return nil, "assign without an agent" end
  if action == "overflow" and copy.queue == nil then return nil, "overflow without a queue" end
  if copy.queue == "" then return nil, "decision: queue must not be empty" end
  return copy
end

-- The read-only view of the call center a policy gets, and its logger.
local function make_ctx(self, state)
  local cc = self.cc
  -- results are copied: the policy never holds a host table (error
  -- objects share one metatable, which a policy could otherwise change)
  local function reader(method)
    return function(_, q)
      local res, err = cc[method](cc, plain(q))
      return plain(res), plain(err)
    end
  end
  -- an empty proxy: every assignment reaches __newindex
  local view = setmetatable({}, {
    __index = { available_agents = reader("available_agents"), waiting = reader("waiting"), stats = reader("stats") },
    __newindex = function() error("ctx.cc is read-only", 2) end,
    __metatable = false,
  })
  local log = self.log
  return {
    cc = view,
    state = state,
    log = function(...)
      local parts = table.pack(...)
      for i = 1, parts.n do parts[i] = tostring(parts[i]) end
      log(clip(table.concat(parts, " ", 1, parts.n)))
    end,
    now = function() return cc:now() end,  -- the call center's clock (ms)
  }
end

local function signature(path)
  local mtime, size, ino = core.stat(path)
  if not mtime then return nil, size end
  return mtime .. ":" .. size .. ":" .. ino
end

-- Build a version from the file's current text; --> version | nil, why
local function load_version(self)
  local sig, serr = signature(self.path)
  if not sig then return nil, serr, nil end
  local env = sandbox.environment()
  local chunk, err, text = sandbox.loadfile(self.path, env)
  if not chunk then return nil, err, sig end
  local ok, policy = sandbox.run(self.budget, chunk)
  if not ok then return nil, "loading: " .. policy, sig end
  if type(policy) ~= "table" then return nil, "the file must return a table, not " .. type(policy), sig end
  local route = rawget(policy, "route")
  if type(route) ~= "function" then return nil, "the policy has no route function", sig end
  local name = rawget(policy, "name")
  if name ~= nil and (type(name) ~= "string" or name == "" or #name > MAX_ID) then
    return nil, "name must be a non-empty string of at most " .. MAX_ID .. " bytes", sig
  end
  name = name or self.path:match("([^/]+)%.lua$") or self.path
  local version = rawget(policy, "version")
  if math.type(version) == "integer" then version = tostring(version) end
  if version ~= nil and (type(version) ~= "string" or version == "" or #version > MAX_ID) then
    return nil, "version must be a non-empty string (at most " .. MAX_ID .. " bytes) or an integer", sig
  end
  local v = {
    name = name,
    version = version or core.sha256(text):sub(1, 12),
    route = route,
    signature = sig,
    loaded_at = core.time_ms(),
  }
  self.states[name] = self.states[name] or {}
  v.ctx = make_ctx(self, self.states[name])
  for _, hook in ipairs { "init", "self_test" } do
    local f = rawget(policy, hook)
    if f ~= nil then
      if type(f) ~= "function" then return nil, hook .. " must be a function", sig end
      local hok, res, why = sandbox.run(self.budget, f, v.ctx)
      if not hok then return nil, hook .. ": " .. res, sig end
      if hook == "self_test" and res == false then
        return nil, "self_test failed" .. (why ~= nil and (": " .. sandbox.describe(why)) or ""), sig
      end
    end
  end
  return v, nil, sig
end

-- router:reload() --> true | nil, err
-- Loading may wait for the database (init, self_test) while other routes
-- run; a load that ends after a later one started is not swapped in.
function Router:reload()
  self.generation = self.generation + 1
  local gen = self.generation
  self.loading = true
  local v, why, sig = load_version(self)
  if gen ~= self.generation then return nil, sb.error { class = "policy", message = "superseded by a later reload" } end
  self.loading = false
  self.checked_sig = sig
  if not v then
    why = clip(why)
    self.failures = self.failures + 1
    self.last_error = why
    self.log("policy " .. self.path .. " rejected: " .. tostring(why))
    return nil, sb.error { class = "policy", message = tostring(why) }
  end
  self.active = v  -- the swap: routes already running keep their version
  self.reloads = self.reloads + 1
  self.last_error = nil
  self.versions[v.name .. "@" .. v.version] = true
  return true
end

local function maybe_reload(self)
  if self.mode ~= "auto" or self.loading then return end
  local now = core.now()
  if now - self.checked_at < self.check_interval then return end
  self.checked_at = now
  local sig = signature(self.path)
  if sig and sig ~= self.checked_sig then self:reload() end
end

-- One run of the policy; --> decision | nil, why
local function ask(self, v, call)
  local ok, d = sandbox.run(self.budget, v.route, plain(call), v.ctx)
  if not ok then return nil, d end
  return check_decision(d)  -- checked and copied in the host
end

local function fallback(self, v, why)
  why = clip(why)
  self.fallbacks = self.fallbacks + 1
  self.last_error = why
  self.log("policy " .. (v and v.name or "?") .. " failed, fallback used: " .. tostring(why))
  local d = plain(self.fallback)
  d.fallback = true
  d.reason = d.reason or why
  if v then d.policy, d.policy_version = v.name, v.version end
  return d
end

-- router:route(call) --> decision | nil, err
-- call: { id (the waiting call's session id), queue, caller, skills, priority, waited_ms }
function Router:route(call)
  if type(call) ~= "table" then error("bad argument #1 to 'route' (table expected, got " .. type(call) .. ")", 2) end
  if call.id == nil then error("bad argument #1 to 'route' (call.id missing)", 2) end
  maybe_reload(self)
  local v = self.active
  self.routed = self.routed + 1
  for attempt = 1, self.max_attempts do
    local d, why = ask(self, v, call)
    if not d then return fallback(self, v, why) end
    d.policy, d.policy_version = v.name, v.version
    if d.action ~= "assign" then return d end
    local a, err = self.cc:assign(call.id, d.agent, { policy_name = v.name, policy_version = v.version })
    if a then
      d.assignment = a
      return d
    end
    if err.class ~= "conflict" then return nil, err end
    -- the call itself is gone (answered by an agent's pull, abandoned):
    -- asking the policy again cannot help
    if err.reason == "not_waiting" then return nil, err end
    self.conflicts = self.conflicts + 1  -- the agent was taken: ask again
    if attempt == self.max_attempts then
      return fallback(self, v, "no assignment after " .. attempt .. " conflicts")
    end
  end
end

-- router:status() --> a snapshot table
function Router:status()
  local v = self.active
  local versions = {}
  for k in pairs(self.versions) do versions[#versions + 1] = k end
  table.sort(versions)
  return {
    name = v.name, version = v.version, loaded_at = v.loaded_at, path = self.path,
    reloads = self.reloads, failures = self.failures, last_error = self.last_error,
    routed = self.routed, fallbacks = self.fallbacks, conflicts = self.conflicts,
    versions = versions,
  }
end

local function default_log(msg) io.stderr:write("switchboard.router: ", msg, "\n") end

-- sb.router{ db=, policy=PATH, reload="auto"|"manual", check_interval=1.0,
--            budget={instructions=, memory=, cpu=}, fallback={action="queue"},
--            max_attempts=3, log=function(msg) } --> router | nil, err
local function new(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'router' (table expected, got " .. type(opts) .. ")", 2) end
  if opts.db == nil and opts.cc == nil then bad("db", "a database is required") end
  if type(opts.policy) ~= "string" then bad("policy", "a file path is required") end
  local reload = opts.reload or "auto"
  if reload ~= "auto" and reload ~= "manual" then bad("reload", "\"auto\" or \"manual\" expected") end
  local budget = opts.budget or DEFAULT_BUDGET
  if type(budget) ~= "table" then bad("budget", "table expected") end
  local limits = {
    instructions = math.tointeger(budget.instructions or DEFAULT_BUDGET.instructions),
    memory = math.tointeger(budget.memory or DEFAULT_BUDGET.memory),
    cpu = budget.cpu,  -- seconds; nil: the sandbox's default (1 us per instruction)
  }
  if limits.cpu ~= nil and (type(limits.cpu) ~= "number" or not (limits.cpu > 0)) then
    bad("budget", "cpu must be a positive number of seconds")
  end
  if not limits.instructions or limits.instructions <= 0 then bad("budget", "instructions must be a positive integer") end
  if not limits.memory or limits.memory <= 0 then bad("budget", "memory must be a positive integer") end
  local attempts = opts.max_attempts or 3
  if math.type(attempts) ~= "integer" or attempts < 1 then bad("max_attempts", "a positive integer expected") end
  local interval = opts.check_interval or 1.0
  if type(interval) ~= "number" or interval < 0 then bad("check_interval", "a number >= 0 expected") end
  local fb = opts.fallback or { action = "queue" }
  if not check_decision(fb) or fb.action == "assign" then bad("fallback", "a queue, overflow or reject decision expected") end
  local self = setmetatable({
    cc = opts.cc or callcenter.new(opts.db),
    path = opts.policy,
    mode = reload,
    check_interval = interval,
    budget = limits,
    fallback = fb,
    max_attempts = attempts,
    log = opts.log or default_log,
    states = {}, versions = {},
    reloads = 0, failures = 0, routed = 0, fallbacks = 0, conflicts = 0,
    checked_at = core.now(), generation = 0, loading = false,
  }, Router)
  local ok, err = self:reload()
  if not ok then return nil, err end
  self.reloads = 0
  return self
end

return { new = new }
