-- Schema version 3 on PostgreSQL: the audit log, and console accounts that
-- can be disabled and whose sessions end on every site at once.
--
-- A session records the epoch its user had at login; changing or resetting
-- the password, disabling the user or ending its sessions bumps the epoch on
-- the user's row, which replicates, so every site's sessions of that user
-- stop at their next request.

ALTER TABLE dugong_app.console_users
    ADD COLUMN disabled      boolean NOT NULL DEFAULT false,
    ADD COLUMN session_epoch bigint NOT NULL DEFAULT 0;

ALTER TABLE dugong_local.console_sessions
    ADD COLUMN user_epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN peer       text NOT NULL DEFAULT '';

-- Replicated like every table of dugong_app: ids are random, so entries
-- recorded on different sites never collide.
CREATE TABLE dugong_app.audit_log (
    id         uuid PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    site       text NOT NULL,
    actor      text NOT NULL,
    actor_kind text NOT NULL,
    peer       text NOT NULL,
    action     text NOT NULL,
    resource   text NOT NULL,
    key        text NOT NULL,
    version    bigint,
    detail     text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON dugong_app.audit_log (at DESC, id DESC);
