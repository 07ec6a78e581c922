-- bench/lib/stats.lua - medians and percentiles.
--
-- Owns: the nearest-rank percentile (the same rule as raw_common.c's pct)
-- and the median of a list.  Does not own: what is measured.

local M = {}

-- pct(sorted, p): nearest rank, p in 0..100; 0 for an empty list.
function M.pct(sorted, p)
  local n = #sorted
  if n == 0 then return 0 end
  local i = math.ceil(p / 100 * n)
  if i < 1 then i = 1 end
  return sorted[i]
end

-- median(list): of the numbers in list (nil entries skipped); nil if none.
function M.median(list)
  local v = {}
  for _, x in pairs(list) do v[#v + 1] = x end
  if #v == 0 then return nil end
  table.sort(v)
  local n = #v
  if n % 2 == 1 then return v[(n + 1) // 2] end
  return (v[n // 2] + v[n // 2 + 1]) / 2
end

-- latencies(seconds) --> p50_us, p99_us (sorts the list in place)
function M.latencies(secs)
  table.sort(secs)
  return M.pct(secs, 50) * 1e6, M.pct(secs, 99) * 1e6
end

return M
