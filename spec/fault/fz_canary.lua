-- spec/fault/fz_canary.lua - the canary password in the places most likely
-- to leak it.  Opens URLs that carry SB_TEST_PG_PASSWORD (userinfo,
-- password= in a URI query and in a conninfo, quoted, multi-host) against
-- failures of every kind (wrong user, refused port, bad settings, a
-- server-side error, a cancelled request, a closed db) and prints every
-- error and tostring(db) it gets.  The printing is the point: scripts/
-- fault-run greps ALL captured output for the password afterwards.  This
-- script also checks each string itself, so the failure names the culprit.
-- status(): db has none; router:status() (issue #4) is shown when sb.router
-- exists.
--
-- Usage: lua5.4 fz_canary.lua   (SB_TEST_PG_URL, SB_TEST_PG_PASSWORD)
local sb = require "switchboard"
local F = require "fault"

local PW = F.env("SB_TEST_PG_PASSWORD")
local url = F.env("SB_TEST_PG_URL")
local port = F.env("SB_TEST_PG_PORT")
local seen, leaks = 0, 0

local function show(what, s)
  s = tostring(s)
  seen = seen + 1
  F.log("%s: %s", what, s)
  if s:find(PW, 1, true) then
    leaks = leaks + 1
    F.check(false, "%s shows the password", what)
  end
end

local function try(name, u, opts)
  local db, err = sb.open(u, opts)
  if not db then show(name .. " open error", err); return end
  show(name .. " tostring(db)", db)
  local row, qerr = db:first("SELECT * FROM no_such_table_canary")
  show(name .. " query error", qerr or row)
  local _, terr = db:with{ timeout = 50 }:first("SELECT pg_sleep(2)")
  show(name .. " timeout error", terr)
  db:close()
  show(name .. " closed tostring(db)", db)
end

local free_port = 1  -- nothing listens on 127.0.0.1:1
try("good", url)
try("wrong user", (url:gsub("://[^:]*:", "://nobody_canary:")))
try("refused port", (url:gsub(":" .. port .. "/", ":" .. free_port .. "/")), { connect_timeout = 500 })
try("multi-host, first refused", (url:gsub("@127%.0%.0%.1:" .. port, "@127.0.0.1:" .. free_port .. ",127.0.0.1:" .. port)))
try("bad sslmode", url .. (url:find("?", 1, true) and "&" or "?") .. "sslmode=bogus_canary")
try("conninfo", string.format("host=127.0.0.1 port=%s user=switchboard password=%s dbname=switchboard", port, PW))
try("conninfo quoted, bad db", string.format("host=127.0.0.1 port=%s user=switchboard password='%s' dbname=nodb_canary", port, PW))
try("conninfo syntax error", string.format("host=127.0.0.1 password='%s dbname=x", PW))
try("uri password in query, refused", string.format("postgresql://switchboard@127.0.0.1:%d/switchboard?password=%s&connect_timeout=1", free_port, PW),
    { connect_timeout = 500 })

-- router:status() (issue #4) on a db opened with the password, after a
-- policy failed on a database error; skipped while sb.router is missing
local function router_status()
  if not sb.router then F.log("router: sb.router not available yet (#4)"); return end
  local dir = F.env("SB_TEST_TMP")
  local policy = dir .. "/canary_policy.lua"
  local f = assert(io.open(policy, "w"))
  f:write([[return { name = "canary", route = function(call, ctx)
    local agents = assert(ctx.cc:available_agents{ queue = "no_such_queue_canary" })
    return { action = "queue" } end }]])
  f:close()
  local db = assert(sb.open(url))
  local ok, err = pcall(function()
    local router = assert(sb.router{ db = db, policy = policy, fallback = { action = "queue" } })
    router:route{ id = "canary-call", queue = "q" }
    for k, v in pairs(router:status()) do show("router:status()." .. k, type(v) == "table" and table.concat(v, ",") or v) end
  end)
  if not ok then show("router error", err) end
  db:close()
  os.remove(policy)
end
router_status()

F.check(seen >= 15, "only %d strings looked at", seen)
F.row{ id = "fz_canary", fault = "canary: failing opens/queries", runs = 9, calls = seen, duplicates = "-", lost = leaks,
       note = "errors and tostring(db) of 9 URL shapes x failure kinds print no password" }
F.finish()
