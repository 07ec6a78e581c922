-- bench/lib/pgurl.lua - split a postgresql:// URL into the parts LuaDBI's
-- DBI.Connect("PostgreSQL", dbname, user, password, host, port) takes.
--
-- Owns: that parsing (user, password, host, port, dbname; %XX decoded),
-- and naming another database in such a URL (the routing op's).
-- Does not own: the URL (scripts/pg-test-env exports SB_TEST_PG_URL).

local M = {}

local function unescape(s)
  return s and (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- parse(url) --> { user, password, host, port, dbname } or nil, err
function M.parse(url)
  local rest = url:match("^postgres[q]?[l]?://(.*)$")
  if not rest then return nil, "not a postgresql:// URL" end
  rest = rest:gsub("%?.*$", "")
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if not auth then hostpart = rest end
  local user, password
  if auth then
    user, password = auth:match("^([^:]*):(.*)$")
    if not user then user = auth end
  end
  local hostport, dbname = hostpart:match("^([^/]*)/?(.*)$")
  local host, port = hostport:match("^(.*):(%d+)$")
  if not host then host = hostport end
  return {
    user = unescape(user), password = unescape(password),
    host = host ~= "" and host or "localhost", port = tonumber(port) or 5432,
    dbname = unescape(dbname ~= "" and dbname or user),
  }
end

-- with_dbname(url, name) --> the same URL naming database `name` (the path
-- replaced; user, password, host, port and ?query kept).
function M.with_dbname(url, name)
  local head, query = url:match("^(postgres[q]?[l]?://[^/?]*)/?[^?]*(.*)$")
  if not head then error("not a postgresql:// URL", 2) end
  return head .. "/" .. name .. query
end

return M
