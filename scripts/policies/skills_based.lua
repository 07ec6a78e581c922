-- skills_based.lua - routing policy: the free agent with the best level in
-- the skills the call asks for, then the one idle the longest.
--
-- ctx.cc:available_agents returns, longest idle first, the agents who meet
-- every skill the call asks for, each with skill_level (the sum of its
-- levels in those skills).  The first agent with the highest skill_level
-- wins, so among equally skilled agents the longest idle one does.
-- Calls without skills go to the longest-idle agent of the queue.

local CANDIDATES = 50  -- how many free agents to compare

-- skills as { name = level }: array entries ({ "english" }) mean level 1
local function levels(skills)
  local map = {}
  for k, v in pairs(skills or {}) do
    if math.type(k) == "integer" then map[v] = 1 else map[k] = v end
  end
  return map
end

local function route(call, ctx)
  local agents, err = ctx.cc:available_agents{ queue = call.queue, skills = levels(call.skills),
                                               limit = CANDIDATES }
  if not agents then error("available_agents: " .. tostring(err and err.message), 0) end
  local best
  for _, a in ipairs(agents) do
    if not best or a.skill_level > best.skill_level then best = a end
  end
  if not best then return { action = "queue" } end
  return { action = "assign", agent = best.id }
end

return {
  name = "skills-based",
  route = route,
  self_test = function(ctx)
    local l = levels{ b = 2, "d" }
    if l.b ~= 2 or l.d ~= 1 then return false, "levels() mapped the skills wrongly" end
    local d = route({ id = "self-test", queue = "self-test", skills = { ["self-test"] = 1 }, waited_ms = 0 }, ctx)
    return d.action == "queue", "a call no agent can take should wait, got " .. tostring(d.action)
  end,
}
