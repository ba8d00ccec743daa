//! The run state `dugong status` reads: written by the replicator to every
//! database of a sync (table `dugong.sync_state`), so status works from any
//! machine that reaches any of them, with or without a running replicator.

use crate::error::{describe_pg, ReplicaError, StatementContext};
use crate::prepare::Prepared;
use crate::run::RunOutcome;
use dugong_core::{DbId, SyncName};
use futures_util::future::try_join_all;
use std::time::SystemTime;
use tokio_postgres::Client;

/// Who is replicating: shown as "PID of Dugong replicator".
#[derive(Debug, Clone)]
pub struct Replicator {
    pub pid: i32,
    pub host: String,
}

impl Replicator {
    pub fn this_process() -> Replicator {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        Replicator { pid: std::process::id() as i32, host }
    }
}

const UPSERT: &str = "INSERT INTO dugong.sync_state (sync) VALUES ($1) ON CONFLICT (sync) DO NOTHING";

/// Records a good run on every database of the sync (its state row exists from
/// `prepare`). Empty runs only refresh
/// "last good" (Bucardo shows them as Good too); runs that moved rows also
/// replace the last I/D counts.
pub async fn record_good(p: &Prepared, who: &Replicator, outcome: &RunOutcome) -> Result<(), ReplicaError> {
    let started = outcome.started.unwrap_or_else(SystemTime::now);
    let moved =
        !outcome.empty && (outcome.inserts + outcome.deletes + outcome.truncates > 0 || !outcome.conflicts.is_empty());
    let excluded: Vec<String> = p.excluded.iter().map(|e| format!("{} ({})", e.table, e.reason)).collect();
    let tables = p.tables.len() as i32;
    let commit_ts = p.without_commit_timestamps().is_empty();
    let (d, i, t, c) =
        (outcome.deletes as i64, outcome.inserts as i64, outcome.truncates as i64, outcome.conflicts.len() as i64);
    let started_s = to_epoch(started);
    let sync = p.name().as_str();
    if !moved {
        let sql =
            "UPDATE dugong.sync_state SET replicator_pid = $2, replicator_host = $3, heartbeat = now(), state = 'Good',
            last_good_started = to_timestamp($4), last_good_ended = now(),
            tables = $5, excluded = $6, commit_timestamps = $7, updated_at = now()
         WHERE sync = $1";
        try_join_all(p.nodes.iter().map(|node| async {
            node.client
                .execute(sql, &[&sync, &who.pid, &who.host, &started_s, &tables, &excluded, &commit_ts])
                .await
                .on_db(node.id, || "recording the run".into())
        }))
        .await?;
        return Ok(());
    }
    let sql = {
        "UPDATE dugong.sync_state SET replicator_pid = $2, replicator_host = $3, heartbeat = now(), state = 'Good',
            last_good_started = to_timestamp($4), last_good_ended = now(),
            last_rows_started = to_timestamp($4), last_rows_ended = now(),
            last_deletes = $5, last_inserts = $6, last_truncates = $7, last_conflicts = $8,
            tables = $9, excluded = $10, rows_total = rows_total + $5 + $6, conflicts_total = conflicts_total + $8,
            commit_timestamps = $11, updated_at = now()
         WHERE sync = $1"
    };
    try_join_all(p.nodes.iter().map(|node| async {
        node.client
            .execute(sql, &[&sync, &who.pid, &who.host, &started_s, &d, &i, &t, &c, &tables, &excluded, &commit_ts])
            .await
            .on_db(node.id, || "recording the run".into())
    }))
    .await?;
    Ok(())
}

/// Records a failed run on every database of the sync that can be reached.
/// Never fails: the databases that are down are what the error is about.
pub async fn record_bad(
    clients: &[(DbId, &Client)],
    sync: &SyncName,
    who: &Replicator,
    started: SystemTime,
    error: &str,
) {
    let started_s = to_epoch(started);
    for (id, client) in clients {
        let result = async {
            client.execute(UPSERT, &[&sync.as_str()]).await?;
            client
                .execute(
                    "UPDATE dugong.sync_state SET replicator_pid = $2, replicator_host = $3, heartbeat = now(), state = 'Bad',
                        last_bad_started = to_timestamp($4), last_bad_ended = now(), last_error = $5, updated_at = now()
                     WHERE sync = $1",
                    &[&sync.as_str(), &who.pid, &who.host, &started_s, &error],
                )
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(db = %id, sync = %sync, error = %describe_pg(&e), "could not record the failed run");
        }
    }
}

/// Marks the sync as not running on every database (the replicator stopped).
pub async fn record_stopped(p: &Prepared) {
    for node in &p.nodes {
        let _ = node
            .client
            .execute(
                "UPDATE dugong.sync_state SET replicator_pid = NULL, updated_at = now() WHERE sync = $1",
                &[&p.name().as_str()],
            )
            .await;
    }
}

fn to_epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
