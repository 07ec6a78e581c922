-- scenarios/overflow.lua - an understaffed sales queue whose long waiters
-- overflow to "general" (scripts/policies/overflow.lua: after 30 s), where
-- generalists pick them up; 10 simulated minutes.
return {
  name = "overflow",
  duration = 600,
  seed = 11,
  policy = "../scripts/policies/overflow.lua",
  reroute = 5,
  queues = {
    { name = "sales",   rate = 0.6, talk = 90, patience = 120, service_level = 20, skills = { english = 1 } },
    { name = "general", rate = 0, service_level = 60 },
  },
  agents = {
    { count = 40, prefix = "sales",   queues = { "sales" },   skills = { english = { 1, 5 } }, wrapup = 10 },
    { count = 15, prefix = "general", queues = { "general" }, skills = { english = 5 }, wrapup = 5 },
  },
}
