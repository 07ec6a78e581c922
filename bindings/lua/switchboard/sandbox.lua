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

local core = require "switchboard.core"
local sb = require "switchboard"

local M = {}

local pairs, type, error, setmetatable, getmetatable, tostring, select =
  pairs, type, error, setmetatable, getmetatable, tostring, select
local coroutine, table = coroutine, table

core.budget_install()

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then c[k] = v end
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
    string = copy(string, { dump = true }),
    table = copy(table),
    math = copy(math),
    utf8 = copy(utf8),
    coroutine = copy(coroutine),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
  }
  -- metatables only for the policy's own tables: never the string
  -- metatable or a host object's
  function env.setmetatable(t, mt)
    if type(t) ~= "table" then error("bad argument #1 to 'setmetatable' (table expected)", 2) end
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

-- Load a policy file's text in env.  --> chunk | nil, message
function M.loadfile(path, env)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  if text:byte(1) == 27 then return nil, path .. ": binary chunks are not allowed" end
  local chunk, cerr = load(text, "@" .. path, "t", env)
  if not chunk then return nil, cerr end
  return chunk, nil, text
end

local function pack(...) return { n = select("#", ...), ... } end

-- Run fn(...) in a new coroutine under a fresh budget (limits.instructions,
-- limits.memory).  --> true, results... | false, message
-- While fn waits for the database its yields go to whoever runs us (the
-- scheduler, or sb.poller's loop); outside a coroutine they cannot, and a
-- database call inside fn simply blocks (see lsb_await.c).
function M.run(limits, fn, ...)
  local budget = core.budget(limits.instructions, limits.memory)
  local co = coroutine.create(fn)
  sb._adopt(co)  -- let fn's queries yield like the caller's would
  local r = pack(core.budget_resume(budget, co, ...))
  while r[1] and coroutine.status(co) == "suspended" do
    if not coroutine.isyieldable() then
      return false, "policy tried to wait outside a task"
    end
    r = pack(core.budget_resume(budget, co, coroutine.yield(table.unpack(r, 2, r.n))))
  end
  if not r[1] then return false, tostring(r[2]) end
  return table.unpack(r, 1, r.n)
end

return M
