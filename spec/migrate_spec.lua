-- spec/migrate_spec.lua - the migration runner (issue 3, "migrations/ and the
-- migration runner"): statement splitting, SHA-256, the embedded migrations,
-- and on both backends: fresh apply, re-run no-op, changed checksum refused
-- and accepted, failing migration rolled back with the statement named,
-- concurrent runners (OS processes), status/check and the command line.
local helpers = require "helpers"
local cc = require "support.cc"
local sb = require "switchboard"
local core = require "switchboard.core"
local migrate = require "switchboard.migrate"

local function sqls(list)
  local out = {}
  for i, st in ipairs(list) do out[i] = st.sql end
  return out
end

describe("migrate.split", function()
  it("splits at top-level semicolons and drops comment-only pieces", function()
    local list = migrate.split("-- head\nCREATE TABLE a (x int);\n\n/* c; */ INSERT INTO a VALUES (1) ;\n-- tail;\n", "sqlite")
    assert.are.same({ "CREATE TABLE a (x int)", "INSERT INTO a VALUES (1)" }, sqls(list))
    assert.are.equal(2, list[1].line)
    assert.are.equal(4, list[2].line)
  end)

  it("keeps semicolons inside strings, quoted names and comments", function()
    local sql = "INSERT INTO t VALUES ('a;b', 'it''s;'); SELECT \"we;ird\" FROM t -- x;y\n; SELECT 1 /* ; */"
    assert.are.same({ "INSERT INTO t VALUES ('a;b', 'it''s;')", "SELECT \"we;ird\" FROM t -- x;y",
                      "SELECT 1 /* ; */" }, sqls(migrate.split(sql, "sqlite")))
  end)

  it("keeps PostgreSQL dollar-quoted bodies and E'' strings whole", function()
    local fn = "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$\nBEGIN\n  UPDATE t SET x = 1;\n"
      .. "  RETURN NEW; -- $$ inside\nEND;\n$body$"
    local sql = fn .. ";\nSELECT E'a\\';b';\nSELECT $$;$$"
    assert.are.same({ fn, "SELECT E'a\\';b'", "SELECT $$;$$" }, sqls(migrate.split(sql, "postgresql")))
  end)

  it("keeps nested /* */ comments on PostgreSQL", function()
    assert.are.same({ "SELECT 1 /* a /* b; */ c; */", "SELECT 2" },
                    sqls(migrate.split("SELECT 1 /* a /* b; */ c; */; SELECT 2", "postgresql")))
  end)

  it("keeps SQLite CREATE TRIGGER ... BEGIN ... END blocks whole, CASE ... END included", function()
    local trig = "CREATE TRIGGER IF NOT EXISTS tr AFTER UPDATE ON t BEGIN\n"
      .. "  INSERT INTO log VALUES (CASE WHEN NEW.x > 1 THEN 'big' ELSE 'small' END);\n"
      .. "  UPDATE t SET y = 0 WHERE x = NEW.x;\nEND"
    local list = migrate.split("CREATE TABLE t (x);\n" .. trig .. ";\nCREATE INDEX i ON t (x);", "sqlite")
    assert.are.same({ "CREATE TABLE t (x)", trig, "CREATE INDEX i ON t (x)" }, sqls(list))
    assert.are.equal(2, list[2].line)
    assert.are.equal(6, list[3].line)
  end)

  it("splits the shipped migrations into statements that each start with CREATE", function()
    for name, text in pairs(require "switchboard.migrations_data") do
      local backend = name:find("%.postgres%.sql$") and "postgresql" or "sqlite"
      local list = migrate.split(text, backend)
      assert.is_true(#list >= (name:find("^0001_") and 10 or 1), name)
      for _, st in ipairs(list) do assert.are.equal("CREATE", st.first_word, st.sql) end
    end
  end)
end)

describe("core.sha256", function()
  it("matches the FIPS 180-4 test vectors", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256(""))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                     core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.are.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
                     core.sha256(string.rep("a", 1000000)))
  end)

  it("handles every tail length around the 55/56/64-byte padding edges", function()
    for _, n in ipairs({ 55, 56, 63, 64, 65, 119, 120 }) do
      local s = string.rep("x", n)
      local p = io.popen("printf %s " .. s .. " | sha256sum")
      local want = p:read("l"):sub(1, 64)
      p:close()
      assert.are.equal(want, core.sha256(s), "length " .. n)
    end
  end)
end)

