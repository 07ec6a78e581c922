-- spec/fault/f5_writer.lua - the writer process of fault 5 (SQLite crash
-- safety and multi-process writing); started by f5_sqlite_crash.lua and
-- f5_sqlite_procs.lua, never on its own.
--
-- Assigns calls first..last (spec/fault/lib/assign.lua) with `tasks`
-- coroutines on one db, and appends the id of every ACKNOWLEDGED assignment
-- to ackfile right after assign() returned success (flushed, so a kill -9
-- keeps it: it is in the kernel).  Errors are counted by class; a `busy`
-- one is what f5_sqlite_procs checks for.  With `retries` = 0 nothing is
-- retried, so every busy error reaches this caller (the "sql" model; the
-- "cc" model's cc:assign keeps db:transaction's default retries).  At the end it prints
-- one line: "summary acked=N busy=N other=N max_ms=N".
--
-- Usage: lua5.4 f5_writer.lua PATH FIRST LAST TASKS ACKFILE RETRIES [READYFILE] [SYNC]
local sb = require "switchboard"
local A = require "assign"

local path, first, last, tasks = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local ackfile, retries, readyfile, sync = arg[5], tonumber(arg[6]), arg[7], arg[8]

local db = assert(sb.open("sqlite:" .. path, { synchronous = sync or "NORMAL" }))
local m = A.open(db)
local ack = assert(io.open(ackfile, "a"))
ack:setvbuf("no")
if readyfile and readyfile ~= "" then
  local f = assert(io.open(readyfile, "w"))
  f:close()
end

local acked, busy, other, max_ms = 0, 0, 0, 0
local nexti = first - 1
for t = 1, tasks do
  sb.spawn(function()
    while nexti < last do
      nexti = nexti + 1
      local i = nexti
      local t0 = sb.now()
      local ok, err
      if m.assign_in then  -- the "sql" model: retries under our control
        ok, err = m.db:transaction(function(tx)
          return m.assign_in(tx, A.call(i), A.agent((i + t) % 100 + 1))
        end, { retries = retries })
      else                 -- cc:assign (its own transaction and retries)
        ok, err = m:assign(A.call(i), A.agent((i + t) % 100 + 1))
      end
      local ms = (sb.now() - t0) * 1000
      if ms > max_ms then max_ms = ms end
      if ok then
        ack:write(A.call(i), "\n")
        acked = acked + 1
      elseif err and err.class == "busy" then
        busy = busy + 1
        io.stdout:write("busy: ", tostring(err), "\n")
      else
        other = other + 1
        io.stdout:write("error: ", tostring(err), "\n")
      end
    end
  end)
end
sb.run()
ack:close()
db:close()
io.stdout:write(string.format("summary acked=%d busy=%d other=%d max_ms=%.0f\n", acked, busy, other, max_ms))
