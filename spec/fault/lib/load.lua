-- spec/fault/lib/load.lua - the assignment load that faults 1 and 2 run
-- while their chaos task breaks things, and its verification.
--
-- Owns: TASKS coroutines assigning calls 1..N on ONE db (never reopened),
-- the way a routing script handles failures (connection error: retry with
-- a short backoff; unknown outcome: resolve by the call's unique id, never
-- guess), a watchdog that fails the run when a call stays in flight longer
-- than `hang` seconds, and the checks afterwards: no call acknowledged
-- twice, agents' current_calls sum = active calls, every acknowledged
-- assignment present, nothing present that the script was told had failed.
--
--   local L = require "load"
--   local run = L.new{ m = model, calls = N, tasks = 100, agents = 100,
--                      maxtry = 30, hang = 30, on_error = fn(err) }
--   sb.spawn(chaos)  -- uses run.finished, run.rec:fault()
--   run:start(); sb.run()
--   local v = run:verify()  --> { dups, lost, phantom, assigned, ... }
local sb = require "switchboard"
local F = require "fault"
local A = require "assign"

local L = {}
local R = {}
R.__index = R

function L.new(o)
  local run = setmetatable({
    m = o.m, N = o.calls, tasks = o.tasks or 100, agents = o.agents or 100,
    maxtry = o.maxtry or 30, hang = o.hang or F.T(30), on_error = o.on_error,
    rec = F.recovery(), outcome = {}, acks = {}, inflight = {},
    stats = { errors = 0, unknown = 0, resolved_committed = 0, resolved_rolled_back = 0,
              reported = 0, unexpected = 0 },
    by_class = {}, next_i = 0, finished = 0, t_start = F.now(),
  }, R)
  return run
end

function R:note_error(err)
  self.stats.errors = self.stats.errors + 1
  local t = type(err) == "table" and err or {}
  local k = (t.class or "?") .. (t.unknown_outcome and "/unknown" or "")
  self.by_class[k] = (self.by_class[k] or 0) + 1
  if self.by_class[k] <= 3 then F.log("error (%s): %s", k, F.errstr(err)) end
  if self.on_error then self.on_error(err) end
end

-- The call's fate after an unknown outcome: ask the database (bounded).
function R:resolve(call)
  local deadline = F.now() + F.T(60)
  while F.now() < deadline do
    local owner, err = self.m:lookup(call)
    if owner ~= nil then return owner end
    self:note_error(err)
    sb.sleep(0.05)
  end
  return nil
end

function R:handle(i)
  local call, agent = A.call(i), A.agent((i - 1) % self.agents + 1)
  local st = self.stats
  for attempt = 1, self.maxtry do
    local started = F.now()
    self.inflight[call] = started
    local ok, err = self.m:assign(call, agent)
    self.inflight[call] = nil
    if ok then
      self.acks[call] = (self.acks[call] or 0) + 1
      self.outcome[call] = "acked"
      self.rec:success(started)
      return
    end
    self:note_error(err)
    local t = type(err) == "table" and err or {}
    if t.class == "conflict" then
      -- only possible if an earlier attempt, reported as failed, committed
      local owner = self:resolve(call)
      F.check(false, "%s: conflict on attempt %d (committed earlier: %s)", call, attempt, tostring(owner))
      st.unexpected = st.unexpected + 1
      self.outcome[call] = owner and "resolved" or "reported"
      return
    elseif t.class == "connection" or t.retryable then
      if t.unknown_outcome then
        st.unknown = st.unknown + 1
        local owner = self:resolve(call)
        if owner == nil then
          F.check(false, "%s: could not resolve an unknown outcome", call)
          self.outcome[call] = "reported"
          return
        elseif owner then
          F.check(owner == agent, "%s: resolved to agent %s, wanted %s", call, owner, agent)
          st.resolved_committed = st.resolved_committed + 1
          self.outcome[call] = "resolved"
          self.rec:success(started)
          return
        end
        st.resolved_rolled_back = st.resolved_rolled_back + 1
      end
      sb.sleep(math.min(0.01 * attempt, 0.2))
    else
      F.check(false, "%s: unexpected error: %s", call, F.errstr(err))
      st.unexpected = st.unexpected + 1
      self.outcome[call] = "reported"
      return
    end
  end
  st.reported = st.reported + 1
  self.outcome[call] = "reported"
