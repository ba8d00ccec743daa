-- Dugong's own objects in a replicated SQLite file. Idempotent: run at every
-- start. SQLite has no schemas: the replicator's tables are named dugong_*
-- (the application server's site-local tables are dugong_local_*, which the
-- replicator never touches). Times are microseconds since the Unix epoch.

-- Which application tables have capture installed; their change log is
-- dugong_delta_<id>(seq, at, k0, k1, ...).
CREATE TABLE IF NOT EXISTS dugong_captured (
    id           INTEGER PRIMARY KEY,
    table_name   TEXT NOT NULL UNIQUE,
    key_columns  TEXT NOT NULL,
    installed_at INTEGER NOT NULL
);

-- The change sequence, shared by every change log of the file. SQLite lets
-- one writer in at a time, so sequence numbers grow in commit order and
-- "everything up to N" is a sound cursor.
CREATE TABLE IF NOT EXISTS dugong_counter (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO dugong_counter (id, seq) VALUES (1, 0);

-- Holds a row only inside the replicator's apply transactions, which no other
-- connection ever sees: the capture triggers skip writes while it does.
CREATE TABLE IF NOT EXISTS dugong_applying (id INTEGER PRIMARY KEY);

-- Per sync and target database (`db<id>`): the sequence number up to which the
-- sync has delivered this file's changes there. Change rows are purged only
-- once every row here covers them, so a file that is away keeps its changes
-- waiting. ('*' is a cursor of an earlier version, one per sync.)
CREATE TABLE IF NOT EXISTS dugong_cursor (
    sync       TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '*',
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (sync, target)
);

-- Per sync: the replicator that runs it. A lease, renewed by every run and
-- every heartbeat; a second replicator stands by until it expires (or, on
-- the same host, until the holder's process is gone).
CREATE TABLE IF NOT EXISTS dugong_lease (
    sync      TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    host      TEXT NOT NULL,
    heartbeat INTEGER NOT NULL
);

-- Tables the initial copy (onetimecopy) of a sync has looked at, copied or
-- not: it looks at each once, ever (unless dugong replicate --recopy TABLE).
CREATE TABLE IF NOT EXISTS dugong_copied (
    sync        TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    copied_at   INTEGER NOT NULL,
    source      TEXT,
    PRIMARY KEY (sync, table_name)
);

-- Tables a sync holds back because they are not alike in every file (missing
-- somewhere, a column or the key different): their change rows are never
-- purged while a hold stands; when the table matches again, the first run
-- ships every change row the log still has, then the hold goes.
CREATE TABLE IF NOT EXISTS dugong_held (
    sync        TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    since       INTEGER NOT NULL,
    PRIMARY KEY (sync, table_name)
);

-- What `dugong status` shows (the same fields as on PostgreSQL).
CREATE TABLE IF NOT EXISTS dugong_sync_state (
    sync              TEXT PRIMARY KEY,
    replicator_pid    INTEGER,
    replicator_host   TEXT,
    heartbeat         INTEGER,
    state             TEXT NOT NULL DEFAULT 'No records found',
    last_good_started INTEGER,
    last_good_ended   INTEGER,
    last_rows_started INTEGER,
    last_rows_ended   INTEGER,
    last_deletes      INTEGER NOT NULL DEFAULT 0,
    last_inserts      INTEGER NOT NULL DEFAULT 0,
    last_truncates    INTEGER NOT NULL DEFAULT 0,
    last_conflicts    INTEGER NOT NULL DEFAULT 0,
    last_bad_started  INTEGER,
    last_bad_ended    INTEGER,
    last_error        TEXT,
    tables            INTEGER NOT NULL DEFAULT 0,
    excluded          TEXT NOT NULL DEFAULT '[]',
    rows_total        INTEGER NOT NULL DEFAULT 0,
    conflicts_total   INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL DEFAULT 0,
    -- How often the active replicator writes `heartbeat`, and the replicator
    -- standing by (files of earlier versions get these in capture.rs).
    heartbeat_interval_ms INTEGER,
    standby_pid       INTEGER,
    standby_host      TEXT,
    standby_seen      INTEGER
);

-- Every conflict decided, per row; the key as a JSON array of its values' text,
-- both versions of the row as JSON (a deleted one as JSON null). Files made by
-- earlier versions gain conflict_id, kind, winner_row, loser_row and
-- restored_at when the replicator starts (engine::sqlite::conflicts), which
-- also indexes conflict_id.
CREATE TABLE IF NOT EXISTS dugong_conflict_log (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    sync             TEXT NOT NULL,
    table_name       TEXT NOT NULL,
    key              TEXT NOT NULL,
    winner           TEXT NOT NULL,
    loser            TEXT NOT NULL,
    winner_changed   INTEGER,
    loser_changed    INTEGER,
    reason           TEXT NOT NULL,
    conflict_id      TEXT,
    kind             TEXT,
    winner_row       TEXT,
    loser_row        TEXT,
    restored_at      INTEGER
);
CREATE INDEX IF NOT EXISTS dugong_conflict_log_sync_at ON dugong_conflict_log (sync, at);
