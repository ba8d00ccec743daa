//! The run state `dugong status` reads: written by the replicator to every
//! database of a sync (table `dugong.sync_state`), so status works from any
//! machine that reaches any of them, with or without a running replicator.

use crate::error::{describe_pg, ReplicaError, StatementContext};
use crate::prepare::Prepared;
use crate::run::RunOutcome;
use dugong_core::quote_literal;
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

/// Refreshes "last good" after an empty run (the heartbeat: Bucardo shows empty
/// runs as Good too), on every database of the sync. Runs that moved rows record
/// their state inside their own transactions ([`good_run_sql`]).
pub async fn record_idle(p: &Prepared) -> Result<(), ReplicaError> {
    let sql = format!(
        "UPDATE dugong.sync_state SET replicator_pid = {pid}, replicator_host = {host}, heartbeat = now(), state = 'Good',
            last_good_started = now(), last_good_ended = now(), tables = {tables}, excluded = {excluded},
            commit_timestamps = {commit_ts}, updated_at = now()
         WHERE sync = {sync}",
        pid = p.who.pid,
        host = quote_literal(&p.who.host),
        tables = p.tables.len(),
        excluded = excluded_literal(p),
        commit_ts = p.without_commit_timestamps().is_empty(),
        sync = quote_literal(p.name().as_str()),
    );
    try_join_all(
        p.nodes
            .iter()
            .map(|node| async { node.client.batch_execute(&sql).await.on_db(node.id, || "recording the run".into()) }),
    )
    .await?;
    Ok(())
}

/// The statement that records a run that moved rows, executed in each
/// database's run transaction just before it commits.
pub fn good_run_sql(p: &Prepared, outcome: &RunOutcome) -> String {
    let started = to_epoch(outcome.started.unwrap_or_else(SystemTime::now));
    let (d, i, t, c) = (outcome.deletes, outcome.inserts, outcome.truncates, outcome.conflicts.len());
    format!(
        "UPDATE dugong.sync_state SET replicator_pid = {pid}, replicator_host = {host}, heartbeat = now(), state = 'Good',
            last_good_started = to_timestamp({started}), last_good_ended = now(),
            last_rows_started = to_timestamp({started}), last_rows_ended = now(),
            last_deletes = {d}, last_inserts = {i}, last_truncates = {t}, last_conflicts = {c},
            tables = {tables}, excluded = {excluded}, rows_total = rows_total + {d} + {i},
            conflicts_total = conflicts_total + {c}, commit_timestamps = {commit_ts}, updated_at = now()
         WHERE sync = {sync}",
        pid = p.who.pid,
        host = quote_literal(&p.who.host),
        tables = p.tables.len(),
        excluded = excluded_literal(p),
        commit_ts = p.without_commit_timestamps().is_empty(),
        sync = quote_literal(p.name().as_str()),
    )
}

fn excluded_literal(p: &Prepared) -> String {
    let items: Vec<String> = p.excluded.iter().map(|e| quote_literal(&format!("{} ({})", e.table, e.reason))).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
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
