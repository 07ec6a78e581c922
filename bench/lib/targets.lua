-- bench/lib/targets.lua - issue #5's targets, as data.
--
-- Owns: which cell must reach which ratio against which raw C column
-- ("ref": the backend's reference raw C; "best": the best raw C
-- configuration of the same repetition), the routing p99 limits, and the
-- memory limit.  Does not own: measuring or printing (run.lua, report.lua).

local M = {}

M.cells = {
  sqlite = {
    sb_block = { update = { 0.95, "ref" }, assign = { 0.95, "ref" }, analytics = { 0.95, "ref" },
                 available = { 0.75, "ref" } },
    sb_256 = { update = { 0.8, "ref" }, assign = { 0.8, "ref" },
               available = { 1.0, "ref" }, analytics = { 1.0, "ref" } },
  },
  postgresql = {
    sb_block = { update = { 0.95, "ref" }, available = { 0.95, "ref" }, assign = { 0.95, "ref" },
                 assign1 = { 0.95, "ref" }, analytics = { 0.95, "ref" } },
    sb_256 = { update = { 0.9, "best" }, available = { 0.9, "best" }, assign = { 0.9, "best" },
               assign1 = { 0.9, "best" }, analytics = { 0.9, "best" } },
  },
}

-- Routing decision (issue #4), p99 with 256 calls in flight, microseconds:
-- the routing op's open-loop cell (bench/ops.lua's M.ops.routing.open_rate).
M.routing_p99_us = { sqlite = 1000, postgresql = 5000 }
M.routing_impl = "sb_calls"

-- Whole-process peak RSS with 10,000 requests in flight.
M.memory_mib = 64

return M
