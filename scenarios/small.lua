-- scenarios/small.lua - a dozen agents, two queues, two simulated minutes
-- (about 1.2 s of real time): quick runs and the simulator's specs.
return {
  name = "small",
  duration = 120,
  seed = 7,
  policy = "../scripts/policies/longest_idle.lua",
  reroute = 5,
  queues = {
    { name = "sales",   rate = 0.25, talk = 30, patience = 20, skills = { english = 1 } },
    { name = "support", rate = 0.15, talk = 45, patience = 30, skills = { english = 1, technical = { 1, 3 } } },
  },
  agents = {
    { count = 6, prefix = "s", queues = { "sales" },            skills = { english = 3 }, wrapup = 3 },
    { count = 6, prefix = "t", queues = { "support", "sales" }, skills = { english = 2, technical = { 1, 4 } },
      wrapup = 3, pause = { chance = 0.1, mean = 10 } },
  },
}
