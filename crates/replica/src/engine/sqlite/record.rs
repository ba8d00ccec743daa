//! Recording runs on SQLite: the state `dugong status` reads, kept in
//! `dugong_sync_state` of every file of the sync (the same fields as on
//! PostgreSQL), the conflict log, the run's commit, and afterwards the
//! sources' cursors, with the purge of what every sync shipped.

use super::capture::{delta_name, NOW_US};
use super::lease;
use super::node::{Files, Node};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::SyncPlan;
use crate::record::conflict::RunConflict;
use crate::record::{excluded_entries, micros, Replicator, RunOutcome};
use dugong_core::{DbId, SyncName};
use rusqlite::{params, Connection};
use std::time::SystemTime;

/// The columns every write of the active replicator sets besides its pid and
/// host (`?2`, `?3`): its heartbeat, how often it writes one, and the standby
/// columns cleared when they name it (it stood by until it took over).
fn alive_columns(who: &Replicator) -> String {
    format!(
        "heartbeat = {NOW_US}, heartbeat_interval_ms = {},
         standby_seen = CASE WHEN standby_pid = ?2 AND standby_host = ?3 THEN NULL ELSE standby_seen END,
         standby_pid = CASE WHEN standby_pid = ?2 AND standby_host = ?3 THEN NULL ELSE standby_pid END",
        who.heartbeat.as_millis()
    )
}

/// The state a run records: Good from `started` (SQL), or — while tables are
/// held — Bad with the reason, the other tables going on.
fn state_columns(plan: &SyncPlan, started: &str) -> String {
    match plan.held_reason() {
        None => format!("state = 'Good', last_good_started = {started}, last_good_ended = {NOW_US}"),
        Some(why) => format!(
            "state = 'Bad', last_bad_started = coalesce(CASE WHEN state = 'Bad' THEN last_bad_started END, {started}),
             last_bad_ended = {NOW_US}, last_error = {}",
            dugong_core::quote_literal(&why)
        ),
    }
}

fn excluded_json(plan: &SyncPlan) -> String {
    serde_json::to_string(&excluded_entries(&plan.excluded)).unwrap_or_else(|_| "[]".into())
}

/// Creates the sync's state row if missing.
pub(super) fn ensure_row(conn: &Connection, db: DbId, sync: &SyncName) -> Result<(), ReplicaError> {
    conn.execute("INSERT OR IGNORE INTO dugong_sync_state (sync) VALUES (?1)", [sync.as_str()])
        .map(|_| ())
        .on_db(db, || "creating the sync's state".into())
}

/// Records the run's conflicts and state in every file's run transaction, and
/// commits them. Files that committed before one failed keep the run;
/// repeating it is harmless.
pub fn commit(files: &Files, plan: &SyncPlan, who: &Replicator, outcome: &RunOutcome) -> Result<(), ReplicaError> {
    let committed = (|| {
        if !outcome.conflicts.is_empty() {
            log_conflicts(files, plan, &outcome.conflicts)?;
        }
        files.nodes.iter().try_for_each(|node| {
            record_good(plan, who, node, outcome)?;
            node.conn
                .execute_batch("DELETE FROM dugong_applying; COMMIT")
                .on_db(node.id, || "committing the run".into())
        })
    })();
    if committed.is_err() {
        rollback_all(files);
    }
    committed
}

/// Records a run that moved rows, inside the node's run transaction.
fn record_good(plan: &SyncPlan, who: &Replicator, node: &Node, outcome: &RunOutcome) -> Result<(), ReplicaError> {
    let started = micros(outcome.started.unwrap_or_else(SystemTime::now));
    let (d, i, t, c) =
        (outcome.deletes as i64, outcome.inserts as i64, outcome.truncates as i64, outcome.conflicts.len() as i64);
    node.conn
        .execute(
            &format!(
                "UPDATE dugong_sync_state SET replicator_pid = ?2, replicator_host = ?3, {alive}, {state},
                    last_rows_started = ?4, last_rows_ended = {NOW_US},
                    last_deletes = ?5, last_inserts = ?6, last_truncates = ?7, last_conflicts = ?8,
                    tables = ?9, excluded = ?10, rows_total = rows_total + ?5 + ?6, conflicts_total = conflicts_total + ?8,
                    updated_at = {NOW_US}
                 WHERE sync = ?1",
                alive = alive_columns(who),
                state = state_columns(plan, "?4"),
            ),
            params![plan.name().as_str(), who.pid, who.host, started, d, i, t, c, plan.tables.len() as i64, excluded_json(plan)],
        )
        .on_db(node.id, || "recording the run".into())?;
    Ok(())
}

