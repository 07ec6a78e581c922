-- longest_idle.lua - routing policy: the free agent idle the longest.
--
-- ctx.cc:available_agents lists the agents who can take the call now
-- (AVAILABLE, out of wrap-up, capacity left, in the call's queue, every
-- required skill at the level asked), fewest current calls first and then
-- longest idle first (available_since: when the last wrap-up ended).  So
-- the first row is the longest-idle free agent.  Nobody free: the call
-- waits in its queue, and the first agent to finish wrap-up pulls it.

local function route(call, ctx)
  local agents, err = ctx.cc:available_agents{ queue = call.queue, skills = call.skills, limit = 1 }
  if not agents then error("available_agents: " .. tostring(err and err.message), 0) end
  if agents[1] then return { action = "assign", agent = agents[1].id } end
  return { action = "queue" }
end

return {
  name = "longest-idle",
  route = route,
  -- before a new version goes live: a call nobody can take must wait
  self_test = function(ctx)
    local d = route({ id = "self-test", queue = "self-test", skills = { ["self-test"] = 1 }, waited_ms = 0 }, ctx)
    return d.action == "queue", "a call no agent can take should wait, got " .. tostring(d.action)
  end,
}
