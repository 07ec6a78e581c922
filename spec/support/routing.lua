-- spec/support/routing.lua - shared setup of the routing specs
-- (policies_spec, router_spec, sandbox_spec, sim_spec): policy files in a
-- temp dir, a router on a fresh call center, agents and calls.
-- The call center itself comes from spec/support/cc.lua (a fresh SQLite
-- file or PostgreSQL schema per test).
local sb = require "switchboard"
local support = require "support.cc"

local R = {}

local dir
local files = {}
local counter = 0

local function tmpdir()
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
  end
  return dir
end

-- Write `text` to a new policy file (or over `path`, by rename, so that the
-- router sees a new inode as it would after an editor's save).  --> path
function R.write(text, path)
  counter = counter + 1
  local target = path or string.format("%s/policy-%d.lua", tmpdir(), counter)
  local tmp = string.format("%s/.tmp-%d", tmpdir(), counter)
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, target))
  files[target] = true
  return target
end

-- The text of a file of this tree (scripts/policies/NAME.lua, ...).
function R.read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

function R.cleanup()
  for p in pairs(files) do os.remove(p) end
  files = {}
  if dir then os.remove(dir); dir = nil end
end

-- A router on `c` (a callcenter) for the policy file `path`; the log lines
-- go to the returned array.  --> router, log | nil, err
function R.router(c, path, opts)
  local log = {}
  local o = { cc = c, policy = path, log = function(m) log[#log + 1] = m end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local router, err = sb.router(o)
  if not router then return nil, err end
  return router, log
end

-- A fresh migrated call center (see support/cc.lua): c, db
function R.setup(backend, opts)
  return support.setup(backend, opts)
end

R.drop_schemas = support.drop_schemas

-- n agents "<prefix>1".. in `queue` (opts: skills, max_calls, wrapup_seconds)
function R.agents(c, n, queue, prefix, opts)
  opts = opts or {}
  local ids = {}
  for i = 1, n do
    local id = (prefix or "a") .. i
    assert(c:add_agent{ id = id, queues = { queue }, skills = opts.skills, max_calls = opts.max_calls,
                        wrapup_seconds = opts.wrapup_seconds })
    ids[i] = id
  end
  return ids
end

-- A waiting call; --> the call table router:route wants
function R.call(c, id, queue, skills, waited_ms)
  assert(c:enqueue{ session_id = id, queue = queue, skills = skills, caller = "+15550100" })
  return { id = id, queue = queue, skills = skills, caller = "+15550100", priority = 0, waited_ms = waited_ms or 0 }
end

return R
