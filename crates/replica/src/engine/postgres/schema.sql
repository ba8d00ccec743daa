-- Dugong's own objects on a replicated database. Idempotent: run at every start.
CREATE SCHEMA IF NOT EXISTS dugong;
COMMENT ON SCHEMA dugong IS 'Dugong replicator: change logs, cursors, run state, conflict log. Remove with dugong replicate --uninstall.';

-- Which application tables have capture installed, and their change-log table.
CREATE TABLE IF NOT EXISTS dugong.captured (
    id            serial PRIMARY KEY,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    key_columns   text[] NOT NULL,
    key_types     text[] NOT NULL,
    installed_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (table_schema, table_name)
);

-- Per sync: the snapshot whose visible transactions the sync has shipped.
CREATE TABLE IF NOT EXISTS dugong.cursor (
    sync        text PRIMARY KEY,
    snapshot    pg_snapshot NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- TRUNCATEs of captured tables, shipped like row changes.
CREATE TABLE IF NOT EXISTS dugong.truncate_log (
    table_id     int NOT NULL,
    dugong_txid  xid8 NOT NULL DEFAULT pg_current_xact_id()
);

-- What `dugong status` shows, written by the replicator to every database of
-- the sync so any reachable one can answer.
CREATE TABLE IF NOT EXISTS dugong.sync_state (
    sync                 text PRIMARY KEY,
    replicator_pid       int,
    replicator_host      text,
    heartbeat            timestamptz,
    state                text NOT NULL DEFAULT 'No records found',
    last_good_started    timestamptz,
    last_good_ended      timestamptz,
    last_rows_started    timestamptz,
    last_rows_ended      timestamptz,
    last_deletes         bigint NOT NULL DEFAULT 0,
    last_inserts         bigint NOT NULL DEFAULT 0,
    last_truncates       bigint NOT NULL DEFAULT 0,
    last_conflicts       bigint NOT NULL DEFAULT 0,
    last_bad_started     timestamptz,
    last_bad_ended       timestamptz,
    last_error           text,
    tables               int NOT NULL DEFAULT 0,
    excluded             text[] NOT NULL DEFAULT '{}',
    rows_total           bigint NOT NULL DEFAULT 0,
    conflicts_total      bigint NOT NULL DEFAULT 0,
    commit_timestamps    boolean,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Every conflict decided, per row: both versions of the row as JSON (a
-- deleted one as JSON null), who won and why. conflict_id is derived from the
-- content, so it is the same on every database of the sync.
CREATE TABLE IF NOT EXISTS dugong.conflict_log (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    sync             text NOT NULL,
    table_schema     text NOT NULL,
    table_name       text NOT NULL,
    key              text[] NOT NULL,
    winner           text NOT NULL,
    loser            text NOT NULL,
    winner_committed timestamptz,
    loser_committed  timestamptz,
    reason           text NOT NULL
);
-- Logs made by earlier versions keep their rows and gain the new columns
-- (NULL in old rows: no id, kind or versions were recorded then).
ALTER TABLE dugong.conflict_log
    ADD COLUMN IF NOT EXISTS conflict_id text,
    ADD COLUMN IF NOT EXISTS kind        text,
    ADD COLUMN IF NOT EXISTS winner_row  jsonb,
    ADD COLUMN IF NOT EXISTS loser_row   jsonb,
    ADD COLUMN IF NOT EXISTS restored_at timestamptz;
CREATE INDEX IF NOT EXISTS conflict_log_sync_at ON dugong.conflict_log (sync, at);
CREATE UNIQUE INDEX IF NOT EXISTS conflict_log_conflict_id ON dugong.conflict_log (conflict_id);

CREATE OR REPLACE FUNCTION dugong.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO dugong.truncate_log (table_id) VALUES (TG_ARGV[0]::int);
    RETURN NULL;
END $$;
