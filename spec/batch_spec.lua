-- spec/batch_spec.lua - db:batch(statements [, opts]): statements known up
-- front, sent at once and run as one transaction (issue 5: the assign
-- transaction in one round trip).  Results in order, all-or-nothing on any
-- failure (SQL errors, statements refused before they run, timeouts),
-- arguments checked before anything is sent, atomic under concurrency.
local helpers = require "helpers"
local sb = require "switchboard"

local count = helpers.count

helpers.each_backend(function(backend)
  local function setup(opts)
    local db = helpers.open(backend, opts)
    local t = helpers.table(db, "batch_items", "id bigint primary key, v text not null")
    local ins = "INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)"
    return db, t, ins
  end

  describe("db:batch", function()
    it("runs the statements in order and returns each one's result", function()
      local db, t, ins = setup()
      local res, err = db:batch{
        { ins, 1, "a" },
        { ins, 2, "b" },
        { "UPDATE " .. t .. " SET v = $1 WHERE id >= $2", "z", 2 },
        { "SELECT id, v FROM " .. t .. " ORDER BY id" },
        { "DELETE FROM " .. t .. " WHERE id = $1", 99 },
      }
      assert.is_nil(err)
      assert.are.equal(5, #res)
      assert.are.equal(1, res[1])
      assert.are.equal(1, res[2])
      assert.are.equal(1, res[3])
      assert.are.same({ "id", "v" }, res[4].columns)
      assert.are.equal(2, #res[4])
      assert.are.equal("a", res[4][1].v)
      assert.are.equal("z", res[4][2].v)  -- the SELECT saw the UPDATE before it
      assert.are.equal(0, res[5])
      assert.are.equal(2, count(db, t))
    end)

    it("keeps nothing when a statement fails, and says which one", function()
      local db, t, ins = setup()
      assert(db:exec(ins, 1, "kept"))
      local res, err = db:batch{
        { ins, 2, "b" },
        { ins, 1, "duplicate" },
        { ins, 3, "c" },
      }
      assert.is_nil(res)
      assert.is_true(sb.iserror(err))
      assert.are.equal("constraint", err.class)
      assert.are.equal(2, err.statement)
      assert.are.equal(1, count(db, t))
      -- the connection is free again: a later write goes through
      assert.are.equal(1, db:exec(ins, 4, "after"))
    end)

    it("keeps nothing when a statement is refused before it runs", function()
      local db, t, ins = setup()
      local res, err = db:batch{
        { ins, 1, "a" },
        { ins, 2 },  -- one parameter short
        { ins, 3, "c" },
      }
      assert.is_nil(res)
      assert.are.equal("misuse", err.class)
      assert.are.equal(2, err.statement)
      assert.are.equal(0, count(db, t))
    end)

    it("binds nil parameters counted by n (as table.pack gives)", function()
      local db, t = setup()
      local nullable = helpers.table(db, "batch_null", "id bigint primary key, v text")
      local res, err = db:batch{
        table.pack("INSERT INTO " .. nullable .. " (id, v) VALUES ($1, $2)", 1, nil),
        { "SELECT count(*) AS n FROM " .. nullable .. " WHERE v IS NULL" },
      }
      assert.is_nil(err)
      assert.are.equal(1, res[2][1].n)
      -- and a NOT NULL column refuses it, naming the statement
      res, err = db:batch{ { "INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 1, nil, n = 3 } }
      assert.is_nil(res)
      assert.are.equal("constraint", err.class)
      assert.are.equal(1, err.statement)
    end)

    it("raises on bad arguments before sending anything", function()
      local db, t, ins = setup()
      assert.has_error(function() db:batch("INSERT") end,
        "bad argument #1 to 'batch' (table expected, got string)")
      assert.has_error(function() db:batch({}, 5) end,
        "bad argument #2 to 'batch' (table expected, got number)")
      assert.has_error(function() db:batch{ { ins, 1, "a" }, "SELECT 1" } end,
        "bad argument #1 to 'batch' (statement 2: table expected, got string)")
      assert.has_error(function() db:batch{ { ins, 1, "a" }, { 42 } } end,
        "bad argument #1 to 'batch' (statement 2: SQL string expected at [1], got number)")
      assert.has_error(function() db:batch{ { ins, 1, "a" }, { ins, 2, {} } } end,
        "bad argument #1 to 'batch' (statement 2: cannot bind a table as $2)")
      assert.are.equal(0, count(db, t))
    end)

    it("returns an empty list for an empty batch", function()
      local db = setup()
      assert.are.same({}, db:batch{})
    end)

    it("runs more statements than one connection pipelines at once", function()
      local db, t, ins = setup()
      local list = {}
      for i = 1, 300 do list[i] = { ins, i, "v" .. i } end
      local res, err = db:batch(list)
      assert.is_nil(err)
      assert.are.equal(300, #res)
      assert.are.equal(300, count(db, t))
    end)

    it("fails with a timeout, keeps nothing and frees the connection", function()
      local db, t, ins = setup()
      local slow = backend.is_pg and "SELECT pg_sleep(3) AS s" or helpers.calibrate_cte(db, 3)
      local view = db:with{ timeout = 200 }
      local t0 = helpers.now()
      local res, err = view:batch{ { ins, 1, "a" }, { slow }, { ins, 2, "b" } }
      local took = helpers.now() - t0
      assert.is_nil(res)
      assert.are.equal("timeout", err.class)
      assert.is_true(took < helpers.T(2.0), "the timeout waited for the slow statement")
      assert.are.equal(0, count(db, t))
      assert.are.equal(1, db:exec(ins, 3, "after"))
      assert.are.equal(1, count(db, t))
    end)

    it("is atomic under 32 concurrent tasks: readers never see half a batch", function()
      local db = setup()
      local acct = helpers.table(db, "batch_acct", "id bigint primary key, balance bigint not null")
      for i = 1, 8 do assert(db:exec("INSERT INTO " .. acct .. " (id, balance) VALUES ($1, 1000)", i)) end
      local move = "UPDATE " .. acct .. " SET balance = balance + $1 WHERE id = $2"
      local total = "SELECT sum(balance) AS s FROM " .. acct
      local moved, seen, bad = 0, 0, 0
      local fns = {}
      for w = 1, 24 do
        fns[#fns + 1] = function()
          for k = 1, 10 do
            local from, to = (w + k) % 8 + 1, (w * 3 + k) % 8 + 1
            -- rows locked in id order: two batches never wait on each other in a cycle
            local first, second = { move, -k, from }, { move, k, to }
            if from > to then first, second = second, first end
            local res = assert(db:batch{ first, second })
            assert.are.same({ 1, 1 }, res)
            moved = moved + 1
          end
        end
      end
      for _ = 1, 8 do
        fns[#fns + 1] = function()
          for _ = 1, 20 do
            local s = assert(db:first(total)).s
            seen = seen + 1
            if tonumber(s) ~= 8000 then bad = bad + 1 end
          end
        end
      end
      helpers.run_tasks(table.unpack(fns))
      assert.are.equal(240, moved)
      assert.are.equal(160, seen)
      assert.are.equal(0, bad)
      assert.are.equal(8000, tonumber(db:first(total).s))
    end)
  end)
end)

helpers.sqlite_only(function(backend)
  describe("db:batch on SQLite", function()
    it("waits for another handle's write lock, then commits (no statement skipped)", function()
      local db = helpers.open(backend)
      local other = helpers.open(backend)  -- a second handle on the same file
      local t = helpers.table(db, "batch_lock", "id integer primary key")
      local ins = "INSERT INTO " .. t .. " (id) VALUES ($1)"
      local res, err, waited
      helpers.run_tasks(
        function()
          local tx = assert(other:begin())
          assert(tx:exec(ins, 1))
          sb.sleep(helpers.T(0.3))
          assert(tx:commit())
        end,
        function()
          sb.sleep(helpers.T(0.05))  -- the other handle holds the lock by now
          local t0 = helpers.now()
          res, err = db:batch{ { ins, 2 }, { ins, 3 } }
          waited = helpers.now() - t0
        end)
      assert.is_nil(err)
      assert.are.same({ 1, 1 }, res)
      assert.is_true(waited > helpers.T(0.1), "the batch did not wait for the lock")
      assert.are.equal(3, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)
  end)
end)

helpers.pg_only(function(backend)
  describe("db:batch on PostgreSQL", function()
    it("runs every statement in one transaction", function()
      local db = helpers.open(backend)
      local res = assert(db:batch{
        { "SELECT txid_current() AS x" },
        { "SELECT txid_current() AS x" },
        { "SELECT current_setting('transaction_isolation') AS i" },
      })
      assert.are.equal(res[1][1].x, res[2][1].x)
      assert.are.equal("read committed", res[3][1].i)
    end)

    it("opens the transaction with opts.isolation", function()
      local db = helpers.open(backend)
      local res = assert(db:batch({
        { "SELECT txid_current() AS x" },
        { "SELECT current_setting('transaction_isolation') AS i" },
      }, { isolation = "serializable" }))
      assert.are.equal(2, #res)  -- BEGIN and COMMIT are not in the results
      assert.are.equal("serializable", res[2][1].i)
    end)

    it("rolls back an explicit transaction that failed, and the connection serves again", function()
      local db = helpers.open(backend, { pool = 1 })
      local t = helpers.table(db, "batch_iso", "id bigint primary key")
      local res, err = db:batch({
        { "INSERT INTO " .. t .. " (id) VALUES (1)" },
        { "INSERT INTO " .. t .. " (id) VALUES (1)" },
      }, { isolation = "repeatable read" })
      assert.is_nil(res)
      assert.are.equal(2, err.statement)
      assert.are.equal("idle", assert(db:first(
        "SELECT CASE WHEN txid_current_if_assigned() IS NULL THEN 'idle' ELSE 'busy' END AS s")).s)
      assert.are.equal(0, assert(db:first("SELECT count(*) AS n FROM " .. t)).n)
    end)
  end)
end)
