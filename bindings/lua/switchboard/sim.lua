-- switchboard/sim.lua - the call-flow simulator's engine (scripts/
-- switchboard-sim is its command line; sim_scenario.lua reads scenarios,
-- sim_report.lua prints the summary).
--
-- Owns: one run on the real stack.  A fresh call-center database (an
-- SQLite file in a temp dir, or a fresh schema on PostgreSQL), migrated;
-- the scenario's queues and agents; a router (sb.router, auto reload) on a
-- copy of the policy file that --reload-at overwrites mid-run; and tasks
-- in the built-in scheduler: one arrival task per queue (Poisson), one
-- task per call, agents' work carried by the task that got them a call.
--
-- Time: simulated seconds run `speed` times faster than real ones (100:
-- one simulated second is 10 ms).  The call center's clock (cc opts.now)
-- is the simulated one, so wrap-up, waits and records are in simulated
-- milliseconds; routing latency is measured in real microseconds.
--
-- A call's life: enqueue, then route; "assign" connects it (the router did
-- cc:assign); "queue" leaves it waiting (in another queue or priority if
-- the decision says so); "overflow" moves it and routes again at once;
-- "reject" ends it.  A waiting call routes again every `reroute` seconds
-- and abandons (cc:abandon) when its patience runs out.  An agent whose
-- call ended (cc:complete) does its wrap-up and then pulls the best
-- waiting call (cc:claim_next); with none, it stays AVAILABLE and the next
-- call routed finds it.  So a call waits while an agent is free only if
-- that agent cannot take it (queue, skills).
--
-- The run stops at `duration`: calls still waiting are counted as waiting,
-- calls being talked as answered.  Invariant, checked against the
-- database too: offered = answered + abandoned + rejected + waiting.
--
-- The database side (fresh SQLite file or PostgreSQL schema, counted
-- call-center operations, the two transitions the call-center API lacks,
-- the totals read back) is sim_db.lua's.

local sb = require "switchboard"
local core = require "switchboard.core"
local scenario = require "switchboard.sim_scenario"
local simdb = require "switchboard.sim_db"

local type, pairs, ipairs, tostring, error, math, string, table, io, os =
  type, pairs, ipairs, tostring, error, math, string, table, io, os

local M = {}

------------------------------------------------------------ randomness

-- splitmix64: one independent, seeded stream per use, so the calls a
-- scenario offers do not depend on how tasks interleave.
local function stream(seed)
  local x = seed
  return function()
    x = x + 0x9E3779B97F4A7C15
    local z = x
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 11) * 2.0 ^ -53  -- [0, 1)
  end
end

local function expo(r, mean) return -mean * math.log(1 - r()) end

local function draw_skills(r, skills)
  local out = {}
  for name, v in pairs(skills) do
    out[name] = type(v) == "table" and v[1] + math.floor(r() * (v[2] - v[1] + 1)) or v
  end
  return out
end

------------------------------------------------------------ the run

local Sim = {}
Sim.__index = Sim

-- simulated seconds since the traffic started (0 during setup)
function Sim:now()
  local t0 = self.t0
  if not t0 then return 0 end
  return (sb.now() - t0) * self.speed
end
function Sim:now_ms() return self.base_ms + math.floor(self:now() * 1000) end

-- sleep until simulated time t (at most until the end of the run)
function Sim:sleep_until(t)
  local dt = (math.min(t, self.stop) - self:now()) / self.speed
  if dt > 0 then sb.sleep(dt) end
end

function Sim:count(what, n) self.c[what] = (self.c[what] or 0) + (n or 1) end

function Sim:queue_stats(name)
  local q = self.q[name]
  if not q then
    q = { offered = 0, answered = 0, abandoned = 0, rejected = 0, overflowed_out = 0, within = 0, waits = {} }
    self.q[name] = q
  end
  return q
end

function Sim:in_flight(delta)
  self.flight = self.flight + delta
  if self.flight > self.max_flight then self.max_flight = self.flight end
end

function Sim:log(msg)
  self.logged = self.logged + 1
  if #self.logs < 50 then self.logs[#self.logs + 1] = string.format("[t=%.0fs] %s", self:now(), msg) end
end

