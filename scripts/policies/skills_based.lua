-- skills_based.lua - routing policy: the free agent with the best level in
-- the call's main skill, then the one idle the longest.
--
-- The main skill is the one the call asks at the highest level (ties: the
-- first by name).  ctx.cc:available_agents does not return levels, so the
-- best level is found by asking "anybody free with level >= L?" in a
-- binary search over L (levels 0..MAX_LEVEL): about log2(MAX_LEVEL) + 1
-- queries.  The answer at the best level is the longest-idle agent there.
-- Calls without skills go to the longest-idle agent of the queue.

local MAX_LEVEL = 10  -- the highest skill level in use

-- skills as { name = level }: array entries ({ "english" }) mean level 1
local function levels(skills)
  local map = {}
  for k, v in pairs(skills or {}) do
    if math.type(k) == "integer" then map[v] = 1 else map[k] = v end
  end
  return map
end

-- the skill asked at the highest level, and that level
local function main_skill(skills)
  local best, level
  for name, l in pairs(skills) do
    if not best or l > level or (l == level and name < best) then best, level = name, l end
  end
  return best, level
end

-- the longest-idle free agent with `skill` at `level` or more (nil: none)
local function free_agent(ctx, call, skills, skill, level)
  local want = {}
  for name, l in pairs(skills) do want[name] = l end
  if skill then want[skill] = level end
  local agents, err = ctx.cc:available_agents{ queue = call.queue, skills = want, limit = 1 }
  if not agents then error("available_agents: " .. tostring(err and err.message), 0) end
  return agents[1]
end

local function route(call, ctx)
  local skills = levels(call.skills)
  local skill, lo = main_skill(skills)
  local best = free_agent(ctx, call, skills, skill, lo)
  if not best then return { action = "queue" } end
  local hi = math.max(lo or 0, MAX_LEVEL)
  while skill and lo < hi do  -- invariant: somebody free at lo
    local mid = (lo + hi + 1) // 2
    local a = free_agent(ctx, call, skills, skill, mid)
    if a then best, lo = a, mid else hi = mid - 1 end
  end
  return { action = "assign", agent = best.id }
end

return {
  name = "skills-based",
  route = route,
  self_test = function(ctx)
    local skill, level = main_skill(levels{ b = 2, a = 2, c = 1, "d" })
    if skill ~= "a" or level ~= 2 then return false, "main_skill picked " .. tostring(skill) end
    local d = route({ id = "self-test", queue = "self-test", skills = { ["self-test"] = 1 }, waited_ms = 0 }, ctx)
    return d.action == "queue", "a call no agent can take should wait, got " .. tostring(d.action)
  end,
}
