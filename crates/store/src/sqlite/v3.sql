-- Schema version 3 on SQLite: the audit log, and console accounts that can be
-- disabled and whose sessions end on every site at once. See postgres/v3.sql.

ALTER TABLE console_users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE console_users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;

ALTER TABLE dugong_local_console_sessions ADD COLUMN user_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dugong_local_console_sessions ADD COLUMN peer TEXT NOT NULL DEFAULT '';

CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY NOT NULL,
    at         INTEGER NOT NULL,
    site       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    peer       TEXT NOT NULL,
    action     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    key        TEXT NOT NULL,
    version    INTEGER,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