end

-- Spawn the workers and the watchdog (call before sb.run()).
function R:start(row)
  for _ = 1, self.tasks do
    sb.spawn(function()
      while self.next_i < self.N do
        self.next_i = self.next_i + 1
        self:handle(self.next_i)
        self.finished = self.finished + 1
      end
    end)
  end
  sb.spawn(function()
    while self.finished < self.N do
      sb.sleep(0.5)
      local now = F.now()
      for call, t in pairs(self.inflight) do
        if now - t > self.hang then
          F.check(false, "%s in flight for %.0f s: hung", call, now - t)
          F.row(row or {})
          F.row{ note = "HUNG" }
          F.finish()
        end
      end
    end
  end)
end

function R:done() return self.finished >= self.N end

-- A verification query, retried while the db reconnects after a fault that
-- landed at the very end of the load (bounded: 30 s).  --> its value, and
-- when the attempt that succeeded started.
local function settled(fn)
  local deadline = F.now() + F.T(30)
  while true do
    local started = F.now()
    local v, err = fn()
    if v ~= nil or F.now() > deadline then return assert(v, err), started end
    sb.sleep(0.1)
  end
end

-- Checks after the load (the model's db must have recovered by itself).
function R:verify()
  local m, N = self.m, self.N
  local tot, started = settled(function() return m:totals() end)
  -- a fault during the last calls is followed by this success on the same
  -- db (a load can end while a server restart is still running)
  self.rec:success(started)
  local in_db = settled(function() return m:active() end)
  local v = { dups = 0, lost = 0, phantom = 0, assigned = 0, elapsed = F.now() - self.t_start }
  for i = 1, N do
    local call = A.call(i)
    if (self.acks[call] or 0) > 1 then v.dups = v.dups + 1 end
    local o = self.outcome[call]
    if o == "acked" or o == "resolved" then
      v.assigned = v.assigned + 1
      if not in_db[call] then v.lost = v.lost + 1; F.log("LOST: %s", call) end
    elseif in_db[call] then
      v.phantom = v.phantom + 1
      F.log("PHANTOM: %s is assigned but the script was told it failed", call)
    end
    F.check(o ~= nil, "%s was never finished", call)
  end
  v.dups = v.dups + math.max(0, tot.current - tot.active)
  F.check(v.dups == 0, "%d duplicates (current_calls sum %d, active %d)", v.dups, tot.current, tot.active)
  F.check(v.lost == 0, "%d acknowledged assignments missing", v.lost)
  F.check(v.phantom == 0, "%d assignments the script was told had failed", v.phantom)
  F.check(tot.active == v.assigned, "active calls %d, assigned %d", tot.active, v.assigned)
  F.check(tot.waiting == N - v.assigned, "waiting %d, expected %d", tot.waiting, N - v.assigned)
  F.check(self.rec:unrecovered() == 0, "%d faults never followed by a success", self.rec:unrecovered())
  local classes = {}
  for k, n in pairs(self.by_class) do classes[#classes + 1] = k .. "=" .. n end
  table.sort(classes)
  local st = self.stats
  F.log("load: %d calls in %.1f s (model %s); assigned %d (after unknown outcome: %d committed, %d rolled back), " ..
        "reported %d; errors: %s", N, v.elapsed, m.kind, v.assigned, st.resolved_committed,
        st.resolved_rolled_back, st.reported, table.concat(classes, " "))
  return v
end

return L
