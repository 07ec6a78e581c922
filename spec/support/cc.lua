-- spec/support/cc.lua - shared setup of the call-center specs
-- (migrate_spec, callcenter_spec, callcenter_concurrency_spec): a clean
-- database per test on both backends, a manual clock, and OS processes run
-- side by side.
--
-- PostgreSQL isolation: the call-center tables have fixed names (agents,
-- queues, ...), and every spec file of a run shares one database, so each
-- use gets its own schema, named in the URL (options=-csearch_path=...) so
-- that every connection of the pool uses it.  Schemas are dropped by
-- cc.drop_schemas() (call it from teardown).  SQLite: helpers' fresh file.
local sb = require "switchboard"
local helpers = require "helpers"

local cc = {}

local schemas = {}   -- name -> base url
local counter = 0

-- url with search_path set to `schema` (URL or key=value conninfo)
function cc.schema_url(url, schema)
  if url:match("^%a+://") then
    return url .. (url:find("?", 1, true) and "&" or "?") .. "options=-csearch_path%3D" .. schema
  end
  return url .. " options='-csearch_path=" .. schema .. "'"
end

-- A URL of an empty database for the current test.
function cc.fresh_url(backend, tag)
  if not backend.is_pg then return backend.fresh_url() end
  counter = counter + 1
  local schema = string.format("sbcc_%s_%s_%d", tag or "t", helpers.suffix, counter)
  local db = assert(sb.open(backend.url))
  assert(db:exec("DROP SCHEMA IF EXISTS " .. schema .. " CASCADE"))
  assert(db:exec("CREATE SCHEMA " .. schema))
  db:close()
  schemas[schema] = backend.url
  return cc.schema_url(backend.url, schema)
end

function cc.drop_schemas()
  for schema, url in pairs(schemas) do
    local db = sb.open(url)
    if db then
      pcall(db.exec, db, "DROP SCHEMA IF EXISTS " .. schema .. " CASCADE")
      db:close()
    end
  end
  schemas = {}
end

-- A migrated call-center database and its cc object; clock: a table whose
-- field `t` is "now" in ms (advance it by hand), or nil for the real clock.
function cc.setup(backend, opts)
  opts = opts or {}
  local url = cc.fresh_url(backend, opts.tag or "cc")
  local db = helpers.open(backend, opts.db, url)
  assert(sb.migrate(db))
  local clock = opts.clock
  local c = sb.callcenter(db, clock and { now = function() return clock.t end } or nil)
  return c, db, url
end

function cc.count(db, sql, ...)
  local row = assert(db:first("SELECT count(*) AS n FROM " .. sql, ...))
  return row.n
end

-- Start each { code = lua, env = { NAME = value } } as a lua5.4 process in
-- the background (same package paths and environment, plus env), killed
-- after `limit` seconds.  Returns a handle; handle:wait() waits for all and
-- returns an array of { ok = exit status 0, rc, out = stdout+stderr }.
function cc.start_processes(procs, limit)
  local q = helpers.shell_quote
  local parts, files = {}, {}
  for i, p in ipairs(procs) do
    local script = helpers.tmpfile("proc" .. i) .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write(p.code)
    f:close()
    local envs = {}
    for k, v in pairs(p.env or {}) do envs[#envs + 1] = k .. "=" .. q(tostring(v)) end
    files[i] = { script = script, out = script .. ".out", rc = script .. ".rc" }
    -- the rc file appears (renamed into place) only once the process ended
    parts[#parts + 1] = string.format(
      "( env %s LUA_PATH=%s LUA_CPATH=%s timeout -s KILL %d lua5.4 %s > %s 2>&1; echo $? > %s.tmp; mv %s.tmp %s ) &",
      table.concat(envs, " "), q(package.path), q(package.cpath), math.ceil(helpers.T(limit or 60)),
      q(script), q(files[i].out), q(files[i].rc), q(files[i].rc), q(files[i].rc))
  end
  assert(os.execute("exec >/dev/null 2>&1 </dev/null; " .. table.concat(parts, " ")))
  local handle = {}
  function handle.wait()
    local deadline = helpers.now() + helpers.T(limit or 60) + 10
    local results = {}
    for i, f in ipairs(files) do
      local h = io.open(f.rc)
      while not h do
        assert(helpers.now() < deadline, "process " .. i .. " never ended")
        sb.sleep(0.02)
        h = io.open(f.rc)
      end
      local rc = tonumber(h:read("l") or "")
      h:close()
      h = io.open(f.out)
      local out = h and h:read("a") or ""
      if h then h:close() end
      os.remove(f.script); os.remove(f.out); os.remove(f.rc)
      results[i] = { ok = rc == 0, rc = rc, out = out }
    end
    return results
  end
  return handle
end

function cc.run_processes(procs, limit)
  return cc.start_processes(procs, limit).wait()
end

return cc
