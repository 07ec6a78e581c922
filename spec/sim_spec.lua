-- spec/sim_spec.lua - the call-flow simulator (switchboard.sim and
-- scripts/switchboard-sim) on both backends, in short runs: the summary's
-- invariant offered = answered + abandoned + rejected + waiting, the same
-- totals read back from the database, policy reloads mid-run (good and
-- broken), overflow and reject, the scenario loader's refusals, the JSON
-- output and the command line.
local helpers = require "helpers"
local R = require "support.routing"
local sim = require "switchboard.sim"
local report = require "switchboard.sim_report"
local scenario = require "switchboard.sim_scenario"

-- 1 simulated second = 5 ms (slower under valgrind: the simulation must keep pace)
local SPEED = 200 / helpers.time_factor

-- a small scenario table; `over` replaces fields
local function small(over)
  local s = {
    name = "spec", duration = 60, seed = 5, reroute = 3,
    queues = {
      { name = "sales", rate = 0.8, talk = 20, patience = 15, skills = { english = 1 } },
      { name = "support", rate = 0.4, talk = 25, patience = 20, skills = { english = 1, technical = { 1, 3 } } },
      { name = "general", rate = 0 },
    },
    agents = {
      { count = 8, prefix = "s", queues = { "sales" }, skills = { english = 2 }, wrapup = 2 },
      { count = 5, prefix = "t", queues = { "support", "sales" }, skills = { english = 2, technical = { 1, 4 } },
        wrapup = 2, pause = { chance = 0.2, mean = 5 } },
      { count = 3, prefix = "g", queues = { "general" }, skills = { english = 5, technical = 5 } },
    },
  }
  for k, v in pairs(over or {}) do s[k] = v end
  return s
end

local function check_invariants(s)
  local c = s.calls
  assert.is_true(c.offered > 10, "offered " .. c.offered)
  assert.are.equal(c.offered, c.answered + c.abandoned + c.rejected + c.waiting)
  assert.is_true(c.invariant_ok)
  local d = s.database_check
  assert.are.same({ c.offered, c.answered, c.abandoned, c.rejected, c.waiting },
                  { d.offered, d.answered, d.abandoned, d.rejected, d.waiting })
  assert.is_true(d.matches)
  local sum = { offered = 0, answered = 0, abandoned = 0, rejected = 0, waiting = 0 }
  for _, q in ipairs(s.queues) do
    for k in pairs(sum) do sum[k] = sum[k] + q[k] end
    assert.are.equal(q.offered, q.answered + q.abandoned + q.rejected + q.waiting, q.name)
  end
  assert.are.same({ c.offered, c.answered, c.abandoned, c.rejected, c.waiting },
                  { sum.offered, sum.answered, sum.abandoned, sum.rejected, sum.waiting })
  assert.are.equal(0, s.errors.task_failures)
  assert.are.equal(0, s.routing.errors)
  assert.is_true(s.ok)
end

