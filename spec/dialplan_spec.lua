-- spec/dialplan_spec.lua - the examples of docs/dialplan.md, run as they
-- are written, against stand-ins for the hosts' objects (FreeSWITCH's
-- session/argv/freeswitch, Kamailio's KSR), on both backends.  What this
-- cannot check: the hosts themselves (they do not embed Lua 5.4).
local helpers = require "helpers"
local R = require "support.routing"

-- The lua code blocks of docs/dialplan.md, in order.
local function examples()
  local text = R.read("docs/dialplan.md")
  local blocks = {}
  for code in text:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
  return blocks
end

-- Run `code` with the host's globals in `host` and SWITCHBOARD_URL/POLICY
-- answering os.getenv; --> the environment it ran in.
local function run(code, host, url, policy)
  local env = setmetatable({}, { __index = function(_, k)
    if host[k] ~= nil then return host[k] end
    return _G[k]
  end })
  env.os = setmetatable({ getenv = function(name)
    if name == "SWITCHBOARD_URL" then return url end
    if name == "SWITCHBOARD_POLICY" then return policy end
    return os.getenv(name)
  end }, { __index = os })
  assert(load(code, "=example", "t", env))()
  return env
end

helpers.each_backend(function(backend)
  teardown(R.drop_schemas)
  after_each(R.cleanup)

  it("the FreeSWITCH script assigns, bridges and completes the call", function()
    local c, db, url = R.setup(backend)
    R.agents(c, 1, "sales", "agent")
    local log = {}
    local session = {
      get_uuid = function() return "fs-call-1" end,
      getVariable = function(_, name) return name == "caller_id_number" and "+15550100" or nil end,
      setVariable = function(_, k, v) log[#log + 1] = "set " .. k .. "=" .. v end,
      answer = function() log[#log + 1] = "answer" end,
      ready = function() return true end,
      execute = function(_, app, data) log[#log + 1] = app .. " " .. data end,
      hangup = function(_, cause) log[#log + 1] = "hangup " .. cause end,
    }
    local fs = { session = session, argv = { "sales" }, freeswitch = { consoleLog = function() end } }
    run(examples()[1], fs, url, "scripts/policies/longest_idle.lua")
    assert.are.same({ "answer", "set switchboard_policy=longest-idle@" .. log[2]:match("@(%x+)$"), "bridge user/agent1" }, log)
    local rec = assert(db:first("SELECT outcome, agent_id, policy_name FROM call_records WHERE call_id = 'fs-call-1'"))
    assert.are.same({ outcome = "answered", agent_id = "agent1", policy_name = "longest-idle" }, rec)
  end)

  it("the FreeSWITCH script records an abandoned call when the caller hangs up while waiting", function()
    local c, db, url = R.setup(backend)
    local rounds = 0
    local session = {
      get_uuid = function() return "fs-call-2" end,
      getVariable = function() return "+15550101" end,
      setVariable = function() end, answer = function() end, hangup = function() end,
      ready = function() rounds = rounds + 1 return rounds <= 3 end,
      execute = function() end,
    }
    run(examples()[1], { session = session, argv = { "sales" }, freeswitch = { consoleLog = function() end } },
        url, "scripts/policies/longest_idle.lua")
    assert.are.equal("abandoned", assert(db:first("SELECT outcome FROM call_records WHERE call_id = 'fs-call-2'")).outcome)
    assert.are.equal(0, #c:waiting{})
  end)

  it("the Kamailio script makes one router per process and relays each INVITE", function()
    local c, _, url = R.setup(backend)
    R.agents(c, 1, "sales", "agent")
    local pv, replies, relayed = {}, {}, 0
    local KSR = {
      pv = { get = function(name) return pv[name] end, sets = function(name, v) pv[name] = v end },
      sl = { send_reply = function(code, reason) replies[#replies + 1] = code .. " " .. reason end },
      tm = { t_relay = function() relayed = relayed + 1 end },
      err = function() end,
    }
    local env = run(examples()[2], { KSR = KSR }, url, "scripts/policies/longest_idle.lua")
    local uris = {}
    for i = 1, 2 do
      pv["$rm"], pv["$ci"], pv["$rU"], pv["$fU"] = "INVITE", "k-call-" .. i, "sales", "alice"
      assert.are.equal(1, env.ksr_request_route())
      uris[i] = pv["$ru"]
    end
    assert.are.same({ "sip:agent1@agents.example.com", "sip:sales@queue.example.com" }, uris)
    assert.are.equal(2, relayed)
    assert.are.same({}, replies)
    pv["$rm"] = "OPTIONS"
    assert.are.equal(1, env.ksr_request_route())
    assert.are.equal(2, relayed)
  end)
end)
