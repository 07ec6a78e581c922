-- spec/cqueues_spec.lua - driving switchboard from cqueues (issue 2): with
-- sb.poller = cqueues.poll, a coroutine run by a cqueues controller calls
-- db:query and the controller's other coroutines keep running meanwhile.
local sb = require "switchboard"
local helpers = require "helpers"
local cqueues = require "cqueues"

-- Run the controller until it is empty; fail on an error in any coroutine
-- or when it has not finished within `limit` seconds.
local function loop(cq, limit)
  local deadline = helpers.now() + (limit or 20)
  while not cq:empty() do
    local ok, err = cq:step(0.05)
    if not ok then error("cqueues controller: " .. tostring(err), 0) end
    if helpers.now() > deadline then error("cqueues controller did not finish in time", 0) end
  end
end

helpers.each_backend(function(backend)
  describe("with sb.poller = cqueues.poll", function()
    after_each(function() sb.poller = nil end)

    local function slow_sql(db, secs)
      if backend.is_pg then return string.format("SELECT pg_sleep(%g) AS s", secs) end
      return helpers.calibrate_cte(db, secs)
    end

    it("a query in a cqueues coroutine lets the other coroutines tick", function()
      local db = helpers.open(backend)
      local slow = slow_sql(db, backend.is_pg and 0.2 or 0.3)
      sb.poller = cqueues.poll
      local cq = cqueues.new()
      local ticks, done = 0, false
      local ticks_during, rows, err, elapsed
      cq:wrap(function()
        while not done do
          cqueues.sleep(0.01)
          ticks = ticks + 1
        end
      end)
      cq:wrap(function()
        local start, t0 = ticks, helpers.now()
        rows, err = db:query(slow)
        elapsed = helpers.now() - t0
        ticks_during = ticks - start
        done = true
      end)
      loop(cq)
      sb.poller = nil
      helpers.log("%s under cqueues: query took %.3f s, the ticker ticked %d times meanwhile",
        backend.name, elapsed, ticks_during)
      assert.is_nil(err)
      assert.are.equal(1, #rows)
      assert.is_true(ticks_during > 5, "the ticker was blocked: " .. ticks_during .. " ticks")
    end)

    it("many cqueues coroutines query concurrently and get their own results", function()
      local db = helpers.open(backend, { pool = 8 })
      local slow = backend.is_pg and "SELECT pg_sleep(0.1) AS s, $1 AS i" or "SELECT $1 AS i"
      sb.poller = cqueues.poll
      local cq = cqueues.new()
      local got = {}
      for i = 1, 16 do
        cq:wrap(function()
          local row = assert(db:first(slow, i))
          got[i] = row.i
          local r2 = assert(db:first("SELECT $1 * 2 AS d", i))
          got[i] = got[i] + r2.d
        end)
      end
      local t0 = helpers.now()
      loop(cq)
      local dt = helpers.now() - t0
      sb.poller = nil
      helpers.log("%s under cqueues: 16 coroutines done in %.3f s", backend.name, dt)
      for i = 1, 16 do assert.are.equal(3 * i, got[i]) end
      if backend.is_pg then assert.is_true(dt < helpers.T(1.0), string.format("%.3f s: not concurrent", dt)) end
    end)

    it("batches from several cqueues coroutines commit, or roll back whole", function()
      local db = helpers.open(backend, { pool = 4 })
      local t = helpers.table(db, "cq_batch", "id bigint primary key")
      local ins = "INSERT INTO " .. t .. " (id) VALUES ($1)"
      sb.poller = cqueues.poll
      local cq = cqueues.new()
      local ok, failed = 0, {}
      for i = 1, 8 do
        cq:wrap(function()
          -- the odd ones insert 1000 + i twice: the second breaks the key
          local second = i % 2 == 1 and 1000 + i or 2000 + i
          local res, err = db:batch{ { ins, 1000 + i }, { ins, second } }
          if res then ok = ok + 1 else failed[#failed + 1] = err end
        end)
      end
      loop(cq)
      sb.poller = nil
      assert.are.equal(4, ok)
      assert.are.equal(4, #failed)
      for _, err in ipairs(failed) do
        assert.are.equal("constraint", err.class)
        assert.are.equal(2, err.statement)
      end
      assert.are.equal(8, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)

    it("transactions and errors work inside a cqueues coroutine", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "cq_tx", "id bigint primary key, v text")
      sb.poller = cqueues.poll
      local cq = cqueues.new()
      local r, err, bad_err
      cq:wrap(function()
        r, err = db:transaction(function(tx)
          assert(tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')"))
          return tx:first("SELECT v FROM " .. t .. " WHERE id = 1").v
        end)
        local _
        _, bad_err = db:query("SELEKT")
      end)
      loop(cq)
      sb.poller = nil
      assert.is_nil(err)
      assert.are.equal("a", r)
      assert.are.equal("syntax", bad_err.class)
      assert.are.equal(1, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)

    it("the db can be polled by a cqueues controller directly (pollfd/events/timeout)", function()
      local db = helpers.open(backend)
      local cq = cqueues.new()
      local polled = 0
      sb.poller = function(d)
        polled = polled + 1
        return cqueues.poll(d)
      end
      local row
      cq:wrap(function() row = assert(db:first(slow_sql(db, 0.1))) end)
      loop(cq)
      sb.poller = nil
      assert.is_not_nil(row)
      assert.is_true(polled >= 1)
    end)
  end)
end)
