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
-- Work inside C functions is invisible to the count hook: the library
-- functions that loop without allocating (string patterns, rep, byte,
-- table.sort/insert/remove/move/unpack, utf8.len/offset/codepoint) charge
-- an estimate of their work to the budget before they start
-- (core.budget_charge), and a pattern whose worst-case backtracking is out
-- of proportion to its subject is refused outright (see pattern_cost).
-- The string ones also when reached as methods ("x"):find(...): loading
-- this module puts guarded find/match/gmatch/gsub/rep/byte in front of
-- the string metatable's __index for the whole Lua state; they act only
-- while a budget is current.  What no wrapper sees (one VM instruction
-- comparing two long strings) the budget's CPU time bounds.
-- A policy resumes only coroutines it created (safe_coroutine): the one
-- it runs in belongs to the host's scheduler.
-- Not covered: memory a policy keeps across runs in ctx.state (each run
-- is budgeted, the sum is not); ("x").dump reached through the string
-- metatable (harmless: load refuses binary chunks).

local core = require "switchboard.core"
local sb = require "switchboard"

local M = {}

local pairs, type, error, setmetatable, getmetatable, tostring, tonumber, select, rawget, rawlen, load, math =
  pairs, type, error, setmetatable, getmetatable, tostring, tonumber, select, rawget, rawlen, load, math
local utf8, debug = utf8, debug
local coroutine, table, string = coroutine, table, string

core.budget_install()

local AWAIT = core.AWAIT

local function pack(...) return { n = select("#", ...), ... } end

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

-- Worst-case steps of matching `pat` in a subject of `len` bytes: each
-- attempt walks the pattern (n bytes; a [set] costs up to its length per
-- character tested); Lua's matcher backtracks, so each quantifier (* + -
-- ?) can multiply the work by the subject length, and so can each %b (it
-- scans ahead for the closing character) and each back-reference %1-%9
-- (compares a capture as long as the subject); an unanchored search tries
-- every start (`anchored`: the function honours a leading ^).
-- Quantifier characters inside [sets] and other %escapes are not counted.
local function pattern_cost(len, pat, plain, anchored)
  if plain then return (len + 1) * #pat end
  local q, i, n = 0, 1, #pat
  while i <= n do
    local c = pat:sub(i, i)
    if c == "%" then
      local e = pat:sub(i + 1, i + 1)
      if e == "b" then
        q = q + 1
        i = i + 4
      else
        if e >= "1" and e <= "9" then q = q + 1 end
        i = i + 2
      end
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
  local starts = (anchored and pat:sub(1, 1) == "^") and 1 or len + 1
  return starts * (len + 1) ^ q * math.max(n, 1)
end
M.pattern_cost = pattern_cost

-- The C functions whose work is neither Lua instructions nor allocation,
-- wrapped so that, while a budget is current (host code calling them is
-- unaffected but for the call), they charge their work to it before they
-- run (core.budget_charge: once the budget is spent the policy stops, as
-- in a loop; a single call that would spend it does not start):
--   find/match/gmatch/gsub: the backtracking cost above, PATTERN_STEPS
--     steps per instruction, and refused outright past MAX_PATTERN_COST;
--   rep: n copies of an empty string loop n times allocating nothing;
--   byte, table.unpack, utf8.codepoint: one per value pushed;
--   table.insert/remove (with a position): one per element shifted;
--   table.sort: n log2 n (the comparisons); table.move: one per slot;
--   utf8.len/offset: one per SCAN_BYTES bytes scanned.
-- What no wrapper sees (comparing two long strings is one instruction)
-- is bounded by the budget's CPU time (lsb_sandbox.c).
local charge, active = core.budget_charge, core.budget_active
local PATTERN_STEPS = 16
local SCAN_BYTES = 16

