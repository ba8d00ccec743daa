//! Console users (`dugong_app.console_users`) and sessions
//! (`dugong_local.console_sessions`) on PostgreSQL.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::audit::{self, insert_from, literal};
use super::{micros, PgStore};
use crate::audit::{Action, Actor, NewAudit, USERS};
use crate::console::{exists, ConsoleUser, NewSession, RecentEvent, Session, SessionInfo, UserUpdate};
use crate::error::{from_pg, from_pg_write, StoreError};
use crate::model::Micros;

/// `Micros` as a timestamptz parameter.
const AT: &str = "'epoch'::timestamptz + $1::int8 * interval '1 microsecond'";

/// The columns of a user, as [`to_user`] reads them.
fn user_columns() -> String {
    format!("name, password_hash, disabled, session_epoch, version, {}", micros("updated_at"))
}

fn to_user(r: &Row) -> ConsoleUser {
    ConsoleUser {
        name: r.get(0),
        password_hash: r.get(1),
        disabled: r.get(2),
        session_epoch: r.get(3),
        version: r.get(4),
        updated_at: Micros(r.get(5)),
    }
}

/// The entry of a change to user `name` by `who`.
fn user_entry(who: &Actor, action: Action, name: &str, detail: &str) -> NewAudit {
    NewAudit {
        actor: who.clone(),
        action,
        resource: USERS.to_string(),
        key: name.to_string(),
        version: None,
        detail: detail.to_string(),
    }
}

impl PgStore {
    pub(crate) async fn put_console_user(&self, name: &str, password_hash: &str) -> Result<ConsoleUser, StoreError> {
        // A new password ends the user's sessions everywhere (a new epoch).
        let sql = format!(
            "INSERT INTO dugong_app.console_users (name, password_hash, version, updated_at) VALUES ($1, $2, 1, now())
             ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                 session_epoch = dugong_app.console_users.session_epoch + 1,
                 version = dugong_app.console_users.version + 1, updated_at = now()
             RETURNING {}",
            user_columns()
        );
        let conn = self.conn().await?;
        let row = conn
            .query_one(&sql, &[&name, &password_hash])
            .await
            .map_err(|e| from_pg_write("writing console_users", &e))?;
        Ok(to_user(&row))
    }