describe("switchboard.migrations_data", function()
  it("holds exactly migrations/*.sql, byte for byte (regenerate: make migrations-data)", function()
    local files = assert(migrate.read_dir("migrations"))
    local data = require "switchboard.migrations_data"
    assert.are.same(files, data)
    local f = assert(io.open("bindings/lua/switchboard/migrations_data.lua", "rb"))
    local text = f:read("a")
    f:close()
    assert.are.equal(migrate.generate(files), text)
  end)

  it("has one file per backend for every version", function()
    local data = require "switchboard.migrations_data"
    for _, backend in ipairs({ "sqlite", "postgresql" }) do
      local plan = assert(migrate.plan(data, backend))
      assert.are.equal(1, plan[1].version)
      assert.are.equal("callcenter", plan[1].name)
    end
  end)
end)

-- Write `files` ({ name = text }) into a fresh folder; returns its path.
local function make_dir(files)
  local dir = helpers.tmpfile("migrations")
  assert(os.execute("mkdir -p " .. helpers.shell_quote(dir)))
  for name, text in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end
  return dir
end

local function remove_dir(dir)
  os.execute("rm -rf " .. helpers.shell_quote(dir))
end

local function versions(db)
  local rows = assert(db:query("SELECT version FROM schema_migrations ORDER BY version"))
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.version end
  return out
end

local function has_table(db, name)
  local row
  if db:backend() == "postgresql" then
    row = assert(db:first("SELECT to_regclass($1) IS NOT NULL AS e", name))
  else
    row = assert(db:first("SELECT count(*) > 0 AS e FROM sqlite_master WHERE type = 'table' AND name = $1", name))
  end
  return row.e == true or row.e == 1
end

