-- spec/fault/f3_pgbouncer.lua - fault 3 of issue #6: a pooler in between.
--
-- pgbouncer in transaction pooling mode (scripts/fault-pgbouncer-env) in
-- front of the server; a db opened through it with { prepare = false }
-- (the documented setting behind transaction pooling: statements go as
-- unnamed Parse/Bind/Execute, which any server connection can run).
-- 64 coroutines x 10,000 statements, each result checked; zero errors, in
-- particular zero "prepared statement ... does not exist/already exists".
-- For contrast (reported, not a failure): a short run with the default
-- prepare = true counts the errors that setting causes behind pgbouncer.
--
-- Usage: lua5.4 f3_pgbouncer.lua [per_task]   (SB_TEST_PGB_URL)
local sb = require "switchboard"
local F = require "fault"

local TASKS, PER = 64, tonumber(arg[1]) or 10000
local URL = F.env("SB_TEST_PGB_URL")

local function load(db, tasks, per)
  local ok_n, errs, prep_errs, wrong = 0, 0, 0, 0
  for t = 1, tasks do
    sb.spawn(function()
      for i = 1, per do
        local row, err
        if i % 3 == 0 then
          row, err = db:first("SELECT $1::int8 * 2 AS v, $2::text AS s", i, "t" .. t)
          if row and (row.v ~= i * 2 or row.s ~= "t" .. t) then wrong = wrong + 1 end
        elseif i % 3 == 1 then
          row, err = db:first("SELECT $1::int8 + $2::int8 AS v", t, i)
          if row and row.v ~= t + i then wrong = wrong + 1 end
        else
          row, err = db:first("SELECT length($1::text) AS v", string.rep("x", i % 50))
          if row and row.v ~= i % 50 then wrong = wrong + 1 end
        end
        if row then
          ok_n = ok_n + 1
        else
          errs = errs + 1
          local msg = tostring(err)
          if msg:find("prepared statement", 1, true) then prep_errs = prep_errs + 1 end
          if errs <= 5 then F.log("error: %s", msg) end
        end
      end
    end)
  end
  sb.run()
  return ok_n, errs, prep_errs, wrong
end

local t0 = F.now()
local db = assert(sb.open(URL, { prepare = false, pool = 8 }))
local ok_n, errs, prep_errs, wrong = load(db, TASKS, PER)
db:close()
local dt = F.now() - t0
F.check(errs == 0, "%d errors through pgbouncer with prepare=false", errs)
F.check(prep_errs == 0, "%d prepared-statement errors", prep_errs)
F.check(wrong == 0, "%d wrong results", wrong)
F.check(ok_n == TASKS * PER, "%d of %d statements succeeded", ok_n, TASKS * PER)
F.log("f3: %d statements through pgbouncer (transaction mode, prepare=false) in %.1f s (%.0f/s)",
  ok_n, dt, ok_n / dt)

-- contrast: the default (named prepared statements) behind the same pooler
local db2 = assert(sb.open(URL, { pool = 8 }))
local _, e2, p2 = load(db2, TASKS, 20)
db2:close()
F.log("f3 contrast: prepare=true behind pgbouncer: %d errors (%d prepared-statement) in %d statements",
  e2, p2, TASKS * 20)

F.row{ id = "f3_pgbouncer", fault = "3 pgbouncer transaction mode", runs = TASKS, calls = TASKS * PER,
       duplicates = 0, lost = TASKS * PER - ok_n,
       note = string.format("prepare=false: 0 prepared-stmt errors, %.0f stmt/s (prepare=true: %d errors)",
                            ok_n / dt, p2) }
F.finish()
