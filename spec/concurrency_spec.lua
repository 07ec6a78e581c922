-- spec/concurrency_spec.lua - issue 2, "Concurrency that must be real", on a
-- real PostgreSQL server and real SQLite files.  Measured times are printed
-- to stderr ("[switchboard spec] ...") so that they can be quoted.
local helpers = require "helpers"

local function nproc()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l") or "")
  if p then p:close() end
  return n or 1
end

helpers.pg_only(function(backend)
  describe("PostgreSQL pool 8", function()
    it("runs 200 tasks of pg_sleep(0.05) in far less than the 10 s of running them in turn", function()
      local db = helpers.open(backend, { pool = 8 })
      local done, in_flight, max_in_flight = 0, 0, 0
      local fns = {}
      for i = 1, 200 do
        fns[i] = function()
          in_flight = in_flight + 1
          if in_flight > max_in_flight then max_in_flight = in_flight end
          local row, err = db:first("SELECT pg_sleep(0.05) AS s, $1 AS i", i)
          in_flight = in_flight - 1
          assert(row, err)
          assert.are.equal(i, row.i)
          done = done + 1
        end
      end
      local t0 = helpers.now()
      helpers.run_tasks(table.unpack(fns))
      local dt = helpers.now() - t0
      helpers.log("postgresql: 200 x pg_sleep(0.05), pool 8: %.3f s (serial: 10 s; ideal with 8 connections: 1.25 s)", dt)
      assert.are.equal(200, done)
      assert.is_true(max_in_flight > 8, "tasks did not wait concurrently")
      assert.is_true(dt < helpers.T(3.0), string.format("took %.3f s", dt))
    end)

    it("a slow statement does not hold up quick ones on other connections", function()
      local db = helpers.open(backend, { pool = 8 })
      -- grow the pool first (it opens connections as load needs them; under
      -- valgrind a connect alone can outlast the slow statement)
      local warm = {}
      for i = 1, 8 do warm[i] = function() assert(db:first("SELECT pg_sleep(0.05) AS s")) end end
      helpers.run_tasks(table.unpack(warm))
      local t = helpers.table(db, "conc_pgquick", "id bigint primary key, v text")
      local order, times = {}, {}
      local t0 = helpers.now()
      helpers.run_tasks(
        function() assert(db:first("SELECT pg_sleep(0.3) AS s")); order[#order + 1] = "slow"; times.slow = helpers.now() - t0 end,
        function() assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")); order[#order + 1] = "write"; times.write = helpers.now() - t0 end,
        function() assert(db:first("SELECT 1 AS a")); order[#order + 1] = "read"; times.read = helpers.now() - t0 end)
      helpers.log("postgresql: slow pg_sleep(0.3) done at %.3f s; quick write at %.3f s, quick read at %.3f s",
        times.slow, times.write, times.read)
      assert.are.equal("slow", order[3])
    end)
  end)

  describe("a freshly opened pool", function()
    it("does not queue a quick query behind a slow one while other connections are free", function()
      -- five fresh pools: right after sb.open only some connections may be
      -- up; a quick query must still not wait behind the slow one
      for trial = 1, 5 do
        local db = helpers.open(backend, { pool = 4 })
        local order, times = {}, {}
        local t0 = helpers.now()
        helpers.run_tasks(
          function() assert(db:first("SELECT pg_sleep(0.3) AS s")); order[#order + 1] = "slow"; times.slow = helpers.now() - t0 end,
          function() assert(db:first("SELECT 1 AS a")); order[#order + 1] = "quick"; times.quick = helpers.now() - t0 end)
        helpers.log("postgresql, fresh pool of 4 (trial %d): slow done at %.3f s, quick done at %.3f s",
          trial, times.slow, times.quick)
        assert.is_true(times.quick < helpers.T(0.2), string.format("trial %d: the quick query waited %.3f s behind pg_sleep(0.3)",
          trial, times.quick))
        db:close()
      end
    end)
  end)

  describe("the pool grows on demand", function()
    -- the backends of one db, told apart by application_name
    local function backends(db, app)
      local row = assert(db:first("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", app))
      return row.n
    end

    it("opens one connection, keeps one for a trickle, and grows to `pool` for a burst", function()
      local app = "sbgrow" .. tostring(os.time()) .. math.random(1000000)
      local sep = backend.url:find("?", 1, true) and "&" or "?"
      local db = helpers.open(backend, { pool = 6 }, backend.url .. sep .. "application_name=" .. app)
      local probe = helpers.open(backend)
      assert.are.equal(1, backends(probe, app))
      for i = 1, 50 do assert.are.equal(i, db:first("SELECT $1::int AS i", i).i) end  -- one at a time
      assert.are.equal(1, backends(probe, app), "a serial trickle grew the pool")
      local fns = {}
      for i = 1, 12 do fns[i] = function() assert(db:first("SELECT pg_sleep(0.2) AS s")) end end
      local t0 = helpers.now()
      helpers.run_tasks(table.unpack(fns))
      local dt = helpers.now() - t0
      helpers.log("postgresql: pool grown from 1 to %d connections by 12 x pg_sleep(0.2): %.3f s (one connection: 2.4 s)",
        backends(probe, app), dt)
      assert.are.equal(6, backends(probe, app))
      assert.is_true(dt < helpers.T(1.2), string.format("took %.3f s", dt))
    end)
  end)

  describe("two databases in one scheduler", function()
    it("a PostgreSQL sleep and a slow SQLite read overlap", function()
      local pg = helpers.open(backend)
      local lite = helpers.open(backend, nil, "sqlite:" .. helpers.tmpfile("mixed"))
      local cte = helpers.calibrate_cte(lite, 0.3)
      local t1 = helpers.now()
      assert(lite:first(cte))
      local lite_alone = helpers.now() - t1
      local t0 = helpers.now()
      helpers.run_tasks(
        function() assert(pg:first("SELECT pg_sleep(0.3) AS s")) end,
        function() assert(lite:first(cte)) end)
      local dt = helpers.now() - t0
      helpers.log("pg_sleep(0.3) + SQLite read of %.3f s in one sb.run: %.3f s", lite_alone, dt)
      assert.is_true(dt < 0.3 + lite_alone - 0.1 / helpers.time_factor, string.format("no overlap: %.3f s", dt))
    end)
  end)
end)

helpers.sqlite_only(function(backend)
  describe("SQLite readers and writer", function()
    it("a quick write and a quick read complete while a slow read (~0.3 s) runs", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "conc_quick", "id bigint primary key, v text")
      local slow = helpers.calibrate_cte(db, 0.3)
      local order, times = {}, {}
      local t0 = helpers.now()
      helpers.run_tasks(
        function()
          local row = assert(db:first(slow))
          assert.is_true(row.n > 0)
          order[#order + 1] = "slow"; times.slow = helpers.now() - t0
        end,
        function()
          assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 1, "quick"))
          order[#order + 1] = "write"; times.write = helpers.now() - t0
        end,
        function()
          assert(db:first("SELECT count(*) AS n FROM " .. t))
          order[#order + 1] = "read"; times.read = helpers.now() - t0
        end)
      helpers.log("sqlite: slow read done at %.3f s; quick write done at %.3f s, quick read done at %.3f s (order: %s)",
        times.slow, times.write, times.read, table.concat(order, ", "))
      assert.are.equal("slow", order[3], "completion order: " .. table.concat(order, ", "))
      assert.is_true(times.slow >= 0.2, "the slow read was not slow: " .. times.slow)
      assert.is_true(times.write < times.slow and times.read < times.slow)
      -- the write is committed and visible to readers
      assert.are.equal("quick", db:first("SELECT v FROM " .. t .. " WHERE id = 1").v)
    end)

    it("a second read runs on the other reader while a slow read runs", function()
      -- Judged by completion order, which CPU contention cannot change: the
      -- quick read (SQL the db has seen before) finishes long before the
      -- slow one, so it did not wait behind it on the same reader.
      local db = helpers.open(backend)
      local slow = helpers.calibrate_cte(db, 0.4)
      local quick = helpers.cte_sql(10)
      assert(db:first(quick))
      local order, times = {}, {}
      local t0 = helpers.now()
      helpers.run_tasks(
        function() assert(db:first(slow)); order[#order + 1] = "slow"; times.slow = helpers.now() - t0 end,
        function() assert(db:first(quick)); order[#order + 1] = "quick"; times.quick = helpers.now() - t0 end)
      helpers.log("sqlite: slow read done at %.3f s, a second read done at %.3f s (%d CPUs)",
        times.slow, times.quick, nproc())
      assert.are.same({ "quick", "slow" }, order)
    end)
  end)
end)

helpers.each_backend(function(backend)
  describe("1,000 tasks", function()
    it("interleaving writes and reads on one db all get correct, separate results", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "conc_thousand", "id bigint primary key, v text, n bigint")
      local N = 1000
      local ok_count, in_flight, max_in_flight = 0, 0, 0
      local seen = {}
      local fns = {}
      for i = 1, N do
        fns[i] = function()
          in_flight = in_flight + 1
          if in_flight > max_in_flight then max_in_flight = in_flight end
          local n, err = db:exec("INSERT INTO " .. t .. " (id, v, n) VALUES ($1, $2, $3)", i, "task-" .. i, i * 7)
          assert.is_nil(err)
          assert.are.equal(1, n)
          local row = assert(db:first("SELECT id, v, n FROM " .. t .. " WHERE id = $1", i))
          assert.are.equal(i, row.id)
          assert.are.equal("task-" .. i, row.v)
          assert.are.equal(i * 7, row.n)
          local echo = assert(db:first("SELECT $1 AS e, $2 AS s", "echo-" .. i, i))
          assert.are.equal("echo-" .. i, echo.e)
          assert.are.equal(i, echo.s)
          local rows = assert(db:query("SELECT n FROM " .. t .. " WHERE id = $1 OR id = $2 ORDER BY id", i, -i))
          assert.are.equal(1, #rows)
          assert.are.equal(i * 7, rows[1].n)
          in_flight = in_flight - 1
          assert.is_nil(seen[i])
          seen[i] = true
          ok_count = ok_count + 1
        end
      end
      local t0 = helpers.now()
      helpers.run_tasks(table.unpack(fns))
      local dt = helpers.now() - t0
      helpers.log("%s: 1000 tasks x (insert, 3 reads): %.3f s, max %d tasks waiting at once",
        backend.name, dt, max_in_flight)
      assert.are.equal(N, ok_count)
      assert.is_true(max_in_flight > 1, "tasks never overlapped")
      local agg = assert(db:first("SELECT count(*) AS c, CAST(sum(n) AS bigint) AS s FROM " .. t))
      assert.are.equal(N, agg.c)
      assert.are.equal(7 * N * (N + 1) // 2, agg.s)
    end)
  end)
end)

