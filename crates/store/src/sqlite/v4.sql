-- Schema version 4 on SQLite: indexes for lists by name and by last change,
-- and the history of apps, flows and settings. See postgres/v4.sql.

CREATE INDEX apps_name ON apps (lower(name), id);
CREATE INDEX apps_changed ON apps (updated_at, id);
CREATE INDEX flows_name ON flows (lower(name), id);
CREATE INDEX flows_app_name ON flows (app_id, lower(name), id);
CREATE INDEX flows_changed ON flows (updated_at, id);
CREATE INDEX settings_changed ON settings (updated_at, key);
CREATE INDEX contexts_changed ON contexts (updated_at, user_id);

CREATE TABLE history (
    id         TEXT PRIMARY KEY NOT NULL,
    resource   TEXT NOT NULL,
    key        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    action     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    site       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    content    TEXT
);
CREATE INDEX history_record ON history (resource, key, at DESC, id DESC);
