-- bench/lib/report.lua - from the cells' JSON lines to the summary, the
-- markdown table and the targets' verdicts.
--
-- Owns: the statistics across repetitions (median ops/s, p50, p99, CPU
-- time per op of the client process; each cell's ratio against raw C
-- taken WITHIN each repetition, then the median of those ratios; the
-- ratio of medians is kept in the JSON too), the
-- verdict of every target (bench/lib/targets.lua), and the text printed.
-- Does not own: running anything (bench/run.lua).

local O = require "ops"
local stats = require "lib.stats"
local impls = require "lib.impls"
local targets = require "lib.targets"

local M = {}

local BACKEND_TITLE = {
  sqlite = "SQLite (file, WAL, synchronous=NORMAL)",
  postgresql = "PostgreSQL (throwaway cluster, loopback TCP, default durability)",
}

-- The disk flushes sampled beside a cell (bench/fsync_probe.c), over all
-- its repetitions: the median p99, the worst flush, how many took > 10 ms.
local function disk_summary(reps, op, id)
  local p99, worst, slow, n = {}, 0, 0, 0
  for r, rep in ipairs(reps) do
    local d = (rep[op] or {})[id] and rep[op][id].disk
    if d then
      p99[r] = d.p99_ms
      if d.max_ms > worst then worst = d.max_ms end
      slow, n = slow + d.over_10ms, n + d.samples
    end
  end
  if n == 0 then return nil end
  return { p99_ms = stats.median(p99), max_ms = worst, over_10ms = slow, samples = n }
end