    pub(crate) async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        let sql = format!("SELECT {} FROM dugong_app.console_users WHERE name = $1", user_columns());
        let conn = self.conn().await?;
        let row = conn.query_opt(&sql, &[&name]).await.map_err(|e| from_pg("reading console_users", &e))?;
        Ok(row.as_ref().map(to_user))
    }

    pub(crate) async fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        let sql = format!("SELECT {} FROM dugong_app.console_users ORDER BY name", user_columns());
        let conn = self.conn().await?;
        let rows = conn.query(&sql, &[]).await.map_err(|e| from_pg("listing console_users", &e))?;
        Ok(rows.iter().map(to_user).collect())
    }

    /// Runs `change` (a statement on `dugong_app.console_users` with `$1` the
    /// user's name, returning nothing yet) with its audit entry, returning
    /// the user as it is after the change; `None` when it changed no row.
    /// `also` is one more data-modifying CTE (`name AS (…)`) run with it.
    async fn change_user(
        &self,
        change: &str,
        params: &[&(dyn ToSql + Sync)],
        entry: &NewAudit,
        also: Option<&str>,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        let audit = audit::Params::new(&self.site, entry);
        let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        let insert = insert_from("w", all.len() + 1, &literal(entry.action), "w.version");
        all.extend(audit.refs());
        let also = also.map(|cte| format!("{cte}, ")).unwrap_or_default();
        let sql = format!("WITH {also}w AS ({change} RETURNING {}), a AS ({insert}) SELECT * FROM w", user_columns());
        let conn = self.conn().await?;
        let row = conn.query_opt(&sql, &all).await.map_err(|e| from_pg_write("writing console_users", &e))?;
        Ok(row.as_ref().map(to_user))
    }

    pub(crate) async fn create_console_user(
        &self,
        name: &str,
        password_hash: &str,
        who: &Actor,
    ) -> Result<ConsoleUser, StoreError> {
        let change = "INSERT INTO dugong_app.console_users (name, password_hash, version, updated_at)
                      VALUES ($1, $2, 1, now()) ON CONFLICT (name) DO NOTHING";
        let entry = user_entry(who, Action::Create, name, "");
        match self.change_user(change, &[&name, &password_hash], &entry, None).await? {
            Some(user) => Ok(user),
            None => Err(exists(self.console_user(name).await?, name)),
        }
    }

    pub(crate) async fn update_console_user(
        &self,
        name: &str,
        update: &UserUpdate,
        who: &Actor,
    ) -> Result<ConsoleUser, StoreError> {
        let (change, entry) = match update {
            UserUpdate::Password { hash, action } => (
                "UPDATE dugong_app.console_users SET password_hash = $2, session_epoch = session_epoch + 1,
                 version = version + 1, updated_at = now() WHERE name = $1"
                    .to_string(),
                (user_entry(who, *action, name, ""), Some(hash.as_str())),
            ),
            UserUpdate::Disabled(disabled) => (
                format!(
                    "UPDATE dugong_app.console_users SET disabled = {disabled},
                     session_epoch = session_epoch + {}, version = version + 1, updated_at = now()
                     WHERE name = $1",
                    i32::from(*disabled)
                ),
                (user_entry(who, if *disabled { Action::Disable } else { Action::Enable }, name, ""), None),
            ),
            UserUpdate::EndSessions => (
                "UPDATE dugong_app.console_users SET session_epoch = session_epoch + 1, version = version + 1,
                 updated_at = now() WHERE name = $1"
                    .to_string(),
                (user_entry(who, Action::EndSessions, name, ""), None),
            ),
        };
        let (entry, hash) = entry;
        let found = match hash {
            Some(hash) => self.change_user(&change, &[&name, &hash], &entry, None).await?,
            None => self.change_user(&change, &[&name], &entry, None).await?,
        };
        found.ok_or_else(|| StoreError::NotFound { kind: "user", key: name.to_string() })
    }

    pub(crate) async fn delete_console_user(&self, name: &str, who: &Actor) -> Result<ConsoleUser, StoreError> {
        // This site's sessions of the user go in the same statement; other
        // sites' are dead once the deletion arrives (no user to join).
        let sessions = "s AS (DELETE FROM dugong_local.console_sessions WHERE user_name = $1)";
        let change = "DELETE FROM dugong_app.console_users WHERE name = $1";
        let entry = user_entry(who, Action::Delete, name, "");
        let found = self.change_user(change, &[&name], &entry, Some(sessions)).await?;
        found.ok_or_else(|| StoreError::NotFound { kind: "user", key: name.to_string() })
    }

    pub(crate) async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
        let ctx = "writing console_sessions";
        let conn = self.conn().await?;
        // Expired sessions go whenever a new one comes.
        conn.execute("DELETE FROM dugong_local.console_sessions WHERE expires_at < now()", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let sql = format!(
            "INSERT INTO dugong_local.console_sessions (token_hash, user_name, csrf, expires_at, user_epoch, peer)
             VALUES ($2, $3, $4, {AT}, $5, $6)"
        );
        conn.execute(&sql, &[&s.expires_at.0, &s.token_hash, &s.user, &s.csrf, &s.user_epoch, &s.peer])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        Ok(())
    }

    pub(crate) async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT s.user_name, s.csrf, {} FROM dugong_local.console_sessions s
             JOIN dugong_app.console_users u ON u.name = s.user_name
             WHERE s.token_hash = $1 AND s.expires_at > now() AND NOT u.disabled AND u.session_epoch = s.user_epoch",
            micros("s.expires_at")
        );
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a session read", &e))?;
        let row = conn.query_opt(&stmt, &[&token_hash]).await.map_err(|e| from_pg("reading console_sessions", &e))?;
        Ok(row.map(|r| Session { user: r.get(0), csrf: r.get(1), expires_at: Micros(r.get(2)) }))
    }

    pub(crate) async fn console_sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let sql = format!(
            "SELECT s.token_hash, s.user_name, s.peer, {}, {} FROM dugong_local.console_sessions s
             JOIN dugong_app.console_users u ON u.name = s.user_name
             WHERE s.expires_at > now() AND NOT u.disabled AND u.session_epoch = s.user_epoch
             ORDER BY s.created_at DESC, s.token_hash",
            micros("s.created_at"),
            micros("s.expires_at")
        );
        let conn = self.conn().await?;
        let rows = conn.query(&sql, &[]).await.map_err(|e| from_pg("listing console_sessions", &e))?;
        Ok(rows
            .iter()
            .map(|r| SessionInfo {
                token_hash: r.get(0),
                user: r.get(1),
                peer: r.get(2),
                created_at: Micros(r.get(3)),
                expires_at: Micros(r.get(4)),
            })
            .collect())
    }

    pub(crate) async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let n = conn
            .execute("DELETE FROM dugong_local.console_sessions WHERE token_hash = $1", &[&token_hash])
            .await
            .map_err(|e| from_pg("deleting a console session", &e))?;
        Ok(n > 0)
    }

    pub(crate) async fn recent_events(&self, limit: u32) -> Result<Vec<RecentEvent>, StoreError> {
        let sql = format!(
            "SELECT id::text, kind, user_id, site, {} FROM dugong_app.events ORDER BY received_at DESC, id LIMIT $1",
            micros("received_at")
        );
        let conn = self.conn().await?;
        let rows = conn.query(&sql, &[&i64::from(limit)]).await.map_err(|e| from_pg("listing recent events", &e))?;
        Ok(rows
            .iter()
            .map(|r| RecentEvent {
                id: r.get(0),
                kind: r.get(1),
                user: r.get(2),
                site: r.get(3),
                received_at: Micros(r.get(4)),
            })
            .collect())
    }
}
