//! One replicator per sync on SQLite: a lease row per sync in every file of the
//! sync (`dugong_lease`), the counterpart of PostgreSQL's session advisory lock.
//!
//! SQLite has no lock that lives as long as a connection, so the holder renews
//! the lease in every run transaction and every heartbeat. Another replicator
//! takes the sync over when the lease is older than [`LEASE`], or at once when
//! the holder ran on this host and its process is gone (a `kill -9` is followed
//! by a restart without waiting). Every run checks, under the file's write
//! lock, that it still holds the lease, so two replicators never both apply.

use super::capture::NOW_US;
use crate::error::{ReplicaError, StatementContext};
use crate::record::Replicator;
use dugong_core::{DbId, SyncName};
use rusqlite::{Connection, OptionalExtension};
use std::time::Duration;

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(15);

/// This replicator's identity in lease rows: pid, host and a tag drawn once per
/// process, so a reused pid is never mistaken for us while this process may
/// prepare its syncs again (after an error) without waiting for its own lease.
pub fn owner_tag(who: &Replicator) -> String {
    static TAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    format!("{}@{}#{:016x}", who.pid, who.host, TAG.get_or_init(rand::random::<u64>))
}

/// Takes the sync's lease on one file, or says who holds it (and notes this
/// replicator as standing by, for status). Own transaction.
pub fn claim(conn: &Connection, db: DbId, sync: &SyncName, who: &Replicator, owner: &str) -> Result<(), ReplicaError> {
    let ctx = || format!("claiming {sync}");
    conn.execute_batch("BEGIN IMMEDIATE").on_db(db, ctx)?;
    let result = (|| {
        let holder: Option<(String, i64, String, i64)> = conn
            .query_row(
                &format!("SELECT owner, pid, host, {NOW_US} - heartbeat FROM dugong_lease WHERE sync = ?1"),
                [sync.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .on_db(db, ctx)?;
        if let Some((tag, pid, host, age_us)) = holder {
            let expired = age_us > LEASE.as_micros() as i64;
            let gone = host == who.host && !process_alive(pid);
            if tag != owner && !expired && !gone {
                // The file's state row may not exist yet on a first start:
                // then status simply shows no standby.
                conn.execute(
                    &format!(
                        "UPDATE dugong_sync_state SET standby_pid = ?2, standby_host = ?3, standby_seen = {NOW_US} WHERE sync = ?1"
                    ),
                    rusqlite::params![sync.as_str(), who.pid, who.host],
                )
                .on_db(db, ctx)?;
                return Ok(Some(format!("{pid} on {host}")));
            }
        }
        conn.execute(
            &format!(
                "INSERT INTO dugong_lease (sync, owner, pid, host, heartbeat) VALUES (?1, ?2, ?3, ?4, {NOW_US})
                 ON CONFLICT (sync) DO UPDATE SET owner = excluded.owner, pid = excluded.pid, host = excluded.host, heartbeat = excluded.heartbeat"
            ),
            rusqlite::params![sync.as_str(), owner, who.pid, who.host],
        )
        .on_db(db, ctx)?;
        Ok(None)
    })();
    match finish(conn, db, result)? {
        None => Ok(()),
        Some(holder) => Err(ReplicaError::Standby { db, holder }),
    }
}

/// Renews the lease inside a transaction that holds the file's write lock;
/// fails with `Standby` when another replicator took the sync over.
pub fn renew(conn: &Connection, db: DbId, sync: &SyncName, owner: &str) -> Result<(), ReplicaError> {
    let n = conn
        .execute(
            &format!("UPDATE dugong_lease SET heartbeat = {NOW_US} WHERE sync = ?1 AND owner = ?2"),
            [sync.as_str(), owner],
        )
        .on_db(db, || format!("renewing the lease of {sync}"))?;
    if n == 1 {
        return Ok(());
    }
    let holder: Option<String> = conn
        .query_row("SELECT pid || ' on ' || host FROM dugong_lease WHERE sync = ?1", [sync.as_str()], |r| r.get(0))
        .optional()
        .ok()
        .flatten();
    Err(ReplicaError::Standby { db, holder: holder.unwrap_or_else(|| "another replicator".into()) })
}

/// Gives the lease up (clean stop), so a standby takes over at once.
pub fn release(conn: &Connection, sync: &SyncName, owner: &str) {
    let _ = conn.execute("DELETE FROM dugong_lease WHERE sync = ?1 AND owner = ?2", [sync.as_str(), owner]);
}

/// Commits on success, rolls back on failure.
pub(super) fn finish<T>(conn: &Connection, db: DbId, result: Result<T, ReplicaError>) -> Result<T, ReplicaError> {
    match result {
        Ok(v) => {
            conn.execute_batch("COMMIT").on_db(db, || "committing".into())?;
            Ok(v)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// Whether a process of this host still runs. Without `/proc` nothing can be
/// known: assume it does (the lease then expires by time).
fn process_alive(pid: i64) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
