-- switchboard/sandbox.lua - where untrusted Lua (routing policies) runs.
--
-- Owns: the safe environment a policy sees (allow-listed globals, copies of
-- the libraries so a policy cannot change the host's, no io/debug/package/
-- require/collectgarbage/string.dump, load of text only), loading a policy
-- file as text, and running a function under an instruction and memory
-- budget (lsb_sandbox.c) in its own coroutine.  When the function waits
-- for the database inside a switchboard task (or under sb.poller), its
-- yields are passed on to the scheduler and the results passed back, so
-- a policy's queries do not block other calls.
--
-- What the host must never do with a policy's values is run the policy's
-- code outside a budget: no metamethod of a policy table may fire in host
-- code.  So: setmetatable refuses __gc (finalizers run wherever the
-- collector happens to be), error values are described without tostring
-- (no __tostring), and callers copy results with next/rawget (router.lua).
-- String patterns run in C, where the count hook cannot see them: the
-- pattern functions refuse a subject/pattern pair whose worst-case
-- backtracking cost is out of proportion (see pattern_cost), also when
-- reached as methods ("x"):find(...): loading this module puts guarded
-- find/match/gmatch/gsub/rep in front of the string metatable's __index
-- for the whole Lua state; they check only while a budget is current.
-- Not covered: memory a policy keeps across runs in ctx.state (each run
-- is budgeted, the sum is not); ("x").dump reached through the string
-- metatable (harmless: load refuses binary chunks).

local core = require "switchboard.core"
local sb = require "switchboard"

local M = {}

local pairs, type, error, setmetatable, getmetatable, tostring, tonumber, select, rawget, load, math =
  pairs, type, error, setmetatable, getmetatable, tostring, tonumber, select, rawget, load, math
local coroutine, table, string = coroutine, table, string

core.budget_install()

local AWAIT = core.AWAIT
local MAX_PATTERN_COST = 2e8  -- worst case about 0.2 s of backtracking

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then c[k] = v end
  end
  return c
end

-- A policy's error value as text, without running any of its code.
function M.describe(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  if sb.iserror(v) then return tostring(v) end  -- a host error object
  return "(error object is a " .. t .. " value)"
end

-- Worst-case steps of matching `pat` in a subject of `len` bytes: Lua's
-- matcher backtracks, so each quantifier (* + - ?) can multiply the work
-- by the subject length, and an unanchored search tries every start.
-- Quantifier characters inside [sets] and %escapes are not counted.
local function pattern_cost(len, pat, plain)
  if plain then return len * #pat end
  local q, i, n = 0, 1, #pat
  while i <= n do
    local c = pat:sub(i, i)
    if c == "%" then
      i = i + 2
    elseif c == "[" then  -- skip the set: a leading ^ and ] are literal
      i = i + 1
      if pat:sub(i, i) == "^" then i = i + 1 end
      if pat:sub(i, i) == "]" then i = i + 1 end
      while i <= n and pat:sub(i, i) ~= "]" do
        i = i + (pat:sub(i, i) == "%" and 2 or 1)
      end
      i = i + 1
    else
      if c == "*" or c == "+" or c == "-" or c == "?" then q = q + 1 end
      i = i + 1
    end
  end
  if q == 0 then return len * n end  -- a literal search: compare at each start
  return (len + 1) ^ (q + 1)
end
M.pattern_cost = pattern_cost

