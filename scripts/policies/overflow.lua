-- overflow.lua - routing policy: longest idle in the call's own queue; a
-- call that waited RULES[queue].after seconds moves to RULES[queue].to.
--
-- The router only returns the overflow decision; whoever runs the call
-- (the dialplan, the simulator) moves it to the other queue and routes it
-- again there, where the longest-idle agent of that queue takes it.  The
-- wait counts from the first enqueue, so a moved call keeps its age.
-- self_test refuses rules that loop (a -> b -> a).

local RULES = {
  sales   = { after = 30, to = "general" },
  support = { after = 45, to = "general" },
  billing = { after = 45, to = "general" },
}

local function route(call, ctx)
  local agents, err = ctx.cc:available_agents{ queue = call.queue, skills = call.skills, limit = 1 }
  if not agents then error("available_agents: " .. tostring(err and err.message), 0) end
  if agents[1] then return { action = "assign", agent = agents[1].id } end
  local rule = RULES[call.queue]
  if rule and (call.waited_ms or 0) >= rule.after * 1000 then
    return { action = "overflow", queue = rule.to }
  end
  return { action = "queue" }
end

return {
  name = "overflow",
  route = route,
  self_test = function(ctx)
    for from in pairs(RULES) do  -- every chain of rules must end
      local seen, q = {}, from
      while RULES[q] do
        if seen[q] then return false, "overflow rules loop through " .. q end
        seen[q] = true
        q = RULES[q].to
      end
    end
    local d = route({ id = "self-test", queue = "self-test", skills = { ["self-test"] = 1 }, waited_ms = 0 }, ctx)
    return d.action == "queue", "a call no agent can take should wait, got " .. tostring(d.action)
  end,
}
