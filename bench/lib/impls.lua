-- bench/lib/impls.lua - the implementations compared, per backend, and the
-- command line of one cell of each.
--
-- Owns: the columns of the comparison (raw C configurations, the LuaSQL
-- and LuaDBI peers, switchboard blocking / 16 / 256 tasks), which raw C
-- configuration the ratios are taken against, and how each cell process
-- is started (bench/raw_*.c binaries or bench/cell.lua).
-- Does not own: what a cell does (bench/raw_*.c, bench/cell.lua, bench/peers).

local O = require "ops"

local M = {}

-- The routing row's latency cells: decisions asked for at
-- ops.routing.open_rate per second (bench/cell.lua --rate), latency from
-- each decision's scheduled arrival: the target's (256 calls in flight),
-- and under it the floor of the machine: the same arrivals served one at
-- a time, blocking, by switchboard and by raw C.  The other cells are
-- closed loops.
local ROUTING = { routing = true }
local OPEN_LOOP = { id = "sb_calls", label = "switchboard 256 calls in flight, open loop",
                    lua = "sb", tasks = 256, open_loop = true, only = ROUTING }
local OPEN_BLOCK = { id = "sb_block_open", label = "switchboard blocking, open loop (1 at a time)",
                     lua = "sb", tasks = 0, open_loop = true, only = ROUTING }

-- The Lua columns, the same on both backends, after each one's raw C ones.
local LUA_COLUMNS = {
  { id = "luasql", label = "LuaSQL (blocking)", lua = "luasql", tasks = 0 },
  { id = "luadbi", label = "LuaDBI (blocking)", lua = "luadbi", tasks = 0 },
  { id = "sb_block", label = "switchboard blocking", lua = "sb", tasks = 0 },
  { id = "sb_16", label = "switchboard 16 tasks", lua = "sb", tasks = 16 },
  { id = "sb_256", label = "switchboard 256 tasks", lua = "sb", tasks = 256 },
  OPEN_BLOCK,
  OPEN_LOOP,
}

local function with_lua(raw)
  for _, im in ipairs(LUA_COLUMNS) do raw[#raw + 1] = im end
  return raw
end

M.sqlite = with_lua {
  { id = "raw", label = "raw C: sqlite3 prepared", raw = "raw_sqlite" },
  { id = "raw_open", label = "raw C: open loop (1 at a time)", raw = "raw_sqlite", open_loop = true,
    only = ROUTING },
}

M.postgresql = with_lua {
  { id = "raw_prepared", label = "raw C: libpq prepared, 1 conn", raw = "raw_pg", mode = "prepared" },
  { id = "raw_pipe16", label = "raw C: libpq pipeline, 16 conns x 16", raw = "raw_pg",
    mode = "pipeline", conns = 16, depth = 16 },
  -- the pool size switchboard uses by default, same 256 in flight
  { id = "raw_pipe4", label = "raw C: libpq pipeline, 4 conns x 64", raw = "raw_pg",
    mode = "pipeline", conns = 4, depth = 64 },
  { id = "raw_open", label = "raw C: open loop (1 at a time, 1 conn)", raw = "raw_pg", mode = "prepared",
    open_loop = true, only = ROUTING },
}

-- "x raw C" is against ref; "x best raw C" against the best of `raw` in
-- the same repetition.
M.ref = { sqlite = "raw", postgresql = "raw_prepared" }
M.raw = { sqlite = { "raw" }, postgresql = { "raw_prepared", "raw_pipe16", "raw_pipe4" } }

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The shell command of one cell.  c: backend, db, op, secs, warm, max,
-- base, timeout, pgdb (PostgreSQL database other than the URL's, or nil);
-- cfg: build dir and Lua interpreter.
function M.command(impl, c, cfg)
  local parts = { "timeout", "-k", "5", tostring(c.timeout) }
  local function add(...) for _, v in ipairs({ ... }) do parts[#parts + 1] = q(v) end end
  if impl.raw then
    add(cfg.build .. "/bench/" .. impl.raw, "--op", c.op, "--secs", c.secs, "--warm", c.warm,
        "--max", c.max, "--base", c.base)
    if c.backend == "sqlite" then add("--db", c.db) end
    if impl.mode then add("--mode", impl.mode) end
    if impl.open_loop then add("--rate", O.ops[c.op].open_rate[c.backend]) end
    if impl.conns then add("--conns", impl.conns, "--depth", impl.depth) end
    if c.pgdb and c.backend ~= "sqlite" then add("--pgdb", c.pgdb) end
    if c.op == "routing" then
      local name, version = O.route_policy()
      add("--policy", name, "--policy-version", version)
    end
    add("--")
    for _, s in ipairs(O.statements(c.op, c.backend)) do add(s) end
  else
    add(cfg.lua, "bench/cell.lua", "--backend", c.backend, "--db", c.db or "-", "--impl", impl.lua,
        "--tasks", impl.tasks, "--op", c.op, "--secs", c.secs, "--warm", c.warm,
        "--max", c.max, "--base", c.base)
    if c.warmops then add("--warmops", c.warmops) end
    if impl.open_loop then add("--rate", O.ops[c.op].open_rate[c.backend]) end
    if c.pgdb and c.backend ~= "sqlite" then add("--pgdb", c.pgdb) end
  end
  return table.concat(parts, " ")
end

return M
