-- Schema version 1 of the application server on PostgreSQL.
--
-- dugong_app: the application's data. Replicated between sites by
-- `dugong replicate` ("tables": "all"): every table has a primary key, and keys
-- never collide between sites (UUIDs made by clients, natural keys).
-- dugong_local: this site's own state, which the replicator never touches.

CREATE SCHEMA IF NOT EXISTS dugong_app;
COMMENT ON SCHEMA dugong_app IS 'Dugong application server data: replicated between sites.';

CREATE TABLE dugong_app.apps (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Deleting an app deletes its flows. (Under the replicator's
-- session_replication_role = replica the cascade does not fire; the flows'
-- deletions are replicated as rows of their own.)
CREATE TABLE dugong_app.flows (
    id          uuid PRIMARY KEY,
    app_id      uuid NOT NULL REFERENCES dugong_app.apps (id) ON DELETE CASCADE,
    name        text NOT NULL,
    script      text NOT NULL,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flows_app_id ON dugong_app.flows (app_id, id);

-- Natural keys sort bytewise ("C") so paging is the same on every server.
CREATE TABLE dugong_app.settings (
    key         text COLLATE "C" PRIMARY KEY,
    value       jsonb NOT NULL,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dugong_app.contexts (
    user_id     text COLLATE "C" PRIMARY KEY,
    entries     jsonb NOT NULL,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dugong_app.events (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL,
    user_id     text,
    app_id      uuid,
    occurred_at timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    site        text NOT NULL,
    payload     jsonb NOT NULL
);

-- The change feed (see crates/store/src/feed.rs).
CREATE TABLE dugong_local.feed (
    id          int PRIMARY KEY CHECK (id = 1),
    feed_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    last_pos    bigint NOT NULL DEFAULT 0,
    purged_upto bigint NOT NULL DEFAULT 0
);
INSERT INTO dugong_local.feed (id) VALUES (1);

CREATE TABLE dugong_local.change (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Assigned after commit, in commit order; NULL until then.
    pos      bigint UNIQUE,
    resource text NOT NULL,
    -- NULL: the whole table changed at once (TRUNCATE).
    key      text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_unsequenced ON dugong_local.change (id) WHERE pos IS NULL;

-- Logs the keys a statement changed. Statement-level with transition tables:
-- one call per statement, not per row. SECURITY DEFINER so any role that may
-- write the tables (the replicator's, say) can log without rights on
-- dugong_local.
CREATE FUNCTION dugong_local.record_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO dugong_local.change (resource, key) VALUES (TG_ARGV[0], NULL);
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO dugong_local.change (resource, key) SELECT %L, %I::text FROM changed_new',
                       TG_ARGV[0], TG_ARGV[1]);
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('INSERT INTO dugong_local.change (resource, key) SELECT %L, %I::text FROM changed_old',
                       TG_ARGV[0], TG_ARGV[1]);
    ELSE
        -- Old keys too, in case a key itself was changed by hand.
        EXECUTE format('INSERT INTO dugong_local.change (resource, key)
                        SELECT %L, k FROM (SELECT %I::text AS k FROM changed_new
                                           UNION SELECT %I::text FROM changed_old) keys',
                       TG_ARGV[0], TG_ARGV[1], TG_ARGV[1]);
    END IF;
    RETURN NULL;
END $$;

-- ENABLE ALWAYS: the triggers also fire for rows the replicator applies with
-- session_replication_role = replica, so watchers see changes made on other
-- sites.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('apps', 'id'), ('flows', 'id'), ('settings', 'key'), ('contexts', 'user_id'))
             AS v(name, key)
    LOOP
        EXECUTE format('CREATE TRIGGER dugong_feed_insert AFTER INSERT ON dugong_app.%I
                        REFERENCING NEW TABLE AS changed_new
                        FOR EACH STATEMENT EXECUTE FUNCTION dugong_local.record_change(%L, %L)', t.name, t.name, t.key);
        EXECUTE format('CREATE TRIGGER dugong_feed_update AFTER UPDATE ON dugong_app.%I
                        REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
                        FOR EACH STATEMENT EXECUTE FUNCTION dugong_local.record_change(%L, %L)', t.name, t.name, t.key);
        EXECUTE format('CREATE TRIGGER dugong_feed_delete AFTER DELETE ON dugong_app.%I
                        REFERENCING OLD TABLE AS changed_old
                        FOR EACH STATEMENT EXECUTE FUNCTION dugong_local.record_change(%L, %L)', t.name, t.name, t.key);
        EXECUTE format('CREATE TRIGGER dugong_feed_truncate AFTER TRUNCATE ON dugong_app.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION dugong_local.record_change(%L, %L)', t.name, t.name, t.key);
        EXECUTE format('ALTER TABLE dugong_app.%I ENABLE ALWAYS TRIGGER dugong_feed_insert,
                        ENABLE ALWAYS TRIGGER dugong_feed_update, ENABLE ALWAYS TRIGGER dugong_feed_delete,
                        ENABLE ALWAYS TRIGGER dugong_feed_truncate', t.name);
    END LOOP;
END $$;
