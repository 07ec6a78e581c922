-- spec/api_spec.lua - the `switchboard` Lua API (issue 2, "The Lua API"):
-- module fields, sb.open, exec/query/first, values and parameters, errors,
-- argument checking, closing.  Every test runs on a real SQLite file and on
-- the real PostgreSQL server (see spec/helpers.lua).
local sb = require "switchboard"
local helpers = require "helpers"

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

-- Asserts that a failed call returned nil, err with a switchboard error.
local function assert_err(res, err, class)
  assert.is_nil(res, "expected nil, err but got a result")
  assert.is_not_nil(err, "expected an error object as second result")
  assert.is_string(err.class)
  if class then assert.are.equal(class, err.class, "error class; error was: " .. tostring(err)) end
  return err
end

describe("switchboard module", function()
  it("has a version string", function()
    assert.is_string(sb.version)
    assert.truthy(sb.version:match("^%d+%.%d+"), "version looks like a version: " .. sb.version)
  end)

  it("has a null sentinel that is not nil and not false", function()
    assert.is_not_nil(sb.null)
    assert.are_not.equal(false, sb.null)
    assert.are.equal(sb.null, require("switchboard").null)
  end)

  it("sb.blob marks a string and rejects non-strings", function()
    assert.is_not_nil(sb.blob("abc"))
    assert.is_not_nil(sb.blob(""))
    assert.has_error(function() sb.blob({}) end)
    assert.has_error(function() sb.blob(nil) end)
    assert.has_error(function() sb.blob(function() end) end)
  end)

  it("sb.open raises on a non-string URL (programming mistake)", function()
    assert.has_error(function() sb.open(nil) end)
    assert.has_error(function() sb.open({}) end)
    assert.has_error(function() sb.open(function() end) end)
  end)

  it("sb.open returns nil, err of class misuse for an unknown URL scheme", function()
    local db, err = sb.open("mysql://user@localhost/db")
    assert_err(db, err, "misuse")
    assert.is_string(err.message)
    db, err = sb.open("")
    assert_err(db, err)
  end)

  it("sb.open returns nil, err (does not raise) for an SQLite file it cannot create", function()
    local ok, db, err = pcall(sb.open, "sqlite:/nonexistent-dir-" .. helpers.suffix .. "/x/y.db")
    assert.is_true(ok, "sb.open raised instead of returning nil, err: " .. tostring(db))
    if db then
      -- opening lazily is acceptable only if the first statement then fails
      local row
      row, err = db:first("SELECT 1 AS a")
      db:close()
      assert_err(row, err)
    else
      assert_err(db, err)
    end
  end)

  it("sqlite::memory: is one database shared by all its connections", function()
    local db = assert(sb.open("sqlite::memory:"))
    helpers.track(db)
    assert.is_not_nil(db:exec("CREATE TABLE m (id integer primary key, v text)"))
    assert.are.equal(1, db:exec("INSERT INTO m (id, v) VALUES ($1, $2)", 1, "one"))
    for _ = 1, 5 do
      local row, err = db:first("SELECT v FROM m WHERE id = $1", 1)
      assert.is_nil(err)
      assert.are.equal("one", row and row.v)
    end
    -- also seen by reads made concurrently from tasks
    local seen = {}
    local fns = {}
    for i = 1, 4 do
      fns[i] = function() seen[i] = assert(db:first("SELECT count(*) AS n FROM m")).n end
    end
    helpers.run_tasks(table.unpack(fns))
    assert.are.same({ 1, 1, 1, 1 }, seen)
    db:close()
    helpers.close_all()
  end)
end)

