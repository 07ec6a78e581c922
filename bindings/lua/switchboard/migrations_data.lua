-- switchboard/migrations_data.lua - GENERATED from migrations/*.sql by
-- scripts/gen-migrations-data (`make` runs it); do not edit.  The call-center
-- migrations embedded in the module, so that sb.migrate(db) needs no
-- source tree: { [file name] = file text }.
return {
  ["0001_callcenter.postgres.sql"] = [[
-- 0001_callcenter.postgres.sql - the call-center schema, PostgreSQL dialect
-- (0001_callcenter.sqlite.sql is the same schema for SQLite; keep the two
-- in step).  Timestamps are BIGINT milliseconds since the Unix epoch (UTC),
-- written by switchboard.callcenter, never by the server's clock.

-- A queue is made on first use (add_agent, enqueue) with these defaults.
CREATE TABLE queues (
  name                  TEXT PRIMARY KEY,
  priority_weight       INTEGER NOT NULL DEFAULT 1 CHECK (priority_weight >= 0),
  max_wait_seconds      INTEGER CHECK (max_wait_seconds > 0),
  overflow_queue        TEXT REFERENCES queues (name),
  service_level_seconds INTEGER NOT NULL DEFAULT 20 CHECK (service_level_seconds >= 0)
);

CREATE TABLE agents (
  id              TEXT PRIMARY KEY,
  name            TEXT NOT NULL,
  status          TEXT NOT NULL DEFAULT 'OFFLINE'
                  CHECK (status IN ('AVAILABLE', 'BUSY', 'PAUSED', 'OFFLINE')),
  status_reason   TEXT,
  status_since    BIGINT NOT NULL,
  -- routing skips the agent until then (wrap-up after a call ends)
  available_since BIGINT NOT NULL,
  current_calls   INTEGER NOT NULL DEFAULT 0,
  max_calls       INTEGER NOT NULL DEFAULT 1 CHECK (max_calls >= 0),
  wrapup_seconds  INTEGER NOT NULL DEFAULT 0 CHECK (wrapup_seconds >= 0),
  CONSTRAINT agents_capacity CHECK (current_calls >= 0 AND current_calls <= max_calls)
);
-- available_agents: AVAILABLE agents, longest idle first
CREATE INDEX agents_available ON agents (available_since) WHERE status = 'AVAILABLE';

CREATE TABLE agent_skills (
  agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  skill    TEXT NOT NULL,
  level    INTEGER NOT NULL CHECK (level >= 0),
  PRIMARY KEY (agent_id, skill)
);

CREATE TABLE agent_queues (
  agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  queue    TEXT NOT NULL REFERENCES queues (name),
  level    INTEGER NOT NULL DEFAULT 1 CHECK (level >= 0),
  PRIMARY KEY (agent_id, queue)
);
CREATE INDEX agent_queues_queue ON agent_queues (queue, agent_id);

-- seq breaks ties between calls enqueued in the same millisecond.
CREATE TABLE waiting_calls (
  session_id      TEXT PRIMARY KEY,
  seq             BIGINT GENERATED ALWAYS AS IDENTITY,
  queue           TEXT NOT NULL REFERENCES queues (name),
  priority        INTEGER NOT NULL DEFAULT 0,
  required_skills TEXT NOT NULL DEFAULT '{}',  -- JSON object {"skill": min_level}
  caller          TEXT,
  enqueued_at     BIGINT NOT NULL
);
-- waiting{queue=}: one queue in routing order; claim_next and waiting{}: all
CREATE INDEX waiting_calls_queue_order ON waiting_calls (queue, priority DESC, enqueued_at, seq);
CREATE INDEX waiting_calls_order ON waiting_calls (priority DESC, enqueued_at, seq);

CREATE TABLE active_calls (
  call_id         TEXT PRIMARY KEY,  -- the session id it waited under
  agent_id        TEXT NOT NULL REFERENCES agents (id),
  queue           TEXT NOT NULL,
  priority        INTEGER NOT NULL,
  required_skills TEXT NOT NULL,
  caller          TEXT,
  enqueued_at     BIGINT NOT NULL,
  assigned_at     BIGINT NOT NULL,
  policy_name     TEXT,
  policy_version  TEXT
);
CREATE INDEX active_calls_agent ON active_calls (agent_id);

-- One row per ended call; a session id names one call for ever.
CREATE TABLE call_records (
  call_id        TEXT PRIMARY KEY,
  agent_id       TEXT,
  queue          TEXT NOT NULL,
  caller         TEXT,
  enqueued_at    BIGINT NOT NULL,
  assigned_at    BIGINT,
  ended_at       BIGINT NOT NULL,
  wait_ms        BIGINT NOT NULL CHECK (wait_ms >= 0),
  talk_ms        BIGINT CHECK (talk_ms >= 0),
  outcome        TEXT NOT NULL CHECK (outcome IN ('answered', 'abandoned', 'overflowed', 'rejected')),
  policy_name    TEXT,
  policy_version TEXT
);
-- stats{from=, to= [, queue=]}
CREATE INDEX call_records_enqueued ON call_records (enqueued_at);
CREATE INDEX call_records_queue_enqueued ON call_records (queue, enqueued_at);
]],
  ["0001_callcenter.sqlite.sql"] = [[
-- 0001_callcenter.sqlite.sql - the call-center schema, SQLite dialect
-- (0001_callcenter.postgres.sql is the same schema for PostgreSQL; keep the
-- two in step).  Timestamps are BIGINT milliseconds since the Unix epoch (UTC),
-- written by switchboard.callcenter, never by the server's clock.

-- A queue is made on first use (add_agent, enqueue) with these defaults.
CREATE TABLE queues (
  name                  TEXT PRIMARY KEY,
  priority_weight       INTEGER NOT NULL DEFAULT 1 CHECK (priority_weight >= 0),
  max_wait_seconds      INTEGER CHECK (max_wait_seconds > 0),
  overflow_queue        TEXT REFERENCES queues (name),
  service_level_seconds INTEGER NOT NULL DEFAULT 20 CHECK (service_level_seconds >= 0)
);

CREATE TABLE agents (
  id              TEXT PRIMARY KEY,
  name            TEXT NOT NULL,
  status          TEXT NOT NULL DEFAULT 'OFFLINE'
                  CHECK (status IN ('AVAILABLE', 'BUSY', 'PAUSED', 'OFFLINE')),
  status_reason   TEXT,
  status_since    BIGINT NOT NULL,
  -- routing skips the agent until then (wrap-up after a call ends)
  available_since BIGINT NOT NULL,
  current_calls   INTEGER NOT NULL DEFAULT 0,
  max_calls       INTEGER NOT NULL DEFAULT 1 CHECK (max_calls >= 0),
  wrapup_seconds  INTEGER NOT NULL DEFAULT 0 CHECK (wrapup_seconds >= 0),
  CONSTRAINT agents_capacity CHECK (current_calls >= 0 AND current_calls <= max_calls)
);
-- available_agents: AVAILABLE agents, longest idle first
CREATE INDEX agents_available ON agents (available_since) WHERE status = 'AVAILABLE';

CREATE TABLE agent_skills (
  agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  skill    TEXT NOT NULL,
  level    INTEGER NOT NULL CHECK (level >= 0),
  PRIMARY KEY (agent_id, skill)
);

CREATE TABLE agent_queues (
  agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  queue    TEXT NOT NULL REFERENCES queues (name),
  level    INTEGER NOT NULL DEFAULT 1 CHECK (level >= 0),
  PRIMARY KEY (agent_id, queue)
);
CREATE INDEX agent_queues_queue ON agent_queues (queue, agent_id);

-- seq breaks ties between calls enqueued in the same millisecond.
CREATE TABLE waiting_calls (
  seq             INTEGER PRIMARY KEY,  -- the rowid
  session_id      TEXT NOT NULL UNIQUE,
  queue           TEXT NOT NULL REFERENCES queues (name),
  priority        INTEGER NOT NULL DEFAULT 0,
  required_skills TEXT NOT NULL DEFAULT '{}',  -- JSON object {"skill": min_level}
  caller          TEXT,
  enqueued_at     BIGINT NOT NULL
);
-- waiting{queue=}: one queue in routing order; claim_next and waiting{}: all
CREATE INDEX waiting_calls_queue_order ON waiting_calls (queue, priority DESC, enqueued_at, seq);
CREATE INDEX waiting_calls_order ON waiting_calls (priority DESC, enqueued_at, seq);

CREATE TABLE active_calls (
  call_id         TEXT PRIMARY KEY,  -- the session id it waited under
  agent_id        TEXT NOT NULL REFERENCES agents (id),
  queue           TEXT NOT NULL,
  priority        INTEGER NOT NULL,
  required_skills TEXT NOT NULL,
  caller          TEXT,
  enqueued_at     BIGINT NOT NULL,
  assigned_at     BIGINT NOT NULL,
  policy_name     TEXT,
  policy_version  TEXT
);
CREATE INDEX active_calls_agent ON active_calls (agent_id);

-- One row per ended call; a session id names one call for ever.
CREATE TABLE call_records (
  call_id        TEXT PRIMARY KEY,
  agent_id       TEXT,
  queue          TEXT NOT NULL,
  caller         TEXT,
  enqueued_at    BIGINT NOT NULL,
  assigned_at    BIGINT,
  ended_at       BIGINT NOT NULL,
  wait_ms        BIGINT NOT NULL CHECK (wait_ms >= 0),
  talk_ms        BIGINT CHECK (talk_ms >= 0),
  outcome        TEXT NOT NULL CHECK (outcome IN ('answered', 'abandoned', 'overflowed', 'rejected')),
  policy_name    TEXT,
  policy_version TEXT
);
-- stats{from=, to= [, queue=]}
CREATE INDEX call_records_enqueued ON call_records (enqueued_at);
CREATE INDEX call_records_queue_enqueued ON call_records (queue, enqueued_at);
]],
  ["0002_agents_pick.postgres.sql"] = [[
-- 0002_agents_pick - the order cc:available_agents picks agents in (least
-- loaded, then longest idle, then id), as an index: an ordered scan stops
-- at the first agents that qualify instead of testing every available
-- agent's skills and sorting them (on 200 agents: SQLite 0.15 -> 0.05 ms,
-- PostgreSQL 2.3 -> 0.1 ms per pick).
CREATE INDEX agents_pick ON agents (status, current_calls, available_since, id);
]],
  ["0002_agents_pick.sqlite.sql"] = [[
-- 0002_agents_pick - the order cc:available_agents picks agents in (least
-- loaded, then longest idle, then id), as an index: an ordered scan stops
-- at the first agents that qualify instead of testing every available
-- agent's skills and sorting them (on 200 agents: SQLite 0.15 -> 0.05 ms,
-- PostgreSQL 2.3 -> 0.1 ms per pick).
CREATE INDEX agents_pick ON agents (status, current_calls, available_since, id);
]],
}