/// Refreshes "last good" after empty runs and renews the lease, on every file.
/// A file busy past the busy timeout is skipped this time: a heartbeat is no
/// reason to make the sync Bad, and the next one (or the next run) renews.
pub fn record_idle(files: &Files, plan: &SyncPlan, who: &Replicator) -> Result<(), ReplicaError> {
    for node in &files.nodes {
        if let Err(e) = node.conn.execute_batch("BEGIN IMMEDIATE") {
            if crate::error::sqlite_busy(&e) {
                tracing::debug!(db = %node.id, "file busy; heartbeat skipped");
                continue;
            }
            return Err(ReplicaError::Sqlite { db: node.id, context: "recording the run".into(), source: e });
        }
        let result = (|| {
            lease::renew(&node.conn, node.id, plan.name(), &files.owner)?;
            node.conn
                .execute(
                    &format!(
                        "UPDATE dugong_sync_state SET replicator_pid = ?2, replicator_host = ?3, {alive}, {state},
                            tables = ?4, excluded = ?5, updated_at = {NOW_US}
                         WHERE sync = ?1",
                        alive = alive_columns(who),
                        state = state_columns(plan, NOW_US),
                    ),
                    params![plan.name().as_str(), who.pid, who.host, plan.tables.len() as i64, excluded_json(plan)],
                )
                .on_db(node.id, || "recording the run".into())?;
            Ok(())
        })();
        lease::finish(&node.conn, node.id, result)?;
    }
    Ok(())
}

/// Records a failed run on every connection given. Never fails.
pub fn record_bad(conns: &[(DbId, &Connection)], sync: &SyncName, who: &Replicator, started: SystemTime, error: &str) {
    for (id, conn) in conns {
        let result = conn
            .execute("INSERT OR IGNORE INTO dugong_sync_state (sync) VALUES (?1)", [sync.as_str()])
            .and_then(|_| {
                conn.execute(
                    &format!(
                        "UPDATE dugong_sync_state SET replicator_pid = ?2, replicator_host = ?3, {alive}, state = 'Bad',
                            last_bad_started = ?4, last_bad_ended = {NOW_US}, last_error = ?5, updated_at = {NOW_US}
                         WHERE sync = ?1",
                        alive = alive_columns(who)
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
pub fn record_stopped(files: &Files, sync: &SyncName) {
    for node in &files.nodes {
        let _ = node.conn.execute(
            &format!("UPDATE dugong_sync_state SET replicator_pid = NULL, updated_at = {NOW_US} WHERE sync = ?1"),
            [sync.as_str()],
        );
        lease::release(&node.conn, sync, &files.owner);
    }
}

/// Records the run's conflicts in every file's conflict log, in the run
/// transaction, with both versions of each row (a deleted one as JSON
/// `null`). A conflict already logged under its id is not logged twice.
pub(crate) fn log_conflicts(files: &Files, plan: &SyncPlan, conflicts: &[RunConflict]) -> Result<(), ReplicaError> {
    let now = micros(SystemTime::now());
    let version = |row: &crate::record::conflict::RowVersion| row.as_ref().map_or("null", |r| r.get()).to_string();
    for node in &files.nodes {
        let mut stmt = node
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO dugong_conflict_log (conflict_id, at, sync, table_name, key, kind, winner, loser,
                                                          winner_changed, loser_changed, winner_row, loser_row, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .on_db(node.id, || "recording conflicts".into())?;
        for c in conflicts {
            let key = serde_json::to_string(&c.key).unwrap_or_default();
            stmt.execute(rusqlite::params![
                c.id,
                now,
                plan.name().as_str(),
                c.table.name,
                key,
                c.kind.as_str(),
                c.winner.to_string(),
                c.loser.to_string(),
                c.winner_time,
                c.loser_time,
                version(&c.winner_row),
                version(&c.loser_row),
                c.reason
            ])
            .on_db(node.id, || "recording conflicts".into())?;
        }
    }
    Ok(())
}

/// After every file committed: move each source's positions past the run's
/// window and purge the change rows every sync and target has been delivered.
pub fn advance(files: &mut Files, sync: &SyncName) -> Result<(), ReplicaError> {
    let windows = std::mem::take(&mut files.windows);
    for node in files.nodes.iter_mut() {
        let Some(a) = windows.iter().find(|w| w.db == node.id) else { continue };
        let ctx = || "advancing the positions".to_string();
        node.conn.execute_batch("BEGIN IMMEDIATE").on_db(node.id, ctx)?;
        let result = (|| {
            node.conn
                .execute(
                    &format!("UPDATE dugong_cursor SET seq = max(seq, ?2), updated_at = {NOW_US} WHERE sync = ?1"),
                    rusqlite::params![sync.as_str(), a.to],
                )
                .on_db(node.id, ctx)?;
            // A table some sync holds is never purged: its change rows are
            // what ships when the hold is lifted.
            for (table, id) in &node.captures {
                node.conn
                    .execute(
                        &format!(
                            "DELETE FROM {} WHERE seq <= (SELECT min(seq) FROM dugong_cursor)
                               AND NOT EXISTS (SELECT 1 FROM dugong_held WHERE table_name = ?1)",
                            delta_name(*id)
                        ),
                        [&table.name],
                    )
                    .on_db(node.id, || "purging the change logs".into())?;
            }
            Ok(())
        })();
        lease::finish(&node.conn, node.id, result)?;
        for p in node.positions.values_mut() {
            *p = (*p).max(a.to);
        }
        node.sweep.retain(|t| !a.sweep.contains(t));
        node.cursor = node.window_start();
    }
    Ok(())
}

/// Best effort; a file whose transaction already ended is left alone.
pub fn rollback_all(files: &Files) {
    for n in &files.nodes {
        if !n.conn.is_autocommit() {
            let _ = n.conn.execute_batch("ROLLBACK");
        }
    }
}
