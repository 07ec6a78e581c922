-- spec/transaction_spec.lua - db:transaction(fn [, opts]) and db:begin()
-- (issue 2, "The Lua API"): commit, rollback, results, pinning to one
-- connection, retries of retryable failures, misuse after the end.
local helpers = require "helpers"
local sb = require "switchboard"

local count = helpers.count

helpers.each_backend(function(backend)
  local function setup(opts)
    local db = helpers.open(backend, opts)
    local t = helpers.table(db, "tx_items", "id bigint primary key, v text")
    return db, t
  end

  describe("db:transaction", function()
    it("returns fn's results after COMMIT", function()
      local db, t = setup()
      local a, b, c = db:transaction(function(tx)
        assert.are.equal(1, tx:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 1, "one"))
        return 42, "x", true
      end)
      assert.are.equal(42, a)
      assert.are.equal("x", b)
      assert.are.equal(true, c)
      assert.are.equal(1, count(db, t))
    end)

    it("passes fn a handle with exec, query and first", function()
      local db, t = setup()
      local n, rows, row = db:transaction(function(tx)
        local n = tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a'), (2, 'b')")
        return n, tx:query("SELECT id, v FROM " .. t .. " ORDER BY id"), tx:first("SELECT v FROM " .. t .. " WHERE id = $1", 2)
      end)
      assert.are.equal(2, n)
      assert.are.equal(2, #rows)
      assert.are.same({ "id", "v" }, rows.columns)
      assert.are.equal("b", row.v)
    end)

    it("commits when fn returns nothing, with no error", function()
      local db, t = setup()
      local r, err = db:transaction(function(tx)
        tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      end)
      assert.is_nil(err)
      assert.are_not.equal(false, r)
      assert.are.equal(1, count(db, t))
    end)

    it("rolls back and returns nil, err when fn raises", function()
      local db, t = setup()
      local r, err = db:transaction(function(tx)
        tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
        tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (2, 'b')")
        error("boom-in-fn")
      end)
      assert.is_nil(r)
      assert.is_not_nil(err)
      assert.truthy(tostring(err):find("boom-in-fn", 1, true), "err should carry the message: " .. tostring(err))
      assert.are.equal(0, count(db, t))
      -- the database is usable afterwards (the connection went back clean)
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES (3, 'c')"))
      assert.are.equal(1, count(db, t))
    end)

    it("rolls back and returns the switchboard error when fn asserts a failed statement", function()
      local db, t = setup()
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      local r, err = db:transaction(function(tx)
        assert(tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (2, 'b')"))
        assert(tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'dup')"))
        return "not reached"
      end)
      assert.is_nil(r)
      assert.is_not_nil(err)
      assert.are.equal("constraint", err.class)
      assert.are.equal("23505", err.sqlstate)
      assert.are.equal(1, count(db, t))
    end)

    it("never reports success for a transaction that was not committed", function()
      -- fn swallows a failed statement and returns normally.  On PostgreSQL
      -- the transaction is aborted and COMMIT turns into ROLLBACK, so the
      -- call must fail; on SQLite the statement error leaves the transaction
      -- open and COMMIT succeeds.  Either way: success <=> row committed.
      local db, t = setup()
      local r, err = db:transaction(function(tx)
        assert(tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')"))
        local n, e = tx:exec("INSERT INTO no_such_table_" .. helpers.suffix .. " VALUES (1)")
        assert.is_nil(n); assert.is_not_nil(e)
        return "done"
      end)
      local committed = count(db, t) == 1
      if r == "done" then
        assert.is_true(committed, "transaction reported success but the row is not there")
      else
        assert.is_nil(r); assert.is_not_nil(err)
        assert.is_false(committed, "transaction reported failure but the row was committed")
      end
      if backend.is_pg then assert.is_nil(r, "PostgreSQL rolled back the aborted transaction") end
    end)

    it("works inside a task and returns the same results", function()
      local db, t = setup()
      local a, b = helpers.in_task(function()
        return db:transaction(function(tx)
          tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
          return tx:first("SELECT v FROM " .. t .. " WHERE id = 1").v, 7
        end)
      end)
      assert.are.equal("a", a)
      assert.are.equal(7, b)
      local r, err = helpers.in_task(function()
        return db:transaction(function(tx)
          tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (2, 'b')")
          error("task-boom")
        end)
      end)
      assert.is_nil(r)
      assert.truthy(tostring(err):find("task-boom", 1, true))
      assert.are.equal(1, count(db, t))
    end)

    it("raises on a non-function argument", function()
      local db = setup()
      assert.has_error(function() db:transaction("SELECT 1") end)
      assert.has_error(function() db:transaction(nil) end)
    end)

    it("keeps uncommitted changes invisible to other connections", function()
      local db, t = setup({ pool = 4 })
      local seen_inside, seen_outside
      assert.is_not_nil(db:transaction(function(tx)
        tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
        seen_inside = count(tx, t)
        seen_outside = count(db, t)
        return true
      end))
      assert.are.equal(1, seen_inside)
      assert.are.equal(0, seen_outside)
      assert.are.equal(1, count(db, t))
    end)

    it("concurrent transactions in tasks each see only their own uncommitted rows", function()
      local db, t = setup({ pool = 4 })
      local seen = {}
      local fns = {}
      for i = 1, 5 do
        fns[i] = function()
          local r, err = db:transaction(function(tx)
            tx:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", i, "v" .. i)
            local rows = assert(tx:query("SELECT id FROM " .. t .. " ORDER BY id"))
            local ids = {}
            for _, row in ipairs(rows) do ids[#ids + 1] = row.id end
            -- the row of this transaction is there
            local mine = false
            for _, id in ipairs(ids) do if id == i then mine = true end end
            assert.is_true(mine)
            return i
          end)
          assert.is_nil(err)
          seen[i] = r
        end
      end
      helpers.run_tasks(table.unpack(fns))
      assert.are.same({ 1, 2, 3, 4, 5 }, seen)
      assert.are.equal(5, count(db, t))
    end)
  end)

  describe("db:begin", function()
    it("commit returns true and makes the changes visible", function()
      local db, t = setup()
      do
        local tx <close> = db:begin()
        assert.are.equal(1, tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')"))
        assert.are.equal("a", tx:first("SELECT v FROM " .. t .. " WHERE id = 1").v)
        assert.are.equal(1, #tx:query("SELECT id FROM " .. t))
        assert.are.equal(true, tx:commit())
      end -- __close after commit is a no-op
      assert.are.equal(1, count(db, t))
    end)

    it("rolls back when the scope is left without commit", function()
      local db, t = setup()
      do
        local tx <close> = db:begin()
        tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      end
      assert.are.equal(0, count(db, t))
      -- the connection came back: a write goes through right away
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES (2, 'b')"))
      assert.are.equal(1, count(db, t))
    end)

    it("rolls back when an error leaves the scope", function()
      local db, t = setup()
      local ok = pcall(function()
        local tx <close> = db:begin()
        tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
        error("leave")
      end)
      assert.is_false(ok)
      assert.are.equal(0, count(db, t))
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES (2, 'b')"))
    end)

    it("rollback returns true and discards the changes", function()
      local db, t = setup()
      local tx = db:begin()
      tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      assert.are.equal(true, tx:rollback())
      assert.are.equal(0, count(db, t))
    end)

    it("is pinned: uncommitted rows are invisible outside until commit", function()
      local db, t = setup({ pool = 4 })
      local tx <close> = db:begin()
      tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      for _ = 1, 5 do assert.are.equal(1, count(tx, t)) end
      assert.are.equal(0, count(db, t))
      assert.are.equal(true, tx:commit())
      assert.are.equal(1, count(db, t))
    end)

    it("raises when used after commit or rollback (misuse)", function()
      local db, t = setup()
      local tx = db:begin()
      assert.are.equal(true, tx:commit())
      assert.has_error(function() tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')") end)
      assert.has_error(function() tx:query("SELECT 1 AS a") end)
      assert.has_error(function() tx:first("SELECT 1 AS a") end)
      local tx2 = db:begin()
      assert.are.equal(true, tx2:rollback())
      assert.has_error(function() tx2:first("SELECT 1 AS a") end)
      assert.are.equal(0, count(db, t))
    end)

    it("a statement error inside returns nil, err and rollback still works", function()
      local db, t = setup()
      local tx <close> = db:begin()
      tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      local n, err = tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'dup')")
      assert.is_nil(n)
      assert.are.equal("constraint", err.class)
      assert.are.equal(true, tx:rollback())
      assert.are.equal(0, count(db, t))
    end)

    it("a tx handle dropped without commit is rolled back by __gc and frees its connection", function()
      local db, t = setup()
      -- in a child process: a leaked pinned connection would hang it forever
      local ok, out = helpers.run_script(string.format([[
        local sb = require "switchboard"
        local db = assert(sb.open(os.getenv("SBSPEC_URL"), { pool = 1 }))
        local tx = assert(db:begin())
        assert(tx:exec("INSERT INTO %s (id, v) VALUES (1, 'leaked')"))
        tx = nil
        collectgarbage(); collectgarbage()
        assert(db:exec("INSERT INTO %s (id, v) VALUES (2, 'after')"))
        local n = assert(db:first("SELECT count(*) AS n FROM %s")).n
        io.stdout:write("COUNT ", n, "\n")
        db:close()
      ]], t, t, t), backend.url, 20)
      assert.is_true(ok, "child failed or hung:\n" .. out)
      assert.truthy(out:find("COUNT 1", 1, true), out)
      assert.are.equal(1, count(db, t))
    end)

    it("the transaction is rolled back when the db is closed with it open", function()
      local db, t = setup()
      local tx = db:begin()
      tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      db:close()
      local db2 = helpers.open(backend)
      assert.are.equal(0, count(db2, t))
    end)
  end)
end)

helpers.pg_only(function(backend)
  describe("BEGIN chained to the first statement", function()
    it("a BEGIN the server refuses fails that statement with its error, and nothing runs outside it", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "tx_chain", "id bigint")
      local tx = db:_session()
      tx:_chain("SELECT 1/0")  -- stands for a BEGIN that fails
      local n, err = tx:exec("INSERT INTO " .. t .. " (id) VALUES (1)")
      assert.is_nil(n)
      assert.are.equal("22012", err.sqlstate)
      assert.are.equal(err, tx:_failed())
      local ok, cerr = tx:commit()  -- refuses with that error
      assert.is_nil(ok)
      assert.are.equal("22012", cerr.sqlstate)
      assert.are.equal(0, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)

    it("db:transaction: BEGIN took effect with the first statement (one transaction id throughout)", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "tx_chain2", "id bigint")
      local a, b = assert(db:transaction(function(tx)
        local x = assert(tx:first("SELECT txid_current() AS x")).x
        assert(tx:exec("INSERT INTO " .. t .. " (id) VALUES (1)"))
        return x, assert(tx:first("SELECT txid_current() AS x")).x
      end))
      assert.are.equal(a, b)  -- autocommit would give each statement its own
      assert.are.equal(1, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)
  end)

  describe("transaction retries", function()
    -- Every attempt of `fn` reads the counter (taking its SERIALIZABLE
    -- snapshot), lets another connection update the row, then updates it
    -- itself: PostgreSQL fails that UPDATE with 40001 every time.
    local function always_conflicting(db, t, calls)
      return function(tx)
        calls.n = calls.n + 1
        assert(tx:exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        local v = assert(tx:first("SELECT v FROM " .. t .. " WHERE id = 1")).v
        assert(db:exec("UPDATE " .. t .. " SET v = v + 100 WHERE id = 1"))
        assert(tx:exec("UPDATE " .. t .. " SET v = $1 WHERE id = 1", v + 1))
        return "committed"
      end
    end

    local function counter(db)
      return helpers.table(db, "tx_counter", "id bigint primary key, v bigint not null")
    end

    it("re-runs fn 3 times by default on serialization failures, then returns nil, err", function()
      local db = helpers.open(backend, { pool = 4 })
      local t = counter(db)
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 0)")
      local calls = { n = 0 }
      local r, err = db:transaction(always_conflicting(db, t, calls))
      assert.is_nil(r)
      assert.is_not_nil(err)
      assert.are.equal("serialization", err.class)
      assert.are.equal("40001", err.sqlstate)
      assert.are.equal(true, err.retryable)
      assert.are.equal(4, calls.n, "1 run + 3 retries expected")
    end)

    it("honours opts.retries", function()
      local db = helpers.open(backend, { pool = 4 })
      local t = counter(db)
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 0)")
      local calls = { n = 0 }
      local r, err = db:transaction(always_conflicting(db, t, calls), { retries = 0 })
      assert.is_nil(r)
      assert.are.equal("serialization", err.class)
      assert.are.equal(1, calls.n)
      calls.n = 0
      r = db:transaction(always_conflicting(db, t, calls), { retries = 1 })
      assert.is_nil(r)
      assert.are.equal(2, calls.n)
    end)

    it("a conflict between two tasks is retried and both increments land", function()
      local db = helpers.open(backend, { pool = 4 })
      local t = counter(db)
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 0)")
      local calls_a, calls_b = 0, 0
      local ra, rb, ea, eb
      local a_has_read = false
      local function incr(tx, pause)
        assert(tx:exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        local v = assert(tx:first("SELECT v FROM " .. t .. " WHERE id = 1")).v
        if pause then
          a_has_read = true  -- B commits only after A's snapshot: a real conflict
          -- and before A's update (scaled: under valgrind B needs longer)
          assert(tx:first("SELECT pg_sleep($1) AS s", helpers.T(0.3)))
        end
        assert(tx:exec("UPDATE " .. t .. " SET v = $1 WHERE id = 1", v + 1))
        return v + 1
      end
      helpers.run_tasks(
        function()
          ra, ea = db:transaction(function(tx) calls_a = calls_a + 1; return incr(tx, calls_a == 1) end)
        end,
        function()
          while not a_has_read do sb.sleep(0.005) end
          rb, eb = db:transaction(function(tx) calls_b = calls_b + 1; return incr(tx, false) end)
        end)
      assert.is_nil(ea); assert.is_nil(eb)
      assert.are.equal(2, db:first("SELECT v FROM " .. t .. " WHERE id = 1").v)
      assert.are.same({ 1, 2 }, { math.min(ra, rb), math.max(ra, rb) })
      assert.are.equal(2, calls_a, "the slow transaction should have been re-run once")
      assert.are.equal(1, calls_b)
    end)
  end)
end)

helpers.sqlite_only(function(backend)
  describe("transaction retries", function()
    it("a busy failure is retried until the other writer lets go", function()
      local db = helpers.open(backend, { busy_timeout = 100 })
      local t = helpers.table(db, "tx_busy", "id bigint primary key, v text")
      local other = helpers.open(backend)
      local slow = helpers.calibrate_cte(other, 0.15)
      local holder = other:begin()
      assert(holder:exec("INSERT INTO " .. t .. " (id, v) VALUES (100, 'lock')"))
      local calls, r, err = 0, nil, nil
      local t0 = helpers.now()
      helpers.run_tasks(
        function()
          r, err = db:transaction(function(tx)
            calls = calls + 1
            assert(tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')"))
            return "ok"
          end)
        end,
        function()
          -- hold the write lock for ~0.15 s (longer than busy_timeout)
          assert(other:first(slow))
          assert.are.equal(true, holder:commit())
        end)
      helpers.log("sqlite busy retry: %d call(s) of fn, %.3f s", calls, helpers.now() - t0)
      assert.is_nil(err, tostring(err))
      assert.are.equal("ok", r)
      assert.are.equal(2, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)

    it("busy beyond busy_timeout with retries = 0 gives nil, err of class busy", function()
      local db = helpers.open(backend, { busy_timeout = 50 })
      local t = helpers.table(db, "tx_busy2", "id bigint primary key, v text")
      local other = helpers.open(backend)
      local holder = other:begin()
      assert(holder:exec("INSERT INTO " .. t .. " (id, v) VALUES (100, 'lock')"))
      local r, err = db:transaction(function(tx)
        assert(tx:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')"))
        return "ok"
      end, { retries = 0 })
      assert.is_nil(r)
      assert.are.equal("busy", err.class)
      assert.are.equal(true, err.retryable)
      assert.are.equal(true, holder:rollback())
      local n, e2 = db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, 'a')")
      assert.is_nil(e2)
      assert.are.equal(1, n)
    end)
  end)
end)