-- The C functions whose work is neither Lua instructions nor allocation,
-- wrapped with a check that applies only while a budget is current (so
-- host code calling them is unaffected but for the call):
--   find/match/gmatch/gsub: the backtracking cost above;
--   rep: n copies of an empty string loop n times allocating nothing.
local function check_pattern(name, subject, pat, plain)
  if type(subject) == "string" and type(pat) == "string" and core.budget_active() then
    local cost = pattern_cost(#subject, pat, plain)
    if cost > MAX_PATTERN_COST then
      error("bad argument #2 to '" .. name .. "' (pattern too costly for a "
        .. #subject .. "-byte subject in a policy)", 3)
    end
  end
end

local find, match, gmatch, gsub, rep = string.find, string.match, string.gmatch, string.gsub, string.rep
local guarded = {
  find = function(s, p, init, plain)
    check_pattern("find", s, p, plain)
    return find(s, p, init, plain)
  end,
  match = function(s, p, init)
    check_pattern("match", s, p)
    return match(s, p, init)
  end,
  gmatch = function(s, p, init)
    check_pattern("gmatch", s, p)
    return gmatch(s, p, init)
  end,
  gsub = function(s, p, r, n)
    check_pattern("gsub", s, p)
    return gsub(s, p, r, n)
  end,
  rep = function(s, n, sep)
    if s == "" and (sep == nil or sep == "") and tonumber(n) and core.budget_active() then
      return ""  -- what rep would return, without the empty loop
    end
    return rep(s, n, sep)
  end,
}

-- Method calls on strings ("x"):find(...) go through the string metatable,
-- shared by the whole Lua state, not through the policy's env: its __index
-- becomes the guarded functions in front of the real string table (which
-- keeps serving everything else, including functions the host adds later).
do
  local smt = getmetatable("")
  if smt and smt.__index == string then
    smt.__index = setmetatable(copy(guarded), { __index = string })
  end
end

local function safe_string()
  local s = copy(string, { dump = true })
  for k, f in pairs(guarded) do s[k] = f end
  return s
end

-- table.move(a, f, e, t) loops e - f + 1 times in C even over nothing.
local function safe_table()
  local t = copy(table)
  local move = table.move
  t.move = function(a1, f, e, tpos, a2)
    local fi, ei = math.tointeger(tonumber(f)), math.tointeger(tonumber(e))
    if fi and ei and ei - fi >= 1 << 24 then
      error("bad argument #3 to 'move' (too many elements to move in a policy)", 2)
    end
    return move(a1, f, e, tpos, a2)
  end
  return t
end

-- A fresh environment; `extra` fields (ctx helpers) are added on top.
function M.environment(extra)
  local env = {
    _VERSION = _VERSION,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, xpcall = xpcall, select = select, tonumber = tonumber,
    tostring = tostring, type = type, rawequal = rawequal, rawlen = rawlen,
    rawget = rawget, rawset = rawset,
    string = safe_string(),
    table = safe_table(),
    math = copy(math),
    utf8 = copy(utf8),
    coroutine = copy(coroutine),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
  }
  -- metatables only for the policy's own tables: never the string
  -- metatable or a host object's; no finalizers (they would run in the
  -- host, outside any budget)
  function env.setmetatable(t, mt)
    if type(t) ~= "table" then error("bad argument #1 to 'setmetatable' (table expected)", 2) end
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error("bad argument #2 to 'setmetatable' (__gc is not allowed in a policy)", 2)
    end
    return setmetatable(t, mt)
  end
  function env.getmetatable(v)
    if type(v) ~= "table" then return nil end
    return getmetatable(v)
  end
  -- text chunks only, in this environment unless another is given
  function env.load(chunk, name, mode, chunkenv)
    if mode ~= nil and mode ~= "t" then error("bad argument #3 to 'load' (only text chunks)", 2) end
    if type(chunk) == "string" and chunk:byte(1) == 27 then return nil, "binary chunks are not allowed" end
    return load(chunk, name, "t", chunkenv or env)
  end
  env._G = env
  if extra then
    for k, v in pairs(extra) do env[k] = v end
  end
  return env
end

-- Load a policy file's text in env.  --> chunk, nil, text | nil, message
function M.loadfile(path, env)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  if not text then return nil, path .. ": cannot read the file" end
  if text:byte(1) == 27 then return nil, path .. ": binary chunks are not allowed" end
  local chunk, cerr = load(text, "@" .. path, "t", env)
  if not chunk then return nil, cerr end
  return chunk, nil, text
end

local function pack(...) return { n = select("#", ...), ... } end

-- Run fn(...) in a new coroutine under a fresh budget (limits.instructions,
-- limits.memory).  --> true, results... | false, message (a string)
-- While fn waits for the database its yields go to whoever runs us (the
-- scheduler, or sb.poller's loop); outside a coroutine they cannot, and a
-- database call inside fn simply blocks (see lsb_await.c).  A yield of the
-- policy's own (coroutine.yield in route) is an error: only the
-- scheduler's database waits (core.AWAIT) are passed on, or anything when
-- sb.poller is set (the poller's yields are its own business).
function M.run(limits, fn, ...)
  local budget = core.budget(limits.instructions, limits.memory)
  local co = coroutine.create(fn)
  sb._adopt(co)  -- let fn's queries yield like the caller's would
  local r = pack(core.budget_resume(budget, co, ...))
  while r[1] and coroutine.status(co) == "suspended" do
    if not coroutine.isyieldable() then
      return false, "policy tried to wait outside a task"
    end
    if r[2] ~= AWAIT and sb.poller == nil then
      return false, "policy yielded (only database waits may suspend a policy)"
    end
    r = pack(core.budget_resume(budget, co, coroutine.yield(table.unpack(r, 2, r.n))))
  end
  if not r[1] then return false, M.describe(r[2]) end
  return table.unpack(r, 1, r.n)
end

return M
