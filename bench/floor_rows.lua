-- bench/floor_rows.lua - the floor that Lua row tables put under the
-- "list available agents" row (bench/README.md, "What bounds the misses").
--
-- Owns: timing plain Lua building what one result of that query becomes
-- (100 rows x 6 named fields: 4 integers, 2 short strings, as
-- lsb_rows.c builds them: one table per row, the column names shared),
-- with no database and no switchboard at all.  Whatever a binding does,
-- it cannot hand over those rows for less.
-- Usage: lua5.4 bench/floor_rows.lua [results]   (default 20000)

local N = tonumber(arg[1]) or 20000
local names = { "Agent 1", "Agent 2", "Agent 3", "Agent 4" }
local clock = os.clock
local best = math.huge
for _ = 1, 3 do
  local t0 = clock()
  for _ = 1, N do
    local rows = {}
    for i = 1, 100 do
      rows[i] = { id = i, name = names[i % 4 + 1], extension = "ext", current_calls = 0,
                  max_calls = 2, available_since = 1700000000000 + i }
    end
  end
  local us = (clock() - t0) / N * 1e6
  if us < best then best = us end
end
print(string.format("Lua rows floor: %.1f us per result of 100 rows x 6 columns (best of 3 x %d)", best, N))
