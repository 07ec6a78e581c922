-- spec/callcenter_concurrency_spec.lua - issue 3's concurrency spec, on both
-- backends: 4 OS processes (spec/support/cc_worker.lua), each with 50
-- switchboard tasks, route 5,000 waiting calls to 50 agents (max_calls 1-3)
-- with cc:assign and cc:claim_next, while agents complete calls, callers
-- abandon, and agents change status.  Audit triggers installed here log
-- every change of an agent's current_calls and every assignment as it
-- happens, so "never above max_calls" and "never to an agent who is not
-- AVAILABLE" are checked over the whole run, not only at the end.  Counts
-- are printed with the "[switchboard spec]" prefix.
local helpers = require "helpers"
local cc = require "support.cc"
local sb = require "switchboard"
local migrate = require "switchboard.migrate"

local PROCESSES, TASKS, AGENTS, CALLS = 4, 50, 50, 5000

local AUDIT = {
  postgresql = [[
CREATE TABLE capacity_audit (agent_id TEXT, current_calls INTEGER, max_calls INTEGER, status TEXT);
CREATE FUNCTION capacity_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO capacity_audit VALUES (NEW.id, NEW.current_calls, NEW.max_calls, NEW.status);
  RETURN NULL;
END $$;
CREATE TRIGGER capacity_audit_tr AFTER UPDATE OF current_calls ON agents
  FOR EACH ROW EXECUTE FUNCTION capacity_audit_fn();
CREATE TABLE assign_audit (call_id TEXT, agent_id TEXT, agent_status TEXT, agent_calls INTEGER, agent_max INTEGER);
CREATE FUNCTION assign_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO assign_audit SELECT NEW.call_id, NEW.agent_id, a.status, a.current_calls, a.max_calls
    FROM agents a WHERE a.id = NEW.agent_id;
  RETURN NULL;
END $$;
CREATE TRIGGER assign_audit_tr AFTER INSERT ON active_calls
  FOR EACH ROW EXECUTE FUNCTION assign_audit_fn();
]],
  sqlite = [[
CREATE TABLE capacity_audit (agent_id TEXT, current_calls INTEGER, max_calls INTEGER, status TEXT);
CREATE TRIGGER capacity_audit_tr AFTER UPDATE OF current_calls ON agents BEGIN
  INSERT INTO capacity_audit VALUES (NEW.id, NEW.current_calls, NEW.max_calls, NEW.status);
END;
CREATE TABLE assign_audit (call_id TEXT, agent_id TEXT, agent_status TEXT, agent_calls INTEGER, agent_max INTEGER);
CREATE TRIGGER assign_audit_tr AFTER INSERT ON active_calls BEGIN
  INSERT INTO assign_audit SELECT NEW.call_id, NEW.agent_id, a.status, a.current_calls, a.max_calls
    FROM agents a WHERE a.id = NEW.agent_id;
END;
]],
}