-- One routing of a waiting call; --> decision | nil, err
function Sim:route(c)
  local call = { id = c.id, queue = c.where, caller = c.caller, skills = c.skills, priority = c.priority,
                 waited_ms = math.floor((self:now() - c.t0) * 1000) }
  local t = sb.now()
  local d, err = self.router:route(call)
  self.latency[#self.latency + 1] = (sb.now() - t) * 1e6
  self:count("routes")
  if d then
    local v = d.policy .. "@" .. d.policy_version
    self.decisions[v] = (self.decisions[v] or 0) + 1
    if d.fallback then  -- the policy failed, or every agent it chose was taken first
      self:count(tostring(d.reason):match("^no assignment after %d+ conflicts") and "fallbacks_conflicts"
                 or "fallbacks_policy_failed")
    end
  elseif err.class == "conflict" then
    self:count("routes_call_gone")  -- an agent pulled it meanwhile
  else
    self:count("route_errors")
    self:log("route " .. c.id .. ": " .. tostring(err))
  end
  return d, err
end

-- The call is connected to `agent` (assignment `a`).
function Sim:answer(c, a)
  c.state = "talking"
  local q = self:queue_stats(c.queue)
  q.answered = q.answered + 1
  local wait = a.wait_ms / 1000
  q.waits[#q.waits + 1] = wait
  if wait <= self.sc.queue_by_name[c.queue].service_level then q.within = q.within + 1 end
  self.answered, self.waiting, self.talking = self.answered + 1, self.waiting - 1, self.talking + 1
  local v = a.policy_name and (a.policy_name .. "@" .. tostring(a.policy_version)) or "(agent pull)"
  self.assigned_by[v] = (self.assigned_by[v] or 0) + 1
end

function Sim:abandon(c)
  local rec, err = self.cc:abandon(c.id)
  if not rec then
    if err.class ~= "not_found" then self:count("abandon_errors"); self:log("abandon: " .. tostring(err)) end
    return  -- an agent took it meanwhile: its task counts it
  end
  c.state = "abandoned"
  local q = self:queue_stats(c.queue)
  q.abandoned = q.abandoned + 1
  q.abandon_waits = (q.abandon_waits or 0) + rec.wait_ms / 1000
  self.abandoned, self.waiting = self.abandoned + 1, self.waiting - 1
  self:in_flight(-1)
end

-- Move a waiting call to another queue/priority; --> true if it moved
function Sim:move(c, queue, priority, overflow)
  self.ops.n = self.ops.n + 2
  local n, err = simdb.move(self.db, c.id, queue, priority)
  if not n then
    self:count("move_errors")
    self:log("move " .. c.id .. ": " .. tostring(err))
    return false
  end
  if n == 0 then return false end  -- not waiting any more
  c.where, c.priority, c.moves = queue, priority, c.moves + 1
  if overflow then
    self:count("overflowed")
    local q = self:queue_stats(c.queue)
    q.overflowed_out = q.overflowed_out + 1
  else
    self:count("requeued")
  end
  return true
end

function Sim:reject(c, d)
  self.ops.n = self.ops.n + 1
  local now = self:now_ms()
  local rec, err = simdb.reject(self.db, c.id, now, d.policy, d.policy_version)
  if not rec then
    if err then self:count("reject_errors"); self:log("reject " .. c.id .. ": " .. tostring(err)) end
    return
  end
  c.state = "rejected"
  local q = self:queue_stats(c.queue)
  q.rejected = q.rejected + 1
  self.rejected, self.waiting = self.rejected + 1, self.waiting - 1
  self:in_flight(-1)
end

-- The best waiting call for `agent` after its wrap-up; --> call, assignment | nil
function Sim:pull(agent)
  for _ = 1, 20 do
    local a, err = self.cc:claim_next(agent.id)
    if a then
      local c = self.calls[a.call_id]
      if c then return c, a end
      self:count("unknown_calls")
      return nil
    end
    if not err or err.reason ~= "agent_in_wrapup" then return nil end  -- nothing for it, or busy
    self:sleep_until(self:now() + 0.1)  -- clock rounding: wrap-up ends a moment later
    if self:now() >= self.stop then return nil end
  end
end

-- An agent's work from a connected call on: talk, complete, wrap-up,
-- perhaps a pause, pull the next call; until nothing waits for it.
function Sim:serve(agent, c, a)
  while c do
    self:answer(c, a)
    self:sleep_until(self:now() + c.talk)
    if self:now() >= self.stop then return end  -- still talking at the end
    local rec, err = self.cc:complete(c.id, { talk_ms = math.floor(c.talk * 1000) })
    if not rec then self:count("complete_errors"); self:log("complete " .. c.id .. ": " .. tostring(err)) end
    c.state = "done"
    self.talking = self.talking - 1
    self:in_flight(-1)
    self:sleep_until(self:now() + agent.wrapup + 0.01)
    if self:now() >= self.stop then return end
    local pause = agent.pause
    if pause and agent.rand() < pause.chance then
      self.cc:set_status(agent.id, "PAUSED", "break")
      self:sleep_until(self:now() + expo(agent.rand, pause.mean))
      self.cc:set_status(agent.id, "AVAILABLE")
      self:count("pauses")
      if self:now() >= self.stop then return end
    end
    c, a = self:pull(agent)
  end
end

-- One call, from arrival to its end (or the end of the run).
function Sim:call(c)
  -- counted before the enqueue returns: an agent may pull the call as soon
  -- as it is in the database, before this task runs again
  c.state = "waiting"
  self.offered, self.waiting = self.offered + 1, self.waiting + 1
  local q = self:queue_stats(c.queue)
  q.offered = q.offered + 1
  self:in_flight(1)
  local ok, err = self.cc:enqueue{ session_id = c.id, queue = c.queue, priority = c.priority,
                                   skills = c.skills, caller = c.caller }
  if not ok then  -- never offered
    c.state = "failed"
    self.offered, self.waiting, q.offered = self.offered - 1, self.waiting - 1, q.offered - 1
    self:in_flight(-1)
    self:count("enqueue_errors")
    self:log("enqueue " .. c.id .. ": " .. tostring(err))
    return
  end
  local deadline = c.t0 + c.patience
  while c.state == "waiting" do
    local d = self:route(c)
    if c.state ~= "waiting" then return end  -- pulled by an agent while we routed
    local again = false
    if d then
      local action = d.action
      if action == "assign" then
        return self:serve(self.agents[tostring(d.agent)], c, d.assignment)
      elseif action == "reject" then
        return self:reject(c, d)
      elseif action == "overflow" then
        again = c.moves < 5 and d.queue ~= c.where and self:move(c, d.queue, d.priority or c.priority, true)
      elseif (d.queue and d.queue ~= c.where) or (d.priority and d.priority ~= c.priority) then
        self:move(c, d.queue or c.where, d.priority or c.priority, false)
      end
    end
    if not again then
      self:sleep_until(math.min(self:now() + self.sc.reroute, deadline))
      if c.state ~= "waiting" or self:now() >= self.stop then return end
      if self:now() >= deadline then return self:abandon(c) end
    end
  end
end

-- Poisson arrivals of one queue until the end of the traffic.
function Sim:arrivals(qi, q)
  local r = stream(self.sc.seed * 1000003 + qi * 7919)
  local t, n = 0, 0
  while true do
    t = t + expo(r, 1 / q.rate)
    if t >= self.sc.duration then return end
    self:sleep_until(t)
    if self:now() >= self.stop then return end
    n = n + 1
    local c = {
      id = string.format("%s-%05d", q.name, n), queue = q.name, where = q.name, priority = q.priority,
      skills = draw_skills(r, q.skills), caller = string.format("+1555%07d", math.floor(r() * 1e7)),
      t0 = self:now(), patience = expo(r, q.patience), talk = expo(r, q.talk), moves = 0, state = "new",
    }
    self.calls[c.id] = c
    sb.spawn(self.call, self, c)
  end
end

-- --reload-at: at simulated second `at`, `file` replaces the active policy
-- (a new file renamed over it, so the router sees a new inode); then wait
-- for the router to take it or refuse it.
function Sim:reload_at(ev)
  self:sleep_until(ev.at)
  if self:now() >= self.stop then ev.result = "not reached"; return end
  local f, err = io.open(ev.file, "rb")
  local text = f and f:read("a")
  if f then f:close() end
  if not text then ev.result = "cannot read: " .. tostring(err); return end
  local tmp = self.active .. ".new"
  local out = assert(io.open(tmp, "wb"))
  out:write(text)
  out:close()
  local before = self.router:status()
  assert(os.rename(tmp, self.active))
  ev.done_at = self:now()
  repeat
    self:sleep_until(self:now() + 0.5)
    local st = self.router:status()
    if st.reloads > before.reloads then ev.result = "loaded " .. st.name .. "@" .. st.version; return end
    if st.failures > before.failures then ev.result = "rejected: " .. tostring(st.last_error); return end
  until self:now() >= self.stop
  ev.result = "not picked up before the end"
end

function Sim:progress()
  local out = self.progress_out
  local width = 30
  while true do
    local t = math.min(self:now(), self.stop)
    local done = math.floor(width * t / self.stop + 0.5)
    local st = self.router:status()
    out:write(string.format("\r\27[K[%s%s] %3d%%  t=%4.0fs  in flight %4d  waiting %4d  answered %5d  abandoned %4d  %s@%s",
      string.rep("#", done), string.rep("-", width - done), math.floor(100 * t / self.stop), t, self.flight,
      self.waiting, self.answered, self.abandoned, st.name, st.version))
    out:flush()
    if t >= self.stop then break end
    sb.sleep(0.2)
  end
  out:write("\n")
  out:flush()
end

------------------------------------------------------------ setup and totals

local function setup_call_center(self)
  local sc = self.sc
  for _, q in ipairs(sc.queues) do
    assert(self.cc:add_queue{ name = q.name, service_level_seconds = math.floor(q.service_level) })
  end
  local r = stream(sc.seed * 7 + 1)
  for gi, g in ipairs(sc.agents) do
    for i = 1, g.count do
      local id = string.format("%s-%03d", g.prefix, i)
      assert(not self.agents[id], "agent id " .. id .. " given twice (prefix of agents[" .. gi .. "])")
      assert(self.cc:add_agent{ id = id, name = id, max_calls = g.max_calls, wrapup_seconds = math.floor(g.wrapup),
                                status = "OFFLINE", skills = draw_skills(r, g.skills), queues = g.queues })
      self.agents[id] = { id = id, wrapup = math.floor(g.wrapup), pause = g.pause,
                          rand = stream(sc.seed * 104729 + gi * 1009 + i) }
    end
  end
end

-- shift start: everybody AVAILABLE
local function log_in(self)
  for id in pairs(self.agents) do assert(self.cc:set_status(id, "AVAILABLE", "shift start")) end
end

local function percentile(sorted, p)
  if #sorted == 0 then return nil end
  return sorted[math.max(1, math.ceil(p * #sorted))]
end

local function summary(self, real, where)
  local sc, st = self.sc, self.router:status()
  table.sort(self.latency)
  local queues = {}
  for _, qdef in ipairs(sc.queues) do
    local q = self:queue_stats(qdef.name)
    table.sort(q.waits)
    local sum = 0
    for _, w in ipairs(q.waits) do sum = sum + w end
    local finished = q.answered + q.abandoned + q.rejected
    queues[#queues + 1] = {
      name = qdef.name, offered = q.offered, answered = q.answered, abandoned = q.abandoned,
      rejected = q.rejected, overflowed_out = q.overflowed_out,
      waiting = q.offered - finished,
      service_level_seconds = qdef.service_level,
      service_level_pct = finished > 0 and 100 * q.within / finished or nil,
      avg_wait_s = #q.waits > 0 and sum / #q.waits or nil,
      p90_wait_s = percentile(q.waits, 0.9),
    }
  end
  local db = simdb.totals(self.db)
  local calls = { offered = self.offered, answered = self.answered, abandoned = self.abandoned,
                  rejected = self.rejected, waiting = self.waiting, talking_at_end = self.talking,
                  overflowed = self.c.overflowed or 0, max_in_flight = self.max_flight }
  calls.invariant_ok = calls.offered == calls.answered + calls.abandoned + calls.rejected + calls.waiting
  local matches = db.offered == calls.offered and db.answered == calls.answered and db.abandoned == calls.abandoned
    and db.rejected == calls.rejected and db.waiting == calls.waiting
  local versions = {}
  for v, n in pairs(self.decisions) do versions[#versions + 1] = { version = v, routes = n } end
  table.sort(versions, function(a, b) return a.version < b.version end)
  local ops = {}
  for k, v in pairs(self.ops) do if k ~= "n" then ops[k] = v end end
  return {
    scenario = sc.name, backend = self.db:backend(), database = where, policy = self.policy_path,
    speed = self.speed, simulated_seconds = sc.duration, real_seconds = real, seed = sc.seed,
    calls = calls,
    queues = queues,
    routing = {
      routes = self.c.routes or 0,
      latency_us = { p50 = percentile(self.latency, 0.5), p99 = percentile(self.latency, 0.99),
                     max = self.latency[#self.latency] },
      conflicts_retried = st.conflicts, fallbacks = st.fallbacks,
      fallbacks_policy_failed = self.c.fallbacks_policy_failed or 0,
      calls_gone = self.c.routes_call_gone or 0, errors = self.c.route_errors or 0,
      reloads = st.reloads, reload_failures = st.failures, last_error = st.last_error,
      active_version = st.name .. "@" .. st.version,
    },
    database_ops = { total = self.ops.n, per_second = self.ops.n / real, by_call = ops },
    policy_versions = { routes = versions, calls = db.versions },
    reload_events = self.reloads,
    database_check = { offered = db.offered, answered = db.answered, abandoned = db.abandoned,
                       rejected = db.rejected, waiting = db.waiting, matches = matches },
    errors = { task_failures = self.task_failures, router_log_lines = self.logged, log = self.logs,
               other = self.c },
    ok = calls.invariant_ok and matches and self.task_failures == 0,
  }
end

-- M.run{ scenario = PATH or table, db = URL (default: SQLite in a temp
-- dir), policy = PATH (default: the scenario's), speed = 100,
-- duration = seconds, seed = n, reload_at = { { at =, file = } },
-- progress = false | file handle, keep = false, check_interval = 1 simulated s }
-- --> summary table | nil, err
function M.run(opts)
  local sc, err
  if type(opts.scenario) == "table" then
    local ok, res = pcall(scenario.check, opts.scenario)
    if not ok then return nil, "scenario: " .. tostring(res) end
    sc = res
  else
    sc, err = scenario.load(opts.scenario)
    if not sc then return nil, err end
  end
  sc.duration = opts.duration or sc.duration
  sc.seed = opts.seed or sc.seed
  local policy = opts.policy or sc.policy
  if not policy then return nil, "no policy: give one in the scenario or as an option" end
  local speed = opts.speed or 100
  if type(speed) ~= "number" or speed <= 0 then return nil, "speed must be a positive number" end

  local dir = simdb.tmpdir()
  local db, where, cleanup = simdb.open(opts.db, dir, opts.keep)
  if not db then os.remove(dir); return nil, where end
  local self = setmetatable({
    sc = sc, speed = speed, db = db, policy_path = policy, active = dir .. "/policy.lua",
    ops = { n = 0 }, c = {}, q = {}, calls = {}, agents = {}, latency = {}, decisions = {}, assigned_by = {},
    offered = 0, answered = 0, abandoned = 0, rejected = 0, waiting = 0, talking = 0,
    flight = 0, max_flight = 0, logs = {}, logged = 0, task_failures = 0, reloads = {},
  }, Sim)
  local function finish(...)
    db:close()
    cleanup()
    os.remove(self.active)
    if not opts.keep then os.remove(dir) end
    return ...
  end

  local ok, res = pcall(function()
    self.base_ms = core.time_ms()  -- simulated second 0, in the call center's clock
    self.stop = sc.duration
    local m, merr = sb.migrate(db)
    if not m then error("migrate: " .. tostring(merr), 0) end
    self.cc = simdb.counting(sb.callcenter(db, { now = function() return self:now_ms() end }), self.ops)
    local src = assert(io.open(policy, "rb"))
    local text = src:read("a")
    src:close()
    local out = assert(io.open(self.active, "wb"))
    out:write(text)
    out:close()
    local router, rerr = sb.router{ cc = self.cc, policy = self.active, reload = "auto",
                                    check_interval = opts.check_interval or 1 / speed, max_attempts = 5,
                                    log = function(msg) self:log(msg) end }
    if not router then error("policy " .. policy .. ": " .. tostring(rerr), 0) end
    self.router = router
    setup_call_center(self)
    log_in(self)
    self.ops.n = 0  -- setup is not traffic
    for k in pairs(self.ops) do if k ~= "n" then self.ops[k] = nil end end
  end)
  if not ok then return finish(nil, res) end

  local prev_handler = sb.on_error
  sb.on_error = function(e, tb)
    self.task_failures = self.task_failures + 1
    self:log("task failed: " .. tostring(tb or e))
  end
  -- traffic starts now: simulated second 0
  self.t0 = sb.now()
  for i, q in ipairs(sc.queues) do
    if q.rate > 0 then sb.spawn(self.arrivals, self, i, q) end
  end
  for _, ev in ipairs(opts.reload_at or {}) do
    local e = { at = ev.at, file = ev.file }
    self.reloads[#self.reloads + 1] = e
    sb.spawn(self.reload_at, self, e)
  end
  if opts.progress then
    self.progress_out = opts.progress
    sb.spawn(self.progress, self)
  end
  local rok, rerr = pcall(sb.run)
  sb.on_error = prev_handler
  local real = sb.now() - self.t0
  if not rok then return finish(nil, "the run failed: " .. tostring(rerr)) end
  local sok, s = pcall(summary, self, real, where)
  if not sok then return finish(nil, "summary: " .. tostring(s)) end
  return finish(s)
end

M.stream = stream  -- for the specs
return M
