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

-- Per sync and target database (`db<id>`): the snapshot whose visible
-- transactions the sync has delivered there. A change is purged only once
-- every row here covers it, so a site that is down keeps its changes waiting.
CREATE TABLE IF NOT EXISTS dugong.cursor (
    sync        text NOT NULL,
    target      text NOT NULL DEFAULT '*',
    snapshot    pg_snapshot NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync, target)
);
-- Cursors of earlier versions were one per sync: they become the '*' row,
-- which each target's own row starts from.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'dugong.cursor'::regclass AND attname = 'target' AND NOT attisdropped) THEN
        ALTER TABLE dugong.cursor ADD COLUMN target text NOT NULL DEFAULT '*';
        ALTER TABLE dugong.cursor DROP CONSTRAINT cursor_pkey;
        ALTER TABLE dugong.cursor ADD PRIMARY KEY (sync, target);
    END IF;
END $$;

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
-- Tables the initial copy (onetimecopy) of a sync has looked at, copied or
-- not: it looks at each once, ever (a restart with onetimecopy still in the
-- file copies nothing again, unless dugong replicate --recopy TABLE).
CREATE TABLE IF NOT EXISTS dugong.copied (
    sync          text NOT NULL,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    copied_at     timestamptz NOT NULL DEFAULT now(),
    source        text,
    PRIMARY KEY (sync, table_schema, table_name)
);

-- Tables a sync holds back because they are not alike on every database
-- (missing somewhere, a column or the key different). Their change rows are
-- never purged while a hold stands, whichever sync purges; when the table
-- matches again, the first run ships every change row the log still has, then
-- the hold goes.
CREATE TABLE IF NOT EXISTS dugong.held (
    sync          text NOT NULL,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    reason        text NOT NULL,
    since         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync, table_schema, table_name)
);

-- Per sync and table: rows the replicator's background consistency check
-- found different between the databases (still different a check later, with
-- no change of them in flight), so `dugong status` says so until they agree
-- again (`dugong repair`). A record goes only when a whole pass over the
-- table finds none.
CREATE TABLE IF NOT EXISTS dugong.divergence (
    sync          text NOT NULL,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    rows          bigint NOT NULL,
    found_at      timestamptz NOT NULL DEFAULT now(),
    checked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync, table_schema, table_name)
);

-- The replicators' heartbeats, written beside the runs: the active one's every
-- interval (status calls it not running after three intervals without one),
-- and the last one seen standing by. A row of their own, so that a heartbeat
-- never clashes with a run's update of sync_state.
CREATE TABLE IF NOT EXISTS dugong.heartbeat (
    sync         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('active', 'standby')),
    pid          int NOT NULL,
    host         text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    interval_ms  int,
    PRIMARY KEY (sync, role)
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

-- A run's check, in its transaction on a database, before the run writes or
-- commits anything there: the replicated tables still have the columns the
-- replicator prepared the sync with (`shape` now against `prepared`), and —
-- where the run did not read the database because its poll found nothing —
-- nothing was committed there since the poll (`unread`, the poll asked again
-- in the run's snapshot). Either failure aborts the transaction, so the run's
-- commit there rolls back: the replicator prepares the sync again (DG001), or
-- runs again and reads the database (serialization failure). A function, not
-- an inline block, so the server compiles it once per session.
CREATE OR REPLACE FUNCTION dugong.run_check(shape text, prepared text, unread boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF shape IS DISTINCT FROM prepared THEN
        RAISE EXCEPTION USING ERRCODE = 'DG001',
            MESSAGE = 'the columns of a replicated table changed since the replicator prepared the sync';
    END IF;
    IF unread THEN
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
            MESSAGE = 'changes were committed on this database after the poll; the run starts again to read them';
    END IF;
    RETURN true;
END $$;