local function check_pattern(name, subject, pat, plain, anchored)
  if type(subject) == "string" and type(pat) == "string" and active() then
    local cost = pattern_cost(#subject, pat, plain, anchored)
    if cost > MAX_PATTERN_COST then
      error("bad argument #2 to '" .. name .. "' (pattern too costly for a "
        .. #subject .. "-byte subject in a policy)", 3)
    end
    charge(cost / PATTERN_STEPS, 2)  -- named: the policy's call of find/match/...
  end
end

-- How many positions s:sub(i, j) / s:byte(i, j) covers (j defaults to i).
local function span(len, i, j)
  i = math.tointeger(tonumber(i) or 1) or 1
  j = math.tointeger(tonumber(j) or i) or i
  if i < 0 then i = math.max(len + i + 1, 1) elseif i == 0 then i = 1 end
  if j < 0 then j = len + j + 1 elseif j > len then j = len end
  return j >= i and j - i + 1 or 0
end

local find, match, gmatch, gsub, rep, byte = string.find, string.match, string.gmatch, string.gsub, string.rep,
  string.byte
local guarded = {
  find = function(s, p, init, plain)
    check_pattern("find", s, p, plain, true)
    return find(s, p, init, plain)
  end,
  match = function(s, p, init)
    check_pattern("match", s, p, false, true)
    return match(s, p, init)
  end,
  gmatch = function(s, p, init)
    check_pattern("gmatch", s, p)
    return gmatch(s, p, init)
  end,
  gsub = function(s, p, r, n)
    check_pattern("gsub", s, p, false, true)
    return gsub(s, p, r, n)
  end,
  rep = function(s, n, sep)
    if s == "" and (sep == nil or sep == "") and tonumber(n) and active() then
      return ""  -- what rep would return, without the empty loop
    end
    return rep(s, n, sep)
  end,
  byte = function(s, i, j)
    if type(s) == "string" and active() then charge(span(#s, i, j)) end
    return byte(s, i, j)
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

-- The table functions' loops in C (see above), charged by the table's raw
-- length.  A table whose __len could answer the wrapper and the function
-- differently (insert/remove/sort/unpack count with __len) is refused
-- where they loop over it: insert and remove would loop up to whatever it
-- answers the second time.
-- table.move over more than 16 M slots is refused outright (it loops even
-- over nothing).
local rawmetatable = debug.getmetatable

local function length(name, l)
  if type(l) ~= "table" then return 0 end  -- the function itself complains
  local mt = rawmetatable(l)
  if mt and rawget(mt, "__len") ~= nil then
    error("bad argument #1 to '" .. name .. "' (a table with __len in a policy)", 3)
  end
  return rawlen(l)
end

local function safe_table()
  local t = copy(table)
  local move, insert, remove, sort, unpack = table.move, table.insert, table.remove, table.sort, table.unpack
  t.move = function(a1, f, e, tpos, a2)
    local fi, ei = math.tointeger(tonumber(f)), math.tointeger(tonumber(e))
    if fi and ei and ei - fi >= 1 << 24 then
      error("bad argument #3 to 'move' (too many elements to move in a policy)", 2)
    end
    if fi and ei and ei >= fi then charge(ei - fi + 1) end
    return move(a1, f, e, tpos, a2)
  end
  t.insert = function(l, ...)  -- appending does not loop
    if select("#", ...) >= 2 then charge(length("insert", l)) end
    return insert(l, ...)
  end
  t.remove = function(l, ...)  -- removing the last element does not loop
    if select("#", ...) >= 1 then charge(length("remove", l)) end
    return remove(l, ...)
  end
  t.sort = function(l, comp)
    local n = length("sort", l)
    if n > 1 then charge(n * math.log(n, 2)) end
    return sort(l, comp)
  end
  t.unpack = function(l, i, j)
    local fi = math.tointeger(tonumber(i) or 1)
    local ej = math.tointeger(tonumber(j) or length("unpack", l))
    if fi and ej and ej >= fi then charge(ej - fi + 1) end
    return unpack(l, i, j)
  end
  return t
end

-- utf8's scans: len/offset walk the string, codepoint pushes values.
local function safe_utf8()
  local u = copy(utf8)
  local len, offset, codepoint = utf8.len, utf8.offset, utf8.codepoint
  u.len = function(s, ...)
    if type(s) == "string" then charge(#s / SCAN_BYTES) end
    return len(s, ...)
  end
  u.offset = function(s, ...)
    if type(s) == "string" then charge(#s / SCAN_BYTES) end
    return offset(s, ...)
  end
  u.codepoint = function(s, i, j)
    if type(s) == "string" then charge(span(#s, i, j)) end
    return codepoint(s, i, j)
  end
  return u
end

-- A policy resumes (and closes) only coroutines it created itself.  The
-- coroutine a policy runs in (coroutine.running()) is the host's: it is
-- adopted by the caller's task, and, left suspended by a refused yield and
-- resumed by a later route, its database waits would yield the host's
-- (AWAIT, db, tag) to the policy (the db handle, with write access) and
-- leave the scheduler a request it never registered (sb.run raised).
-- Closing another route's coroutine would strand that route's task.  And
-- under sb.poller a policy's own coroutine that waits for the database
-- yields the poller's values: anything a resume returns that is a
-- userdata (a policy cannot make one) is a host object, and an error.
local function safe_coroutine()
  local c = copy(coroutine)
  local mine = setmetatable({}, { __mode = "k" })
  local create, resume, close, status, unpack = coroutine.create, coroutine.resume, coroutine.close,
    coroutine.status, table.unpack
  local function own(name, co)
    if not mine[co] then
      error("bad argument #1 to '" .. name .. "' (not a coroutine this policy created)", 3)
    end
  end
  function c.create(f)
    local co = create(f)
    mine[co] = true
    return co
  end
  function c.resume(co, ...)
    own("resume", co)
    local r = pack(resume(co, ...))
    if r[1] then
      for i = 2, r.n do
        if type(r[i]) == "userdata" then
          error("a coroutine of the policy yielded a host object (database waits belong to the policy's own thread)", 2)
        end
      end
    end
    return unpack(r, 1, r.n)
  end
  function c.close(co)
    own("close", co)
    return close(co)
  end
  function c.wrap(f)
    local co = c.create(f)
    return function(...)
      local r = pack(c.resume(co, ...))
      if r[1] then return unpack(r, 2, r.n) end
      if status(co) == "dead" then close(co) end  -- its pending __close handlers, as wrap does
      error(r[2], type(r[2]) == "string" and 2 or 0)
    end
  end
  return c
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
    utf8 = safe_utf8(),
    coroutine = safe_coroutine(),
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

-- Run fn(...) in a new coroutine under a fresh budget (limits.instructions,
-- limits.memory).  --> true, results... | false, message (a string)
-- While fn waits for the database its yields go to whoever runs us (the
-- scheduler, or sb.poller's loop); outside a coroutine they cannot, and a
-- database call inside fn simply blocks (see lsb_await.c).  A yield of the
-- policy's own (coroutine.yield in route) is an error: only the
-- scheduler's database waits (core.AWAIT) are passed on, or anything when
-- sb.poller is set (the poller's yields are its own business).
function M.run(limits, fn, ...)
  local budget = core.budget(limits.instructions, limits.memory, limits.cpu)
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
