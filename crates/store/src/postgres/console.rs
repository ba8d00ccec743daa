//! Console users (`dugong_app.console_users`) and sessions
//! (`dugong_local.console_sessions`) on PostgreSQL.

use super::{micros, PgStore};
use crate::console::{ConsoleUser, NewSession, RecentEvent, Session};
use crate::error::{from_pg, StoreError};
use crate::model::Micros;

/// `Micros` as a timestamptz parameter.
const AT: &str = "'epoch'::timestamptz + $1::int8 * interval '1 microsecond'";

impl PgStore {
    pub(crate) async fn put_console_user(&self, name: &str, password_hash: &str) -> Result<ConsoleUser, StoreError> {
        let sql = format!(
            "INSERT INTO dugong_app.console_users (name, password_hash, version, updated_at) VALUES ($1, $2, 1, now())
             ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                 version = dugong_app.console_users.version + 1, updated_at = now()
             RETURNING name, password_hash, version, {}",
            micros("updated_at")
        );
        let conn = self.conn().await?;
        let row =
            conn.query_one(&sql, &[&name, &password_hash]).await.map_err(|e| from_pg("writing console_users", &e))?;
        Ok(ConsoleUser {
            name: row.get(0),
            password_hash: row.get(1),
            version: row.get(2),
            updated_at: Micros(row.get(3)),
        })
    }

    pub(crate) async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        let sql = format!(
            "SELECT name, password_hash, version, {} FROM dugong_app.console_users WHERE name = $1",
            micros("updated_at")
        );
        let conn = self.conn().await?;
        let row = conn.query_opt(&sql, &[&name]).await.map_err(|e| from_pg("reading console_users", &e))?;
        Ok(row.map(|r| ConsoleUser {
            name: r.get(0),
            password_hash: r.get(1),
            version: r.get(2),
            updated_at: Micros(r.get(3)),
        }))
    }

    pub(crate) async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
        let ctx = "writing console_sessions";
        let conn = self.conn().await?;
        // Expired sessions go whenever a new one comes.
        conn.execute("DELETE FROM dugong_local.console_sessions WHERE expires_at < now()", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let sql = format!(
            "INSERT INTO dugong_local.console_sessions (token_hash, user_name, csrf, expires_at) VALUES ($2, $3, $4, {AT})"
        );
        conn.execute(&sql, &[&s.expires_at.0, &s.token_hash, &s.user, &s.csrf]).await.map_err(|e| from_pg(ctx, &e))?;
        Ok(())
    }

    pub(crate) async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT s.user_name, s.csrf, {} FROM dugong_local.console_sessions s
             JOIN dugong_app.console_users u ON u.name = s.user_name
             WHERE s.token_hash = $1 AND s.expires_at > now()",
            micros("s.expires_at")
        );
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a session read", &e))?;
        let row = conn.query_opt(&stmt, &[&token_hash]).await.map_err(|e| from_pg("reading console_sessions", &e))?;
        Ok(row.map(|r| Session { user: r.get(0), csrf: r.get(1), expires_at: Micros(r.get(2)) }))
    }

    pub(crate) async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.execute("DELETE FROM dugong_local.console_sessions WHERE token_hash = $1", &[&token_hash])
            .await
            .map_err(|e| from_pg("deleting a console session", &e))?;
        Ok(())
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
