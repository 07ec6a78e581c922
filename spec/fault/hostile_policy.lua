-- spec/fault/hostile_policy.lua - bad input of issue #6: hostile routing
-- policies against issue #4's sandboxed router (sb.router, default budget:
-- 1e6 instructions, 8 MiB, and the CPU time that goes with them).
--
-- Owns: a family of hostile policy files (written to a temp dir), each
-- put behind a router on a migrated call center (SQLite file in a temp
-- dir; PostgreSQL too, in a schema of its own, when SB_TEST_PG_URL is
-- set), and the checks after each:
--   - "route" policies load, are hot-reloaded over a good version and route
--     real waiting calls: endless loops (plain, inside pcall, xpcall,
--     coroutines, __close), memory bombs, deep recursion, C work the count
--     hook cannot see (patterns, table.sort/insert/move, utf8.len, long
--     string compares), escapes (io, os, require, debug, bytecode, the
--     string metatable, _ENV, collectgarbage, string.dump, host tables in
--     ctx, another route's coroutine in a task, yields under sb.poller),
--     giant or booby-trapped return values and error objects;
--     every call must get the fallback decision (or, where a decision is
--     legal, a checked copy), router:status() must count it, and a good
--     version swapped back in must assign again;
--   - "load" policies (loops, bombs, escapes at chunk load, in init or
--     self_test; bad names) must be refused on first load and on reload,
--     while the old good version keeps serving;
--   - throughout: the host survives (every router call is pcall'ed), no
--     call is lost (neither routed nor given the fallback), every route
--     returns within ROUTE_CPU_LIMIT / ROUTE_LIMIT, the host's Lua heap
--     and RSS return near their starting level, the host's libraries and
--     globals are intact, and no escape left a trace (file, db write).
--   Route time: CPU (os.clock) is what the budget bounds (1 s); wall time
--   is checked more loosely, since the machine may be shared.
-- Does not own: the sandbox or the router (bindings/lua/switchboard/).
-- Not covered (documented in docs/policies.md): memory a policy keeps
-- across routes in ctx.state (each run is budgeted, the sum is not).
--
-- Usage: lua5.4 hostile_policy.lua   (SB_TEST_TMP, SB_TEST_PG_URL: optional)
local sb = require "switchboard"
local F = require "fault"

local ROUTE_CPU_LIMIT = F.T(1.5)    -- CPU seconds for any single route (the budget's: 1 s)
local ROUTE_LIMIT = F.T(5.0)        -- wall seconds for it (the CPU's, on a loaded machine)
local HEAP_SLACK_KB = 1024          -- Lua heap after collect vs. the start
local RSS_SLACK_KB = 64 * 1024      -- RSS after collect vs. the start
local MAX_LOG_LINE = 1400           -- what the router may log per failure

-------------------------------------------------------------- the policies

-- A loop written once, used by many cases.
local LOOP = "function() while true do end end"
-- What deep recursion through C (metamethods, callbacks) ends with:
-- Lua's C stack limit, or the sandbox's call depth, whichever comes first.
local DEEP = { "stack overflow", "call depth budget exceeded" }

-- The good version: the first available agent of the call's queue.
local function good(mark)
  return string.format([[
return {
  name = "hostile", version = %q,
  route = function(call, ctx)
    local agents = assert(ctx.cc:available_agents{ queue = call.queue, limit = 1 })
    if agents[1] then return { action = "assign", agent = agents[1].id, reason = %q } end
    return { action = "queue", reason = %q }
  end,
}
]], mark, mark, mark)
end

-- A policy whose route runs `body`.
local function route_text(version, body)
  return string.format("return { name = \"hostile\", version = %q, route = function(call, ctx)\n%s\nend }\n",
    version, body)
end

-- An escape attempt: `probe` returns a true value when it worked; the
-- policy then answers "reject ESCAPED", otherwise raises (-> fallback).
local function escape(probe)
  return "local ok, res = pcall(function()\n" .. probe .. "\nend)\n"
    .. "if ok and res then return { action = 'reject', reason = 'ESCAPED: ' .. tostring(res) } end\n"
    .. "error('refused: ' .. tostring(res), 0)"
end

local MARK = os.tmpname()  -- a file no policy may create
os.remove(MARK)

-- kind "route": the body of route; expect: a Lua pattern (or a list of
-- them, one must match) for the fallback's reason, or a function(d, env)
-- -> ok, why for a decision that is legal.
-- kind "load": the whole file; expect: a pattern of the refusal.
-- mode: "task" (routes inside sb.spawn tasks) or "poller" (sb.poller set).
local CASES = {
  -- endless loops
  { "loop in route", "route", "while true do end", "instruction budget exceeded" },
  { "goto loop", "route", "::top:: goto top", "instruction budget exceeded" },
  { "loop inside pcall, then assign", "route",
    "pcall(" .. LOOP .. ") return { action = 'assign', agent = 'a1' }", "budget exceeded" },
  { "pcall of a loop, retried forever", "route",
    "for i = 1, math.huge do pcall(" .. LOOP .. ") end", "budget exceeded" },
  { "loop in a coroutine", "route", "coroutine.wrap(" .. LOOP .. ")()", "budget exceeded" },
  { "loop in coroutines under pcall, retried", "route",
    "while true do pcall(coroutine.resume, coroutine.create(" .. LOOP .. ")) end", "budget exceeded" },
  { "coroutine yielding forever", "route",
    "local co = coroutine.wrap(function() while true do coroutine.yield() end end) while true do co() end",
    "budget exceeded" },
  { "xpcall handler that loops", "route", "xpcall(function() error('x') end, " .. LOOP .. ")", "budget exceeded" },
  { "__close handler that loops", "route",
    "do local x <close> = setmetatable({}, { __close = " .. LOOP .. " }) end", "budget exceeded" },
  { "loop in a gsub callback", "route", "('xyz'):gsub('.', " .. LOOP .. ")", "budget exceeded" },
  { "own yield to the host", "route", "coroutine.yield('x') return { action = 'assign', agent = 'a1' }",
    "wait outside a task" },
  { "own yield to the host, in a task", "route", "coroutine.yield('x') return { action = 'assign', agent = 'a1' }",
    "policy yielded", mode = "task" },
  { "loop at chunk load", "load", "while true do end\nreturn { route = function() end }", "instruction budget exceeded" },
  { "loop in init", "load", "return { route = function() end, init = " .. LOOP .. " }", "init: .*budget exceeded" },
  { "loop in self_test", "load", "return { route = function() end, self_test = " .. LOOP .. " }",
    "self_test: .*budget exceeded" },
  { "loop in a coroutine at load", "load", "coroutine.wrap(" .. LOOP .. ")()\nreturn { route = function() end }",
    "budget exceeded" },

  -- memory bombs
  { "doubling string", "route", "local s = 'x' while true do s = s .. s end", "budget exceeded" },
  { "growing table", "route", "local t = {} for i = 1, math.huge do t[i] = i end", "budget exceeded" },
  { "table of strings", "route", "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end", "budget exceeded" },
  { "giant concat", "route", [[local t = {} for i = 1, 1e6 do t[i] = ('x'):rep(100) end
    return { action = 'queue', reason = table.concat(t) }]], "budget exceeded" },
  { "string.rep 1e9", "route", "local s = string.rep('x', 1e9) return { action = 'queue' }", "budget exceeded" },
  { "string.rep with separator", "route", "local s = ('x'):rep(1e8, ',') return { action = 'queue' }",
    "budget exceeded" },
  { "bombs caught by pcall, kept", "route", [[local kept = {}
    for i = 1, 100 do pcall(function() kept[i] = string.rep('y', 4e6) end) end
    return { action = 'queue', reason = 'survived' }]], "budget exceeded" },
  { "hoard in ctx.state within a route", "route",
    "ctx.state.hoard = {} for i = 1, 1e9 do ctx.state.hoard[i] = ('z'):rep(1000) .. i end", "budget exceeded" },
  { "a million coroutines", "route", "local t = {} for i = 1, 1e9 do t[i] = coroutine.create(print or type) end",
    "budget exceeded" },
  { "load of a giant chunk", "route", "local f = load(('x = 1 '):rep(5e6)) return { action = 'queue' }",
    "budget exceeded" },
  { "memory bomb at chunk load", "load", "local s = 'x' while true do s = s .. s end\nreturn {}", "budget exceeded" },
  { "memory bomb in init", "load",
    "return { route = function() end, init = function(ctx) local t = {} for i = 1, 1e9 do t[i] = {} end end }",
    "init: .*budget exceeded" },

  -- deep recursion
  { "non-tail recursion", "route", "local function f(n) return 1 + f(n + 1) end return f(1)",
    "call depth budget exceeded" },
  { "recursion through pcall", "route", "local function f() pcall(f) f() end f()", "budget exceeded" },
  { "varargs growing per call", "route", "local function f(...) return f(1, 2, 3, 4, ...) end f()", "budget exceeded" },
  { "recursion via __index", "route", [[local t = setmetatable({}, {})
    getmetatable(t).__index = function(t, k) return t[k] end return { action = t.x }]], DEEP },
  { "recursion via gsub callbacks", "route", "local function f(s) return (s:gsub('.', f)) end f('xx')", DEEP },
  { "recursion via __tostring", "route", [[local t = setmetatable({}, {})
    getmetatable(t).__tostring = function(x) return tostring(x) end return tostring(t)]], DEEP },
  { "recursion at chunk load", "load", "local function f() return 1 + f() end f()\nreturn {}", "budget exceeded" },
  { "pathological pattern (a?^n a^n)", "route",
    "return { action = 'queue', reason = tostring(('a'):rep(30000):find(('a?'):rep(30) .. ('a'):rep(30))) }",
    "pattern too costly" },
  { "pattern .-.-.- on 100 kB", "route",
    "return { action = 'queue', reason = tostring(('x'):rep(100000):match('(.-)(.-)(.-)y')) }", "pattern too costly" },
  { "%b() on 100 kB of '('", "route", "return { action = 'queue', reason = tostring(('('):rep(100000):find('%b()')) }",
    "pattern too costly" },
  { "a long [set]* on 3 kB", "route", [[local p = '[' .. ('b'):rep(30000) .. 'a]*y'
    return { action = 'queue', reason = tostring(('a'):rep(3000):find(p)) }]], "pattern too costly" },
  { "affordable pattern in a loop", "route",
    "local s = ('x'):rep(1000) while true do s:find('.-y') end", "budget exceeded" },
  { "gmatch over a long subject in a loop", "route",
    "local s = ('ab'):rep(20000) while true do for w in s:gmatch('a(.)') do end end", "budget exceeded" },
  { "%b() of 1 kB in a loop", "route", "local s = ('('):rep(1000) while true do s:find('%b()') end",
    "budget exceeded" },
  { "gsub with a backreference in a loop", "route",
    "local s = ('a'):rep(1000) while true do s:gsub('(a)%1', 'b') end", "budget exceeded" },

  -- work in C that the count hook does not see
  { "table.sort of 1e5, looped", "route",
    "local t = {} for i = 1, 100000 do t[i] = i end while true do table.sort(t) end", "budget exceeded" },
  { "table.insert/remove at 1, looped", "route",
    "local t = {} for i = 1, 100000 do t[i] = i end while true do table.insert(t, 1, 0) table.remove(t, 1) end",
    "budget exceeded" },
  { "table.move of 16M slots, looped", "route", "while true do table.move({}, 1, (1 << 24) - 2, 2) end",
    "budget exceeded" },
  { "table.move of 1e12 slots", "route", "table.move({}, 1, 1e12, 2)", "too many elements" },
  { "table.insert with a lying __len", "route", [[local k = 0
    local t = setmetatable({}, { __len = function() k = k + 1 return k == 1 and 1 or 1e15 end })
    table.insert(t, 1, 0)]], "__len" },
  { "table.unpack of 1e5, looped", "route",
    "local t = {} for i = 1, 100000 do t[i] = i end while true do select('#', table.unpack(t)) end",
    "budget exceeded" },
  { "utf8.len of 4 MB, looped", "route", "local s = ('x'):rep(4e6) while true do utf8.len(s) end",
    "budget exceeded" },
  { "string.byte of 200 kB, looped", "route", "local s = ('x'):rep(2e5) while true do s:byte(1, -1) end",
    "budget exceeded" },
  { "empty string.rep of 1e15", "route", "local s = ('') :rep(1e15) while true do s = ('' ):rep(1e15) end",
    "budget exceeded" },
  { "comparing two 2 MB strings, looped", "route",
    "local a, b = ('x'):rep(2e6), ('x'):rep(2e6) local n = 0 while true do if a == b then n = n + 1 end end",
    "budget exceeded" },

  -- escapes (each tries, and must be refused)
  { "io.open", "route", escape("return io.open('/etc/hostname')"), "refused" },
  { "io via _G", "route", escape("return _G.io"), "refused" },
  { "os.execute", "route", escape("return os.execute('touch " .. MARK .. "')"), "refused" },
  { "os.exit/remove/rename/getenv/tmpname", "route",
    escape("return os.exit or os.remove or os.rename or os.getenv or os.tmpname"), "refused" },
  { "require", "route", escape("return require('io')"), "refused" },
  { "package.loaded", "route", escape("return package.loaded"), "refused" },
  { "debug", "route", escape("return debug.getregistry()"), "refused" },
  { "debug via load", "route", escape("return load('return debug')()"), "refused" },
  { "collectgarbage", "route", escape("return collectgarbage('count')"), "refused" },
  { "dofile/loadfile/print", "route", escape("return dofile or loadfile or print"), "refused" },
  { "string.dump", "route", escape("return string.dump(function() end)"), "refused" },
  { "load of bytecode", "route", escape("return load(('').dump(function() return true end))()"), "refused" },
  { "load of bytecode by a reader", "route", escape([[local b, done = ('').dump(function() return true end), false
    return load(function() if done then return nil end done = true return b end)()]]), "refused" },
  { "load of bytecode, mode 'b'", "route", escape("return load(('').dump(function() return true end), 'x', 'b')()"),
    "refused" },
  { "getmetatable('').__index", "route", escape("return getmetatable('').__index"), "refused" },
  { "setmetatable on a string", "route", escape("return setmetatable('', { __index = function() return 1 end })"),
    "refused" },
  { "__gc finalizer", "route", escape("return setmetatable({}, { __gc = " .. LOOP .. " })"), "refused" },
  { "_ENV swapped for a proxy", "route",
    escape("local _ENV = setmetatable({}, { __index = _G }) return io or os.execute"), "refused" },
  { "_ENV reached through load with _G", "route", escape("return load('return io', 'x', 't', _G)()"), "refused" },
  { "_ENV = nil then globals", "route", escape("local f = function() local _ENV = nil return io end return f()"),
    "refused" },
  { "rawset on ctx.cc", "route", escape([[rawset(ctx.cc, 'assign', function() return true end)
    local mt = getmetatable(ctx.cc)
    return mt and mt ~= false]]), "refused" },
  { "writing ctx.cc", "route", escape("ctx.cc.available_agents = function() end return true"), "refused" },
  { "metatable of a ctx.cc error", "route", escape([[local rows, err = ctx.cc:available_agents{ queue = {} }
    return getmetatable(err)]]), "refused" },
  { "string library of the host", "route", escape([[string.upper = function() return 'pwned' end
    string.rep = nil _G.pwned = true return ('a'):upper() == 'pwned']]), "refused" },
  { "closing its own thread", "route", escape("return coroutine.close(coroutine.running())"), "refused" },
  { "another route's coroutine, in a task", "route", [[
    if not ctx.state.co then
      ctx.state.co = coroutine.running()
      coroutine.yield('stash')
      while true do ctx.cc:available_agents{ queue = 'q' } end
    end
    ]] .. escape([[local ok, marker, db = coroutine.resume(ctx.state.co)
    if type(db) == 'userdata' then return db:exec("UPDATE agents SET max_calls = 0") end]]),
    { "policy yielded", "refused: .*not a coroutine this policy created" },
    mode = "task" },
  { "database waits of its own coroutine under sb.poller", "route", escape([[
    local co = coroutine.create(function() return ctx.cc:available_agents{ queue = 'q' } end)
    for i = 1, 100 do
      local r = table.pack(coroutine.resume(co))
      for j = 2, r.n do
        if type(r[j]) == 'userdata' then return r[j]:exec("UPDATE agents SET max_calls = 0") end
      end
      if coroutine.status(co) == 'dead' then return false end
    end]]), { "host object", "refused" }, mode = "poller" },
  { "the call table is a copy", "route", "call.id = 'not-this-call' return { action = 'assign', agent = 'a1' }",
    function(d, env)
      return d.action == "assign" and d.assignment and d.assignment.call_id == env.call_id,
        "assigned " .. tostring(d.assignment and d.assignment.call_id)
    end },
  { "escape at chunk load", "load", "os.execute('touch " .. MARK .. "')\nreturn {}", "attempt to call" },
  { "bytecode file", "load", string.dump(function() return { route = function() end } end), "binary chunks" },

  -- giant or booby-trapped return values and error objects
  { "100 MB reason", "route", "return { action = 'queue', reason = ('x'):rep(100 * 1024 * 1024) }",
    "budget exceeded" },
  { "3 MB reason", "route", "return { action = 'queue', reason = ('x'):rep(3e6) }", function(d)
      return not d.fallback and d.action == "queue" and #d.reason <= 1100, "reason of " .. #tostring(d.reason) .. " bytes"
    end },
  { "huge decision table", "route", "local t = { action = 'queue' } for i = 1, 1e5 do t[i] = i end return t",
    function(d) return not d.fallback and d.action == "queue" and d[1] == nil, "not a clean copy" end },
  { "decision with looping __index/__pairs/__len", "route",
    "return setmetatable({ action = 'queue' }, { __index = " .. LOOP .. ", __pairs = " .. LOOP
      .. ", __len = " .. LOOP .. ", __eq = " .. LOOP .. ", __tostring = " .. LOOP .. " })",
    function(d) return not d.fallback and d.action == "queue", "not taken" end },
  { "decision fields only through __index", "route",
    "return setmetatable({}, { __index = function(_, k) return k == 'action' and 'queue' or nil end })",
    "unknown action" },
  { "decision with a __gc", "route", "return setmetatable({ action = 'queue' }, { __gc = " .. LOOP .. " })",
    "__gc is not allowed" },
  { "action is a table with __tostring", "route",
    "return { action = setmetatable({}, { __tostring = " .. LOOP .. " }) }", "action must be a string" },
  { "a 300-byte agent id", "route", "return { action = 'assign', agent = ('a'):rep(300) }", "at most 256 bytes" },
  { "returning a function", "route", "return function() end", "route returned function" },
  { "returning a coroutine", "route", "return coroutine.create(" .. LOOP .. ")", "route returned thread" },
  { "returning 1e5 values", "route", "local t = {} for i = 1, 1e5 do t[i] = i end return table.unpack(t)",
    "route returned number" },
  { "error object with a looping __tostring", "route", "error(setmetatable({}, { __tostring = " .. LOOP .. " }))",
    "error object is a table" },
  { "error object with __index/__name/__concat", "route",
    "error(setmetatable({}, { __index = " .. LOOP .. ", __name = 'x', __concat = " .. LOOP .. " }))",
    "error object is a table" },
  { "error object: a coroutine", "route", "error(coroutine.create(" .. LOOP .. "))", "error object is a thread" },
  { "error of 3 MB", "route", "error(('e'):rep(3e6), 0)", function(d, env)
      local st = env.router:status()
      return d.fallback and #d.reason <= 1100 and #st.last_error <= 1100,
        "reason " .. #d.reason .. " bytes, last_error " .. #st.last_error .. " bytes"
    end },
  { "ctx.log flood", "route", "for i = 1, math.huge do ctx.log(('l'):rep(1e6), i) end", "budget exceeded" },
  { "self_test failing with a looping why", "load",
    "return { route = function() end, self_test = function() return false, setmetatable({}, { __tostring = "
      .. LOOP .. " }) end }", "self_test failed: %(error object" },
  { "init raising a looping error object", "load",
    "return { route = function() end, init = function() error(setmetatable({}, { __tostring = " .. LOOP
      .. " })) end }", "init: %(error object" },
  { "policy table with a looping __index", "load",
    "return setmetatable({}, { __index = function() while true do end end })", "no route function" },
  { "a 1 MB policy name", "load",
    "return { name = ('n'):rep(1e6), route = function() return { action = 'queue' } end }", "at most 256 bytes" },
  { "chunk returning a coroutine", "load", "return coroutine.create(" .. LOOP .. ")", "must return a table" },
}

------------------------------------------------------------------ helpers

local function matches(s, expect)
  if type(expect) == "string" then expect = { expect } end
  for _, e in ipairs(expect) do
    if tostring(s):find(e) then return true end
  end
  return false
end

local function show(expect)
  return type(expect) == "table" and table.concat(expect, " | ") or tostring(expect)
end

local function rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0, 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0, tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

local function collect()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count"), (rss_kb())
end

local function tmpdir()
  local base = os.getenv("SB_TEST_TMP")
  local dir
  if base and base ~= "" then
    dir = base .. "/hostile-" .. tostring(os.time()) .. "-" .. math.random(1e6)
  else
    dir = os.tmpname()
    os.remove(dir)
  end
  assert(os.execute("mkdir -p " .. F.quote(dir)))
  return dir
end

local DIR = tmpdir()
local files = 0

-- Write a policy file by rename (what an editor's save does).
local function write(path, text)
  files = files + 1
  local tmp = DIR .. "/.tmp-" .. files
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
  return path
end

-- Run fn inside an sb.spawn task (mode "task"), under a poller loop
-- (mode "poller": sb.poller set, fn in a coroutine we drive), or directly.
local function in_mode(mode, fn)
  if mode == "task" then
    local res
    sb.spawn(function() res = table.pack(pcall(fn)) end)
    sb.run()
    return table.unpack(res, 1, res.n)
  elseif mode == "poller" then
    sb.poller = function(db) return coroutine.yield("poll", db) end
    local co = coroutine.create(function() return pcall(fn) end)
    local r = table.pack(coroutine.resume(co))
    local spins = 0
    while coroutine.status(co) == "suspended" and spins < 1e6 do
      spins = spins + 1
      r = table.pack(coroutine.resume(co))
    end
    sb.poller = nil
    if not r[1] then return false, r[2] end
    return table.unpack(r, 2, r.n)
  end
  return pcall(fn)
end

------------------------------------------------------------------ one backend

local totals = { calls = 0, lost = 0, max_route = 0, max_cpu = 0, max_reload = 0, policies = 0, fallbacks = 0, refused = 0,
                 decisions = 0, good = 0, heap_max = 0, rss_max = 0 }

local function run_backend(name, db)
  assert(sb.migrate(db))
  local c = sb.callcenter(db)
  assert(c:add_queue{ name = "q" })
  for i = 1, 2 do assert(c:add_agent{ id = "a" .. i, queues = { "q" } }) end
  local log_lines, log_max = 0, 0
  local function log(m)
    log_lines = log_lines + 1
    if #m > log_max then log_max = #m end
  end
  local ncall = 0
  local function new_call()
    ncall = ncall + 1
    local id = string.format("%s-%d", name, ncall)
    assert(c:enqueue{ session_id = id, queue = "q", caller = "+15550100" })
    return { id = id, queue = "q", caller = "+15550100", skills = {}, priority = 0, waited_ms = 0 }
  end

  -- one route through `router`; --> decision | nil (lost), seconds
  local function route(router, mode, what)
    local call = new_call()
    totals.calls = totals.calls + 1
    local t0, c0 = F.now(), os.clock()
    local ok, d, err = in_mode(mode, function() return router:route(call) end)
    local dt, cpu = F.now() - t0, os.clock() - c0
    if cpu > totals.max_cpu then totals.max_cpu = cpu end
    if not ok or type(d) ~= "table" then
      totals.lost = totals.lost + 1
      F.check(false, "[%s] %s: call %s lost: %s", name, what, call.id, F.errstr(ok and err or d))
      return nil, dt, call
    end
    F.check(dt < ROUTE_LIMIT and cpu < ROUTE_CPU_LIMIT, "[%s] %s: route took %.0f ms (%.0f ms CPU)", name, what,
      dt * 1000, cpu * 1000)
    if dt > 0.2 then
      F.log("[%s] %s: route took %.0f ms, %.0f ms CPU (%s)", name, what, dt * 1000, cpu * 1000,
        tostring(d.reason):sub(-60))
    end
    return d, dt, call
  end

  -- a good call: must be assigned by a good version; the agent is freed
  local function good_call(router, what)
    local d = route(router, nil, what .. " (good call after)")
    if not d then return end
    if F.check(d.action == "assign" and d.assignment and not d.fallback and d.reason and d.reason:match("^good"),
        "[%s] %s: good call after: %s %s", name, what, tostring(d.action), tostring(d.reason)) then
      totals.good = totals.good + 1
      assert(c:complete(d.assignment.call_id))
    end
  end

  local path = DIR .. "/" .. name .. "-policy.lua"
  do  -- warm up (modules loaded, statements prepared) before the baseline
    local router = assert(sb.router{ cc = c, policy = write(path, good("good-warmup")), reload = "manual", log = log })
    good_call(router, "warm-up")
  end
  local heap0, rss0 = collect()
  for i, case in ipairs(CASES) do
    local what, kind, text, expect = case[1], case[2], case[3], case[4]
    write(path, good("good-" .. i))
    local router = assert(sb.router{ cc = c, policy = path, reload = "manual", log = log })
    local st0 = router:status()
    if kind == "route" then
      write(path, route_text("hostile-" .. i, text))
      local t0 = F.now()
      local ok, rok, rerr = pcall(router.reload, router)
      local dt = F.now() - t0
      if dt > totals.max_reload then totals.max_reload = dt end
      F.check(ok and rok, "[%s] %s: the hostile version did not load: %s", name, what, F.errstr(ok and rerr or rok))
      for _ = 1, 2 do
        local d, rdt, call = route(router, case.mode, what)
        if d then
          if rdt > totals.max_route then totals.max_route = rdt end
          F.check(not tostring(d.reason or ""):find("ESCAPED", 1, true),
            "[%s] %s: ESCAPED (%s)", name, what, tostring(d.reason))
          if type(expect) == "function" then
            local good_one, why = expect(d, { router = router, call_id = call.id })
            F.check(good_one, "[%s] %s: unexpected decision: %s", name, what, tostring(why))
            totals.decisions = totals.decisions + 1
            if d.assignment then assert(c:complete(d.assignment.call_id)) end
          else
            F.check(d.fallback == true and d.action == "queue", "[%s] %s: no fallback (%s, %s)", name, what,
              tostring(d.action), tostring(d.reason))
            F.check(matches(d.reason, expect), "[%s] %s: reason %q does not match %q", name, what,
              tostring(d.reason):sub(1, 200), show(expect))
            totals.fallbacks = totals.fallbacks + 1
          end
        end
      end
      local st = router:status()
      if type(expect) ~= "function" then
        F.check(st.fallbacks == st0.fallbacks + 2 and type(st.last_error) == "string",
          "[%s] %s: status: %d fallbacks, last_error %s", name, what, st.fallbacks, tostring(st.last_error))
      end
      F.check(st.routed == st0.routed + 2, "[%s] %s: status.routed %d", name, what, st.routed)
      -- the good version swapped back in assigns again
      write(path, good("good-again-" .. i))
      F.check(router:reload(), "[%s] %s: the good version did not reload", name, what)
      good_call(router, what)
    else  -- "load": refused on a first load and on a reload; the old version serves
      write(path, text)
      local t0 = F.now()
      local ok, r2, err2 = pcall(sb.router, { cc = c, policy = path, reload = "manual", log = log })
      local ok2, rok, rerr = pcall(router.reload, router)
      local dt = (F.now() - t0) / 2
      if dt > totals.max_reload then totals.max_reload = dt end
      F.check(ok and r2 == nil and err2 and matches(err2.message, expect),
        "[%s] %s: first load not refused as expected: %s", name, what, ok and F.errstr(err2) or F.errstr(r2))
      F.check(ok2 and rok == nil and rerr and matches(rerr.message, expect),
        "[%s] %s: reload not refused as expected: %s", name, what, ok2 and F.errstr(rerr) or F.errstr(rok))
      local st = router:status()
      F.check(st.failures == st0.failures + 1 and st.version == st0.version and type(st.last_error) == "string"
        and #st.last_error <= 1100, "[%s] %s: status after the refusal: failures %d, version %s", name, what,
        st.failures, tostring(st.version))
      totals.refused = totals.refused + 1
      good_call(router, what)  -- by the old good version
    end
    router = nil  -- (collected below)
    local heap, rss = collect()
    if heap - heap0 > totals.heap_max then totals.heap_max = heap - heap0 end
    if rss - rss0 > totals.rss_max then totals.rss_max = rss - rss0 end
  end

  -- no escape left a trace; the host's libraries and globals are intact
  local row = assert(db:first("SELECT count(*) AS n FROM agents WHERE max_calls = 0"))
  F.check(row.n == 0, "[%s] an escape changed %d agents", name, row.n)
  F.check(io.open(MARK) == nil, "[%s] an escape created %s", name, MARK)
  F.check(log_max <= MAX_LOG_LINE, "[%s] a log line of %d bytes", name, log_max)
  local heap, rss = collect()
  F.log("[%s] %d policies, %d log lines (longest %d bytes); heap %+.0f KB, RSS %+.0f KB after collect", name,
    #CASES, log_lines, log_max, heap - heap0, rss - rss0)
  F.check(heap - heap0 < HEAP_SLACK_KB, "[%s] Lua heap grew by %.0f KB", name, heap - heap0)
  F.check(rss - rss0 < RSS_SLACK_KB, "[%s] RSS grew by %.0f KB", name, rss - rss0)
end

------------------------------------------------------------------ main

local function host_intact()
  return ("a"):upper() == "A" and string.rep("x", 3) == "xxx" and type(string.dump) == "function"
    and type(io.open) == "function" and type(os.execute) == "function" and type(debug.getinfo) == "function"
    and _G.pwned == nil and (("a.b"):gsub("%.", "-")) == "a-b"
end

local backends = { "sqlite" }
local pg_url = os.getenv("SB_TEST_PG_URL")
if pg_url and pg_url ~= "" then backends[2] = "postgresql" end

local t_start = F.now()
for _, name in ipairs(backends) do
  local db, cleanup
  if name == "sqlite" then
    local file = DIR .. "/hostile.db"
    db = assert(sb.open("sqlite:" .. file))
    cleanup = function()
      db:close()
      for _, sfx in ipairs{ "", "-wal", "-shm" } do os.remove(file .. sfx) end
    end
  else
    local schema = string.format("sbfault_hostile_%d", math.random(1e9))
    local admin = assert(sb.open(pg_url))
    assert(admin:exec("DROP SCHEMA IF EXISTS " .. schema .. " CASCADE"))
    assert(admin:exec("CREATE SCHEMA " .. schema))
    local url = pg_url .. (pg_url:find("?", 1, true) and "&" or "?") .. "options=-csearch_path%3D" .. schema
    db = assert(sb.open(url))
    cleanup = function()
      db:close()
      assert(admin:exec("DROP SCHEMA IF EXISTS " .. schema .. " CASCADE"))
      admin:close()
    end
  end
  local ok, err = pcall(run_backend, name, db)
  F.check(ok, "[%s] the host failed: %s", name, F.errstr(err))
  cleanup()
end
F.check(host_intact(), "the host's libraries or globals were changed by a policy")
os.remove(MARK)
os.execute("rm -rf " .. F.quote(DIR))

local _, hwm = rss_kb()
local nb = #backends
F.log("hostile policies: %d x %d backend(s), %d route calls (%d fallbacks, %d checked decisions, %d good after), " ..
      "%d refused loads; max route %.0f ms (%.0f ms CPU), max load %.0f ms; heap max %+.0f KB, RSS max %+.0f KB, " ..
      "peak RSS %d KB; %.1f s",
      #CASES, nb, totals.calls, totals.fallbacks, totals.decisions, totals.good, totals.refused * 2,
      totals.max_route * 1000, totals.max_cpu * 1000, totals.max_reload * 1000, totals.heap_max, totals.rss_max, hwm, F.now() - t_start)
F.row{ id = "h_hostile_policy", fault = "hostile policies", runs = #CASES, calls = totals.calls, duplicates = 0,
       lost = totals.lost, recovery_ms = totals.max_route * 1000,
       note = string.format("%d policies x %s (loops, bombs, recursion, C work, escapes, giant values): "
         .. "fallback or refused, good version assigns after each; max %.0f ms CPU per route; "
         .. "heap %+.0f KB, RSS %+.0f MB after collect",
         #CASES, nb == 2 and "SQLite+PostgreSQL" or "SQLite", totals.max_cpu * 1000, totals.heap_max,
         totals.rss_max / 1024) }
F.finish()
