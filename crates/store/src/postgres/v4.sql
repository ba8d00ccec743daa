-- Schema version 4 on PostgreSQL: the console of a real fleet. Indexes so
-- lists page by name and by last change without reading every row, and the
-- history of apps, flows and settings (crates/store/src/history.rs).
--
-- Names of apps (and of the flows of one app) are unique, ignoring case, but
-- not by a unique index: two sites may each take a name before they meet,
-- and an index would make the replicator's apply fail on the second. Each
-- server checks under a lock on the name instead.

CREATE INDEX apps_name ON dugong_app.apps (lower(name), id);
CREATE INDEX apps_changed ON dugong_app.apps (updated_at, id);
CREATE INDEX flows_name ON dugong_app.flows (lower(name), id);
CREATE INDEX flows_app_name ON dugong_app.flows (app_id, lower(name), id);
CREATE INDEX flows_changed ON dugong_app.flows (updated_at, id);
CREATE INDEX settings_changed ON dugong_app.settings (updated_at, key);
CREATE INDEX contexts_changed ON dugong_app.contexts (updated_at, user_id);

-- Replicated like every table of dugong_app: ids are random, so versions
-- recorded on different sites never collide, and two sites' versions of one
-- record (a conflict) are both kept. content is the record's fields as a
-- JSON object; NULL for a deletion.
CREATE TABLE dugong_app.history (
    id         uuid PRIMARY KEY,
    resource   text NOT NULL,
    key        text NOT NULL,
    version    bigint NOT NULL,
    action     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    site       text NOT NULL,
    actor      text NOT NULL,
    actor_kind text NOT NULL,
    detail     text NOT NULL DEFAULT '',
    content    jsonb
);
CREATE INDEX history_record ON dugong_app.history (resource, key, at DESC, id DESC);
