-- spec/tasks_spec.lua - the built-in scheduler (sb.spawn / sb.run), the
-- yield-inside-a-task / block-elsewhere rule, error isolation between tasks,
-- sb.poller, and the cqueues-style pollable (pollfd/events/timeout/step).
local sb = require "switchboard"
local helpers = require "helpers"

-- A statement that takes about `secs` seconds on `backend`.
local function slow_sql(backend, db, secs)
  if backend.is_pg then return string.format("SELECT pg_sleep(%g) AS s", secs) end
  return helpers.calibrate_cte(db, secs)
end

helpers.each_backend(function(backend)
  describe("sb.spawn / sb.run", function()
    it("sb.spawn raises on a non-function", function()
      assert.has_error(function() sb.spawn(nil) end)
      assert.has_error(function() sb.spawn("SELECT 1") end)
    end)

    it("sb.run returns at once when there is no task", function()
      local t0 = helpers.now()
      sb.run()
      assert.is_true(helpers.now() - t0 < helpers.T(0.5))
    end)

    it("passes the extra arguments to the task function", function()
      local got
      sb.spawn(function(...) got = table.pack(...) end, 1, nil, "three")
      sb.run()
      assert.is_not_nil(got)
      assert.are.equal(3, got.n)
      assert.are.equal(1, got[1]); assert.is_nil(got[2]); assert.are.equal("three", got[3])
    end)

    it("interleaves tasks: a second task starts before the first one's query returns", function()
      local db = helpers.open(backend)
      local slow = slow_sql(backend, db, 0.2)
      local log = {}
      helpers.run_tasks(
        function()
          log[#log + 1] = "A start"
          assert(db:first(slow))
          log[#log + 1] = "A end"
        end,
        function()
          log[#log + 1] = "B start"
          assert(db:first("SELECT 1 AS a"))
          log[#log + 1] = "B end"
        end)
      -- B ran while A was waiting (whether B's statement could finish before
      -- A's is a pool/reader matter: see concurrency_spec)
      assert.are.equal("A start", log[1])
      assert.are.equal("B start", log[2])
      assert.are.equal(4, #log)
    end)

    it("sb.sleep wakes 300 sleeping tasks in the order of their deadlines", function()
      local woke = {}
      local gap = helpers.T(0.001)
      -- far enough ahead that all 300 are asleep before the first deadline,
      -- even on a loaded machine (a past deadline wakes in spawn order)
      local base = sb.now() + helpers.T(0.2)
      for i = 1, 300 do
        -- deadlines base + 1..30 gaps, ten tasks on each, spawned scrambled
        local slot = (i * 7) % 30 + 1
        sb.spawn(function()
          sb.sleep(base + slot * gap - sb.now())
          woke[#woke + 1] = slot
        end)
      end
      -- keep the loop busy past the last deadline: all 300 fall due at once
      sb.spawn(function() while sb.now() < base + 31 * gap do end end)
      sb.run()
      assert.are.equal(300, #woke)
      for k = 2, 300 do
        assert.is_true(woke[k - 1] <= woke[k], "wake-up " .. k .. " came before an earlier deadline")
      end
    end)

    it("a task reading alone still yields: a sleeper wakes while its quick reads go on", function()
      -- on SQLite the lone task's quick reads may run on this thread
      -- (SB_Q_INLINE_QUICK), but at most one per turn of the scheduler
      local db = helpers.open(backend)
      local n, reads_before_wake = 0, nil
      helpers.run_tasks(
        function()
          for i = 1, 400 do
            assert.are.equal(i, assert(db:first("SELECT $1 AS v", i)).v)
            n = i
          end
        end,
        function()
          sb.sleep(0.002)
          reads_before_wake = n
        end)
      assert.are.equal(400, n)
      assert.is_true(reads_before_wake < 400, "the sleeper woke only after all 400 reads")
    end)

    it("runs tasks spawned by tasks until none is left", function()
      local db = helpers.open(backend)
      local results = {}
      helpers.run_tasks(function()
        for i = 1, 5 do
          sb.spawn(function()
            results[i] = assert(db:first("SELECT $1 * 2 AS v", i)).v
            sb.spawn(function() results[10 + i] = assert(db:first("SELECT $1 AS v", i)).v end)
          end)
        end
      end)
      for i = 1, 5 do
        assert.are.equal(2 * i, results[i])
        assert.are.equal(i, results[10 + i])
      end
    end)

    it("an error in one task does not stop the others; sb.run returns", function()
      local db = helpers.open(backend)
      local finished = {}
      sb.spawn(function()
        assert(db:first("SELECT 1 AS a"))
        error("deliberate task failure (expected in the spec output)")
      end)
      for i = 1, 3 do
        sb.spawn(function()
          assert(db:first("SELECT $1 AS a", i))
          assert(db:first("SELECT $1 AS a", i))
          finished[i] = true
        end)
      end
      local ok, e = pcall(sb.run)
      assert.is_true(ok, "sb.run raised: " .. tostring(e))
      assert.are.same({ true, true, true }, finished)
    end)

    it("reports a task's error to sb.on_error(err, traceback) when set", function()
      local db = helpers.open(backend)
      local got = {}
      sb.on_error = function(err, tb) got[#got + 1] = { err = err, tb = tb } end
      local finished = false
      local function failing_in_task() error("handled-task-failure-42") end
      sb.spawn(function() assert(db:first("SELECT 1 AS a")); failing_in_task() end)
      sb.spawn(function() assert(db:first("SELECT 2 AS a")); finished = true end)
      local ok, e = pcall(sb.run)
      sb.on_error = nil
      assert.is_true(ok, tostring(e))
      assert.is_true(finished)
      assert.are.equal(1, #got)
      assert.truthy(tostring(got[1].err):find("handled-task-failure-42", 1, true))
      assert.is_string(got[1].tb)
      assert.truthy(got[1].tb:find("traceback", 1, true))
      assert.truthy(got[1].tb:find("failing_in_task", 1, true), got[1].tb)
    end)

    it("reports a task's error with its traceback on stderr by default", function()
      local ok, out = helpers.run_script([[
        local sb = require "switchboard"
        local db = assert(sb.open(os.getenv("SBSPEC_URL")))
        local done = 0
        local function inner_failing_function() error("kaboom-in-task-7731") end
        sb.spawn(function() assert(db:first("SELECT 1 AS a")); inner_failing_function() end)
        sb.spawn(function() assert(db:first("SELECT 1 AS a")); assert(db:first("SELECT 2 AS a")); done = done + 1 end)
        sb.spawn(function() done = done + 1 end)
        sb.run()
        db:close()
        io.stdout:write("DONE ", done, "\n")
      ]], backend.url)
      assert.is_true(ok, "script failed:\n" .. out)
      assert.truthy(out:find("DONE 2", 1, true), out)
      assert.truthy(out:find("kaboom-in-task-7731", 1, true), out)
      assert.truthy(out:find("traceback", 1, true), "no traceback in:\n" .. out)
      assert.truthy(out:find("inner_failing_function", 1, true), "traceback lacks the function:\n" .. out)
    end)
  end)

  describe("yield inside a task, block elsewhere", function()
    local sql = "SELECT $1 AS i, $2 AS s, $3 AS n, $4 AS f"
    local args = { 7, "seven", nil, 7.5, n = 4 }

    it("a query outside a coroutine blocks and returns the same values as in a task", function()
      local db = helpers.open(backend)
      local outside = assert(db:query(sql, table.unpack(args, 1, args.n)))
      local inside = helpers.in_task(function() return assert(db:query(sql, table.unpack(args, 1, args.n))) end)
      assert.is_true(helpers.same_rows(outside, inside))
      assert.are.same({ "i", "s", "n", "f" }, outside.columns)
      assert.are.equal(7, outside[1].i)
      assert.are.equal("seven", outside[1].s)
      assert.is_nil(outside[1].n)
      assert.are.equal(7.5, outside[1].f)
      -- errors too
      local r1, e1 = db:query("SELEKT")
      local r2, e2 = helpers.in_task(function() return db:query("SELEKT") end)
      assert.is_nil(r1); assert.is_nil(r2)
      assert.are.equal(e1.class, e2.class)
      assert.are.equal(e1.sqlstate, e2.sqlstate)
    end)

    it("a query in a plain coroutine blocks: the coroutine does not yield", function()
      local db = helpers.open(backend)
      local co = coroutine.create(function()
        local row = assert(db:first("SELECT $1 AS a", 11))
        return row.a
      end)
      local ok, v = coroutine.resume(co)
      assert.is_true(ok, tostring(v))
      assert.are.equal(11, v)
      assert.are.equal("dead", coroutine.status(co))
      local w = coroutine.wrap(function() return db:first("SELECT 12 AS a").a end)
      assert.are.equal(12, w())
    end)

    it("a plain coroutine inside a task also blocks (its yields stay the script's)", function()
      local db = helpers.open(backend)
      local got = {}
      helpers.run_tasks(function()
        local gen = coroutine.wrap(function()
          for i = 1, 3 do coroutine.yield(assert(db:first("SELECT $1 AS a", i)).a) end
          return "end"
        end)
        for _ = 1, 4 do got[#got + 1] = gen() end
      end)
      assert.are.same({ 1, 2, 3, "end" }, got)
    end)

    it("a query across a C boundary inside a task (table.sort, gsub) blocks instead of failing", function()
      local db = helpers.open(backend)
      local sorted, replaced
      helpers.run_tasks(function()
        local t = { 5, 3, 9, 1, 7 }
        table.sort(t, function(a, b) return assert(db:first("SELECT $1 - $2 AS d", a, b)).d < 0 end)
        sorted = t
        replaced = ("a-b"):gsub("%a", function(c) return assert(db:first("SELECT $1 AS c", c:upper())).c end)
      end)
      assert.are.same({ 1, 3, 5, 7, 9 }, sorted)
      assert.are.equal("A-B", replaced)
    end)

    it("a query inside a metamethod works in a task and outside", function()
      local db = helpers.open(backend)
      local lookup = setmetatable({}, { __index = function(_, k)
        return assert(db:first("SELECT $1 * 10 AS v", k)).v
      end })
      assert.are.equal(30, lookup[3])
      local v = helpers.in_task(function() return lookup[4] end)
      assert.are.equal(40, v)
    end)
  end)

  describe("sb.poller", function()
    after_each(function() sb.poller = nil end)

    it("is called with the db and lets any yieldable coroutine wait in its own loop", function()
      local db = helpers.open(backend)
      local slow = slow_sql(backend, db, 0.1)
      local polled = {}
      sb.poller = function(d) polled[#polled + 1] = d; coroutine.yield("waiting") end
      local co = coroutine.create(function() return assert(db:first(slow)) end)
      local resumes, yields_seen = 0, 0
      local ok, v
      repeat
        ok, v = coroutine.resume(co)
        resumes = resumes + 1
        assert.is_true(ok, tostring(v))
        if coroutine.status(co) == "suspended" then
          yields_seen = yields_seen + 1
          assert.are.equal("waiting", v)
        end
      until coroutine.status(co) == "dead" or resumes > 1e7
      sb.poller = nil
      assert.are.equal("dead", coroutine.status(co))
      assert.is_table(v)
      assert.is_true(yields_seen >= 1, "the coroutine never yielded through sb.poller")
      assert.is_true(#polled >= 1)
      assert.are.equal(db, polled[1])
      -- outside any coroutine a query still blocks with the poller set
      sb.poller = function() error("poller must not be called outside a coroutine") end
      assert.are.equal(1, db:first("SELECT 1 AS a").a)
    end)
  end)

  describe("pollable interface", function()
    it("pollfd is a stable integer fd; events is 'r'; timeout is a number or nil; step works", function()
      local db = helpers.open(backend)
      local fd = db:pollfd()
      assert.are.equal("integer", math.type(fd))
      assert.is_true(fd >= 0)
      assert.are.equal(fd, db:pollfd())
      assert.are.equal("r", db:events())
      local to = db:timeout()
      assert.is_true(to == nil or type(to) == "number", "timeout: " .. tostring(to))
      assert.has_no.errors(function() db:step() end)
      assert.has_no.errors(function() db:step() end)
      for i = 1, 3 do assert.are.equal(i, db:first("SELECT $1 AS a", i).a) end
      helpers.in_task(function() return db:first("SELECT 1 AS a") end)
      assert.are.equal(fd, db:pollfd())
      assert.are.equal("r", db:events())
      -- two databases have two different fds
      local db2 = helpers.open(backend, nil, backend.fresh_url())
      assert.are_not.equal(fd, db2:pollfd())
    end)
  end)
end)
