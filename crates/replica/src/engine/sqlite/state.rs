//! The run state `dugong status` reads, kept in `dugong_sync_state` of every
//! file of the sync — the same fields as on PostgreSQL (`crate::state`).

use super::capture::NOW_US;
use super::{Node, Prepared};
use crate::error::{ReplicaError, StatementContext};
use crate::run::RunOutcome;
use crate::state::Replicator;
use dugong_core::{DbId, SyncName};
use rusqlite::{params, Connection};
use std::time::SystemTime;

pub(super) fn micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn excluded_json(p: &Prepared) -> String {
    let items: Vec<String> = p.excluded.iter().map(|e| format!("{} ({})", e.table, e.reason)).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

/// Creates the sync's state row if missing.
pub(super) fn ensure_row(conn: &Connection, db: DbId, sync: &SyncName) -> Result<(), ReplicaError> {
    conn.execute("INSERT OR IGNORE INTO dugong_sync_state (sync) VALUES (?1)", [sync.as_str()])
        .map(|_| ())
        .on_db(db, || "creating the sync's state".into())
}

/// Records a run that moved rows, inside the node's run transaction.
pub(super) fn record_good(p: &Prepared, node: &Node, outcome: &RunOutcome) -> Result<(), ReplicaError> {
    let started = micros(outcome.started.unwrap_or_else(SystemTime::now));
    let (d, i, t, c) =
        (outcome.deletes as i64, outcome.inserts as i64, outcome.truncates as i64, outcome.conflicts.len() as i64);
    node.conn
        .execute(
            &format!(
                "UPDATE dugong_sync_state SET replicator_pid = ?2, replicator_host = ?3, heartbeat = {NOW_US}, state = 'Good',
                    last_good_started = ?4, last_good_ended = {NOW_US}, last_rows_started = ?4, last_rows_ended = {NOW_US},
                    last_deletes = ?5, last_inserts = ?6, last_truncates = ?7, last_conflicts = ?8,
                    tables = ?9, excluded = ?10, rows_total = rows_total + ?5 + ?6, conflicts_total = conflicts_total + ?8,
                    updated_at = {NOW_US}
                 WHERE sync = ?1"
            ),
            params![p.sync.name.as_str(), p.who.pid, p.who.host, started, d, i, t, c, p.tables.len() as i64, excluded_json(p)],
        )
        .on_db(node.id, || "recording the run".into())?;
    Ok(())
}

/// Refreshes "last good" after empty runs and renews the lease, on every file.
/// A file busy past the busy timeout is skipped this time: a heartbeat is no
/// reason to make the sync Bad, and the next one (or the next run) renews.
pub(super) fn record_idle(p: &Prepared) -> Result<(), ReplicaError> {
    for node in &p.nodes {
        if let Err(e) = node.conn.execute_batch("BEGIN IMMEDIATE") {
            if crate::error::sqlite_busy(&e) {
                tracing::debug!(db = %node.id, "file busy; heartbeat skipped");
                continue;
            }
            return Err(ReplicaError::Sqlite { db: node.id, context: "recording the run".into(), source: e });
        }
        let result = (|| {
            super::lease::renew(&node.conn, node.id, &p.sync.name, &p.owner)?;
            node.conn
                .execute(
                    &format!(
                        "UPDATE dugong_sync_state SET replicator_pid = ?2, replicator_host = ?3, heartbeat = {NOW_US}, state = 'Good',
                            last_good_started = {NOW_US}, last_good_ended = {NOW_US}, tables = ?4, excluded = ?5, updated_at = {NOW_US}
                         WHERE sync = ?1"
                    ),
                    params![p.sync.name.as_str(), p.who.pid, p.who.host, p.tables.len() as i64, excluded_json(p)],
                )
                .on_db(node.id, || "recording the run".into())?;
            Ok(())
        })();
        super::lease::finish(&node.conn, node.id, result)?;
    }
    Ok(())
}

/// Records a failed run on every connection given. Never fails.
pub(super) fn record_bad(
    conns: &[(DbId, &Connection)],
    sync: &SyncName,
    who: &Replicator,
    started: SystemTime,
    error: &str,
) {
    for (id, conn) in conns {
        let result = conn
            .execute("INSERT OR IGNORE INTO dugong_sync_state (sync) VALUES (?1)", [sync.as_str()])
            .and_then(|_| {
                conn.execute(
                    &format!(
                        "UPDATE dugong_sync_state SET replicator_pid = ?2, replicator_host = ?3, heartbeat = {NOW_US}, state = 'Bad',
                            last_bad_started = ?4, last_bad_ended = {NOW_US}, last_error = ?5, updated_at = {NOW_US}
                         WHERE sync = ?1"
                    ),
                    params![sync.as_str(), who.pid, who.host, micros(started), error],
                )
            });
        if let Err(e) = result {
            tracing::debug!(db = %id, sync = %sync, error = %e, "could not record the failed run");
        }
    }
}

/// Marks the sync as not running and gives the lease up.
pub(super) fn record_stopped(p: &Prepared) {
    for node in &p.nodes {
        let _ = node.conn.execute(
            &format!("UPDATE dugong_sync_state SET replicator_pid = NULL, updated_at = {NOW_US} WHERE sync = ?1"),
            [p.sync.name.as_str()],
        );
        super::lease::release(&node.conn, &p.sync.name, &p.owner);
    }
}