-- summarize(backend, reps) --> list of rows { op, impl, label, ops_per_s, ... }
-- reps[r][op][impl_id] = a cell's decoded JSON (or { failed = msg })
function M.summarize(backend, reps, ops_list)
  local rows = {}
  local ref = impls.ref[backend]
  for _, op in ipairs(ops_list) do
    for _, im in ipairs(impls[backend]) do
      if im.only and not im.only[op] then goto next_impl end  -- a cell of another row
      local ops, p50, p99, cpu, scpu, rr, rb = {}, {}, {}, {}, {}, {}, {}
      local errors, check, failed, skipped = 0, nil, nil, nil
      local refops = {}
      for r, rep in ipairs(reps) do
        local cells = rep[op] or {}
        local c = cells[im.id]
        if c and c.skipped then
          skipped = c.skipped
        elseif c and not c.failed then
          ops[r], p50[r], p99[r], cpu[r] = c.ops_per_s, c.p50_us, c.p99_us, c.cpu_us_per_op
          scpu[r] = c.server_cpu_us_per_op
          errors = errors + (c.errors or 0)
          check = c.check
          local rc = not im.open_loop and cells[ref]  -- an open loop's rate is asked for
          if rc and not rc.failed and rc.ops_per_s > 0 then
            rr[r] = c.ops_per_s / rc.ops_per_s
            refops[r] = rc.ops_per_s
          end
          local best = 0
          for _, id in ipairs(impls.raw[backend]) do
            local b = cells[id]
            if b and not b.failed and b.ops_per_s > best then best = b.ops_per_s end
          end
          if best > 0 and not im.open_loop then rb[r] = c.ops_per_s / best end
        elseif c then
          failed = c.failed
        end
      end
      local row = {
        backend = backend, op = op, title = O.ops[op].title, impl = im.id, label = im.label,
        ops_per_s = stats.median(ops), p50_us = stats.median(p50), p99_us = stats.median(p99),
        cpu_us_per_op = stats.median(cpu), server_cpu_us_per_op = stats.median(scpu),
        disk = disk_summary(reps, op, im.id),
        ratio_raw = stats.median(rr), ratio_best = stats.median(rb),
        errors = errors, check = check, failed = failed, skipped = skipped, reps = #ops,
        per_rep_ops_per_s = ops,
      }
      local mo, mr = stats.median(ops), stats.median(refops)
      if mo and mr and mr > 0 then row.ratio_of_medians = mo / mr end
      local t = (targets.cells[backend][im.id] or {})[op]
      if op == "routing" and im.id == targets.routing_impl and not skipped then
        local limit = targets.routing_p99_us[backend]
        row.target = { p99_max_us = limit, p99_us = row.p99_us, met = row.p99_us ~= nil and row.p99_us < limit }
      elseif t then
        local got = t[2] == "best" and row.ratio_best or row.ratio_raw
        row.target = { min_ratio = t[1], against = t[2] == "best" and "best raw C" or "raw C",
                       ratio = got, met = got ~= nil and got >= t[1] }
      end
      rows[#rows + 1] = row
      ::next_impl::
    end
  end
  return rows
end

------------------------------------------------------------ text

local function thousands(n)
  local s = string.format("%.0f", n)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function us(v)
  if not v then return "-" end
  if v >= 100 then return thousands(v) end
  if v >= 10 then return string.format("%.1f", v) end
  return string.format("%.2f", v)
end

local function ratio(v)
  return v and string.format("%.2f", v) or "-"
end

-- milliseconds from microseconds, 3 significant digits at most
local function ms(v)
  local m = v / 1000
  local f = m >= 100 and "%.0f" or m >= 10 and "%.1f" or "%.2f"
  local t = string.format(f, m)
  if t:find("%.") then t = t:gsub("0+$", ""):gsub("%.$", "") end
  return t
end

function M.verdict(t)
  if not t then return "" end
  if t.p99_max_us then
    local want = string.format("p99 < %s ms at 256 in flight", ms(t.p99_max_us))
    if t.p99_us == nil then return "no data (" .. want .. ")" end
    if t.met then return "met (" .. want .. ")" end
    return string.format("**MISSED**: p99 %s ms (%s)", ms(t.p99_us), want)
  end
  local want = string.format("%s %.2fx %s", "≥", t.min_ratio, t.against)
  if t.ratio == nil then return "no data (" .. want .. ")" end
  if t.met then return "met (" .. want .. ")" end
  return string.format("**MISSED**: %.2fx (%s)", t.ratio, want)
end

-- The markdown table of one backend.
function M.table(backend, rows, meta)
  local pg = backend == "postgresql"
  local out = {}
  local function add(s) out[#out + 1] = s end
  add(string.format("### %s: median of %d x %.1f s", BACKEND_TITLE[backend], meta.reps, meta.secs))
  add("")
  if pg then
    add("| operation | implementation | ops/s | p50 µs | p99 µs | CPU µs/op | server CPU µs/op | x raw C 1 conn | x best raw C | target |")
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
  else
    add("| operation | implementation | ops/s | p50 µs | p99 µs | CPU µs/op | x raw C | target |")
    add("|---|---|---:|---:|---:|---:|---:|---|")
  end
  local last
  for _, r in ipairs(rows) do
    local title = r.op ~= last and r.title or ""
    last = r.op
    local opsps = r.skipped and "not run"
      or r.failed and ("FAILED: " .. tostring(r.failed):sub(1, 40))
      or (r.ops_per_s and thousands(r.ops_per_s) or "-")
    if r.errors > 0 then opsps = opsps .. string.format(" (%d errors)", r.errors) end
    local cols = { title, r.label, opsps, us(r.p50_us), us(r.p99_us), us(r.cpu_us_per_op) }
    if pg then cols[#cols + 1] = us(r.server_cpu_us_per_op) end
    cols[#cols + 1] = ratio(r.ratio_raw)
    if pg then cols[#cols + 1] = ratio(r.ratio_best) end
    cols[#cols + 1] = M.verdict(r.target)
    add("| " .. table.concat(cols, " | ") .. " |")
  end
  add("")
  local notes = M.routing_notes(backend, rows)
  if #notes > 0 then
    for _, n in ipairs(notes) do add(n) end
  else
    add(string.format("routing decision (issue #4): not measured in this run; target p99 < %s ms with 256 in flight.",
      ms(targets.routing_p99_us[backend])))
  end
  return table.concat(out, "\n")
end

-- The lines under a backend's table about the routing row: the target's
-- verdict, the floor under it (the same arrivals served one at a time,
-- blocking), the raw C cells with 256 in flight for comparison, Little's law
-- (a closed loop of N in flight at X ops/s waits N / X on average), and
-- the cells that were not run.
function M.routing_notes(backend, rows)
  local out, by = {}, {}
  for _, r in ipairs(rows) do
    if r.op == "routing" then by[r.impl] = r end
  end
  local sb = by[targets.routing_impl]
  if not sb then return out end
  local limit = targets.routing_p99_us[backend]
  local parts = {}
  if sb.p99_us then
    parts[#parts + 1] = string.format("switchboard, 256 calls in flight asking for %s decisions/s (open loop):"
      .. " p99 %s ms, p50 %s ms, target p99 < %s ms %s", thousands(O.ops.routing.open_rate[backend]),
      ms(sb.p99_us), ms(sb.p50_us), ms(limit), sb.target and sb.target.met and "met" or "**MISSED**")
  end
  local floor = {}
  for _, id in ipairs({ "raw_open", "sb_block_open" }) do
    local r = by[id]
    if r and r.p99_us then
      floor[#floor + 1] = string.format("%s p99 %s ms (p50 %s ms)", r.label, ms(r.p99_us), ms(r.p50_us))
    end
  end
  if #floor > 0 then
    parts[#parts + 1] = "the floor of this machine, the same arrivals served one at a time: "
      .. table.concat(floor, ", ")
  end
  for _, id in ipairs({ "raw_open", "sb_block_open", targets.routing_impl }) do
    local r = by[id]
    local d = r and r.disk
    if d then
      parts[#parts + 1] = string.format("disk flushes beside %s (fdatasync every 5 ms, %d samples): p99 %.2f ms,"
        .. " worst %.1f ms, %d over 10 ms", r.label, d.samples, d.p99_ms, d.max_ms, d.over_10ms)
    end
  end
  for _, id in ipairs(impls.raw[backend]) do
    local im
    for _, x in ipairs(impls[backend]) do if x.id == id then im = x end end
    local r = by[id]
    if im and im.conns and r and r.p99_us then
      parts[#parts + 1] = string.format("%s (%d in flight): p99 %s ms at %s routes/s", im.label,
        im.conns * im.depth, ms(r.p99_us), thousands(r.ops_per_s))
    end
  end
  local best = 0
  for _, id in ipairs(impls.raw[backend]) do
    local r = by[id]
    if r and r.ops_per_s and r.ops_per_s > best then best = r.ops_per_s end
  end
  if best > 0 then
    parts[#parts + 1] = string.format("the closed loops (256 tasks, raw C pipelines) measure throughput, not"
      .. " decision latency: 256 always waiting means a mean wait of 256 / throughput (Little's law), %s ms"
      .. " at the best raw C rate (%s routes/s)", ms(256 / best * 1e6), thousands(best))
  end
  if #parts > 0 then out[#out + 1] = "Routing decision (issue #4): " .. table.concat(parts, "; ") .. "." end
  for _, r in ipairs(rows) do
    if r.op == "routing" and r.skipped then
      out[#out + 1] = string.format("%s: not run on the routing row: %s.", r.label, r.skipped)
    end
  end
  return out
end

-- What results.json says about the routing row, per backend.
function M.routing_summary(summary)
  local out = {}
  for _, r in ipairs(summary) do
    if r.op == "routing" then
      local b = out[r.backend] or { target_p99_us = targets.routing_p99_us[r.backend], cells = {} }
      out[r.backend] = b
      b.cells[r.impl] = { ops_per_s = r.ops_per_s, p50_us = r.p50_us, p99_us = r.p99_us, skipped = r.skipped }
      if r.target and r.target.p99_max_us then b.met = r.target.met end
    end
  end
  if next(out) == nil then return { status = "not run" } end
  return out
end

function M.memory_table(mems)
  local out = { "### Memory: requests in flight at once (sb.spawn tasks, one point read each)", "",
    "| backend | requests | most in flight | peak RSS (VmHWM) | before the burst | target |",
    "|---|---:|---:|---:|---:|---|" }
  for _, m in ipairs(mems) do
    if m.failed then
      out[#out + 1] = string.format("| %s | - | - | FAILED: %s | - | - |", m.backend, tostring(m.failed):sub(1, 60))
    else
      local mib = m.peak_hwm_kib / 1024
      local ok = mib < targets.memory_mib
      out[#out + 1] = string.format("| %s | %s | %s | %.1f MiB | %.1f MiB | %s |", m.backend,
        thousands(m.requests), thousands(m.max_in_flight), mib, m.base_hwm_kib / 1024,
        ok and string.format("met (< %d MiB)", targets.memory_mib)
           or string.format("**MISSED**: %.1f MiB (< %d MiB)", mib, targets.memory_mib))
    end
  end
  return table.concat(out, "\n")
end

-- Count of targets met / missed over all rows and memory results.
function M.tally(all_rows, mems)
  local met, missed = 0, 0
  for _, r in ipairs(all_rows) do
    if r.target then
      if r.target.met then met = met + 1 else missed = missed + 1 end
    end
  end
  for _, m in ipairs(mems) do
    if not m.failed and m.peak_hwm_kib / 1024 < targets.memory_mib then met = met + 1 else missed = missed + 1 end
  end
  return met, missed
end

return M