local function read_file(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

helpers.each_backend(function(backend)
  teardown(cc.drop_schemas)

  it("4 processes x 50 tasks route 5,000 calls to 50 agents: each call once, no agent over max_calls", function()
    local url = cc.fresh_url(backend, "conc")
    local db = helpers.open(backend, { pool = 8 }, url)
    assert(sb.migrate(db))
    for _, st in ipairs(migrate.split(AUDIT[backend.name], backend.name)) do assert(db:exec(st.sql)) end
    local c = sb.callcenter(db)

    local fns = {}
    for i = 1, AGENTS do
      fns[i] = function()
        assert(c:add_agent{ id = string.format("a%02d", i), name = "Agent " .. i, max_calls = i % 3 + 1,
                            queues = { "sales", "support" } })
      end
    end
    helpers.run_tasks(table.unpack(fns))
    local t0 = helpers.now()
    fns = {}
    for k = 1, 50 do
      fns[k] = function()
        for i = k, CALLS, 50 do
          assert(c:enqueue{ session_id = string.format("s%04d", i), queue = i % 2 == 0 and "sales" or "support",
                            priority = i % 7 == 0 and 5 or 0, caller = "+49" .. i })
        end
      end
    end
    helpers.run_tasks(table.unpack(fns))
    local t_enqueue = helpers.now() - t0
    assert.are.equal(CALLS, cc.count(db, "waiting_calls"))

    -- the run
    local code = read_file("spec/support/cc_worker.lua")
    local procs = {}
    for p = 1, PROCESSES do
      procs[p] = { code = code, env = { SBSPEC_URL = url, SBSPEC_TASKS = TASKS, SBSPEC_AGENTS = AGENTS,
                                        SBSPEC_BUDGET = helpers.T(30), SBSPEC_SEED = p } }
    end
    t0 = helpers.now()
    local results = cc.run_processes(procs, 120)
    local dt = helpers.now() - t0

    local total = { assigned = 0, claimed = 0, conflicts = 0, claim_conflicts = 0, completed = 0,
                    complete_races = 0, abandoned = 0, abandon_races = 0, status_changes = 0, empty_claims = 0 }
    local won = {}
    for p, r in ipairs(results) do
      assert.is_true(r.ok, "process " .. p .. " failed:\n" .. r.out:sub(-3000))
      local line = assert(r.out:match("RESULT([^\n]*)"), "process " .. p .. " printed no RESULT:\n" .. r.out:sub(-3000))
      for k, v in line:gmatch("([%w_]+)=(%d+)") do total[k] = total[k] + tonumber(v) end
      for id in r.out:gmatch("ASSIGNED (%S+)") do
        assert.is_nil(won[id], "call " .. id .. " was won twice (processes " .. tostring(won[id]) .. " and " .. p .. ")")
        won[id] = p
      end
    end
    local wins = total.assigned + total.claimed

    -- every call assigned at most once, by the database's own log
    local dup = assert(db:query("SELECT call_id, count(*) AS n FROM assign_audit GROUP BY call_id HAVING count(*) > 1"))
    assert.are.equal(0, #dup, dup[1] and ("call " .. dup[1].call_id .. " assigned " .. dup[1].n .. " times"))
    assert.are.equal(wins, cc.count(db, "assign_audit"))
    for _, row in ipairs(assert(db:query("SELECT call_id FROM assign_audit"))) do
      assert.is_not_nil(won[row.call_id], "the database assigned " .. row.call_id .. " but no task won it")
    end
    -- never above max_calls, never below 0, never to an agent who was not AVAILABLE
    assert.are.equal(0, cc.count(db, "capacity_audit WHERE current_calls > max_calls OR current_calls < 0"))
    assert.is_true(cc.count(db, "capacity_audit") >= wins)
    assert.are.equal(0, cc.count(db, "assign_audit WHERE agent_status <> 'AVAILABLE' OR agent_calls > agent_max"))
    -- each call in exactly one place: waiting, active, or a record (answered = was assigned; abandoned = was not)
    local waiting, active = cc.count(db, "waiting_calls"), cc.count(db, "active_calls")
    local answered = cc.count(db, "call_records WHERE outcome = 'answered'")
    local abandoned = cc.count(db, "call_records WHERE outcome = 'abandoned'")
    assert.are.equal(CALLS, waiting + active + answered + abandoned)
    assert.are.equal(CALLS, assert(db:first([[SELECT count(*) AS n FROM (
        SELECT session_id AS id FROM waiting_calls UNION SELECT call_id FROM active_calls
        UNION SELECT call_id FROM call_records) x]])).n)
    assert.are.equal(wins, active + answered)
    assert.are.equal(0, cc.count(db, "call_records r WHERE outcome = 'abandoned'"
                                      .. " AND EXISTS (SELECT 1 FROM assign_audit a WHERE a.call_id = r.call_id)"))
    assert.are.equal(total.abandoned, abandoned)
    assert.are.equal(total.completed, answered)
    -- capacity matches the active calls, in sum and per agent
    assert.are.equal(active, assert(db:first("SELECT sum(current_calls) AS n FROM agents")).n)
    assert.are.equal(0, cc.count(db, "agents a WHERE a.current_calls <> "
                                      .. "(SELECT count(*) FROM active_calls c WHERE c.agent_id = a.id)"))
    assert.are.equal(AGENTS, cc.count(db, "agents WHERE status = 'AVAILABLE'"))
    -- it really routed under contention
    assert.are.equal(0, waiting, "calls left waiting: the run did not finish within its budget")
    assert.is_true(total.conflicts > 0, "no assign ever lost a race: the spec did not contend")

    helpers.log("%s: %d processes x %d tasks, %d calls, %d agents: assigned %d (assign %d + claim_next %d), "
      .. "conflicts retried %d (+%d claim conflicts), completed %d, abandoned %d, status changes %d, "
      .. "complete races %d, abandon races %d; routing %.2f s (%.0f assignments/s), enqueue %.2f s",
      backend.name, PROCESSES, TASKS, CALLS, AGENTS, wins, total.assigned, total.claimed, total.conflicts,
      total.claim_conflicts, total.completed, total.abandoned, total.status_changes, total.complete_races,
      total.abandon_races, dt, wins / dt, t_enqueue)
  end)
end)
