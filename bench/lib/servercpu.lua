-- bench/lib/servercpu.lua - CPU time the PostgreSQL server spends, so a
-- cell's server CPU per op can sit beside its client CPU per op (on this
-- machine both share the same cores: together they bound what PG reaches).
--
-- Owns: reading from /proc the CPU time of the postmaster of
-- $SB_TEST_PG_DIR/data, of its live children (backends, WAL writer,
-- checkpointer, ...) and of the children it has reaped (its cutime/cstime:
-- a backend's time lands there when its connection closes).  Without that
-- directory (a server given to `make bench-run` by URL only) it measures
-- nothing and returns nil.
-- Does not own: when to measure (bench/run.lua).

local M = {}

local HZ = 100  -- USER_HZ: the unit of /proc/PID/stat times on Linux

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function postmaster()
  local dir = os.getenv("SB_TEST_PG_DIR")
  local s = dir and read(dir .. "/data/postmaster.pid")
  return s and tonumber(s:match("^(%d+)"))
end

-- seconds() --> CPU seconds used so far by the server, or nil.  A backend
-- moves its time to the postmaster's cutime only once reaped: read after
-- the client's connections have had a moment to close.
function M.seconds()
  local pm = postmaster()
  if not pm then return nil end
  local p = io.popen("ls /proc")
  local ticks = 0
  for pid in p:lines() do
    if pid:match("^%d+$") then
      local st = read("/proc/" .. pid .. "/stat")
      -- fields after the ")" that ends comm: state ppid ... utime(14) stime(15)
      local rest = st and st:match("%) (.*)$")
      if rest then
        local f = {}
        for w in rest:gmatch("%S+") do f[#f + 1] = w end
        local ppid = tonumber(f[2])
        if tonumber(pid) == pm then  -- its own time and its reaped children's
          ticks = ticks + tonumber(f[12]) + tonumber(f[13]) + tonumber(f[14]) + tonumber(f[15])
        elseif ppid == pm then
          ticks = ticks + tonumber(f[12]) + tonumber(f[13])
        end
      end
    end
  end
  p:close()
  return ticks / HZ
end

return M
