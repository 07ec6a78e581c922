-- spec/fault/hostile_policy.lua - bad input of issue #6: hostile routing
-- policies (infinite loops, memory bombs, sandbox escapes, deep recursion,
-- giant return values).  STUB: this needs issue #4's sandboxed router
-- (sb.router with instruction and memory budgets), which is not finished;
-- it writes a "stub" row that says so, and fails nothing.
--
-- TODO(#4): once sb.router lands, run each hostile policy through
-- router:route(call) with budget = { instructions = 1e6, memory = 8 MiB }
-- and check: the call gets the fallback decision, router:status() records
-- the failure, the host process lives, memory returns to its level.
local dir = os.getenv("SB_FAULT_ROWS")
if dir then
  local f = assert(io.open(dir .. "/h_hostile_policy", "w"))
  f:write("hostile policies (#4 sandbox)\t-\t-\t-\t-\t-\tstub\tneeds #4 (sandboxed router): not run yet\n")
  f:close()
end
print("hostile_policy: stub (needs #4)")
