-- scenarios/skills.lua - one queue whose calls ask for a language at a
-- level, agents of mixed levels: run it with the skills_based policy and
-- with longest_idle to compare who answers (10 simulated minutes).
return {
  name = "skills",
  duration = 600,
  seed = 3,
  policy = "../scripts/policies/skills_based.lua",
  queues = {
    { name = "intl", rate = 0.4, talk = 120, patience = 60, service_level = 30,
      skills = { spanish = { 1, 4 }, english = 1 } },
  },
  agents = {
    { count = 20, prefix = "es", queues = { "intl" }, skills = { spanish = { 1, 9 }, english = { 1, 5 } }, wrapup = 15 },
    { count = 40, prefix = "en", queues = { "intl" }, skills = { spanish = { 0, 2 }, english = { 3, 9 } }, wrapup = 15 },
  },
}