helpers.each_backend(function(backend)
  after_each(R.cleanup)
  local url = function() return backend.is_pg and backend.url or nil end

  describe("switchboard.sim", function()
    it("runs a short scenario: the invariant holds and the database agrees", function()
      local s = assert(sim.run{ scenario = small(), policy = "scripts/policies/longest_idle.lua", db = url(),
                                speed = SPEED })
      check_invariants(s)
      assert.are.equal(backend.name, s.backend)
      assert.is_true(s.calls.answered > 0)
      assert.is_true(s.routing.routes >= s.calls.offered)
      assert.is_number(s.routing.latency_us.p50)
      assert.is_true(s.routing.latency_us.p99 >= s.routing.latency_us.p50)
      assert.is_true(s.database_ops.total > s.calls.offered)
      assert.is_true(s.real_seconds < helpers.T(60 / SPEED + 3), "real seconds " .. s.real_seconds)
      assert.are.equal(0, s.routing.fallbacks_policy_failed)
    end)

    it("keeps calls in flight at once, and leaves the waiting ones counted as waiting", function()
      -- two agents for a busy queue with patient callers: a queue builds up
      local s = assert(sim.run{ db = url(), speed = SPEED, policy = "scripts/policies/longest_idle.lua",
        scenario = small{ duration = 40, queues = { { name = "sales", rate = 3, talk = 30, patience = 1e6 } },
                          agents = { { count = 2, prefix = "a", queues = { "sales" } } } } })
      check_invariants(s)
      assert.is_true(s.calls.waiting > 50, "waiting " .. s.calls.waiting)
      assert.is_true(s.calls.max_in_flight > 50, "in flight " .. s.calls.max_in_flight)
      assert.are.equal(0, s.calls.abandoned)
    end)

    it("reloads the policy mid-run (good, then broken): every answer on one version", function()
      local broken = R.write("return { route = function() end\n  oops }\n")
      local s = assert(sim.run{ scenario = small(), db = url(), speed = SPEED,
        policy = "scripts/policies/longest_idle.lua",
        reload_at = { { at = 15, file = "scripts/policies/least_calls.lua" }, { at = 35, file = broken } } })
      check_invariants(s)
      assert.matches("^loaded least%-calls@", s.reload_events[1].result)
      assert.matches("^rejected: .*expected", s.reload_events[2].result)
      assert.are.same({ 1, 1 }, { s.routing.reloads, s.routing.reload_failures })
      assert.matches("^least%-calls@", s.routing.active_version)
      local names = {}
      for _, v in ipairs(s.policy_versions.calls) do names[v.name] = (names[v.name] or 0) + v.calls end
      assert.is_true((names["longest-idle"] or 0) > 0 and (names["least-calls"] or 0) > 0)
      local total = 0
      for _, n in pairs(names) do total = total + n end
      assert.are.equal(s.calls.answered, total)  -- each answered call: one version (or an agent's pull)
      assert.are.equal(0, s.routing.fallbacks_policy_failed)
    end)

    it("overflows long waiters and rejects what the policy rejects", function()
      local policy = R.write([[
return { name = "spec-mixed", route = function(call, ctx)
  if call.caller:match("[05]$") then return { action = "reject", reason = "blocked caller" } end
  local agents = assert(ctx.cc:available_agents{ queue = call.queue, skills = call.skills, limit = 1 })
  if agents[1] then return { action = "assign", agent = agents[1].id } end
  if call.queue ~= "general" and call.waited_ms >= 4000 then return { action = "overflow", queue = "general" } end
  return { action = "queue" }
end }]])
      local s = assert(sim.run{ db = url(), speed = SPEED, policy = policy,
        scenario = small{ queues = { { name = "sales", rate = 2, talk = 30, patience = 60 }, { name = "general", rate = 0 } },
                          agents = { { count = 2, prefix = "s", queues = { "sales" } },
                                     { count = 4, prefix = "g", queues = { "general" } } } } })
      check_invariants(s)
      assert.is_true(s.calls.rejected > 0, "rejected")
      assert.is_true(s.calls.overflowed > 0, "overflowed")
      assert.is_true(s.queues[1].overflowed_out > 0)
    end)
  end)

  describe("switchboard-sim", function()
    local function sim_cmd(args)
      local cmd = "scripts/switchboard-sim " .. args .. (backend.is_pg and (" --db " .. helpers.shell_quote(backend.url)) or "")
      local p = assert(io.popen(cmd .. " 2>&1; echo rc=$?"))
      local out = p:read("a")
      p:close()
      return tonumber(out:match("rc=(%d+)%s*$")), out:gsub("rc=%d+%s*$", "")
    end

    it("prints the summary as JSON with --json, and no progress bar on a pipe", function()
      local rc, out = sim_cmd("scenarios/small.lua --duration 30 --speed " .. SPEED .. " --json")
      assert.are.equal(0, rc, out)
      assert.is_nil(out:find("\r", 1, true))
      local dkjson = require "dkjson"
      local s = assert(dkjson.decode(out), out)
      assert.are.equal("small", s.scenario)
      assert.are.equal(backend.name, s.backend)
      local c = s.calls
      assert.are.equal(c.offered, c.answered + c.abandoned + c.rejected + c.waiting)
      assert.is_true(s.database_check.matches)
      for _, k in ipairs { "p50", "p99" } do assert.is_number(s.routing.latency_us[k]) end
      assert.is_number(s.database_ops.per_second)
      assert.is_table(s.policy_versions.calls)
      assert.is_true(#s.queues >= 2)
      assert.is_number(s.queues[1].p90_wait_s)
    end)

    it("prints the text summary, with a progress bar when asked", function()
      local rc, out = sim_cmd("scenarios/small.lua --duration 30 --speed " .. SPEED .. " --progress"
        .. " --reload-at 5=scripts/policies/round_robin.lua")
      assert.are.equal(0, rc, out)
      assert.matches("%[#+%-*%] +%d+%%", out)
      for _, what in ipairs { "offered = answered %+ abandoned %+ rejected %+ waiting: .* ok", "service level",
                              "latency p50 %d+ us, p99 %d+ us", "operations, %d+ per second", "conflicts retried %d+",
                              "fallbacks %d+ %(0 by a failing policy%)", "reload    at 5s scripts/policies/round_robin.lua: loaded round%-robin@",
                              "result    OK" } do
        assert.matches(what, out)
      end
    end)

    it("refuses bad usage (exit 2) and a bad scenario (exit 1)", function()
      assert.are.equal(2, (sim_cmd("--speed")))
      assert.are.equal(2, (sim_cmd("--reload-at nonsense")))
      local bad = R.write("return { name = 'x', queues = {} }")
      local rc, out = sim_cmd(bad)
      assert.are.equal(1, rc)
      assert.matches("queues must be a non%-empty array", out)
    end)
  end)
end)

describe("sim scenarios", function()
  after_each(R.cleanup)

  it("loads every shipped scenario", function()
    for _, name in ipairs { "default", "small", "skills", "overflow" } do
      local sc = assert(scenario.load("scenarios/" .. name .. ".lua"))
      assert.are.equal(name, sc.name)
      local f = io.open(sc.policy)
      assert.is_not_nil(f, sc.policy)
      f:close()
    end
  end)

  it("loads a scenario as data: no globals, no functions, no endless loops", function()
    local cases = {
      { "os.execute('touch /tmp/sbsim-escape') return {}", "attempt to index a nil value" },
      { "return { queues = { { name = 'q', rate = function() end } } }", "function values are not allowed" },
      { "while true do end", "instruction budget exceeded" },
      { "return { queues = { { name = 'q' } }, agents = { { queues = { 'nope' } } } }", "unknown queue 'nope'" },
      { "return { queues = { { name = 'q', rate = -1 } }, agents = {} }", "rate must be >= 0" },
      { string.dump(function() return {} end), "binary chunks are not allowed" },
    }
    for _, case in ipairs(cases) do
      local sc, err = scenario.load(R.write(case[1]))
      assert.is_nil(sc)
      assert.matches(case[2], err, 1, true)
    end
    assert.is_nil(io.open("/tmp/sbsim-escape"))
  end)

  it("draws the same calls for the same seed", function()
    local a, b = sim.stream(42), sim.stream(42)
    for _ = 1, 100 do assert.are.equal(a(), b()) end
    local x = sim.stream(43)()
    assert.are_not.equal(sim.stream(42)(), x)
  end)

  it("encodes JSON: escapes, integers, arrays and objects", function()
    assert.are.equal('{"a":[1,2.5,"x\\"y\\n"],"b":{"c":true},"log":[],"n":null}',
                     report.json{ a = { 1, 2.5, 'x"y\n' }, b = { c = true }, log = {}, n = 0 / 0 })
  end)
end)
