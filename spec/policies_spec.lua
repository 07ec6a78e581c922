-- spec/policies_spec.lua - the shipped routing policies (scripts/policies/)
-- on both backends, each through a real router: who gets the call, what
-- happens when nobody can take it, their self_tests, and the
-- `switchboard-policy check` tool on good and broken files.
local helpers = require "helpers"
local R = require "support.routing"

local DIR = "scripts/policies/"

-- the agent ids that got calls, in order, routing calls c1..cn of `queue`
local function route_calls(c, router, n, queue, skills)
  local got = {}
  for i = 1, n do
    local call = R.call(c, "c" .. i, queue, skills)
    local d = assert(router:route(call))
    got[i] = d.action == "assign" and d.agent or d.action
  end
  return got
end

helpers.each_backend(function(backend)
  teardown(R.drop_schemas)
  after_each(R.cleanup)

  describe("longest_idle", function()
    it("gives the call to the agent idle the longest, and records the version", function()
      local clock = { t = 1000000 }
      local c, db = R.setup(backend, { clock = clock })
      for _, id in ipairs { "b", "a", "c" } do  -- b idle since 1000000, a since 1001000, ...
        assert(c:add_agent{ id = id, queues = { "q" } })
        clock.t = clock.t + 1000
      end
      local router = assert(R.router(c, DIR .. "longest_idle.lua"))
      local d = assert(router:route(R.call(c, "c1", "q")))
      assert.are.equal("assign", d.action)
      assert.are.equal("b", d.agent)
      assert.are.equal("longest-idle", d.policy)
      local row = assert(db:first("SELECT agent_id, policy_name, policy_version FROM active_calls WHERE call_id = 'c1'"))
      assert.are.same({ agent_id = "b", policy_name = "longest-idle", policy_version = router:status().version }, row)
      assert.are.equal("a", assert(router:route(R.call(c, "c2", "q"))).agent)
      assert.are.equal("c", assert(router:route(R.call(c, "c3", "q"))).agent)
    end)

    it("leaves the call waiting when nobody in its queue has the skills", function()
      local c = R.setup(backend)
      R.agents(c, 2, "q", "a", { skills = { english = 2 } })
      local router = assert(R.router(c, DIR .. "longest_idle.lua"))
      local d = assert(router:route(R.call(c, "c1", "q", { english = 3 })))
      assert.are.equal("queue", d.action)
      assert.is_nil(d.fallback)
      d = assert(router:route(R.call(c, "c2", "other")))
      assert.are.equal("queue", d.action)
      assert.are.equal(2, #c:waiting{})
    end)
  end)

  describe("skills_based", function()
    it("picks the best level in the main skill, then the longest idle", function()
      local clock = { t = 1000000 }
      local c = R.setup(backend, { clock = clock })
      local levels = { { "x2", 2 }, { "x7new", 7 }, { "x5", 5 }, { "x7old", 7 } }
      clock.t = 2000000
      assert(c:add_agent{ id = "x7old", queues = { "q" }, skills = { english = 7, french = 1 } })
      for _, a in ipairs(levels) do
        if a[1] ~= "x7old" then
          clock.t = clock.t + 1000
          assert(c:add_agent{ id = a[1], queues = { "q" }, skills = { english = a[2], french = 1 } })
        end
      end
      local router = assert(R.router(c, DIR .. "skills_based.lua"))
      local got = route_calls(c, router, 4, "q", { english = 2, french = 1 })
      assert.are.same({ "x7old", "x7new", "x5", "x2" }, got)
    end)

    it("honours every required skill and waits when the level is too high", function()
      local c = R.setup(backend)
      assert(c:add_agent{ id = "en9", queues = { "q" }, skills = { english = 9 } })
      assert(c:add_agent{ id = "bi3", queues = { "q" }, skills = { english = 3, spanish = 3 } })
      local router = assert(R.router(c, DIR .. "skills_based.lua"))
      local d = assert(router:route(R.call(c, "c1", "q", { english = 1, spanish = 1 })))
      assert.are.equal("bi3", d.agent)  -- en9 is better at english but has no spanish
      d = assert(router:route(R.call(c, "c2", "q", { english = 10 })))
      assert.are.equal("queue", d.action)
      d = assert(router:route(R.call(c, "c3", "q", { "english" })))  -- array form: level 1
      assert.are.equal("en9", d.agent)
    end)

    it("falls back to the longest idle when the call asks no skill", function()
      local clock = { t = 1000000 }
      local c = R.setup(backend, { clock = clock })
      assert(c:add_agent{ id = "late", queues = { "q" }, skills = { english = 9 } })
      clock.t = 500000  -- available earlier
      assert(c:add_agent{ id = "early", queues = { "q" }, skills = { english = 1 } })
      clock.t = 2000000
      local router = assert(R.router(c, DIR .. "skills_based.lua"))
      assert.are.equal("early", assert(router:route(R.call(c, "c1", "q"))).agent)
    end)
  end)

  describe("round_robin", function()
    it("takes turns in id order and goes on where it stopped after a reload", function()
      local c = R.setup(backend)
      R.agents(c, 3, "q", "a", { max_calls = 10 })
      local path = R.write(R.read(DIR .. "round_robin.lua"))
      local router = assert(R.router(c, path, { reload = "manual" }))
      assert.are.same({ "a1", "a2", "a3", "a1" }, route_calls(c, router, 4, "q"))
      R.write(R.read(DIR .. "round_robin.lua") .. "\n-- a new version\n", path)
      assert(router:reload())
      assert.are.equal(1, router:status().reloads)
      local d = assert(router:route(R.call(c, "c5", "q")))
      assert.are.equal("a2", d.agent)  -- ctx.state survived the reload
    end)

    it("keeps separate turns per queue and skips busy agents", function()
      local c = R.setup(backend)
      R.agents(c, 2, "q", "a")  -- max_calls 1: busy after one call
      R.agents(c, 2, "r", "b", { max_calls = 5 })
      local router = assert(R.router(c, DIR .. "round_robin.lua"))
      assert.are.same({ "a1", "a2", "queue" }, route_calls(c, router, 3, "q"))
      local d = assert(router:route(R.call(c, "r1", "r")))
      assert.are.equal("b1", d.agent)
    end)
  end)

  describe("least_calls", function()
    it("spreads calls evenly: fewest taken first, ties by the call center's order", function()
      local c = R.setup(backend)
      R.agents(c, 3, "q", "a", { max_calls = 10 })
      local router = assert(R.router(c, DIR .. "least_calls.lua"))
      local got = route_calls(c, router, 9, "q")
      local count = {}
      for _, id in ipairs(got) do count[id] = (count[id] or 0) + 1 end
      assert.are.same({ a1 = 3, a2 = 3, a3 = 3 }, count)
    end)

    it("prefers an agent who took fewer calls over one idle longer", function()
      local clock = { t = 1000000 }
      local c = R.setup(backend, { clock = clock })
      assert(c:add_agent{ id = "A", queues = { "q" } })
      clock.t = clock.t + 1000
      assert(c:add_agent{ id = "B", queues = { "q" } })
      local router = assert(R.router(c, DIR .. "least_calls.lua"))
      local function call(id)
        clock.t = clock.t + 1000
        local agent = assert(router:route(R.call(c, id, "q"))).agent
        clock.t = clock.t + 1000
        assert(c:complete(id))
        return agent
      end
      assert.are.same({ "A", "B", "A" }, { call("c1"), call("c2"), call("c3") })
      -- now A took 2 and B 1; B comes back from a pause, so A is idle longer
      clock.t = clock.t + 1000
      assert(c:set_status("B", "PAUSED"))
      clock.t = clock.t + 1000
      assert(c:set_status("B", "AVAILABLE"))
      local idle = assert(c:available_agents{ queue = "q" })
      assert.are.equal("A", idle[1].id)  -- longest idle: A
      assert.are.equal("B", call("c4"))  -- fewest calls: B
    end)
  end)

  describe("overflow", function()
    it("waits, then overflows after the queue's limit, unless an agent is free", function()
      local c = R.setup(backend)
      local router = assert(R.router(c, DIR .. "overflow.lua"))
      local d = assert(router:route(R.call(c, "c1", "sales", nil, 10000)))
      assert.are.equal("queue", d.action)
      d = assert(router:route(R.call(c, "c2", "sales", nil, 30000)))
      assert.are.same({ "overflow", "general" }, { d.action, d.queue })
      d = assert(router:route(R.call(c, "c3", "elsewhere", nil, 999000)))
      assert.are.equal("queue", d.action)  -- no rule for that queue
      R.agents(c, 1, "sales", "s")
      d = assert(router:route(R.call(c, "c4", "sales", nil, 999000)))
      assert.are.same({ "assign", "s1" }, { d.action, d.agent })
    end)

    it("refuses a version whose rules loop (self_test)", function()
      local c = R.setup(backend)
      local text = R.read(DIR .. "overflow.lua"):gsub("local RULES = %b{}",
        'local RULES = { a = { after = 1, to = "b" }, b = { after = 1, to = "a" } }')
      local path = R.write(text)
      local router, err = R.router(c, path)
      assert.is_nil(router)
      assert.matches("self_test failed: overflow rules loop", err.message)
    end)
  end)

  describe("switchboard-policy check", function()
    local function check(...)
      local args = {}
      for i, f in ipairs { ... } do args[i] = helpers.shell_quote(f) end
      local p = assert(io.popen("scripts/switchboard-policy check " .. table.concat(args, " ") .. " 2>&1; echo rc=$?"))
      local out = p:read("a")
      p:close()
      return tonumber(out:match("rc=(%d+)%s*$")), out
    end

    it("passes every shipped policy (exit 0)", function()
      local rc, out = check(DIR .. "longest_idle.lua", DIR .. "skills_based.lua", DIR .. "round_robin.lua",
                            DIR .. "least_calls.lua", DIR .. "overflow.lua")
      assert.are.equal(0, rc, out)
      local n = 0
      for _ in out:gmatch(": ok %(") do n = n + 1 end
      assert.are.equal(5, n, out)
    end)

    it("names the file and line of what is wrong (exit 1)", function()
      local syntax = R.write("return {\n  route = function() end\n  name = 'x',\n}\n")
      local runtime = R.write("local t = nil\nlocal x = t.field\nreturn { route = function() end }\n")
      local selftest = R.write("return { route = function() return { action = 'queue' } end,\n"
        .. "  self_test = function() return false, 'rules are wrong' end }\n")
      local loop = R.write("return { route = function()\n  while true do end\nend }\n")
      local rc, out = check(DIR .. "overflow.lua", syntax, runtime, selftest, loop)
      assert.are.equal(1, rc, out)
      assert.matches(DIR .. "overflow.lua: ok", out, 1, true)
      assert.matches(syntax .. ":3: ", out, 1, true)
      assert.matches(runtime .. ":2: loading: attempt to index a nil value", out, 1, true)
      assert.matches(selftest .. ": self_test failed: rules are wrong", out, 1, true)
      assert.matches(loop .. ":2: route (sample call): instruction budget exceeded", out, 1, true)
    end)

    it("exits 2 without files", function()
      local p = assert(io.popen("scripts/switchboard-policy 2>&1; echo rc=$?"))
      local out = p:read("a")
      p:close()
      assert.matches("rc=2", out)
    end)
  end)
end)
