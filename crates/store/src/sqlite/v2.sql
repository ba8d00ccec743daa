-- Schema version 2 on SQLite: the console's users (replicated, like every
-- application table) and sessions (this site's own). See postgres/v2.sql.

CREATE TABLE console_users (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE dugong_local_console_sessions (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_name   TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX dugong_local_console_sessions_expires ON dugong_local_console_sessions (expires_at);

CREATE INDEX events_received_at ON events (received_at);
