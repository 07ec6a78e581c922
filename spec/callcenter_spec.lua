-- spec/callcenter_spec.lua - the call-center data API (issue 3, "The data
-- API"), every call on both backends against the migrated schema, with a
-- hand-driven clock: results, what the database holds afterwards, the
-- refusals (nil, err) and the bad inputs that raise.
local helpers = require "helpers"
local cc = require "support.cc"
local sb = require "switchboard"

local T0 = 1700000000000  -- the clock's start, ms

helpers.each_backend(function(backend)
  teardown(cc.drop_schemas)

  local clock
  local function setup(opts)
    clock = { t = T0 }
    return cc.setup(backend, { clock = clock, db = opts and opts.db })
  end
  local function ids(rows, field)
    local out = {}
    for i, r in ipairs(rows) do out[i] = r[field or "id"] end
    return out
  end
  local function agent_row(db, id)
    return assert(db:first("SELECT * FROM agents WHERE id = $1", id))
  end

  describe("sb.callcenter / require 'switchboard.callcenter'", function()
    it("gives the same kind of object three ways, and raises without a db", function()
      local _, db = setup()
      local mod = require "switchboard.callcenter"
      for _, c in ipairs({ sb.callcenter(db), mod.new(db), mod(db) }) do
        assert.are.equal(mod.methods, getmetatable(c).__index)
        assert.is_function(c.assign)
      end
      assert.has_error(function() sb.callcenter() end)
      assert.has_error(function() sb.callcenter("sqlite::memory:") end)
      assert.has_error(function() sb.callcenter(db, { clock = 1 }) end)
    end)
  end)

  describe("cc:add_agent", function()
    it("stores the agent with its defaults, skills and queues (queues made on first use)", function()
      local c, db = setup()
      local a = assert(c:add_agent{ id = "a1", name = "Ann", skills = { english = 5, billing = 3 }, queues = { "sales" } })
      assert.are.equal("a1", a.id)
      local row = agent_row(db, "a1")
      assert.are.same({ "Ann", "AVAILABLE", 0, 1, 0, T0, T0 },
        { row.name, row.status, row.current_calls, row.max_calls, row.wrapup_seconds, row.status_since, row.available_since })
      local skills = assert(db:query("SELECT skill, level FROM agent_skills WHERE agent_id = 'a1' ORDER BY skill"))
      assert.are.same({ "billing", "english" }, ids(skills, "skill"))
      assert.are.same({ 3, 5 }, ids(skills, "level"))
      local q = assert(db:first("SELECT queue, level FROM agent_queues WHERE agent_id = 'a1'"))
      assert.are.same({ "sales", 1 }, { q.queue, q.level })
      assert.are.equal(20, assert(db:first("SELECT service_level_seconds AS s FROM queues WHERE name = 'sales'")).s)
      assert(c:add_agent{ id = "a2", name = "Bob", max_calls = 3, wrapup_seconds = 30, status = "OFFLINE",
                          queues = { sales = 2, support = 4 } })
      row = agent_row(db, "a2")
      assert.are.same({ "OFFLINE", 3, 30 }, { row.status, row.max_calls, row.wrapup_seconds })
      assert.are.equal(2, cc.count(db, "agent_queues WHERE agent_id = 'a2'"))
      assert.are.equal(2, cc.count(db, "queues"))
    end)

    it("returns nil, err (class constraint) for a duplicate id and changes nothing", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann", skills = { english = 5 } })
      local ok, err = c:add_agent{ id = "a1", name = "Other", skills = { french = 1 } }
      assert.is_nil(ok)
      assert.are.equal("constraint", err.class)
      assert.are.equal("23505", err.sqlstate)
      assert.are.equal("Ann", agent_row(db, "a1").name)
      assert.are.equal(0, cc.count(db, "agent_skills WHERE skill = 'french'"))
    end)

    it("raises on bad input: missing id, negative or fractional max_calls, unknown status, bad skills", function()
      local c, db = setup()
      local bad = {
        { name = "no id" },
        { id = "", name = "empty id" },
        { id = {}, name = "table id" },
        { id = "x", max_calls = -1 },
        { id = "x", max_calls = 1.5 },
        { id = "x", max_calls = "2" },
        { id = "x", wrapup_seconds = -5 },
        { id = "x", status = "LUNCH" },
        { id = "x", status = "available" },
        { id = "x", skills = { english = -1 } },
        { id = "x", skills = { english = "5" } },
        { id = "x", skills = { english = 2.5 } },
        { id = "x", skills = { [true] = 1 } },
        { id = "x", skills = "english" },
        { id = "x", queues = { 42 } },
        { id = "x", colour = "blue" },
      }
      for i, t in ipairs(bad) do
        assert.has_error(function() c:add_agent(t) end, nil, "case " .. i)
      end
      assert.has_error(function() c:add_agent() end)
      assert.are.equal(0, cc.count(db, "agents"))
    end)

    it("accepts integer ids (stored as text) and passes odd strings only as parameters", function()
      local c, db = setup()
      assert(c:add_agent{ id = 7, name = "Seven" })
      local evil = "x'); DROP TABLE agents; --"
      assert(c:add_agent{ id = evil, name = evil, skills = { [evil] = 1, ['q"uo\\te'] = 2 } })
      assert.are.equal(evil, agent_row(db, evil).name)
      assert.are.equal("Seven", agent_row(db, "7").name)
      assert.are.same({ evil, 'q"uo\\te' }, ids(assert(db:query(
        "SELECT skill FROM agent_skills WHERE agent_id = $1 ORDER BY level", evil)), "skill"))
      assert.are.equal(1, #assert(c:available_agents{ skills = { ['q"uo\\te'] = 2 } }))
    end)
  end)

  describe("cc:agent", function()
    it("returns the agent's row, or nil for an unknown agent", function()
      local c = setup()
      assert(c:add_agent{ id = "a1", name = "Ann", max_calls = 3, wrapup_seconds = 5 })
      local a = assert(c:agent("a1"))
      assert.are.same({ "a1", "Ann", "AVAILABLE", 0, 3, 5, T0 },
        { a.id, a.name, a.status, a.current_calls, a.max_calls, a.wrapup_seconds, a.available_since })
      local none, err = c:agent("ghost")
      assert.is_nil(none)
      assert.is_nil(err)
      assert.has_error(function() c:agent() end)
    end)
  end)

  describe("cc:set_status", function()
    it("changes status, reason and status_since; AVAILABLE restarts the idle time", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann" })
      clock.t = T0 + 1000
      assert.is_true(c:set_status("a1", "PAUSED", "lunch"))
      local row = agent_row(db, "a1")
      assert.are.same({ "PAUSED", "lunch", T0 + 1000 }, { row.status, row.status_reason, row.status_since })
      clock.t = T0 + 5000
      assert.is_true(c:set_status("a1", "AVAILABLE"))
      row = agent_row(db, "a1")
      assert.are.same({ "AVAILABLE", T0 + 5000, T0 + 5000 }, { row.status, row.status_since, row.available_since })
      assert.is_nil(row.status_reason)
      clock.t = T0 + 9000
      assert.is_true(c:set_status("a1", "AVAILABLE", "again"))  -- no change of status: times stay
      row = agent_row(db, "a1")
      assert.are.same({ T0 + 5000, T0 + 5000, "again" }, { row.status_since, row.available_since, row.status_reason })
    end)

    it("returns nil, err (class not_found) for an unknown agent", function()
      local c = setup()
      local ok, err = c:set_status("ghost", "BUSY")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.class)
      assert.are.equal("unknown_agent", err.reason)
    end)

    it("raises on an unknown status, a bad reason or a missing id", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann" })
      assert.has_error(function() c:set_status("a1", "LUNCH") end)
      assert.has_error(function() c:set_status("a1", "available") end)
      assert.has_error(function() c:set_status("a1") end)
      assert.has_error(function() c:set_status("a1", "BUSY", 42) end)
      assert.has_error(function() c:set_status(nil, "BUSY") end)
      assert.are.equal("AVAILABLE", agent_row(db, "a1").status)
    end)
  end)

  describe("cc:available_agents", function()
    local function team(c)
      assert(c:add_agent{ id = "idle-long", name = "A", max_calls = 2, skills = { english = 5, billing = 3 }, queues = { "sales" } })
      clock.t = T0 + 10
      assert(c:add_agent{ id = "idle-short", name = "B", skills = { english = 2 }, queues = { "sales", "support" } })
      clock.t = T0 + 20
      assert(c:add_agent{ id = "paused", name = "C", skills = { english = 9 }, queues = { "sales" } })
      assert(c:set_status("paused", "PAUSED"))
      assert(c:add_agent{ id = "support-only", name = "D", skills = { english = 9 }, queues = { "support" } })
      clock.t = T0 + 100
    end

    it("returns AVAILABLE agents with capacity left, longest idle first", function()
      local c = setup()
      team(c)
      local rows = assert(c:available_agents{})
      assert.are.same({ "idle-long", "idle-short", "support-only" }, ids(rows))
      assert.are.same({ "A", "AVAILABLE", 0, 2 }, { rows[1].name, rows[1].status, rows[1].current_calls, rows[1].max_calls })
      assert.are.same({ "idle-long", "idle-short" }, ids(assert(c:available_agents{ queue = "sales" })))
      assert.are.same({ "idle-long" }, ids(assert(c:available_agents{ queue = "sales", limit = 1 })))
      assert.are.same({}, ids(assert(c:available_agents{ queue = "nobody-here" })))
      assert.are.same({ "idle-long", "idle-short", "support-only" }, ids(assert(c:available_agents())))
    end)

    it("keeps only agents with every skill at the level asked", function()
      local c = setup()
      team(c)
      assert.are.same({ "idle-long", "idle-short" }, ids(assert(c:available_agents{ queue = "sales", skills = { english = 2 } })))
      assert.are.same({ "idle-long" }, ids(assert(c:available_agents{ queue = "sales", skills = { english = 3 } })))
      assert.are.same({ "idle-long" }, ids(assert(c:available_agents{ skills = { english = 1, billing = 3 } })))
      assert.are.same({}, ids(assert(c:available_agents{ skills = { english = 1, billing = 4 } })))
      assert.are.same({}, ids(assert(c:available_agents{ skills = { french = 0 } })))
      assert.are.same({ "idle-long", "idle-short", "support-only" }, ids(assert(c:available_agents{ skills = { "english" } })))
    end)

    it("puts agents with fewer calls first, drops full ones and those in wrap-up", function()
      local c = setup()
      team(c)
      assert(c:enqueue{ session_id = "s1", queue = "sales" })
      assert(c:assign("s1", "idle-long"))
      assert.are.same({ "idle-short", "idle-long" }, ids(assert(c:available_agents{ queue = "sales" })))
      assert(c:enqueue{ session_id = "s2", queue = "sales" })
      assert(c:assign("s2", "idle-long"))
      assert.are.same({ "idle-short" }, ids(assert(c:available_agents{ queue = "sales" })))
      assert(c:add_agent{ id = "wrapper", name = "W", wrapup_seconds = 10, queues = { "sales" } })
      assert(c:enqueue{ session_id = "s3", queue = "sales" })
      assert(c:assign("s3", "wrapper"))
      clock.t = clock.t + 1000
      assert(c:complete("s3"))
      assert.are.same({ "idle-short" }, ids(assert(c:available_agents{ queue = "sales" })))
      clock.t = clock.t + 10000
      assert.are.same({ "idle-short", "wrapper" }, ids(assert(c:available_agents{ queue = "sales" })))
    end)

    it("raises on bad input", function()
      local c = setup()
      assert.has_error(function() c:available_agents{ queue = 5 } end)
      assert.has_error(function() c:available_agents{ skills = { english = -1 } } end)
      assert.has_error(function() c:available_agents{ limit = -1 } end)
      assert.has_error(function() c:available_agents{ limit = "3" } end)
      assert.has_error(function() c:available_agents{ queues = "sales" } end)
      assert.has_error(function() c:available_agents("sales") end)
    end)
  end)

  describe("cc:enqueue and cc:waiting", function()
    it("stores the call and lists calls by priority, then longest waiting (ties: first enqueued)", function()
      local c, db = setup()
      local w = assert(c:enqueue{ session_id = "s-b", queue = "sales", caller = "+4930123", skills = { english = 2 } })
      assert.are.same({ "s-b", "sales", 0, T0 }, { w.session_id, w.queue, w.priority, w.enqueued_at })
      -- same millisecond, names sorting the other way: enqueue order decides
      assert(c:enqueue{ session_id = "s-a", queue = "sales" })
      clock.t = T0 + 500
      assert(c:enqueue{ session_id = "s-vip", queue = "sales", priority = 10 })
      assert(c:enqueue{ session_id = "s-sup", queue = "support", priority = 1 })
      assert(c:enqueue{ session_id = "s-low", queue = "sales", priority = -1 })
      clock.t = T0 + 2000
      local rows = assert(c:waiting{})
      assert.are.same({ "s-vip", "s-sup", "s-b", "s-a", "s-low" }, ids(rows, "session_id"))
      local b = rows[3]
      assert.are.same({ "sales", 0, "+4930123", T0, 2000 }, { b.queue, b.priority, b.caller, b.enqueued_at, b.wait_ms })
      assert.are.same({ english = 2 }, b.skills)
      assert.are.same({}, rows[4].skills)
      assert.are.same({ "s-vip", "s-b", "s-a", "s-low" }, ids(assert(c:waiting{ queue = "sales" }), "session_id"))
      assert.are.same({ "s-vip", "s-b" }, ids(assert(c:waiting{ queue = "sales", limit = 2 }), "session_id"))
      assert.are.equal(0, #assert(c:waiting{ queue = "empty" }))
      assert.are.equal(5, cc.count(db, "waiting_calls"))
    end)

    it("refuses a duplicate session id (waiting, active or ended) with class constraint", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann" })
      assert(c:enqueue{ session_id = "s1", queue = "sales" })
      local ok, err = c:enqueue{ session_id = "s1", queue = "other" }
      assert.is_nil(ok)
      assert.are.equal("constraint", err.class)
      assert(c:assign("s1", "a1"))
      ok, err = c:enqueue{ session_id = "s1", queue = "sales" }
      assert.is_nil(ok)
      assert.are.equal("constraint", err.class)
      assert(c:complete("s1"))
      ok, err = c:enqueue{ session_id = "s1", queue = "sales" }
      assert.is_nil(ok)
      assert.are.equal("constraint", err.class)
      assert.are.equal(0, cc.count(db, "waiting_calls"))
    end)

    it("raises on bad input", function()
      local c, db = setup()
      assert.has_error(function() c:enqueue{ queue = "sales" } end)
      assert.has_error(function() c:enqueue{ session_id = "s", queue = "" } end)
      assert.has_error(function() c:enqueue{ session_id = "s" } end)
      assert.has_error(function() c:enqueue{ session_id = "s", queue = "q", priority = "high" } end)
      assert.has_error(function() c:enqueue{ session_id = "s", queue = "q", priority = 0.5 } end)
      assert.has_error(function() c:enqueue{ session_id = "s", queue = "q", skills = { english = -2 } } end)
      assert.has_error(function() c:enqueue{ session_id = "s", queue = "q", caller = 123 } end)
      assert.has_error(function() c:enqueue{ session_id = "s", queue = "q", colour = 1 } end)
      assert.has_error(function() c:waiting{ limit = -1 } end)
      assert.has_error(function() c:waiting{ queue = 1 } end)
      assert.are.equal(0, cc.count(db, "waiting_calls"))
    end)
  end)

  describe("cc:assign", function()
    local function ready(c)
      assert(c:add_agent{ id = "a1", name = "Ann", max_calls = 1, queues = { "sales" } })
      assert(c:add_agent{ id = "a2", name = "Bob", max_calls = 2, queues = { "sales" } })
      clock.t = T0 + 1000
      assert(c:enqueue{ session_id = "s1", queue = "sales", caller = "+1" })
      assert(c:enqueue{ session_id = "s2", queue = "sales" })
      clock.t = T0 + 4000
    end

    it("moves a waiting call to the agent and returns the assignment", function()
      local c, db = setup()
      ready(c)
      local a = assert(c:assign("s1", "a1", { policy_name = "longest-idle", policy_version = "3" }))
      assert.are.same({ "s1", "a1", "sales", T0 + 4000, T0 + 1000, 3000 },
        { a.call_id, a.agent_id, a.queue, a.assigned_at, a.enqueued_at, a.wait_ms })
      assert.are.equal(0, cc.count(db, "waiting_calls WHERE session_id = 's1'"))
      local act = assert(db:first("SELECT * FROM active_calls WHERE call_id = 's1'"))
      assert.are.same({ "a1", "sales", "+1", T0 + 4000, "longest-idle", "3" },
        { act.agent_id, act.queue, act.caller, act.assigned_at, act.policy_name, act.policy_version })
      assert.are.equal(1, agent_row(db, "a1").current_calls)
    end)

    it("never assigns a call twice: the second assign is a conflict", function()
      local c, db = setup()
      ready(c)
      assert(c:assign("s1", "a2"))
      local ok, err = c:assign("s1", "a1")
      assert.is_nil(ok)
      assert.are.equal("conflict", err.class)
      assert.are.equal("not_waiting", err.reason)
      assert.are.equal(0, agent_row(db, "a1").current_calls)
      assert.are.equal("a2", assert(db:first("SELECT agent_id FROM active_calls WHERE call_id = 's1'")).agent_id)
    end)

    it("refuses an unknown agent, a full, a not AVAILABLE or a wrapping-up agent with class conflict, changing nothing", function()
      local c, db = setup()
      ready(c)
      assert(c:add_agent{ id = "w", name = "Wrap", wrapup_seconds = 60 })
      assert(c:enqueue{ session_id = "s3", queue = "sales" })
      assert(c:assign("s3", "w"))
      assert(c:complete("s3"))
      assert(c:assign("s1", "a1"))
      assert(c:set_status("a2", "PAUSED"))
      local cases = { { "ghost", "unknown_agent" }, { "a1", "agent_full" }, { "a2", "agent_not_available" },
                      { "w", "agent_in_wrapup" } }
      for _, case in ipairs(cases) do
        local ok, err = c:assign("s2", case[1])
        assert.is_nil(ok, case[1])
        assert.are.equal("conflict", err.class, case[1])
        assert.are.equal(case[2], err.reason, case[1])
      end
      for _, status in ipairs({ "BUSY", "OFFLINE" }) do
        assert(c:set_status("a2", status))
        local ok, err = c:assign("s2", "a2")
        assert.is_nil(ok)
        assert.are.equal("agent_not_available", err.reason)
      end
      assert.are.equal(1, cc.count(db, "waiting_calls WHERE session_id = 's2'"))
      assert.are.equal(1, cc.count(db, "active_calls"))
      assert.are.equal(0, agent_row(db, "a2").current_calls)
      assert(c:set_status("a2", "AVAILABLE"))
      assert(c:assign("s2", "a2"))
    end)

    it("refuses a call that was abandoned, or never existed", function()
      local c, db = setup()
      ready(c)
      assert(c:abandon("s1"))
      local ok, err = c:assign("s1", "a1")
      assert.is_nil(ok)
      assert.are.equal("conflict", err.class)
      assert.are.equal("not_waiting", err.reason)
      ok, err = c:assign("never", "a1")
      assert.is_nil(ok)
      assert.are.equal("conflict", err.class)
      assert.are.equal(0, agent_row(db, "a1").current_calls)
    end)

    it("raises on bad input", function()
      local c = setup()
      ready(c)
      assert.has_error(function() c:assign(nil, "a1") end)
      assert.has_error(function() c:assign("s1") end)
      assert.has_error(function() c:assign("s1", {}) end)
      assert.has_error(function() c:assign("s1", "a1", "policy") end)
      assert.has_error(function() c:assign("s1", "a1", { colour = 1 }) end)
      assert.has_error(function() c:assign("s1", "a1", { policy_name = 5 }) end)
    end)

    it("lets exactly one of 20 tasks racing for one call win", function()
      local c, db = setup()
      for i = 1, 20 do assert(c:add_agent{ id = "r" .. i, name = "R" }) end
      assert(c:enqueue{ session_id = "hot", queue = "sales" })
      local wins, conflicts, fns = 0, 0, {}
      for i = 1, 20 do
        fns[i] = function()
          local a, err = c:assign("hot", "r" .. i)
          if a then wins = wins + 1 else
            assert.are.equal("conflict", err.class)
            conflicts = conflicts + 1
          end
        end
      end
      helpers.run_tasks(table.unpack(fns))
      assert.are.same({ 1, 19 }, { wins, conflicts })
      assert.are.equal(1, assert(db:first("SELECT sum(current_calls) AS n FROM agents")).n)
    end)
  end)

  describe("cc:claim_next", function()
    it("takes the highest-priority, longest-waiting call of the agent's queues whose skills it meets", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann", max_calls = 5, skills = { english = 3 }, queues = { "sales", "support" } })
      assert(c:enqueue{ session_id = "old", queue = "sales" })
      clock.t = T0 + 10
      assert(c:enqueue{ session_id = "other-queue", queue = "billing", priority = 50 })
      assert(c:enqueue{ session_id = "too-hard", queue = "sales", priority = 40, skills = { english = 4 } })
      assert(c:enqueue{ session_id = "no-skill", queue = "sales", priority = 30, skills = { german = 1 } })
      assert(c:enqueue{ session_id = "urgent", queue = "support", priority = 5, skills = { english = 3 } })
      assert(c:enqueue{ session_id = "new", queue = "support" })
      clock.t = T0 + 100
      local a = assert(c:claim_next("a1"))
      assert.are.same({ "urgent", "a1", "support", T0 + 100 }, { a.call_id, a.agent_id, a.queue, a.assigned_at })
      assert.are.equal("old", assert(c:claim_next("a1")).call_id)
      assert.are.equal("new", assert(c:claim_next("a1")).call_id)
      local none, err = c:claim_next("a1")
      assert.is_nil(none)
      assert.is_nil(err)
      assert.are.equal(3, agent_row(db, "a1").current_calls)
      assert.are.equal(3, cc.count(db, "waiting_calls"))
    end)

    it("returns nil, err (class conflict) when the agent cannot take a call", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann", queues = { "sales" } })
      assert(c:enqueue{ session_id = "s1", queue = "sales" })
      assert(c:enqueue{ session_id = "s2", queue = "sales" })
      assert(c:set_status("a1", "PAUSED"))
      local ok, err = c:claim_next("a1")
      assert.is_nil(ok)
      assert.are.equal("conflict", err.class)
      assert.are.equal("agent_not_available", err.reason)
      assert(c:set_status("a1", "AVAILABLE"))
      assert.are.equal("s1", assert(c:claim_next("a1")).call_id)
      ok, err = c:claim_next("a1")
      assert.are.equal("agent_full", err.reason)
      ok, err = c:claim_next("ghost")
      assert.are.equal("unknown_agent", err.reason)
      assert.are.equal(1, cc.count(db, "waiting_calls"))
      assert.has_error(function() c:claim_next() end)
    end)

    it("gives 30 agents claiming at once 30 different calls, skipping none", function()
      local c, db = setup({ db = { pool = 8 } })
      for i = 1, 30 do assert(c:add_agent{ id = "c" .. i, name = "C", queues = { "sales" } }) end
      for i = 1, 40 do
        clock.t = T0 + i
        assert(c:enqueue{ session_id = string.format("q%02d", i), queue = "sales" })
      end
      local got, fns = {}, {}
      for i = 1, 30 do
        fns[i] = function()
          local a, err
          repeat a, err = c:claim_next("c" .. i) until a or err  -- nil alone: calls were locked, try again
          assert(a, err)
          got[#got + 1] = a.call_id
        end
      end
      helpers.run_tasks(table.unpack(fns))
      table.sort(got)
      local want = {}
      for i = 1, 30 do want[i] = string.format("q%02d", i) end
      assert.are.same(want, got)  -- the 30 longest waiting, each once
      assert.are.same({ "q31" }, ids(assert(c:waiting{ limit = 1 }), "session_id"))
      assert.are.equal(30, cc.count(db, "active_calls"))
    end)
  end)

  describe("cc:complete", function()
    it("writes the call record, gives capacity back and starts the wrap-up", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann", wrapup_seconds = 15, queues = { "sales" } })
      assert(c:enqueue{ session_id = "s1", queue = "sales", caller = "+49" })
      clock.t = T0 + 2500
      assert(c:assign("s1", "a1", { policy_name = "p", policy_version = "1" }))
      clock.t = T0 + 62500
      local r = assert(c:complete("s1"))
      assert.are.same({ "s1", "a1", "sales", "+49", T0, T0 + 2500, T0 + 62500, 2500, 60000, "answered", "p", "1" },
        { r.call_id, r.agent_id, r.queue, r.caller, r.enqueued_at, r.assigned_at, r.ended_at, r.wait_ms, r.talk_ms,
          r.outcome, r.policy_name, r.policy_version })
      assert.are.same(r, assert(db:first("SELECT * FROM call_records WHERE call_id = 's1'")))
      assert.are.equal(0, cc.count(db, "active_calls"))
      local a = agent_row(db, "a1")
      assert.are.same({ 0, T0 + 62500 + 15000, "AVAILABLE" }, { a.current_calls, a.available_since, a.status })
      -- wrap-up: no routing to a1 until it is over
      assert(c:enqueue{ session_id = "s2", queue = "sales" })
      assert.are.same({}, assert(c:available_agents{}))
      local ok, err = c:claim_next("a1")
      assert.is_nil(ok)
      assert.are.equal("agent_in_wrapup", err.reason)
      clock.t = T0 + 62500 + 15000
      assert.are.same({ "a1" }, ids(assert(c:available_agents{})))
      assert.are.equal("s2", assert(c:claim_next("a1")).call_id)
    end)

    it("takes outcome and talk_ms when given", function()
      local c = setup()
      assert(c:add_agent{ id = "a1", name = "Ann", max_calls = 2 })
      assert(c:enqueue{ session_id = "s1", queue = "sales" })
      assert(c:enqueue{ session_id = "s2", queue = "sales" })
      assert(c:assign("s1", "a1"))
      assert(c:assign("s2", "a1"))
      clock.t = T0 + 9000
      local r = assert(c:complete("s1", { talk_ms = 1234 }))
      assert.are.same({ "answered", 1234 }, { r.outcome, r.talk_ms })
      r = assert(c:complete("s2", { outcome = "rejected" }))
      assert.are.equal("rejected", r.outcome)
      assert.is_nil(r.talk_ms)
    end)

    it("returns nil, err (class not_found) for a call that is not active, and completes only once", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann" })
      assert(c:enqueue{ session_id = "s1", queue = "sales" })
      local ok, err = c:complete("s1")  -- still waiting
      assert.is_nil(ok)
      assert.are.equal("not_found", err.class)
      assert(c:assign("s1", "a1"))
      assert(c:complete("s1"))
      ok, err = c:complete("s1")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.class)
      assert.are.equal(0, agent_row(db, "a1").current_calls)
      assert.are.equal(1, cc.count(db, "call_records"))
    end)

    it("raises on bad input", function()
      local c = setup()
      assert.has_error(function() c:complete() end)
      assert.has_error(function() c:complete("s1", { outcome = "hung-up" }) end)
      assert.has_error(function() c:complete("s1", { talk_ms = -1 }) end)
      assert.has_error(function() c:complete("s1", { talk_ms = "5" }) end)
      assert.has_error(function() c:complete("s1", "answered") end)
    end)
  end)

  describe("cc:abandon", function()
    it("removes the waiting call and writes an abandoned record", function()
      local c, db = setup()
      assert(c:enqueue{ session_id = "s1", queue = "sales", caller = "+1" })
      clock.t = T0 + 7000
      local r = assert(c:abandon("s1"))
      assert.are.same({ "s1", "sales", "+1", "abandoned", 7000, T0, T0 + 7000 },
        { r.call_id, r.queue, r.caller, r.outcome, r.wait_ms, r.enqueued_at, r.ended_at })
      assert.is_nil(r.agent_id)
      assert.is_nil(r.assigned_at)
      assert.are.equal(0, cc.count(db, "waiting_calls"))
      assert.are.equal(1, cc.count(db, "call_records WHERE outcome = 'abandoned'"))
    end)

    it("returns nil, err (class not_found) for a call that is no longer waiting", function()
      local c, db = setup()
      assert(c:add_agent{ id = "a1", name = "Ann" })
      assert(c:enqueue{ session_id = "s1", queue = "sales" })
      assert(c:enqueue{ session_id = "s2", queue = "sales" })
      assert(c:assign("s1", "a1"))
      local ok, err = c:abandon("s1")  -- already with an agent
      assert.is_nil(ok)
      assert.are.equal("not_found", err.class)
      assert.are.equal(1, cc.count(db, "active_calls"))
      assert(c:abandon("s2"))
      ok, err = c:abandon("s2")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.class)
      assert.are.equal(1, cc.count(db, "call_records"))
      assert.has_error(function() c:abandon() end)
      assert.has_error(function() c:abandon({}) end)
    end)
  end)

  describe("cc:stats", function()
    -- calls: { session, queue, enqueued offset, wait ms, talk ms | "abandoned" };
    -- played in time order (the clock never goes back)
    local function scenario(c)
      assert(c:add_queue{ name = "vip", service_level_seconds = 5 })
      assert(c:add_agent{ id = "a", name = "A", max_calls = 20 })
      local calls = {
        { "c1", "sales", 0, 1000, 30000 },
        { "c2", "sales", 100, 4000, 60000 },
        { "c3", "sales", 200, 25000, 90000 },  -- outside sales' 20 s target
        { "c4", "sales", 300, 9000, "abandoned" },
        { "c5", "vip", 400, 3000, 10000 },
        { "c6", "vip", 500, 6000, 20000 },     -- outside vip's 5 s target
      }
      local events = { { T0 + 1000, function() assert(c:enqueue{ session_id = "late", queue = "sales" }) end } }
      for _, k in ipairs(calls) do
        local at = T0 + k[3]
        events[#events + 1] = { at, function() assert(c:enqueue{ session_id = k[1], queue = k[2] }) end }
        if k[5] == "abandoned" then
          events[#events + 1] = { at + k[4], function() assert(c:abandon(k[1])) end }
        else
          events[#events + 1] = { at + k[4], function() assert(c:assign(k[1], "a")) end }
          events[#events + 1] = { at + k[4] + k[5], function() assert(c:complete(k[1])) end }
        end
      end
      table.sort(events, function(x, y) return x[1] < y[1] end)
      for _, e in ipairs(events) do
        clock.t = e[1]
        e[2]()
      end
    end

    it("counts offered, answered, abandoned; averages, p90 and service level over [from, to)", function()
      local c = setup()
      scenario(c)
      local s = assert(c:stats{ from = T0, to = T0 + 1000 })
      assert.are.same({ 6, 5, 1, 0, 0 }, { s.offered, s.answered, s.abandoned, s.rejected, s.overflowed })
      assert.are.equal((1000 + 4000 + 25000 + 3000 + 6000) / 5, s.avg_wait_ms)
      assert.are.equal(25000, s.p90_wait_ms)  -- nearest rank: ceil(0.9 * 5) = 5th of 5
      assert.are.equal((30000 + 60000 + 90000 + 10000 + 20000) / 5, s.avg_talk_ms)
      assert.are.equal(100 * 3 / 6, s.service_level)  -- c1, c2, c5 within their queue's target
      s = assert(c:stats{ from = T0, to = T0 + 1000, queue = "sales" })
      assert.are.same({ 4, 3, 1 }, { s.offered, s.answered, s.abandoned })
      assert.are.equal(10000, s.avg_wait_ms)
      assert.are.equal(25000, s.p90_wait_ms)
      assert.are.equal(100 * 2 / 4, s.service_level)
      s = assert(c:stats{ from = T0, to = T0 + 1000, queue = "vip" })
      assert.are.same({ 2, 2, 0, 4500, 6000, 50 }, { s.offered, s.answered, s.abandoned, s.avg_wait_ms, s.p90_wait_ms, s.service_level })
    end)

    it("includes from and excludes to; an empty window gives zeros and no averages", function()
      local c = setup()
      scenario(c)
      local s = assert(c:stats{ from = T0 + 100, to = T0 + 400 })
      assert.are.same({ 3, 2, 1 }, { s.offered, s.answered, s.abandoned })  -- c2, c3, c4
      s = assert(c:stats{ from = T0 + 600, to = T0 + 900 })
      assert.are.same({ 0, 0, 0 }, { s.offered, s.answered, s.abandoned })
      assert.is_nil(s.avg_wait_ms)
      assert.is_nil(s.p90_wait_ms)
      assert.is_nil(s.avg_talk_ms)
      assert.is_nil(s.service_level)
    end)

    it("raises on bad input", function()
      local c = setup()
      assert.has_error(function() c:stats() end)
      assert.has_error(function() c:stats{ from = T0 } end)
      assert.has_error(function() c:stats{ from = "yesterday", to = T0 } end)
      assert.has_error(function() c:stats{ from = 0, to = T0, queue = 3 } end)
      assert.has_error(function() c:stats{ from = 0, to = T0, agent = "a" } end)
    end)
  end)

  describe("the real clock", function()
    it("stamps integer milliseconds since the Unix epoch", function()
      local _, db = setup()
      local c = sb.callcenter(db)
      local before = os.time() * 1000
      local w = assert(c:enqueue{ session_id = "s1", queue = "sales" })
      assert.are.equal("integer", math.type(w.enqueued_at))
      assert.is_true(w.enqueued_at >= before - 1000 and w.enqueued_at <= before + 5000)
      local row = assert(db:first("SELECT enqueued_at FROM waiting_calls"))
      assert.are.equal(w.enqueued_at, row.enqueued_at)
    end)
  end)
end)
