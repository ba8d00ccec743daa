//! Console users (`console_users`) and sessions
//! (`dugong_local_console_sessions`) in SQLite.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{audit, SqliteStore};
use crate::audit::{Action, Actor, NewAudit, USERS};
use crate::console::{exists, ConsoleUser, NewSession, RecentEvent, Session, SessionInfo, UserUpdate};
use crate::error::{from_sqlite, StoreError};
use crate::model::Micros;

const USER_COLUMNS: &str = "name, password_hash, disabled, session_epoch, version, updated_at";

fn to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleUser> {
    Ok(ConsoleUser {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        disabled: r.get(2)?,
        session_epoch: r.get(3)?,
        version: r.get(4)?,
        updated_at: Micros(r.get(5)?),
    })
}

fn read_user(c: &Connection, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
    c.query_row(&format!("SELECT {USER_COLUMNS} FROM console_users WHERE name = ?1"), [name], to_user)
        .optional()
        .map_err(|e| from_sqlite("reading console_users", &e))
}

/// Runs `change` on user `name` and records `action` by `who` in one
/// transaction; the user after the change, or `None` when there was no such
/// user (and nothing was written).
fn change_user(
    c: &mut Connection,
    site: &str,
    name: &str,
    who: Actor,
    action: Action,
    change: impl FnOnce(&Connection) -> rusqlite::Result<usize>,
) -> Result<Option<ConsoleUser>, StoreError> {
    let ctx = "writing console_users";
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| from_sqlite(ctx, &e))?;
    let before = read_user(&tx, name)?;
    if before.is_none() && action != Action::Create {
        return Ok(None);
    }
    if change(&tx).map_err(|e| from_sqlite(ctx, &e))? == 0 {
        return Ok(None);
    }
    let after = read_user(&tx, name)?;
    let version = after.as_ref().or(before.as_ref()).map(|u| u.version);
    let entry = NewAudit {
        actor: who,
        action,
        resource: USERS.to_string(),
        key: name.to_string(),
        version,
        detail: String::new(),
    };
    audit::insert(&tx, site, &entry)?;
    tx.commit().map_err(|e| from_sqlite(ctx, &e))?;
    Ok(after.or(before))
}

