-- switchboard/init.lua - the `switchboard` module: the public Lua API.
--
-- Owns: sb.open (with a first round trip, so a bad server or password
-- shows at open), transactions written on the C handles (db:begin,
-- tx:commit, tx:rollback, db:transaction and db:batch with retries), and the built-in
-- scheduler (sb.spawn, sb.run, sb.sleep) that resumes tasks when the C
-- core reports their requests finished.  Statements, values and waiting
-- live in C (switchboard.core); see lsb_await.c for how a call yields or
-- blocks.

local core = require "switchboard.core"

local coroutine, table, setmetatable, type, select, pcall, error, tostring =
  coroutine, table, setmetatable, type, select, pcall, error, tostring
local getmetatable, pairs, next, math = getmetatable, pairs, next, math

local sb = {
  version = core.version,
  null = core.null,
  blob = core.blob,
  now = core.now,
  poller = nil,  -- set to cqueues.poll (or similar) to yield under another loop
}

local DB, TX = core.db_methods, core.tx_methods

-- An error object like the ones the core returns.
function sb.error(fields)
  return core.error(fields)
end

function sb.iserror(v)
  return getmetatable(v) == core.error_mt
end

-- The call-center layer (issue 3), loaded on first use:
-- sb.migrate(db [, dir [, opts]]) (switchboard/migrate.lua) and
-- sb.callcenter(db [, opts]) (switchboard/callcenter.lua).
function sb.migrate(...) return require("switchboard.migrate").run(...) end
function sb.callcenter(...) return require("switchboard.callcenter").new(...) end
-- sb.router{...} (switchboard/router.lua, issue 4): policies with hot reload.
function sb.router(...) return require("switchboard.router").new(...) end

------------------------------------------------------------------ open

