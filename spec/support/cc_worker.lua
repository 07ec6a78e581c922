-- spec/support/cc_worker.lua - one OS process of
-- spec/callcenter_concurrency_spec.lua: SBSPEC_TASKS switchboard tasks that
-- route waiting calls to agents with cc:assign and cc:claim_next, while
-- completing calls, abandoning some, completing other tasks' calls and
-- changing agents' status, until no call waits or SBSPEC_BUDGET seconds
-- passed.  Prints "ASSIGNED <call id>" per assignment it won and one
-- "RESULT k=v ..." line; exits 1 if any task met an unexpected error (any
-- refusal other than conflict / not_found, or a database error).
local sb = require "switchboard"

local url = assert(os.getenv("SBSPEC_URL"), "SBSPEC_URL")
local ntasks = math.tointeger(tonumber(os.getenv("SBSPEC_TASKS") or "50"))
local nagents = math.tointeger(tonumber(os.getenv("SBSPEC_AGENTS") or "50"))
local budget = tonumber(os.getenv("SBSPEC_BUDGET") or "30")
math.randomseed(tonumber(os.getenv("SBSPEC_SEED") or "1"))

local db = assert(sb.open(url, { pool = 6, busy_timeout = 60000 }))
local cc = sb.callcenter(db)

local n = { assigned = 0, claimed = 0, conflicts = 0, claim_conflicts = 0, empty_claims = 0, completed = 0,
            complete_races = 0, abandoned = 0, abandon_races = 0, status_changes = 0 }
local won = {}
local failed = false
sb.on_error = function(_, tb)
  failed = true
  io.stderr:write("task failed: ", tb, "\n")
end

-- A refusal of one of `classes` is part of the game; anything else fails the task.
local function refused(err, ...)
  for _, class in ipairs({ ... }) do
    if err.class == class then return true end
  end
  error(err, 0)
end

local function pick(list)
  if #list == 0 then return nil end
  local i = math.random(#list)
  return list[i], i
end

local function remove(list, i)
  list[i] = list[#list]
  list[#list] = nil
end

local deadline = sb.now() + budget
local drained = false  -- a task saw no call waiting: all stop

local function worker()
  local mine = {}          -- calls this task holds (assigned, not completed)
  local calls, agents = {}, {}
  local paused             -- an agent this task took out of AVAILABLE
  local function won_call(a, list)
    n[list] = n[list] + 1
    won[#won + 1] = a.call_id
    mine[#mine + 1] = a.call_id
  end
  local function complete_own()
    local call, i = pick(mine)
    remove(mine, i)
    local rec, err = cc:complete(call)
    if rec then n.completed = n.completed + 1
    elseif refused(err, "not_found") then n.complete_races = n.complete_races + 1 end  -- another task completed it
  end

  local round = 0
  while sb.now() < deadline and not drained do
    round = round + 1
    if #calls == 0 or round % 10 == 0 then
      calls = assert(cc:waiting{ limit = 100 })
      if #calls == 0 then drained = true; break end  -- everything is routed: stop, keep what is active
    end
    local r = math.random()
    if paused then
      assert(cc:set_status(paused, "AVAILABLE"))
      paused = nil
    elseif r < 0.02 then
      paused = string.format("a%02d", math.random(nagents))
      assert(cc:set_status(paused, ({ "BUSY", "PAUSED", "OFFLINE" })[math.random(3)], "spec"))
      n.status_changes = n.status_changes + 1
    elseif r < 0.03 then                 -- a caller hangs up
      local call, i = pick(calls)
      remove(calls, i)
      local rec, err = cc:abandon(call.session_id)
      if rec then n.abandoned = n.abandoned + 1
      elseif refused(err, "not_found") then n.abandon_races = n.abandon_races + 1 end
    elseif r < 0.05 then                 -- complete somebody else's call
      local rows = assert(db:query("SELECT call_id FROM active_calls ORDER BY assigned_at LIMIT 5"))
      local row = pick(rows)
      if row then
        local rec, err = cc:complete(row.call_id)
        if rec then n.completed = n.completed + 1
        elseif refused(err, "not_found") then n.complete_races = n.complete_races + 1 end
      end
    elseif r < 0.40 and mine[1] then
      complete_own()
    elseif r < 0.50 then                 -- agent pull
      local a, err = cc:claim_next(string.format("a%02d", math.random(nagents)))
      if a then won_call(a, "claimed")
      elseif not err then n.empty_claims = n.empty_claims + 1
      elseif refused(err, "conflict") then n.claim_conflicts = n.claim_conflicts + 1 end
    else                                 -- route: pick a call and an agent; the pick may be stale
      if not agents[1] then agents = assert(cc:available_agents{ limit = 10 }) end
      if not agents[1] then              -- every agent busy: free a line, or wait a little
        if mine[1] then complete_own() else sb.sleep(0.002) end
      else
        local call, ci = pick(calls)
        local agent, ai = pick(agents)
        local a, err = cc:assign(call.session_id, agent.id, { policy_name = "spec-random", policy_version = "1" })
        if a then
          won_call(a, "assigned")
          remove(calls, ci)
        elseif refused(err, "conflict") then
          n.conflicts = n.conflicts + 1  -- pick again
          if err.reason == "not_waiting" then remove(calls, ci) end
        end
        remove(agents, ai)  -- its state changed either way: ask again next time
      end
    end
  end
  if paused then assert(cc:set_status(paused, "AVAILABLE")) end
end

for _ = 1, ntasks do sb.spawn(worker) end
sb.run()
db:close()

local out = {}
for i, id in ipairs(won) do out[i] = "ASSIGNED " .. id end
out[#out + 1] = "RESULT"
for _, k in ipairs({ "assigned", "claimed", "conflicts", "claim_conflicts", "empty_claims", "completed",
                     "complete_races", "abandoned", "abandon_races", "status_changes" }) do
  out[#out] = out[#out] .. " " .. k .. "=" .. n[k]
end
io.write(table.concat(out, "\n"), "\n")
os.exit(failed and 1 or 0)