impl SqliteStore {
    pub(crate) async fn put_console_user(&self, name: &str, password_hash: &str) -> Result<ConsoleUser, StoreError> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.run(move |c, _| {
            // A new password ends the user's sessions everywhere (a new epoch).
            c.query_row(
                &format!(
                    "INSERT INTO console_users (name, password_hash, version, updated_at) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
                         session_epoch = session_epoch + 1, version = version + 1, updated_at = excluded.updated_at
                     RETURNING {USER_COLUMNS}"
                ),
                (&name, &hash, Micros::now().0),
                to_user,
            )
            .map_err(|e| from_sqlite("writing console_users", &e))
        })
        .await
    }

    pub(crate) async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        let name = name.to_string();
        self.run(move |c, _| read_user(c, &name)).await
    }

    pub(crate) async fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        self.run(|c, _| {
            let ctx = "listing console_users";
            let mut stmt = c
                .prepare(&format!("SELECT {USER_COLUMNS} FROM console_users ORDER BY name"))
                .map_err(|e| from_sqlite(ctx, &e))?;
            let rows = stmt.query_map([], to_user).map_err(|e| from_sqlite(ctx, &e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| from_sqlite(ctx, &e))
        })
        .await
    }

    pub(crate) async fn create_console_user(
        &self,
        name: &str,
        password_hash: &str,
        who: &Actor,
    ) -> Result<ConsoleUser, StoreError> {
        let (name, hash, who) = (name.to_string(), password_hash.to_string(), who.clone());
        self.run(move |c, site| {
            let created = change_user(c, site, &name, who, Action::Create, |tx| {
                tx.execute(
                    "INSERT INTO console_users (name, password_hash, version, updated_at) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (name) DO NOTHING",
                    (&name, &hash, Micros::now().0),
                )
            })?;
            match created {
                Some(user) => Ok(user),
                None => Err(exists(read_user(c, &name)?, &name)),
            }
        })
        .await
    }

    pub(crate) async fn update_console_user(
        &self,
        name: &str,
        update: &UserUpdate,
        who: &Actor,
    ) -> Result<ConsoleUser, StoreError> {
        let (name, update, who) = (name.to_string(), update.clone(), who.clone());
        self.run(move |c, site| {
            let now = Micros::now().0;
            let bump = "version = version + 1, updated_at = ?3";
            let changed = match &update {
                UserUpdate::Password { hash, action } => change_user(c, site, &name, who, *action, |tx| {
                    tx.execute(
                        &format!(
                            "UPDATE console_users SET password_hash = ?2, session_epoch = session_epoch + 1, {bump}
                             WHERE name = ?1"
                        ),
                        (&name, hash, now),
                    )
                })?,
                UserUpdate::Disabled(disabled) => {
                    let action = if *disabled { Action::Disable } else { Action::Enable };
                    change_user(c, site, &name, who, action, |tx| {
                        tx.execute(
                            &format!(
                                "UPDATE console_users SET disabled = ?2, session_epoch = session_epoch + ?2, {bump}
                                 WHERE name = ?1"
                            ),
                            (&name, i64::from(*disabled), now),
                        )
                    })?
                }
                UserUpdate::EndSessions => change_user(c, site, &name, who, Action::EndSessions, |tx| {
                    tx.execute(
                        &format!("UPDATE console_users SET session_epoch = session_epoch + 1, {bump} WHERE name = ?1"),
                        (&name, rusqlite::types::Null, now),
                    )
                })?,
            };
            changed.ok_or_else(|| StoreError::NotFound { kind: "user", key: name.clone() })
        })
        .await
    }

    pub(crate) async fn delete_console_user(&self, name: &str, who: &Actor) -> Result<ConsoleUser, StoreError> {
        let (name, who) = (name.to_string(), who.clone());
        self.run(move |c, site| {
            let deleted = change_user(c, site, &name, who, Action::Delete, |tx| {
                tx.execute("DELETE FROM dugong_local_console_sessions WHERE user_name = ?1", [&name])?;
                tx.execute("DELETE FROM console_users WHERE name = ?1", [&name])
            })?;
            deleted.ok_or_else(|| StoreError::NotFound { kind: "user", key: name.clone() })
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
                "INSERT INTO dugong_local_console_sessions
                     (token_hash, user_name, csrf, created_at, expires_at, user_epoch, peer)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                (&s.token_hash, &s.user, &s.csrf, now, s.expires_at.0, s.user_epoch, &s.peer),
            )
            .map_err(|e| from_sqlite(ctx, &e))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let token_hash = token_hash.to_string();
        self.run(move |c, _| {
            c.prepare_cached(
                "SELECT s.user_name, s.csrf, s.expires_at FROM dugong_local_console_sessions s
                 JOIN console_users u ON u.name = s.user_name
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND NOT u.disabled AND u.session_epoch = s.user_epoch",
            )
            .and_then(|mut stmt| {
                stmt.query_row((&token_hash, Micros::now().0), |r| {
                    Ok(Session { user: r.get(0)?, csrf: r.get(1)?, expires_at: Micros(r.get(2)?) })
                })
                .optional()
            })
            .map_err(|e| from_sqlite("reading console_sessions", &e))
        })
        .await
    }

    pub(crate) async fn console_sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        self.run(|c, _| {
            let ctx = "listing console_sessions";
            let mut stmt = c
                .prepare(
                    "SELECT s.token_hash, s.user_name, s.peer, s.created_at, s.expires_at
                     FROM dugong_local_console_sessions s JOIN console_users u ON u.name = s.user_name
                     WHERE s.expires_at > ?1 AND NOT u.disabled AND u.session_epoch = s.user_epoch
                     ORDER BY s.created_at DESC, s.token_hash",
                )
                .map_err(|e| from_sqlite(ctx, &e))?;
            let rows = stmt
                .query_map([Micros::now().0], |r| {
                    Ok(SessionInfo {
                        token_hash: r.get(0)?,
                        user: r.get(1)?,
                        peer: r.get(2)?,
                        created_at: Micros(r.get(3)?),
                        expires_at: Micros(r.get(4)?),
                    })
                })
                .map_err(|e| from_sqlite(ctx, &e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| from_sqlite(ctx, &e))
        })
        .await
    }

    pub(crate) async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let token_hash = token_hash.to_string();
        self.run(move |c, _| {
            let n = c
                .execute("DELETE FROM dugong_local_console_sessions WHERE token_hash = ?1", [&token_hash])
                .map_err(|e| from_sqlite("deleting a console session", &e))?;
            Ok(n > 0)
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
