-- Schema version 2 on PostgreSQL: the console's users and sessions.
--
-- Users are application data: replicated with everything in dugong_app, so an
-- admin created on one site can log in on every site. Sessions are this site's
-- own (dugong_local): a login holds on the site where it was made, and logging
-- out there really ends it.

CREATE TABLE dugong_app.console_users (
    name          text COLLATE "C" PRIMARY KEY,
    -- A PHC string (argon2id); never the password.
    password_hash text NOT NULL,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dugong_local.console_sessions (
    -- SHA-256 (hex) of the cookie's token: a read of this table logs nobody in.
    token_hash  text PRIMARY KEY,
    user_name   text NOT NULL,
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON dugong_local.console_sessions (expires_at);

-- The status page lists the latest events.
CREATE INDEX events_received_at ON dugong_app.events (received_at);
