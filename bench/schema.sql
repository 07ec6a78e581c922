-- bench/schema.sql - the call-center tables the benchmark (make bench) runs on.
--
-- Owns: the bench schema, one file for both backends (SQLite and PostgreSQL
-- read it unchanged): agents, waiting_calls, active_calls, call_records and
-- their indexes.  It matches issue #3's call-center tables in spirit; when
-- migrations/NNNN_*.sql land, bench/lib/setup.lua can load those instead.
-- Does not own: the data (bench/ops.lua seeds it) or the statements the
-- benchmark times (bench/ops.lua too).
--
-- Times are BIGINT milliseconds since the epoch on both backends, so that
-- the same parameters (Lua integers, C int64) work everywhere.  INTEGER
-- PRIMARY KEY is SQLite's rowid alias and PostgreSQL's int4 key.
-- One statement per ';'-terminated line group; no ';' inside statements.

CREATE TABLE agents (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    extension       TEXT    NOT NULL,
    status          TEXT    NOT NULL,          -- 'AVAILABLE', 'BUSY', ...
    available_since BIGINT  NOT NULL,          -- idle since (ms)
    current_calls   INTEGER NOT NULL DEFAULT 0,
    max_calls       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX agents_available ON agents (status, available_since);

CREATE TABLE waiting_calls (
    id          INTEGER PRIMARY KEY,
    caller      TEXT    NOT NULL,
    queue       TEXT    NOT NULL,
    enqueued_at BIGINT  NOT NULL
);

CREATE TABLE active_calls (
    call_id    INTEGER PRIMARY KEY,
    agent_id   INTEGER NOT NULL REFERENCES agents (id),
    caller     TEXT    NOT NULL,
    started_at BIGINT  NOT NULL
);
CREATE INDEX active_calls_agent ON active_calls (agent_id);

CREATE TABLE call_records (
    id          INTEGER PRIMARY KEY,
    agent_id    INTEGER NOT NULL REFERENCES agents (id),
    caller      TEXT    NOT NULL,
    queue       TEXT    NOT NULL,
    enqueued_at BIGINT  NOT NULL,
    wait_ms     INTEGER NOT NULL,
    talk_ms     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
);
CREATE INDEX call_records_enqueued ON call_records (enqueued_at);