helpers.each_backend(function(backend)
  describe("sb.open", function()
    it("opens and reports itself through tostring without the password", function()
      local db = helpers.open(backend)
      local s = tostring(db)
      assert.is_string(s)
      if backend.password then
        assert.is_nil(s:find(backend.password, 1, true), "tostring(db) leaks the password: " .. s)
      end
    end)
  end)

  describe("sb.open options", function()
    it("accepts every documented option", function()
      local db = helpers.open(backend, { pool = 2, readers = 1, busy_timeout = 1000, statement_cache = 0,
                                         prepare = false, null = sb.null, synchronous = "FULL" })
      local t = helpers.table(db, "api_opts", "id bigint primary key, v text")
      for i = 1, 3 do assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", i, nil)) end
      for _ = 1, 3 do
        local rows = assert(db:query("SELECT id, v FROM " .. t .. " WHERE id >= $1 ORDER BY id", 2))
        assert.are.equal(2, #rows)
        assert.are.equal(sb.null, rows[1].v)
      end
    end)

    it("works with readers = 0 (everything on one connection)", function()
      local db = helpers.open(backend, { readers = 0 })
      local t = helpers.table(db, "api_r0", "id bigint primary key")
      local got = {}
      local fns = {}
      for i = 1, 20 do
        fns[i] = function()
          assert(db:exec("INSERT INTO " .. t .. " (id) VALUES ($1)", i))
          got[i] = assert(db:first("SELECT id FROM " .. t .. " WHERE id = $1", i)).id
        end
      end
      helpers.run_tasks(table.unpack(fns))
      for i = 1, 20 do assert.are.equal(i, got[i]) end
    end)
  end)

  describe("db:exec", function()
    it("returns the affected row count as an integer", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_exec", "id bigint primary key, v text")
      local n = db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 1, "a")
      assert.are.equal(1, n)
      assert.are.equal("integer", math.type(n))
      assert.are.equal(3, db:exec("INSERT INTO " .. t .. " (id, v) VALUES (2, 'b'), (3, 'c'), (4, 'd')"))
      assert.are.equal(4, db:exec("UPDATE " .. t .. " SET v = 'z'"))
      assert.are.equal(2, db:exec("DELETE FROM " .. t .. " WHERE id > $1", 2))
      assert.are.equal(0, db:exec("DELETE FROM " .. t .. " WHERE id > $1", 100))
      assert.are.equal(2, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)

    it("returns 0 for a statement that changes no rows (DDL after an INSERT)", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_ddl", "id bigint primary key")
      assert.are.equal(3, db:exec("INSERT INTO " .. t .. " (id) VALUES (1), (2), (3)"))
      local t2 = "sbt_api_ddl2_" .. helpers.suffix
      db:exec("DROP TABLE IF EXISTS " .. t2)
      local n, err = db:exec("CREATE TABLE " .. t2 .. " (id bigint)")
      db:exec("DROP TABLE IF EXISTS " .. t2)
      assert.is_nil(err)
      assert.are.equal(0, n)
    end)

    it("accepts a trailing semicolon and whitespace", function()
      local db = helpers.open(backend)
      local row, err = db:first("SELECT 7 AS a;  \n")
      assert.is_nil(err)
      assert.are.equal(7, row.a)
    end)

    it("rejects a multi-statement string and runs none of it", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_multi", "id bigint primary key")
      local n, err = db:exec("INSERT INTO " .. t .. " (id) VALUES (1); INSERT INTO " .. t .. " (id) VALUES (2)")
      assert_err(n, err)
      assert.is_truthy(err.class == "misuse" or err.class == "syntax",
        "class misuse or syntax expected, got " .. tostring(err.class))
      n, err = db:exec("INSERT INTO " .. t .. " (id) VALUES ($1); DELETE FROM " .. t, 5)
      assert_err(n, err)
      assert.are.equal(0, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)
  end)

  describe("db:query and db:first", function()
    it("return rows by column name and rows.columns in select order", function()
      local db = helpers.open(backend)
      local rows, err = db:query("SELECT 1 AS zeta, 'two' AS alpha, 3 AS mid")
      assert.is_nil(err)
      assert.are.equal(1, #rows)
      assert.are.same({ "zeta", "alpha", "mid" }, rows.columns)
      assert.are.equal(1, rows[1].zeta)
      assert.are.equal("two", rows[1].alpha)
      assert.are.equal(3, rows[1].mid)
    end)

    it("return many rows in order", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_many", "id bigint primary key, v text")
      for i = 1, 50 do db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", i, "v" .. i) end
      local rows = assert(db:query("SELECT id, v FROM " .. t .. " ORDER BY id DESC"))
      assert.are.equal(50, #rows)
      for i = 1, 50 do
        assert.are.equal(51 - i, rows[i].id)
        assert.are.equal("v" .. (51 - i), rows[i].v)
      end
      local big = backend.is_pg
        and "SELECT g AS x FROM generate_series(1, 20000) AS g"
        or "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) SELECT x FROM c"
      rows = assert(db:query(big))
      assert.are.equal(20000, #rows)
      assert.are.equal(1, rows[1].x)
      assert.are.equal(20000, rows[20000].x)
    end)

    it("return an empty rows table (with columns) and first() returns nil without error", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_empty", "id bigint primary key, v text")
      local rows, err = db:query("SELECT id, v FROM " .. t)
      assert.is_nil(err)
      assert.are.equal(0, #rows)
      assert.are.same({ "id", "v" }, rows.columns)
      local row
      row, err = db:first("SELECT id, v FROM " .. t .. " WHERE id = $1", 1)
      assert.is_nil(row)
      assert.is_nil(err)
    end)

    it("first() returns the first row only", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_first", "id bigint primary key")
      db:exec("INSERT INTO " .. t .. " (id) VALUES (3), (1), (2)")
      local row = assert(db:first("SELECT id FROM " .. t .. " ORDER BY id"))
      assert.are.equal(1, row.id)
    end)

    it("give NULL as nil and keep the column name in rows.columns", function()
      local db = helpers.open(backend)
      local rows = assert(db:query("SELECT 1 AS a, NULL AS b, 3 AS c"))
      assert.are.same({ "a", "b", "c" }, rows.columns)
      assert.are.equal(1, rows[1].a)
      assert.is_nil(rows[1].b)
      assert.are.equal(3, rows[1].c)
    end)

    it("give NULL as opts.null when it is set", function()
      local db = helpers.open(backend, { null = sb.null })
      local row = assert(db:first("SELECT NULL AS a, 2 AS b"))
      assert.are.equal(sb.null, row.a)
      assert.are.equal(2, row.b)
      local rows = assert(db:query("SELECT NULL AS a"))
      assert.are.equal(sb.null, rows[1].a)
    end)

    it("run RETURNING statements through query", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_ret", "id bigint primary key, v text")
      local rows, err = db:query("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2) RETURNING id, v", 9, "nine")
      assert.is_nil(err)
      assert.are.equal(1, #rows)
      assert.are.equal(9, rows[1].id)
      assert.are.equal("nine", rows[1].v)
    end)
  end)

  describe("parameters", function()
    it("count nil parameters with select('#')", function()
      local db = helpers.open(backend)
      local row, err = db:first("SELECT $1 AS a, $2 AS b", nil, 5)
      assert.is_nil(err)
      assert.is_nil(row.a)
      assert.are.equal(5, row.b)
      row, err = db:first("SELECT $1 AS a, $2 AS b", 5, nil)
      assert.is_nil(err)
      assert.are.equal(5, row.a)
      assert.is_nil(row.b)
    end)

    it("accept sb.null as NULL", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_null", "id bigint primary key, v text")
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 1, sb.null))
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 2, nil))
      assert.are.equal(2, db:first("SELECT count(*) AS n FROM " .. t .. " WHERE v IS NULL").n)
      local row = assert(db:first("SELECT $1 AS a", sb.null))
      assert.is_nil(row.a)
    end)

    it("can use each parameter several times", function()
      local db = helpers.open(backend)
      local row, err = db:first("SELECT $1 + $1 AS s", 21)
      assert.is_nil(err)
      assert.are.equal(42, row.s)
      assert.are.equal("integer", math.type(row.s))
      row = assert(db:first("SELECT $2 * $1 + $1 AS a, $1 AS b, $2 AS c, $1 AS d", 3, 10))
      assert.are.equal(33, row.a)
      assert.are.equal(3, row.b)
      assert.are.equal(10, row.c)
      assert.are.equal(3, row.d)
    end)

    it("with the wrong count give nil, err of class misuse", function()
      local db = helpers.open(backend)
      local row, err = db:first("SELECT $1 AS a, $2 AS b", 1)
      assert_err(row, err, "misuse")
      row, err = db:first("SELECT $1 AS a")
      assert_err(row, err, "misuse")
      row, err = db:first("SELECT $1 AS a", 1, 2)
      assert_err(row, err, "misuse")
      row, err = db:first("SELECT 1 AS a", 1)
      assert_err(row, err, "misuse")
      -- the handle still works afterwards
      assert.are.equal(1, db:first("SELECT $1 AS a", 1).a)
    end)

    it("raise on a function, table, coroutine or non-blob userdata parameter", function()
      local db = helpers.open(backend)
      assert.has_error(function() db:query("SELECT $1 AS a", function() end) end)
      assert.has_error(function() db:query("SELECT $1 AS a", {}) end)
      assert.has_error(function() db:query("SELECT $1 AS a", { 1, 2 }) end)
      assert.has_error(function() db:exec("SELECT $1 AS a", coroutine.create(function() end)) end)
      assert.has_error(function() db:first("SELECT $1 AS a", io.stdout) end)
      assert.are.equal(1, db:first("SELECT $1 AS a", 1).a)
    end)
  end)

  describe("value types", function()
    it("round-trip integers exactly, including the int64 extremes", function()
      local db = helpers.open(backend)
      for _, v in ipairs({ 0, 1, -1, 1 << 31, (1 << 53) + 1, math.maxinteger, math.mininteger }) do
        local row, err = db:first("SELECT $1 AS v", v)
        assert.is_nil(err)
        assert.are.equal(v, row.v)
        assert.are.equal("integer", math.type(row.v))
      end
      local t = helpers.table(db, "api_int", "id bigint primary key, v bigint")
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, $1), (2, $2)", math.maxinteger, math.mininteger)
      local rows = assert(db:query("SELECT v FROM " .. t .. " ORDER BY id"))
      assert.are.equal(math.maxinteger, rows[1].v)
      assert.are.equal(math.mininteger, rows[2].v)
      assert.are.equal(math.maxinteger, db:first("SELECT 9223372036854775807 AS v").v)
    end)

    it("round-trip floats exactly and keep them floats", function()
      local db = helpers.open(backend)
      for _, v in ipairs({ 0.1, -2.5, math.pi, 1e300, 2.0, 1 / 3, -1e-300 }) do
        local row, err = db:first("SELECT $1 AS v", v)
        assert.is_nil(err)
        assert.are.equal(v, row.v)
        assert.are.equal("float", math.type(row.v))
      end
      local t = helpers.table(db, "api_float", "id bigint primary key, v double precision")
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, $1)", 0.1)
      local row = assert(db:first("SELECT v FROM " .. t))
      assert.are.equal(0.1, row.v)
      assert.are.equal("float", math.type(row.v))
    end)

    it("bind booleans (PostgreSQL boolean, SQLite 1/0)", function()
      local db = helpers.open(backend)
      local row = assert(db:first("SELECT $1 AS t, $2 AS f", true, false))
      if backend.is_pg then
        assert.are.equal(true, row.t)
        assert.are.equal(false, row.f)
        row = assert(db:first("SELECT 1 = 1 AS t, 1 = 2 AS f"))
        assert.are.equal(true, row.t)
        assert.are.equal(false, row.f)
      else
        assert.are.equal(1, row.t)
        assert.are.equal(0, row.f)
        assert.are.equal("integer", math.type(row.t))
      end
    end)

    it("round-trip text, including empty strings and UTF-8", function()
      local db = helpers.open(backend)
      for _, v in ipairs({ "", "hello", "héllo ☎ 呼叫中心", string.rep("x", 100000), "it's \"quoted\"" }) do
        local row, err = db:first("SELECT $1 AS v", v)
        assert.is_nil(err)
        assert.are.equal(v, row.v)
      end
      local t = helpers.table(db, "api_text", "id bigint primary key, v text")
      db:exec("INSERT INTO " .. t .. " (id, v) VALUES (1, $1), (2, $2)", "", "héllo")
      local rows = assert(db:query("SELECT v FROM " .. t .. " ORDER BY id"))
      assert.are.equal("", rows[1].v)
      assert.are.equal("héllo", rows[2].v)
    end)

    it("never silently truncates text with an embedded NUL byte", function()
      local db = helpers.open(backend)
      local s = "ab\0cd"
      local ok, row, err = pcall(db.first, db, "SELECT $1 AS v", s)
      if backend.is_pg then
        -- PostgreSQL text cannot carry NUL: an error (returned or raised)
        if ok then
          assert.is_nil(row, "NUL text came back from PostgreSQL as " .. string.format("%q", tostring(row and row.v)))
          assert.is_not_nil(err)
        end
      else
        assert.is_true(ok, tostring(row))
        assert.is_nil(err)
        assert.are.equal(s, row.v)
        assert.are.equal(5, #row.v)
      end
    end)

    it("round-trip sb.blob with all 256 byte values as raw bytes", function()
      local db = helpers.open(backend)
      local bytes = all_bytes() .. all_bytes():reverse()
      local row, err = db:first("SELECT $1 AS b", sb.blob(bytes))
      assert.is_nil(err)
      assert.are.equal(#bytes, #row.b)
      assert.are.equal(bytes, row.b)
      local t = helpers.table(db, "api_blob", "id bigint primary key, b " .. backend.blob_type)
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, b) VALUES (1, $1)", sb.blob(bytes)))
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, b) VALUES (2, $1)", sb.blob("")))
      local rows = assert(db:query("SELECT b FROM " .. t .. " ORDER BY id"))
      assert.are.equal(bytes, rows[1].b)
      assert.are.equal("", rows[2].b)
      local typ = backend.is_pg and "pg_typeof(b)::text" or "typeof(b)"
      assert.are.equal(backend.blob_type, db:first("SELECT " .. typ .. " AS t FROM " .. t .. " WHERE id = 1").t)
      -- a blob compares as a blob
      assert.are.equal(1, db:first("SELECT id FROM " .. t .. " WHERE b = $1", sb.blob(bytes)).id)
    end)
  end)

  describe("errors", function()
    it("a syntax error returns nil, err with class, sqlstate, message, backend, retryable", function()
      local db = helpers.open(backend)
      local rows, err = db:query("SELEKT 1")
      assert_err(rows, err, "syntax")
      assert.are.equal("42601", err.sqlstate)
      assert.are.equal(backend.name, err.backend)
      assert.is_string(err.message)
      assert.is_true(#err.message > 0)
      assert.are.equal(false, err.retryable)
      local s = tostring(err)
      assert.is_string(s)
      assert.is_nil(s:find("\n"), "tostring(err) is not one line: " .. s)
      assert.truthy(s:find(err.message, 1, true), "tostring(err) lacks the message: " .. s)
    end)

    it("errors are switchboard.error objects", function()
      local db = helpers.open(backend)
      local _, err = db:query("SELEKT 1")
      local mt = getmetatable(err)
      assert.is_not_nil(mt)
      assert.are.equal("switchboard.error", mt.__name)
    end)

    it("an unknown table is class syntax", function()
      local db = helpers.open(backend)
      local rows, err = db:query("SELECT * FROM no_such_table_" .. helpers.suffix)
      assert_err(rows, err, "syntax")
      assert.are.equal(false, err.retryable)
    end)

    it("a unique violation is class constraint, sqlstate 23505", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_uniq", "id bigint primary key, v text not null")
      assert.are.equal(1, db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, 'a')", 1))
      local n, err = db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, 'b')", 1)
      assert_err(n, err, "constraint")
      assert.are.equal("23505", err.sqlstate)
      assert.are.equal(false, err.retryable)
      assert.are.equal(backend.name, err.backend)
      if backend.is_pg then assert.is_string(err.detail) end
      n, err = db:exec("INSERT INTO " .. t .. " (id, v) VALUES ($1, $2)", 2, nil)
      assert_err(n, err, "constraint")
      assert.are.equal("23502", err.sqlstate)
      -- the handle keeps working
      assert.are.equal(1, db:first("SELECT count(*) AS n FROM " .. t).n)
    end)
  end)

  describe("argument checking", function()
    it("raises on a non-string SQL argument", function()
      local db = helpers.open(backend)
      assert.has_error(function() db:query(123) end)
      assert.has_error(function() db:query(nil) end)
      assert.has_error(function() db:exec({}) end)
      assert.has_error(function() db:first(function() end) end)
      assert.has_error(function() db:query() end)
    end)

    it("raises when a method is called without the handle", function()
      local db = helpers.open(backend)
      assert.has_error(function() db.query("SELECT 1") end)
      assert.has_error(function() db.first({}, "SELECT 1") end)
    end)
  end)

  describe("closing", function()
    it("a closed handle raises 'closed'; close is idempotent", function()
      local db = helpers.open(backend)
      assert.are.equal(1, db:first("SELECT 1 AS a").a)
      db:close()
      assert.has_no.errors(function() db:close() end)
      assert.has_no.errors(function() db:close() end)
      for _, m in ipairs({ "query", "first", "exec" }) do
        local ok, e = pcall(db[m], db, "SELECT 1 AS a")
        assert.is_false(ok, m .. " on a closed handle did not raise")
        assert.truthy(tostring(e):find("closed"), "error should say closed: " .. tostring(e))
      end
    end)

    it("closes at the end of a <close> scope", function()
      local outer
      do
        local db <close> = assert(sb.open(backend.url))
        outer = db
        assert.are.equal(1, db:first("SELECT 1 AS a").a)
      end
      local ok, e = pcall(outer.query, outer, "SELECT 1 AS a")
      assert.is_false(ok)
      assert.truthy(tostring(e):find("closed"))
      assert.has_no.errors(function() outer:close() end)
    end)

    it("closes through __gc without crashing, and the database stays usable", function()
      for _ = 1, 20 do
        local db = assert(sb.open(backend.url))
        assert.are.equal(1, db:first("SELECT 1 AS a").a)
        db = nil -- luacheck: ignore
      end
      do local _ = assert(sb.open(backend.url)) end
      collectgarbage("collect")
      collectgarbage("collect")
      local db = helpers.open(backend)
      assert.are.equal(2, db:first("SELECT 2 AS a").a)
    end)

    it("gives an in-flight request a 'closed' error promptly when the db is closed", function()
      local db = helpers.open(backend)
      local slow = backend.is_pg and "SELECT pg_sleep(3) AS s" or helpers.calibrate_cte(db, 3)
      local other = helpers.open(backend, nil, backend.is_pg and backend.url or backend.fresh_url())
      local res, err, t_done
      local t0 = helpers.now()
      helpers.run_tasks(
        function() res, err = db:first(slow); t_done = helpers.now() end,
        function()
          -- let the slow statement start, then close under it
          other:first(backend.is_pg and "SELECT pg_sleep(0.2) AS s" or "SELECT 1 AS s")
          db:close()
        end)
      helpers.log("%s: close under a running statement took %.3f s", backend.name, t_done - t0)
      assert_err(res, err, "closed")
      assert.is_true(t_done - t0 < helpers.T(2.0), "close waited for the statement")
      assert.has_no.errors(function() db:close() end)
    end)
  end)
end)

helpers.sqlite_only(function(backend)
  describe("sqlite options", function()
    it("uses WAL and synchronous NORMAL by default", function()
      local db = helpers.open(backend)
      assert.are.equal("wal", db:first("PRAGMA journal_mode").journal_mode)
      local sync = db:transaction(function(tx) return tx:first("PRAGMA synchronous").synchronous end)
      assert.are.equal(1, sync)
    end)

    -- Hold the write lock through `holder` (a transaction of another handle)
    -- for about `secs`, while `fn` runs in a second task.
    local function with_lock_held(other, secs, fn)
      local slow = helpers.calibrate_cte(other, secs)
      local holder = other:begin()
      assert(holder:exec("CREATE TABLE IF NOT EXISTS lockme (x)"))
      local t0 = helpers.now()
      helpers.run_tasks(fn, function()
        assert(other:first(slow))
        assert.are.equal(true, holder:commit())
      end)
      return helpers.now() - t0
    end

    it("waits for a write lock held ~1 s by another handle (default busy_timeout 5 s)", function()
      local db = helpers.open(backend)
      local t = helpers.table(db, "api_lock", "id bigint primary key")
      local other = helpers.open(backend)
      local n, err, waited
      with_lock_held(other, 1.0, function()
        local t0 = helpers.now()
        n, err = db:exec("INSERT INTO " .. t .. " (id) VALUES (1)")
        waited = helpers.now() - t0
      end)
      helpers.log("sqlite: a write waited %.3f s for the lock (default busy_timeout)", waited)
      assert.is_nil(err, tostring(err))
      assert.are.equal(1, n)
      assert.is_true(waited >= 0.5, "the write did not wait for the lock")
    end)

    it("fails with class busy after opts.busy_timeout milliseconds", function()
      local db = helpers.open(backend, { busy_timeout = 200 })
      local t = helpers.table(db, "api_busy", "id bigint primary key")
      local other = helpers.open(backend)
      local n, err, waited
      with_lock_held(other, 1.0, function()
        local t0 = helpers.now()
        n, err = db:exec("INSERT INTO " .. t .. " (id) VALUES (1)")
        waited = helpers.now() - t0
      end)
      helpers.log("sqlite: busy_timeout = 200 gave up after %.3f s", waited)
      assert.is_nil(n)
      assert.is_not_nil(err)
      assert.are.equal("busy", err.class)
      assert.are.equal(true, err.retryable)
      assert.is_true(waited >= 0.15 and waited < helpers.T(0.9), string.format("waited %.3f s", waited))
    end)

    it("honours synchronous = 'FULL'", function()
      local db = helpers.open(backend, { synchronous = "FULL" })
      local sync = db:transaction(function(tx) return tx:first("PRAGMA synchronous").synchronous end)
      assert.are.equal(2, sync)
    end)

    it("keeps the WAL bounded under writes without pause (checkpoints on a reader thread, then on the writer)", function()
      local file = helpers.tmpfile("ckpt")
      local db = helpers.open(backend, nil, "sqlite:" .. file)
      assert(db:exec("CREATE TABLE ck (id INTEGER PRIMARY KEY, b BLOB)"))
      local blob = sb.blob(string.rep("x", 4000))  -- a page per commit at least
      for i = 1, 3000 do assert.are.equal(1, db:exec("INSERT INTO ck (id, b) VALUES ($1, $2)", i, blob)) end
      local f = assert(io.open(file .. "-wal", "rb"))
      local bytes = f:seek("end")
      f:close()
      local frames = (bytes - 32) // (4096 + 24)
      helpers.log("sqlite: WAL after 3000 back-to-back commits of 4 KB: %d frames (unchecked: ~9,100)", frames)
      assert.is_true(frames < 6000, string.format("the WAL holds %d frames: it grows without bound", frames))
      assert.are.equal(3000, db:first("SELECT count(*) AS n FROM ck").n)
    end)

    it("gives back the disk a burst grew the WAL file to (journal_size_limit 32 MiB)", function()
      local file = helpers.tmpfile("walsize")
      local db = helpers.open(backend, nil, "sqlite:" .. file)
      local function wal_mib()
        local f = assert(io.open(file .. "-wal", "rb"))
        local bytes = f:seek("end")
        f:close()
        return bytes / 2^20
      end
      assert(db:exec("CREATE TABLE burst (id INTEGER PRIMARY KEY, b BLOB)"))
      -- one transaction of 40 MB: its pages all go to the WAL
      assert.are.equal(40, db:exec([[INSERT INTO burst (b) SELECT zeroblob(1048576) FROM
        (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) SELECT x FROM c)]]))
      local peak = wal_mib()
      assert.is_true(peak > 40, string.format("the burst left a WAL of %.1f MiB", peak))
      -- once checkpointed, the next transaction starts the WAL over and cuts the file
      local deadline, i = helpers.now() + helpers.T(10), 0
      repeat
        i = i + 1
        assert.are.equal(1, db:exec("UPDATE burst SET id = id WHERE id = $1", 1 + i % 40))
        if wal_mib() > 32 then sb.sleep(0.05) end
      until wal_mib() <= 32 or helpers.now() > deadline
      helpers.log("sqlite: WAL file %.1f MiB after a 40 MB transaction, %.1f MiB after %d more commits", peak, wal_mib(), i)
      assert.is_true(wal_mib() <= 32, string.format("the WAL file stayed at %.1f MiB", wal_mib()))
      assert.are.equal(40, db:first("SELECT count(*) AS n FROM burst").n)
    end)

    it("sees data written by another handle on the same file", function()
      local a = helpers.open(backend)
      local b = helpers.open(backend)
      local t = helpers.table(a, "api_two", "id bigint primary key")
      assert.are.equal(1, a:exec("INSERT INTO " .. t .. " (id) VALUES (1)"))
      assert.are.equal(1, b:first("SELECT count(*) AS n FROM " .. t).n)
    end)
  end)
end)

