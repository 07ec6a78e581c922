-- scenarios/default.lua - a mid-size contact center for `make demo`: three
-- queues with about 230 agents near full load (a few hundred calls in
-- flight), plus "general", a queue only overflow reaches (10 generalists).
-- 1200 simulated seconds: about 12 s of real time at the default speed.
-- A loaded data table: no globals, no functions (see sim_scenario.lua).
return {
  name = "default",
  duration = 1200,
  seed = 1,
  policy = "../scripts/policies/longest_idle.lua",
  reroute = 10,
  queues = {
    { name = "sales",   rate = 0.62, talk = 150, patience = 90,  service_level = 20,
      skills = { english = 1 } },
    { name = "support", rate = 0.40, talk = 240, patience = 120, service_level = 30,
      skills = { english = 1, technical = { 1, 4 } } },
    { name = "billing", rate = 0.25, talk = 180, patience = 100, service_level = 20,
      skills = { english = 1 } },
    { name = "general", rate = 0, service_level = 60 },
  },
  agents = {
    { count = 80,  prefix = "sales",   queues = { "sales" },   skills = { english = { 1, 5 } }, wrapup = 10,
      pause = { chance = 0.02, mean = 120 } },
    { count = 100, prefix = "support", queues = { "support" }, skills = { english = { 1, 5 }, technical = { 1, 5 } },
      wrapup = 10, pause = { chance = 0.02, mean = 120 } },
    { count = 45,  prefix = "billing", queues = { "billing" }, skills = { english = { 1, 5 } }, wrapup = 10 },
    { count = 10,  prefix = "general", queues = { "general", "sales", "support", "billing" },
      skills = { english = 5, technical = 5 }, wrapup = 5 },
  },
}
