-- least_calls.lua - routing policy: the free agent who was given the
-- fewest calls so far, then the fewest current calls, then idle longest.
--
-- The call center's reads do not count calls per agent, so this policy
-- counts its own assignments in ctx.state.taken (kept across reloads of
-- the same policy name; per router process).  It looks at the first LIMIT
-- free agents only, in the call center's order (fewest current calls,
-- then longest idle), which also breaks ties.

local LIMIT = 50

local function route(call, ctx)
  local agents, err = ctx.cc:available_agents{ queue = call.queue, skills = call.skills, limit = LIMIT }
  if not agents then error("available_agents: " .. tostring(err and err.message), 0) end
  local taken = ctx.state.taken
  local best, fewest
  for _, a in ipairs(agents) do
    local n = taken[a.id] or 0
    if not best or n < fewest then best, fewest = a, n end
  end
  if not best then return { action = "queue" } end
  taken[best.id] = fewest + 1  -- counted when chosen: a lost race costs one
  return { action = "assign", agent = best.id }
end

return {
  name = "least-calls",
  route = route,
  init = function(ctx) ctx.state.taken = ctx.state.taken or {} end,
  self_test = function(ctx)
    local d = route({ id = "self-test", queue = "self-test", skills = { ["self-test"] = 1 }, waited_ms = 0 }, ctx)
    return d.action == "queue", "a call no agent can take should wait, got " .. tostring(d.action)
  end,
}
