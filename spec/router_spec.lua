-- spec/router_spec.lua - sb.router on both backends: loading and status,
-- reload of good and broken versions (explicit and auto), decision checks
-- and the fallback, assign with bounded retries on conflict, ctx, and
-- hot reload while 500 calls are in flight (no failed route, every call
-- on exactly one version, recorded in the database).
local sb = require "switchboard"
local helpers = require "helpers"
local R = require "support.routing"

-- A policy file's text: a free agent of the queue (spread by the call's
-- number, so that concurrent routes rarely pick the same one); `mark`
-- names the code that ran (returned as the decision's reason and as the
-- version).
local function good(mark, extra)
  return string.format([[
return {
  name = "marked", version = %q,
  route = function(call, ctx)
    local agents = assert(ctx.cc:available_agents{ queue = call.queue, limit = 50 })
    if agents[1] then
      local n = tonumber(tostring(call.id):match("%%d+") or "0")
      return { action = "assign", agent = agents[n %% #agents + 1].id, reason = %q }
    end
    return { action = "queue", reason = %q }
  end,
  %s
}
]], mark, mark, mark, extra or "")
end

local BROKEN = {
  syntax = "return { route = function() end\n  name = 'x' }\n",
  runtime = "local t = nil\nreturn { route = t.route }\n",
  self_test = good("bad-self-test", "self_test = function(ctx) return false, 'not today' end,"),
  no_route = "return { name = 'marked', version = 'no-route' }\n",
  not_a_table = "return 42\n",
  load_loop = "while true do end\n",
  bad_init = good("bad-init", "init = function(ctx) error('init refused') end,"),
  bytecode = string.dump(function() return { route = function() end } end),
}

local WHY = {
  syntax = "'}' expected", runtime = "loading: .*attempt to index a nil value", self_test = "self_test failed: not today",
  no_route = "no route function", not_a_table = "must return a table", load_loop = "instruction budget exceeded",
  bad_init = "init: .*init refused", bytecode = "binary chunks are not allowed",
}

helpers.each_backend(function(backend)
  teardown(R.drop_schemas)
  after_each(R.cleanup)

  describe("sb.router", function()
    it("loads the policy and reports its status", function()
      local c = R.setup(backend)
      local router = assert(R.router(c, R.write(good("v1"))))
      local st = router:status()
      assert.are.equal("marked", st.name)
      assert.are.equal("v1", st.version)
      assert.are.same({ 0, 0, 0, 0 }, { st.reloads, st.failures, st.routed, st.fallbacks })
      assert.is_nil(st.last_error)
      assert.is_number(st.loaded_at)
    end)

    it("names an unnamed policy after its file and versions it by content", function()
      local c = R.setup(backend)
      local path = R.write("return { route = function() return { action = 'queue' } end }")
      local router = assert(R.router(c, path))
      local st = router:status()
      assert.are.equal(path:match("([^/]+)%.lua$"), st.name)
      assert.matches("^%x+$", st.version)
    end)

    it("raises on bad options", function()
      local c = R.setup(backend)
      local path = R.write(good("v1"))
      assert.has_error(function() sb.router() end)
      assert.has_error(function() sb.router{ cc = c } end)
      assert.has_error(function() sb.router{ cc = c, policy = path, reload = "sometimes" } end)
      assert.has_error(function() sb.router{ cc = c, policy = path, budget = { instructions = 0 } } end)
      assert.has_error(function() sb.router{ cc = c, policy = path, budget = { cpu = 0 } } end)
      assert.has_error(function() sb.router{ cc = c, policy = path, budget = { cpu = "1" } } end)
      assert.is_not_nil(sb.router{ cc = c, policy = path, budget = { cpu = 0.05 } })
      assert.has_error(function() sb.router{ cc = c, policy = path, fallback = { action = "assign", agent = "a" } } end)
      assert.has_error(function() sb.router{ cc = c, policy = path, max_attempts = 0 } end)
    end)

    for kind, text in pairs(BROKEN) do
      it("refuses a first version that is broken: " .. kind, function()
        local c = R.setup(backend)
        local router, err = R.router(c, R.write(text))
        assert.is_nil(router)
        assert.are.equal("policy", err.class)
        assert.matches(WHY[kind], err.message)
      end)
    end

    it("reload(): a broken version is rejected whole, the old one keeps serving", function()
      local c = R.setup(backend)
      R.agents(c, 3, "q")
      local path = R.write(good("v1"))
      local router = assert(R.router(c, path, { reload = "manual" }))
      local n = 0
      for kind, text in pairs(BROKEN) do
        R.write(text, path)
        local ok, err = router:reload()
        assert.is_nil(ok, kind)
        assert.matches(WHY[kind], err.message)
        n = n + 1
        local st = router:status()
        assert.are.equal("v1", st.version)
        assert.are.equal(n, st.failures)
        assert.matches(WHY[kind], st.last_error)
        local d = assert(router:route(R.call(c, "c-" .. kind, "other")))
        assert.are.same({ "queue", "v1", "v1" }, { d.action, d.reason, d.policy_version })
      end
      R.write(good("v2"), path)
      assert.is_true(router:reload())
      local st = router:status()
      assert.are.same({ "v2", 1 }, { st.version, st.reloads })
      assert.is_nil(st.last_error)
      assert.are.same({ "marked@v1", "marked@v2" }, st.versions)
    end)

    it("auto: picks up a changed file on the next route, and a broken one only once", function()
      local c = R.setup(backend)
      local path = R.write(good("v1"))
      local router = assert(R.router(c, path, { check_interval = 0 }))
      R.write(good("v2"), path)
      assert.are.equal("v2", assert(router:route(R.call(c, "c1", "q"))).policy_version)
      R.write(BROKEN.runtime, path)
      for i = 2, 6 do assert.are.equal("v2", assert(router:route(R.call(c, "c" .. i, "q"))).policy_version) end
      local st = router:status()
      assert.are.same({ 1, 1 }, { st.reloads, st.failures })  -- not retried while the file is unchanged
      R.write(good("v3"), path)
      assert.are.equal("v3", assert(router:route(R.call(c, "c7", "q"))).policy_version)
    end)

    it("auto: checks the file at most once per check_interval; manual: never by itself", function()
      local c = R.setup(backend)
      local path = R.write(good("v1"))
      local router = assert(R.router(c, path, { check_interval = 3600 }))
      R.write(good("v2"), path)
      assert.are.equal("v1", assert(router:route(R.call(c, "c1", "q"))).policy_version)
      local manual = assert(R.router(c, path, { reload = "manual", check_interval = 0 }))
      R.write(good("v3"), path)
      assert.are.equal("v2", assert(manual:route(R.call(c, "c2", "q"))).policy_version)
      assert(manual:reload())
      assert.are.equal("v3", assert(manual:route(R.call(c, "c3", "q"))).policy_version)
    end)
  end)

  describe("decisions", function()
    local function decide(c, body)
      local router, log = assert(R.router(c, R.write("return { name = 'd', route = function(call, ctx) " .. body .. " end }")))
      local d, err = router:route(R.call(c, "c1", "q"))
      return d, err, router, log
    end

    it("assign performs cc:assign and records the policy name and version", function()
      local c, db = R.setup(backend)
      R.agents(c, 1, "q")
      local d, _, router = decide(c, "return { action = 'assign', agent = 'a1' }")
      assert.are.equal("a1", d.assignment.agent_id)
      local row = assert(db:first("SELECT policy_name, policy_version FROM active_calls WHERE call_id = 'c1'"))
      assert.are.same({ policy_name = "d", policy_version = router:status().version }, row)
    end)

    it("passes queue, overflow and reject through with their fields", function()
      local c = R.setup(backend)
      assert.are.same({ "overflow", "vip" }, (function()
        local d = decide(c, "return { action = 'overflow', queue = 'vip', priority = 5 }")
        return { d.action, d.queue }
      end)())
      local c2 = R.setup(backend)
      local d = decide(c2, "return { action = 'reject', reason = 'closed' }")
      assert.are.same({ "reject", "closed" }, { d.action, d.reason })
    end)

    local bad = {
      ["an unknown action"] = "return { action = 'dance' }",
      ["assign without an agent"] = "return { action = 'assign' }",
      ["an agent of the wrong type"] = "return { action = 'assign', agent = {} }",
      ["overflow without a queue"] = "return { action = 'overflow' }",
      ["a non-table"] = "return 'assign'",
      ["nothing"] = "",
      ["a priority that is not an integer"] = "return { action = 'queue', priority = 1.5 }",
      ["an error"] = "error('no luck')",
    }
    for what, body in pairs(bad) do
      it("uses the fallback for " .. what, function()
        local c = R.setup(backend)
        local d, _, router, log = decide(c, body)
        assert.are.equal("queue", d.action)
        assert.is_true(d.fallback)
        assert.are.equal(1, router:status().fallbacks)
        assert.is_string(router:status().last_error)
        assert.matches("fallback used", log[#log])
      end)
    end

    it("uses a configured fallback decision", function()
      local c = R.setup(backend)
      local router = assert(R.router(c, R.write("return { route = function() error('x') end }"),
                                     { fallback = { action = "overflow", queue = "backup" } }))
      local d = assert(router:route(R.call(c, "c1", "q")))
      assert.are.same({ "overflow", "backup", true }, { d.action, d.queue, d.fallback })
    end)

    it("on a conflict asks the policy again, up to max_attempts, then falls back", function()
      local c = R.setup(backend)
      R.agents(c, 2, "q")
      assert(c:assign(R.call(c, "busy", "q").id, "a1"))  -- a1 is taken
      -- first choice a1 (taken), then a2
      local path = R.write([[return { name = "again", init = function(ctx) ctx.state.n = 0 end,
        route = function(call, ctx) ctx.state.n = ctx.state.n + 1
          return { action = "assign", agent = ctx.state.n == 1 and "a1" or "a2" } end }]])
      local router = assert(R.router(c, path))
      local d = assert(router:route(R.call(c, "c1", "q")))
      assert.are.same({ "a2", 1 }, { d.agent, router:status().conflicts })
      local stubborn = assert(R.router(c, R.write("return { route = function() return { action = 'assign', agent = 'a1' } end }"),
                                       { max_attempts = 4 }))
      d = assert(stubborn:route(R.call(c, "c2", "q")))
      assert.is_true(d.fallback)
      assert.matches("4 conflicts", d.reason)
      assert.are.equal(4, stubborn:status().conflicts)
    end)

    it("returns nil, err for a call that is not waiting, without asking again", function()
      local c = R.setup(backend)
      R.agents(c, 1, "q")
      local path = R.write("return { route = function() return { action = 'assign', agent = 'a1' } end }")
      local router = assert(R.router(c, path))
      local d, err = router:route{ id = "nobody", queue = "q" }
      assert.is_nil(d)
      assert.are.same({ "conflict", "not_waiting" }, { err.class, err.reason })
      assert.are.equal(0, router:status().conflicts)
      assert.has_error(function() router:route{ queue = "q" } end)
    end)
  end)

  describe("ctx", function()
    it("gives read-only call-center reads, copies of results, a logger and the clock", function()
      local c = R.setup(backend)
      R.agents(c, 2, "q")
      local path = R.write([[return { route = function(call, ctx)
        local agents = ctx.cc:available_agents{ queue = "q" }
        local waiting = ctx.cc:waiting{ queue = "q" }
        local ok = pcall(function() ctx.cc.assign = function() end end)
        ctx.log("agents", #agents, "waiting", #waiting)
        return { action = "queue", reason = table.concat({ #agents, #waiting, tostring(ok),
          tostring(ctx.cc.assign), tostring(getmetatable(agents)), math.type(ctx.now()) }, " ") }
      end }]])
      local router, log = assert(R.router(c, path))
      local d = assert(router:route(R.call(c, "c1", "q")))
      assert.are.equal("2 1 false nil nil integer", d.reason)
      assert.are.equal("agents 2 waiting 1", log[1])
    end)

    it("keeps ctx.state across reloads of the same name, fresh for another name", function()
      local c = R.setup(backend)
      local text = [[return { name = %q, route = function(call, ctx)
        ctx.state.n = (ctx.state.n or 0) + 1
        return { action = "queue", reason = tostring(ctx.state.n) } end }]]
      local path = R.write(text:format("one"))
      local router = assert(R.router(c, path, { reload = "manual" }))
      assert.are.equal("1", assert(router:route(R.call(c, "c1", "q"))).reason)
      R.write(text:format("one") .. "\n", path)
      assert(router:reload())
      assert.are.equal("2", assert(router:route(R.call(c, "c2", "q"))).reason)
      R.write(text:format("two"), path)
      assert(router:reload())
      assert.are.equal("1", assert(router:route(R.call(c, "c3", "q"))).reason)
    end)
  end)

  describe("hot reload under load", function()
    -- 500 calls wait from the start and stay in flight (waiting, then
    -- talking) until the operator is done: it writes 11 versions,
    -- good and broken in turn, and after each write lets the next group of
    -- calls route, so that every version meets routes, some of which are
    -- still running (waiting for the database) when the next one lands.
    it("swaps good and broken versions while 500 calls are in flight: no failed route, one version per call", function()
      local c, db = R.setup(backend)
      local AGENTS, CALLS, GROUPS = 250, 500, 12
      R.agents(c, AGENTS, "q", "a", { max_calls = 2 })
      local path = R.write(good("g1"))
      local router = assert(R.router(c, path, { check_interval = 0, max_attempts = 10 }))
      local plan = { good("g2"), BROKEN.syntax, good("g3"), BROKEN.runtime, good("g4"), BROKEN.self_test,
                     good("g5"), BROKEN.no_route, good("g6"), BROKEN.load_loop, good("g7") }
      local good_marks = { g1 = true, g2 = true, g3 = true, g4 = true, g5 = true, g6 = true, g7 = true }
      local version_of, failed, mismatched, straddled, done, released = {}, 0, 0, 0, 0, 0
      local in_flight_at_swap, calls, tasks = {}, {}, {}
      for i = 1, CALLS do calls[i] = R.call(c, string.format("call-%03d", i), "q") end

      for i = 1, CALLS do
        tasks[#tasks + 1] = function()
          local call = calls[i]
          while released < (i - 1) % GROUPS do sb.sleep(0.001) end
          while true do
            local before = router:status().version
            local d, err = router:route(call)
            if not d or d.fallback then failed = failed + 1; error("route failed: " .. tostring(err or d.reason)) end
            if d.reason ~= d.policy_version then mismatched = mismatched + 1 end
            if d.policy_version == before and d.policy_version ~= router:status().version then
              straddled = straddled + 1  -- a swap landed while it ran: it finished on its own version
            end
            if d.action == "assign" then
              version_of[call.id] = d.policy_version
              repeat sb.sleep(0.05) until released == GROUPS  -- talk until the operator is done
              assert(c:complete(call.id))
              done = done + 1
              return
            end
            sb.sleep(0.02)  -- wait, then ask again
          end
        end
      end
      tasks[#tasks + 1] = function()  -- the operator, editing the policy while calls flow
        for k, text in ipairs(plan) do
          local st = router:status()
          in_flight_at_swap[#in_flight_at_swap + 1] = CALLS - done
          R.write(text, path)
          released = k
          local t0 = helpers.now()
          repeat  -- until the router took or refused it
            sb.sleep(0.001)
            local now = router:status()
          until now.reloads + now.failures > st.reloads + st.failures or helpers.now() - t0 > helpers.T(5)
        end
        released = GROUPS
      end
      helpers.run_tasks(table.unpack(tasks))

      local st = router:status()
      assert.are.equal(0, failed)
      assert.are.equal(0, st.fallbacks)
      assert.are.equal(0, mismatched)  -- the code that ran is the version recorded
      assert.are.same({ 6, 5 }, { st.reloads, st.failures })
      assert.are.equal("g7", st.version)
      assert.are.equal(CALLS, done)
      for k, n in ipairs(in_flight_at_swap) do
        assert.are.equal(CALLS, n, "calls in flight at swap " .. k)
      end
      -- every call answered once, on exactly one good version, as the router said
      local rows = assert(db:query("SELECT call_id, outcome, policy_name, policy_version FROM call_records"))
      assert.are.equal(CALLS, #rows)
      local used = {}
      for _, r in ipairs(rows) do
        assert.are.equal("answered", r.outcome)
        assert.are.equal("marked", r.policy_name)
        assert.is_true(good_marks[r.policy_version], r.policy_version)
        assert.are.equal(version_of[r.call_id], r.policy_version)
        used[r.policy_version] = (used[r.policy_version] or 0) + 1
      end
      local names = {}
      for v, n in pairs(used) do names[#names + 1] = v .. "=" .. n end
      table.sort(names)
      assert.are.equal(7, #names, table.concat(names, " "))  -- every good version served calls
      assert.are.equal(0, assert(db:first("SELECT count(*) AS n FROM active_calls")).n)
      assert.are.equal(0, assert(db:first("SELECT count(*) AS n FROM waiting_calls")).n)
      helpers.log("[%s] reload under load: %d calls in flight, %d swaps (%d taken, %d refused); calls per version: %s;"
        .. " %d routes, %d finished on their version after a swap landed, %d conflicts retried, 0 failed",
        backend.name, CALLS, #plan, st.reloads, st.failures, table.concat(names, " "), st.routed, straddled,
        st.conflicts)
    end)
  end)
end)
