//! Console users (`console_users`) and sessions
//! (`dugong_local_console_sessions`) in SQLite.

use rusqlite::OptionalExtension;

use super::SqliteStore;
use crate::console::{ConsoleUser, NewSession, RecentEvent, Session};
use crate::error::{from_sqlite, StoreError};
use crate::model::Micros;

fn to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleUser> {
    Ok(ConsoleUser { name: r.get(0)?, password_hash: r.get(1)?, version: r.get(2)?, updated_at: Micros(r.get(3)?) })
}

impl SqliteStore {
    pub(crate) async fn put_console_user(&self, name: &str, password_hash: &str) -> Result<ConsoleUser, StoreError> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.run(move |c, _| {
            c.query_row(
                "INSERT INTO console_users (name, password_hash, version, updated_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
                     version = version + 1, updated_at = excluded.updated_at
                 RETURNING name, password_hash, version, updated_at",
                (&name, &hash, Micros::now().0),
                to_user,
            )
            .map_err(|e| from_sqlite("writing console_users", &e))
        })
        .await
    }

    pub(crate) async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        let name = name.to_string();
        self.run(move |c, _| {
            c.query_row(
                "SELECT name, password_hash, version, updated_at FROM console_users WHERE name = ?1",
                [&name],
                to_user,
            )
            .optional()
            .map_err(|e| from_sqlite("reading console_users", &e))
        })
        .await
    }

    pub(crate) async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
        let s = s.clone();
        self.run(move |c, _| {
            let ctx = "writing console_sessions";
            let now = Micros::now().0;
            c.execute("DELETE FROM dugong_local_console_sessions WHERE expires_at < ?1", [now])
                .map_err(|e| from_sqlite(ctx, &e))?;
            c.execute(
                "INSERT INTO dugong_local_console_sessions (token_hash, user_name, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (&s.token_hash, &s.user, &s.csrf, now, s.expires_at.0),
            )
            .map_err(|e| from_sqlite(ctx, &e))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let token_hash = token_hash.to_string();
        self.run(move |c, _| {
            c.query_row(
                "SELECT s.user_name, s.csrf, s.expires_at FROM dugong_local_console_sessions s
                 JOIN console_users u ON u.name = s.user_name
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                (&token_hash, Micros::now().0),
                |r| Ok(Session { user: r.get(0)?, csrf: r.get(1)?, expires_at: Micros(r.get(2)?) }),
            )
            .optional()
            .map_err(|e| from_sqlite("reading console_sessions", &e))
        })
        .await
    }

    pub(crate) async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let token_hash = token_hash.to_string();
        self.run(move |c, _| {
            c.execute("DELETE FROM dugong_local_console_sessions WHERE token_hash = ?1", [&token_hash])
                .map_err(|e| from_sqlite("deleting a console session", &e))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn recent_events(&self, limit: u32) -> Result<Vec<RecentEvent>, StoreError> {
        self.run(move |c, _| {
            let ctx = "listing recent events";
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, kind, user_id, site, received_at FROM events ORDER BY received_at DESC, id LIMIT ?1",
                )
                .map_err(|e| from_sqlite(ctx, &e))?;
            let rows = stmt
                .query_map([i64::from(limit)], |r| {
                    Ok(RecentEvent {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        user: r.get(2)?,
                        site: r.get(3)?,
                        received_at: Micros(r.get(4)?),
                    })
                })
                .map_err(|e| from_sqlite(ctx, &e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| from_sqlite(ctx, &e))
        })
        .await
    }
}