-- sb.open(url [, opts]) --> db | nil, err
function sb.open(url, opts)
  if type(url) ~= "string" then
    error("bad argument #1 to 'open' (string expected, got " .. type(url) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'open' (table expected, got " .. type(opts) .. ")", 2)
  end
  local db, err = core.open(url, opts)
  if not db then return nil, err end
  local ok, perr = db:exec("SELECT 1")
  if not ok then
    db:close()
    return nil, perr
  end
  return db
end

---------------------------------------------------------- transactions

local ISOLATION = {
  ["serializable"] = "SERIALIZABLE",
  ["repeatable read"] = "REPEATABLE READ",
  ["read committed"] = "READ COMMITTED",
}

local function begin_sql(db, opts)
  if db:backend() == "sqlite" then
    -- every write transaction takes the write lock up front: no upgrade
    -- deadlocks between processes; SQLite is serializable anyway
    return "BEGIN IMMEDIATE"
  end
  local sql = "BEGIN"
  if opts and opts.isolation then
    local level = ISOLATION[tostring(opts.isolation):lower()]
    if not level then error("bad option 'isolation' (unknown level '" .. tostring(opts.isolation) .. "')", 3) end
    sql = sql .. " ISOLATION LEVEL " .. level
  end
  if opts and opts.read_only then sql = sql .. " READ ONLY" end
  return sql
end

-- db:begin([opts]) --> tx | nil, err   (opts: isolation, read_only)
function DB:begin(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'begin' (table expected, got " .. type(opts) .. ")", 2)
  end
  local sql = begin_sql(self, opts)
  local tx = self:_session()
  if self:backend() == "postgresql" then
    -- BEGIN goes out with the first statement, in one round trip; if it
    -- fails, that statement is skipped and returns BEGIN's error
    tx:_chain(sql)
    return tx
  end
  local ok, err = tx:exec(sql)
  if not ok then
    tx:_release()
    return nil, err
  end
  return tx
end

local function finish(tx, sql)
  if not tx:_active() then error("attempt to use a finished switchboard.tx", 3) end
  local ok, err = tx:exec(sql)
  tx:_release()
  if not ok then return nil, err end
  return true
end

-- tx:commit() --> true | nil, err   (refuses, rolling back, after a failed statement)
function TX:commit()
  local failed = self:_failed()
  if failed and self:_active() then
    finish(self, "ROLLBACK")
    return nil, failed
  end
  return finish(self, "COMMIT")
end

-- tx:rollback() --> true | nil, err
function TX:rollback()
  return finish(self, "ROLLBACK")
end

local function retryable(e)
  return sb.iserror(e) and e.retryable
end

-- once() --> true, results... | nil, err.  Run it until it succeeds or
-- fails for good: retryable failures (serialization, deadlock, busy) run it
-- again, up to `retries` times, after a jittered exponential pause (1, 2, 4
-- .. 100 ms: rivals retrying in lockstep would conflict again and again at
-- SERIALIZABLE).
local function retrying(retries, once)
  local attempt = 0
  while true do
    local res = table.pack(once())
    if res[1] then return table.unpack(res, 2, res.n) end
    if not retryable(res[2]) or attempt >= retries then return nil, res[2] end
    attempt = attempt + 1
    sb.sleep(math.random() * math.min(0.001 * 2 ^ attempt, 0.1))
  end
end

local function check_opts(name, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to '" .. name .. "' (table expected, got " .. type(opts) .. ")", 3)
  end
end

-- db:transaction(fn [, opts]) --> fn's results after COMMIT | nil, err
-- fn(tx) runs inside BEGIN .. COMMIT; an error raised in fn rolls back and
-- is returned; retryable failures run fn again, up to opts.retries times
-- (default 3).
function DB:transaction(fn, opts)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'transaction' (function expected, got " .. type(fn) .. ")", 2)
  end
  check_opts("transaction", opts)
  return retrying(opts and opts.retries or 3, function()
    local tx, err = self:begin(opts)
    if not tx then return nil, err end
    local res = table.pack(pcall(fn, tx))
    if not res[1] then
      err = res[2]
      if tx:_active() then tx:rollback() end
      -- a statement error the body ignored is the better explanation
      if not sb.iserror(err) then err = tx:_failed() or err end
      return nil, err
    end
    if tx:_active() then  -- else fn committed or rolled back itself
      local ok
      ok, err = tx:commit()
      if not ok then return nil, err end
    end
    return true, table.unpack(res, 2, res.n)
  end)
end

-- db:batch(statements [, opts]) --> results | nil, err
-- statements: { {sql, p1, p2, ...}, ... } (with n = 1 + the parameter count
-- when a parameter is nil, as table.pack gives), all known up front.  They
-- run in order as ONE transaction sent at once: one round trip on
-- PostgreSQL (a pipeline with one Sync: an implicit transaction, or BEGIN
-- .. COMMIT with opts.isolation / opts.read_only), one pass of the writer
-- on SQLite (BEGIN IMMEDIATE .. COMMIT).  results[i] is what statement i
-- gives: its rows (as db:query) when it returns columns, else its affected
-- count.  If one fails nothing is kept; err.statement says which.
-- Retryable failures run the batch again, up to opts.retries (3) times.
function DB:batch(statements, opts)
  if type(statements) ~= "table" then
    error("bad argument #1 to 'batch' (table expected, got " .. type(statements) .. ")", 2)
  end
  check_opts("batch", opts)
  local begin, commit
  if self:backend() == "sqlite" or (opts and (opts.isolation or opts.read_only)) then
    begin, commit = begin_sql(self, opts), "COMMIT"
  end
  return retrying(opts and opts.retries or 3, function()
    local res, err = self:_batch(statements, begin, commit)
    if not res then return nil, err end
    return true, res
  end)
end

------------------------------------------------------------- scheduler

local AWAIT, ALONE = core.AWAIT, core.ALONE
local tasks = setmetatable({}, { __mode = "k" })  -- thread -> true (C checks this)
core._bind(sb, tasks)

local ready = {}       -- FIFO of threads to resume
local waiting = {}     -- request tag -> thread
local waiting_db = {}  -- request tag -> db
local dbs = {}         -- db -> number of tasks waiting on it
local sleepers = {}    -- binary min-heap of { at, seq, thread } (earliest first)
local sleep_seq = 0    -- ties wake in the order they went to sleep
local reaped = {}      -- scratch for db:_reap

-- The sleepers' heap: O(log n) per sleep, so thousands of calls waiting on
-- timers cost the loop nothing while they wait.
local function before(x, y)
  return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2])
end

local function heap_push(h, e)
  local i = #h + 1
  while i > 1 do
    local parent = i // 2
    if not before(e, h[parent]) then break end
    h[i] = h[parent]
    i = parent
  end
  h[i] = e
end

local function heap_pop(h)
  local top, n = h[1], #h
  local last = h[n]
  h[n] = nil
  n = n - 1
  if n == 0 then return top end
  local i = 1
  while true do
    local c = 2 * i
    if c > n then break end
    if c < n and before(h[c + 1], h[c]) then c = c + 1 end
    if not before(h[c], last) then break end
    h[i] = h[c]
    i = c
  end
  h[i] = last
  return top
end

local function report(co, err)
  local handler = sb.on_error
  local tb = debug.traceback(co, tostring(err))
  if handler then
    local ok, herr = pcall(handler, err, tb)
    if ok then return end
    tb = tb .. "\n(and the error handler failed: " .. tostring(herr) .. ")"
  end
  io.stderr:write("switchboard: task failed: ", tb, "\n")
end

local function resume(co, ...)
  local ok, a, b, c = coroutine.resume(co, ...)
  if not ok then
    tasks[co] = nil
    report(co, a)
  elseif coroutine.status(co) == "dead" then
    tasks[co] = nil
  elseif a == AWAIT then  -- waiting for request c on db b
    waiting[c] = co
    waiting_db[c] = b
    dbs[b] = (dbs[b] or 0) + 1
  elseif a == sleepers then  -- sb.sleep: b = wake-up time
    sleep_seq = sleep_seq + 1
    heap_push(sleepers, { b, sleep_seq, co })
  else  -- a plain coroutine.yield() inside a task: run again next round
    ready[#ready + 1] = co
  end
end

-- sb._adopt(co): co (a coroutine the running task resumes itself, such as
-- the sandbox's) waits for the database the way its task does.
function sb._adopt(co)
  if tasks[coroutine.running()] then tasks[co] = true end
end

-- sb.spawn(fn, ...) --> the task's thread; it starts at the next sb.run
function sb.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local args = table.pack(...)
  local co = coroutine.create(function() return fn(table.unpack(args, 1, args.n)) end)
  tasks[co] = true
  ready[#ready + 1] = co
  return co
end

-- sb.sleep(seconds): inside a task, other tasks run meanwhile
function sb.sleep(seconds)
  if type(seconds) ~= "number" then
    error("bad argument #1 to 'sleep' (number expected, got " .. type(seconds) .. ")", 2)
  end
  local co, main = coroutine.running()
  if not main and tasks[co] then
    coroutine.yield(sleepers, core.now() + seconds)
  else
    core.poll({}, 0, math.max(seconds, 0))
  end
end

local function wake(tag)
  local co, db = waiting[tag], waiting_db[tag]
  waiting[tag], waiting_db[tag] = nil, nil
  local n = dbs[db] - 1
  dbs[db] = n > 0 and n or nil
  ready[#ready + 1] = co
end

-- Step every database tasks wait on; queue the tasks whose request ended.
local function collect()
  for db in pairs(dbs) do
    if db:isclosed() then  -- close finished their requests: wake them all
      for tag, d in pairs(waiting_db) do
        if d == db then wake(tag) end
      end
    else
      db:step()
      for i = 1, db:_reap(reaped) do
        wake(reaped[i])
        reaped[i] = nil
      end
    end
  end
end

-- Sleep until a database has work or the next sleeper is due.
local function idle()
  local now = core.now()
  local timeout
  if sleepers[1] then timeout = sleepers[1][1] - now end
  local fds, n = {}, 0
  for db in pairs(dbs) do
    n = n + 1
    fds[n] = db:pollfd()
    local t = db:timeout()
    if t and (not timeout or t < timeout) then timeout = t end
  end
  if timeout and timeout < 0 then timeout = 0 end
  core.poll(fds, n, timeout)
end

local function wake_sleepers()
  local now = core.now()
  while sleepers[1] and sleepers[1][1] <= now do
    ready[#ready + 1] = heap_pop(sleepers)[3]
  end
end

-- sb.run(): drive all tasks until none is left.
function sb.run()
  while true do
    while ready[1] do
      local batch = ready
      ready = {}
      local n = #batch
      for i = 1, n - 1 do resume(batch[i]) end
      -- nothing else to run: the task's quick SQLite reads may run inline
      if not ready[1] then tasks[ALONE] = true end
      resume(batch[n])
      tasks[ALONE] = nil
      collect()
    end
    if not next(dbs) and not sleepers[1] then return true end
    collect()
    wake_sleepers()
    if not ready[1] then
      idle()
      collect()
      wake_sleepers()
    end
  end
end

return sb