helpers.each_backend(function(backend)
  local dirs = {}
  local function dir_of(files)
    local d = make_dir(files)
    dirs[#dirs + 1] = d
    return d
  end
  after_each(function()
    for _, d in ipairs(dirs) do remove_dir(d) end
    dirs = {}
  end)
  teardown(cc.drop_schemas)

  local function fresh_db(opts)
    local url = cc.fresh_url(backend, "mig")
    return helpers.open(backend, opts, url), url
  end

  describe("sb.migrate(db) with the embedded call-center migrations", function()
    it("applies every version in order and records version, name, file, checksum and time", function()
      local db = fresh_db()
      local before = core.time_ms()
      local res, err = sb.migrate(db)
      assert.is_nil(err)
      assert.are.equal(2, res.version)
      assert.are.equal(2, #res.applied)
      assert.are.equal(1, res.applied[1].version)
      assert.are.equal(2, res.applied[2].version)
      assert.are.same({ 1, 2 }, versions(db))
      local row = assert(db:first("SELECT version, name, file, checksum, applied_at FROM schema_migrations WHERE version = 1"))
      local file = backend.is_pg and "0001_callcenter.postgres.sql" or "0001_callcenter.sqlite.sql"
      assert.are.equal("callcenter", row.name)
      assert.are.equal(file, row.file)
      local f = assert(io.open("migrations/" .. file, "rb"))
      assert.are.equal(core.sha256(f:read("a")), row.checksum)
      f:close()
      assert.is_true(row.applied_at >= before and row.applied_at <= core.time_ms())
      for _, t in ipairs({ "agents", "queues", "agent_skills", "agent_queues", "waiting_calls",
                           "active_calls", "call_records" }) do
        assert.is_true(has_table(db, t), t)
      end
    end)

    it("is a no-op when run again", function()
      local db = fresh_db()
      assert(sb.migrate(db))
      local rows1 = assert(db:query("SELECT version, applied_at, checksum FROM schema_migrations ORDER BY version"))
      local res = assert(sb.migrate(db))
      assert.are.same({}, res.applied)
      assert.are.equal(2, res.version)
      local rows2 = assert(db:query("SELECT version, applied_at, checksum FROM schema_migrations ORDER BY version"))
      assert.are.same(rows1, rows2)
      assert.are.same({ 1, 2 }, versions(db))
    end)

    it("enforces capacity in the schema (CHECK current_calls <= max_calls)", function()
      local db = fresh_db()
      assert(sb.migrate(db))
      assert(db:exec("INSERT INTO agents (id, name, status, status_since, available_since, current_calls, max_calls)"
                     .. " VALUES ('a', 'A', 'AVAILABLE', 0, 0, 1, 1)"))
      local n, err = db:exec("UPDATE agents SET current_calls = 2 WHERE id = 'a'")
      assert.is_nil(n)
      assert.are.equal("constraint", err.class)
      n, err = db:exec("UPDATE agents SET current_calls = -1 WHERE id = 'a'")
      assert.is_nil(n)
      assert.are.equal("constraint", err.class)
      n, err = db:exec("UPDATE agents SET status = 'LUNCH' WHERE id = 'a'")
      assert.is_nil(n)
      assert.are.equal("constraint", err.class)
    end)
  end)

  describe("sb.migrate(db, dir)", function()
    it("applies pending versions in order, and only those", function()
      local db = fresh_db()
      local dir = dir_of({
        ["0002_b.sql"] = "INSERT INTO m_log (v) VALUES (2);",
        ["0001_a.sql"] = "CREATE TABLE m_log (v INTEGER);\nINSERT INTO m_log (v) VALUES (1);\n",
        ["README.txt"] = "not a migration",
      })
      local res = assert(sb.migrate(db, dir))
      assert.are.equal(2, #res.applied)
      assert.are.equal(1, res.applied[1].version)
      assert.are.equal(2, res.applied[2].version)
      local f = assert(io.open(dir .. "/0003_c.sql", "w"))
      f:write("INSERT INTO m_log (v) VALUES (3)")
      f:close()
      res = assert(sb.migrate(db, dir))
      assert.are.equal(1, #res.applied)
      assert.are.equal(3, res.version)
      local rows = assert(db:query("SELECT v FROM m_log ORDER BY v"))
      assert.are.same({ 1, 2, 3 }, { rows[1].v, rows[2].v, rows[3].v })
      assert.are.equal(3, #rows)
      assert.are.same({ 1, 2, 3 }, versions(db))
    end)

    it("runs the file of its own dialect from a .sqlite.sql / .postgres.sql pair", function()
      local db = fresh_db()
      local dir = dir_of({
        ["0001_t.sqlite.sql"] = "CREATE TABLE m_only_sqlite (x INTEGER);",
        ["0001_t.postgres.sql"] = "CREATE TABLE m_only_pg (x INTEGER);",
        ["0002_u.sql"] = "CREATE TABLE m_both (x INTEGER);",
      })
      assert(sb.migrate(db, dir))
      assert.are.equal(backend.is_pg, has_table(db, "m_only_pg"))
      assert.are.equal(not backend.is_pg, has_table(db, "m_only_sqlite"))
      assert.is_true(has_table(db, "m_both"))
      local row = assert(db:first("SELECT file FROM schema_migrations WHERE version = 1"))
      assert.are.equal(backend.is_pg and "0001_t.postgres.sql" or "0001_t.sqlite.sql", row.file)
    end)

    it("refuses badly named files, duplicate versions and transaction control before running anything", function()
      local db = fresh_db()
      local cases = {
        { ["0001_a.sql"] = "CREATE TABLE m_x (x INTEGER);", ["notes.sql"] = "SELECT 1;" },
        { ["0001_a.sql"] = "CREATE TABLE m_x (x INTEGER);", ["001_b.sql"] = "SELECT 1;" },
        { ["0001_a.sql"] = "CREATE TABLE m_x (x INTEGER);", ["0001_a.sqlite.sql"] = "SELECT 1;" },
        { ["0001_a.sql"] = "CREATE TABLE m_x (x INTEGER);", ["0002_b.mysql.sql"] = "SELECT 1;" },
        { ["0001_a.sql"] = "CREATE TABLE m_x (x INTEGER);",
          ["0002_b.sql"] = "BEGIN;\nCREATE TABLE m_y (x INTEGER);\nCOMMIT;" },
      }
      for i, files in ipairs(cases) do
        local res, err = sb.migrate(db, dir_of(files))
        assert.is_nil(res, "case " .. i)
        assert.are.equal("misuse", err.class, "case " .. i .. ": " .. tostring(err))
        assert.is_false(has_table(db, "m_x"), "case " .. i)
      end
      local _, err = sb.migrate(db, "/nonexistent/dir")
      assert.are.equal("misuse", err.class)
      assert.truthy(tostring(err):find("/nonexistent/dir", 1, true))
    end)

    it("raises on wrong argument types and unknown options", function()
      local db = fresh_db()
      assert.has_error(function() sb.migrate("sqlite::memory:") end)
      assert.has_error(function() sb.migrate(db, 42) end)
      assert.has_error(function() sb.migrate(db, nil, { accept = {} }) end)
      assert.has_error(function() sb.migrate(db, nil, { accept_checksum = { [1] = "short" } }) end)
    end)
  end)

  describe("a failing migration", function()
    it("leaves the database at the previous version and names the statement", function()
      local db = fresh_db()
      local dir = dir_of({
        ["0001_ok.sql"] = "CREATE TABLE m_ok (x INTEGER);",
        ["0002_bad.sql"] = "CREATE TABLE m_bad (x INTEGER);\n\nINSERT INTO m_bad VALUES (1);\n"
          .. "-- the next one fails\nINSERT INTO m_no_such_table VALUES (1);\nCREATE TABLE m_after (x INTEGER);\n",
        ["0003_later.sql"] = "CREATE TABLE m_later (x INTEGER);",
      })
      local res, err = sb.migrate(db, dir)
      assert.is_nil(res)
      assert.are.equal("syntax", err.class)
      assert.are.equal(2, err.version)
      assert.are.equal("0002_bad.sql", err.file)
      assert.are.equal(3, err.statement)
      assert.are.equal(5, err.line)
      local msg = tostring(err)
      assert.truthy(msg:find("migration 2 (0002_bad.sql) failed at statement 3 (line 5: INSERT INTO m_no_such_table", 1, true), msg)
      assert.are.same({ 1 }, versions(db))
      assert.is_true(has_table(db, "m_ok"))
      assert.is_false(has_table(db, "m_bad"), "statements before the failing one were rolled back")
      assert.is_false(has_table(db, "m_later"), "later versions did not run")
      -- fix the file: the runner goes on from version 2
      local f = assert(io.open(dir .. "/0002_bad.sql", "w"))
      f:write("CREATE TABLE m_bad (x INTEGER);")
      f:close()
      res = assert(sb.migrate(db, dir))
      assert.are.equal(2, #res.applied)
      assert.are.same({ 1, 2, 3 }, versions(db))
    end)
  end)

  describe("a changed checksum", function()
    local function changed_setup()
      local db = fresh_db()
      local dir = dir_of({ ["0001_a.sql"] = "CREATE TABLE m_a (x INTEGER);" })
      assert(sb.migrate(db, dir))
      local f = assert(io.open(dir .. "/0001_a.sql", "w"))
      f:write("CREATE TABLE m_a (x INTEGER); -- reviewed edit")
      f:close()
      f = assert(io.open(dir .. "/0002_b.sql", "w"))
      f:write("CREATE TABLE m_b (x INTEGER);")
      f:close()
      return db, dir, core.sha256("CREATE TABLE m_a (x INTEGER); -- reviewed edit"),
             core.sha256("CREATE TABLE m_a (x INTEGER);")
    end

    it("is refused before anything runs, with both checksums and the way to accept it", function()
      local db, dir, new, old = changed_setup()
      local res, err = sb.migrate(db, dir)
      assert.is_nil(res)
      assert.are.equal("checksum", err.class)
      assert.are.equal(1, err.version)
      assert.are.equal(new, err.checksum)
      assert.are.equal(old, err.applied_checksum)
      local msg = tostring(err)
      assert.truthy(msg:find(new, 1, true) and msg:find(old, 1, true) and msg:find("accept_checksum", 1, true), msg)
      assert.is_false(has_table(db, "m_b"), "pending version 2 must not run")
      local rows = assert(migrate.status(db, dir))
      assert.are.equal("changed", rows[1].state)
      assert.are.equal("pending", rows[2].state)
      local ok, cerr = migrate.check(db, dir)
      assert.is_nil(ok)
      assert.are.equal("checksum", cerr.class)
    end)

    it("is accepted with opts.accept_checksum = { [version] = new checksum }, and only that checksum", function()
      local db, dir, new = changed_setup()
      local res, err = sb.migrate(db, dir, { accept_checksum = { [1] = string.rep("0", 64) } })
      assert.is_nil(res)
      assert.are.equal("checksum", err.class)
      res = assert(sb.migrate(db, dir, { accept_checksum = { [1] = new } }))
      assert.are.equal(1, #res.applied)
      assert.are.equal(2, res.applied[1].version)
      assert.are.equal(new, assert(db:first("SELECT checksum FROM schema_migrations WHERE version = 1")).checksum)
      assert(sb.migrate(db, dir))  -- accepted for good
      assert.is_true(migrate.check(db, dir))
    end)

    it("is accepted with migrate.accept(db, version, sha, dir), which applies nothing", function()
      local db, dir, new = changed_setup()
      local ok, err = migrate.accept(db, 1, string.rep("a", 64), dir)
      assert.is_nil(ok)
      assert.are.equal("misuse", err.class)
      assert.is_true(migrate.accept(db, 1, new, dir))
      assert.is_false(has_table(db, "m_b"))
      local _, cerr = migrate.check(db, dir)
      assert.are.equal("pending", cerr.class)
      assert(sb.migrate(db, dir))
      assert.is_true(migrate.check(db, dir))
    end)
  end)

  describe("concurrent runners", function()
    it("4 OS processes migrating at once apply every version exactly once", function()
      local db, url = fresh_db()
      -- each version is slow enough for the runners to overlap, and counts itself
      local slow = backend.is_pg and "SELECT pg_sleep(0.2);" or (helpers.calibrate_cte(db, 0.2) .. ";")
      local files = { ["0001_log.sql"] = "CREATE TABLE m_runs (v INTEGER);" }
      for v = 2, 4 do
        files[string.format("%04d_step.sql", v)] = slow .. "\nINSERT INTO m_runs (v) VALUES (" .. v .. ");"
      end
      local dir = dir_of(files)
      local code = [[
        local sb = require "switchboard"
        local db = assert(sb.open(os.getenv("SBSPEC_URL"), { busy_timeout = 30000 }))
        local res, err = sb.migrate(db, os.getenv("SBSPEC_DIR"))
        if not res then io.stderr:write(tostring(err), "\n"); os.exit(1) end
        print("applied " .. #res.applied .. " version " .. res.version)
      ]]
      local procs = {}
      for i = 1, 4 do procs[i] = { code = code, env = { SBSPEC_URL = url, SBSPEC_DIR = dir } } end
      local results = cc.run_processes(procs, 60)
      local total = 0
      for i, r in ipairs(results) do
        assert.is_true(r.ok, "runner " .. i .. ": " .. r.out)
        local n, v = r.out:match("applied (%d+) version (%d+)")
        assert.are.equal("4", v, r.out)
        total = total + tonumber(n)
      end
      assert.are.equal(4, total)
      assert.are.same({ 1, 2, 3, 4 }, versions(db))
      local rows = assert(db:query("SELECT v FROM m_runs ORDER BY v"))
      assert.are.equal(3, #rows)
    end)

    it("runners that read the same pending versions while another holds the lock skip what it applied", function()
      -- Deterministic overlap: version 1 (and schema_migrations) exist; the
      -- spec holds the migration lock while 4 runners start, read "2..4
      -- pending" and queue on the lock; then it lets go.  Each runner must
      -- re-check under the lock, or it would apply a version again.
      local db, url = fresh_db()
      local files = { ["0001_log.sql"] = "CREATE TABLE m_runs (v INTEGER);" }
      for v = 2, 4 do
        files[string.format("%04d_step.sql", v)] = "INSERT INTO m_runs (v) VALUES (" .. v .. ");"
      end
      local dir = dir_of(files)
      local one = dir_of({ ["0001_log.sql"] = files["0001_log.sql"] })
      assert(sb.migrate(db, one))
      local holder = helpers.open(backend, nil, url)
      local tx = assert(holder:begin())
      if backend.is_pg then assert(tx:exec("SELECT pg_advisory_xact_lock($1)", migrate.LOCK_KEY)) end
      local code = [[
        local sb = require "switchboard"
        local db = assert(sb.open(os.getenv("SBSPEC_URL"), { busy_timeout = 60000 }))
        local res, err = sb.migrate(db, os.getenv("SBSPEC_DIR"))
        if not res then io.stderr:write(tostring(err), "\n"); os.exit(1) end
        print("applied " .. #res.applied .. " version " .. res.version)
      ]]
      local procs = {}
      for i = 1, 4 do procs[i] = { code = code, env = { SBSPEC_URL = url, SBSPEC_DIR = dir } } end
      local running = cc.start_processes(procs, 60)
      if backend.is_pg then  -- wait until all 4 queue on the advisory lock
        local deadline = helpers.now() + helpers.T(20)
        repeat
          sb.sleep(0.05)
          local row = assert(db:first("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
        until row.n == 4 or helpers.now() > deadline
      else
        sb.sleep(helpers.T(1.5))  -- they start, read version 1, and wait in BEGIN IMMEDIATE
      end
      assert.are.equal(0, cc.count(db, "m_runs"), "nothing ran while the lock was held")
      assert(tx:commit())
      local total = 0
      for i, r in ipairs(running.wait()) do
        assert.is_true(r.ok, "runner " .. i .. ": " .. r.out)
        total = total + tonumber(r.out:match("applied (%d+) version 4"))
      end
      assert.are.equal(3, total)
      assert.are.same({ 1, 2, 3, 4 }, versions(db))
      assert.are.equal(3, cc.count(db, "m_runs"))
    end)
  end)

  describe("scripts/switchboard-migrate", function()
    local function run(url, ...)
      local cmd = { "scripts/switchboard-migrate" }
      for _, a in ipairs({ ... }) do cmd[#cmd + 1] = helpers.shell_quote(a) end
      table.insert(cmd, 2, helpers.shell_quote(url))
      local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1"))
      local out = p:read("a")
      local ok = p:close()
      return ok == true, out
    end

    it("check fails while versions are pending; up applies them; status lists them; exit codes 0/1", function()
      local _, url = fresh_db()
      local ok, out = run(url, "check")
      assert.is_false(ok, out)
      assert.truthy(out:find("pending", 1, true), out)
      ok, out = run(url, "status")
      assert.is_true(ok, out)
      assert.truthy(out:find("1%s+pending%s+%-%s+%x+%s+0001_callcenter"), out)
      ok, out = run(url, "up")
      assert.is_true(ok, out)
      assert.truthy(out:find("applied 1 0001_callcenter", 1, true), out)
      ok, out = run(url, "check")
      assert.is_true(ok, out)
      ok, out = run(url, "status")
      assert.is_true(ok, out)
      assert.truthy(out:find("1%s+applied%s+%d+%-%d+%-%d+ [%d:]+%s+%x+%s+0001_callcenter"), out)
      ok, out = run(url, "sideways")
      assert.is_false(ok, out)
    end)

    it("accept records a reviewed change of a --dir file", function()
      local db, url = fresh_db()
      local dir = dir_of({ ["0001_a.sql"] = "CREATE TABLE m_a (x INTEGER);" })
      assert(sb.migrate(db, dir))
      local f = assert(io.open(dir .. "/0001_a.sql", "w"))
      f:write("CREATE TABLE m_a (x BIGINT);")
      f:close()
      local ok, out = run(url, "--dir", dir, "up")
      assert.is_false(ok, out)
      assert.truthy(out:find("checksum", 1, true), out)
      ok, out = run(url, "--dir", dir, "accept", "1", core.sha256("CREATE TABLE m_a (x BIGINT);"))
      assert.is_true(ok, out)
      ok, out = run(url, "--dir", dir, "check")
      assert.is_true(ok, out)
    end)

    it("never prints the password of a URL it cannot use", function()
      if not backend.is_pg then return end
      local bad = backend.url:gsub("^(%a+://[^:]*:)[^@]*@", "%1not-the-password-xyz@")
      local ok, out = run(bad, "status")
      assert.is_false(ok)
      assert.is_nil(out:find("not-the-password-xyz", 1, true), out)
    end)
  end)
end)
