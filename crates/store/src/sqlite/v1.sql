-- Schema version 1 of the application server on SQLite: the same tables as on
-- PostgreSQL (postgres/v1.sql); uuids and JSON as text, times as microseconds
-- since the Unix epoch. Site-local state is in tables named dugong_local_*.

CREATE TABLE apps (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE flows (
    id          TEXT PRIMARY KEY NOT NULL,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    script      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX flows_app_id ON flows (app_id, id);

CREATE TABLE settings (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL CHECK (json_valid(value)),
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE contexts (
    user_id     TEXT PRIMARY KEY NOT NULL,
    entries     TEXT NOT NULL CHECK (json_valid(entries)),
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE events (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    app_id      TEXT,
    occurred_at INTEGER,
    received_at INTEGER NOT NULL,
    site        TEXT NOT NULL,
    payload     TEXT NOT NULL CHECK (json_valid(payload))
);

-- The change feed. SQLite has one writer at a time, so the triggers assign
-- positions directly and they grow in commit order.
CREATE TABLE dugong_local_feed (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    feed_id     TEXT NOT NULL,
    last_pos    INTEGER NOT NULL DEFAULT 0,
    purged_upto INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE dugong_local_change (
    pos      INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    key      TEXT,
    at       INTEGER NOT NULL
);
INSERT INTO dugong_local_feed (id, feed_id) VALUES (1, lower(hex(randomblob(16))));

-- One trigger per table and operation: log the key with the next position.
CREATE TRIGGER dugong_feed_apps_insert AFTER INSERT ON apps BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'apps', NEW.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_apps_update AFTER UPDATE ON apps BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'apps', NEW.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_apps_delete AFTER DELETE ON apps BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'apps', OLD.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_flows_insert AFTER INSERT ON flows BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'flows', NEW.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_flows_update AFTER UPDATE ON flows BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'flows', NEW.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_flows_delete AFTER DELETE ON flows BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'flows', OLD.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_settings_insert AFTER INSERT ON settings BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'settings', NEW.key, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_settings_update AFTER UPDATE ON settings BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'settings', NEW.key, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_settings_delete AFTER DELETE ON settings BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'settings', OLD.key, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_contexts_insert AFTER INSERT ON contexts BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'contexts', NEW.user_id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_contexts_update AFTER UPDATE ON contexts BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'contexts', NEW.user_id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
CREATE TRIGGER dugong_feed_contexts_delete AFTER DELETE ON contexts BEGIN
    UPDATE dugong_local_feed SET last_pos = last_pos + 1 WHERE id = 1;
    INSERT INTO dugong_local_change (pos, resource, key, at)
        SELECT last_pos, 'contexts', OLD.user_id, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM dugong_local_feed WHERE id = 1;
END;