helpers.pg_only(function(backend)
  describe("postgresql specifics", function()
    it("maps int2/int4/int8, float4/8, numeric, bytea, date, json", function()
      local db = helpers.open(backend)
      local row = assert(db:first([[SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8,
        1.5::float4 AS f4, 2.25::float8 AS f8, 1.10::numeric AS n,
        123456789012345678901234567890.123456789::numeric AS big,
        '\xdeadbeef'::bytea AS b, '2024-01-02'::date AS d, 'x'::text AS t,
        '{"a": 1}'::json AS j]]))
      for _, k in ipairs({ "i2", "i4", "i8" }) do assert.are.equal("integer", math.type(row[k])) end
      assert.are.same({ 1, 2, 3 }, { row.i2, row.i4, row.i8 })
      assert.are.equal(1.5, row.f4); assert.are.equal("float", math.type(row.f4))
      assert.are.equal(2.25, row.f8); assert.are.equal("float", math.type(row.f8))
      assert.are.equal("1.10", row.n)
      assert.are.equal("123456789012345678901234567890.123456789", row.big)
      assert.are.equal("\xde\xad\xbe\xef", row.b)
      assert.are.equal("2024-01-02", row.d)
      assert.are.equal("x", row.t)
      assert.are.equal('{"a": 1}', row.j)
    end)

    it("errors, tostring(db) and connection failures never show the password", function()
      local pw = backend.password
      assert.is_string(pw, "SB_TEST_PG_URL should carry a password for this spec")
      local db = helpers.open(backend)
      assert.is_nil(tostring(db):find(pw, 1, true))
      local _, err = db:query("SELEKT 1")
      assert.is_nil(tostring(err):find(pw, 1, true))
      -- wrong password: nil, err of class connection, and neither password shown
      local bad = "Wr0ngPassw0rd" .. helpers.suffix
      local url = backend.url:gsub(pw:gsub("%p", "%%%0"), bad, 1)
      assert.are_not.equal(backend.url, url)
      local db2, row
      db2, err = sb.open(url)
      if db2 then
        helpers.track(db2)
        assert.is_nil(tostring(db2):find(bad, 1, true))
        row, err = db2:first("SELECT 1 AS a")
      end
      assert_err(row, err, "connection")
      for _, f in ipairs({ "message", "detail" }) do
        local s = tostring(err[f])
        assert.is_nil(s:find(bad, 1, true), f .. " leaks the password: " .. s)
        assert.is_nil(s:find(pw, 1, true), f .. " leaks the password: " .. s)
      end
      assert.is_nil(tostring(err):find(bad, 1, true))
    end)

    it("an unreachable server gives nil, err of class connection, quickly", function()
      local p = helpers.parse_pg_url(backend.url)
      assert.is_not_nil(p, "SB_TEST_PG_URL should be a postgresql:// URI")
      local url = string.format("postgresql://%s:%s@127.0.0.1:1/%s", p.user, p.password, p.dbname)
      local t0 = helpers.now()
      local db, err = sb.open(url)
      local row
      if db then
        helpers.track(db)
        row, err = db:first("SELECT 1 AS a")
      end
      assert_err(row, err, "connection")
      assert.is_true(helpers.now() - t0 < helpers.T(5))
    end)

    it("accepts postgres://, conninfo strings and multi-host lists", function()
      local p = assert(helpers.parse_pg_url(backend.url))
      local urls = {
        (backend.url:gsub("^postgresql://", "postgres://")),
        string.format("host=%s port=%s user=%s password=%s dbname=%s",
          p.host, p.port, p.user, p.password, p.dbname),
        string.format("postgresql://%s:%s@127.0.0.1:1,%s:%s/%s", p.user, p.password, p.host, p.port, p.dbname),
        string.format("postgresql://%s:%s@%s:%s/%s?target_session_attrs=read-write",
          p.user, p.password, p.host, p.port, p.dbname),
      }
      for _, url in ipairs(urls) do
        local db, err = sb.open(url)
        assert.is_not_nil(db, tostring(err))
        helpers.track(db)
        local row
        assert.is_nil(tostring(db):find(p.password, 1, true), "tostring(db) leaks the password: " .. tostring(db))
        row, err = db:first("SELECT $1 AS a", 5)
        assert.is_nil(err, "url form failed: " .. tostring(err))
        assert.are.equal(5, row.a)
      end
    end)

    it("uses named prepared statements unless prepare = false", function()
      local sql = "SELECT $1::int4 + 1 AS x /* " .. helpers.suffix .. " */"
      local function count_prepared(opts)
        local db = helpers.open(backend, opts)
        return db:transaction(function(tx)
          assert.are.equal(2, tx:first(sql, 1).x)
          assert.are.equal(3, tx:first(sql, 2).x)
          return tx:first("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1", sql).n
        end)
      end
      assert.is_true(count_prepared({ pool = 1 }) >= 1, "no named prepared statement was made")
      assert.are.equal(0, count_prepared({ pool = 1, prepare = false }))
    end)

    it("reconnects after its connection is terminated", function()
      local db = helpers.open(backend, { pool = 1 })
      local admin = helpers.open(backend)
      local pid = assert(db:first("SELECT pg_backend_pid() AS p")).p
      assert.are.equal(true, admin:first("SELECT pg_terminate_backend($1::int4) AS ok", pid).ok)
      local row, err
      for _ = 1, 5 do
        row, err = db:first("SELECT pg_backend_pid() AS p")
        if row then break end
        assert.are.equal("connection", err.class)
      end
      assert.is_not_nil(row, "did not reconnect: " .. tostring(err))
      assert.are_not.equal(pid, row.p)
    end)
  end)
end)
