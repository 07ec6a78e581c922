-- round_robin.lua - routing policy: free agents take turns, in order of
-- their ids, per queue.
--
-- The last agent given a call of each queue is kept in ctx.state, which
-- survives reloads of a policy with the same name, so a new version goes
-- on where the old one stopped.  The state is this router's (this
-- process's) only: several routing processes each keep their own turn.

local function route(call, ctx)
  local agents, err = ctx.cc:available_agents{ queue = call.queue, skills = call.skills }
  if not agents then error("available_agents: " .. tostring(err and err.message), 0) end
  if not agents[1] then return { action = "queue" } end
  local last = ctx.state.last[call.queue]
  local pick, first
  for _, a in ipairs(agents) do  -- the smallest id after `last`, else the smallest id
    local id = tostring(a.id)
    if not first or id < first then first = id end
    if last and id > last and (not pick or id < pick) then pick = id end
  end
  pick = pick or first
  ctx.state.last[call.queue] = pick
  return { action = "assign", agent = pick }
end

return {
  name = "round-robin",
  route = route,
  init = function(ctx) ctx.state.last = ctx.state.last or {} end,
  self_test = function(ctx)
    local d = route({ id = "self-test", queue = "self-test", skills = { ["self-test"] = 1 }, waited_ms = 0 }, ctx)
    return d.action == "queue", "a call no agent can take should wait, got " .. tostring(d.action)
  end,
}
