//! `dugong status`: the state of each sync, read from the databases themselves
//! (so it works from any machine, with or without a running replicator), shown
//! in Bucardo's two layouts or as JSON.
//!
//! - [`gather`] connects to every database of the shown syncs at once, reads
//!   each one's `dugong.sync_state` row, pending changes and lag (`read`), and
//!   merges them into a [`StatusReport`] (`merge`).
//! - [`render`]: pure functions from a report to Bucardo's summary table and
//!   detail block, plus Dugong's extra lines.
//!
//! Beyond Bucardo: a database that cannot be reached makes its sync `Bad`
//! (Bucardo keeps showing Good while a target is powered off), and each sync
//! shows its replication lag, pending changes, conflicts and excluded tables.

mod merge;
pub mod render;
#[cfg(test)]
mod tests;

use crate::engine::{postgres, sqlite};
use crate::error::{describe_pg, ReplicaError};
use crate::plan;
use crate::record::ReadError;
use chrono::{DateTime, Utc};
use dugong_config::{Config, Location};
use dugong_core::DbId;
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Client;

/// A standby replicator seen longer ago than this is not shown: it retries
/// every half second, so it is gone.
pub const STANDBY_SEEN: Duration = Duration::from_secs(10);

/// How long connecting to one database may take in all.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

/// How long one database may take to answer all of status's questions once
/// connected (connecting has its own 5 s timeout).
const READ_BUDGET: Duration = Duration::from_secs(15);

/// What `dugong status` shows: every shown sync, merged over its databases.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The pid of the running replicator with the newest heartbeat, if any runs.
    pub replicator_pid: Option<i32>,
    /// When the state was read, by the clock of the first database that answered.
    pub checked_at: DateTime<Utc>,
    /// Every shown sync is Good with all its databases reachable.
    pub healthy: bool,
    pub syncs: Vec<SyncStatus>,
}

/// One sync's state, merged over its reachable databases.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    pub name: String,
    /// What the State column shows: `Good`, `Bad` or `No records found`.
    pub state: String,
    /// The state the replicator last stored, before reachability is considered.
    pub stored_state: Option<String>,
    /// Good, and every database reachable and readable.
    pub healthy: bool,
    /// The last good run, empty runs included (as Bucardo counts them).
    pub last_good: Option<RunTimes>,
    /// The last run that moved rows.
    pub last_rows: Option<RunTimes>,
    pub last_bad: Option<RunTimes>,
    /// Rows deleted, inserted, tables truncated and conflicts decided by the
    /// last good run (Bucardo's Last I/D): 0 after an empty run.
    pub last_deletes: i64,
    pub last_inserts: i64,
    pub last_truncates: i64,
    pub last_conflicts: i64,
    pub last_error: Option<String>,
    /// Tables the sync replicates.
    pub tables: i32,
    /// Tables `tables: all` left out, each with its reason.
    pub excluded: Vec<String>,
    pub rows_total: i64,
    pub conflicts_total: i64,
    pub conflict_strategy: String,
    /// `onetimecopy` as configured: 0, 1 or 2.
    pub onetimecopy: u8,
    /// Where the tables are read from (Bucardo's "Source relgroup/database").
    pub source_database: String,
    /// Changes not yet shipped, over the sources that answered.
    pub pending: Option<i64>,
    /// Age of the oldest pending change, over the sources that answered
    /// (0 when nothing is pending; unknown without commit timestamps).
    pub lag_seconds: Option<f64>,
    /// `track_commit_timestamp` is on for every reachable source.
    pub commit_timestamps: Option<bool>,
    pub replicator: Option<ReplicatorStatus>,
    pub databases: Vec<DatabaseStatus>,
    /// The sync's `backlog_alert`: a source's change logs larger than this
    /// make it unhealthy (nothing is dropped).
    pub backlog_alert_bytes: u64,
    /// Tables with rows the replicator's background consistency check found
    /// different between the databases (PostgreSQL); any makes the sync
    /// unhealthy until `dugong repair` settles them.
    pub differing: Vec<crate::record::Divergence>,
    /// Advice for the operator (e.g. turn on commit timestamps).
    pub advice: Vec<String>,
}

/// When a run started and ended, and how long ago it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunTimes {
    pub started: Option<DateTime<Utc>>,
    pub ended: DateTime<Utc>,
    /// Seconds between `ended` and the reading database's `now()`.
    pub seconds_ago: f64,
    /// `ended − started`, when the start is known.
    pub duration_seconds: Option<f64>,
}

/// The replicator that last wrote the sync's state.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicatorStatus {
    /// Cleared when the replicator stopped cleanly.
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub heartbeat: Option<DateTime<Utc>>,
    pub heartbeat_seconds_ago: Option<f64>,
    /// How often it writes its heartbeat, when it said.
    pub heartbeat_interval_seconds: Option<f64>,
    /// A pid is recorded and its heartbeat is younger than three intervals.
    pub running: bool,
    /// Another replicator standing by to take the sync over, if one was seen
    /// lately.
    pub standby: Option<StandbyStatus>,
}

/// A replicator standing by for a sync another one runs.
#[derive(Debug, Clone, Serialize)]
pub struct StandbyStatus {
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub seen_seconds_ago: f64,
}

/// One database of a sync, as status saw it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    /// `db<id>`.
    pub name: String,
    pub id: u32,
    /// `source` or `target`.
    pub role: &'static str,
    pub reachable: bool,
    /// Why it is unreachable, or what could not be read (never a password).
    pub error: Option<String>,
    /// Dugong's schema is installed.
    pub installed: bool,
    /// Changes of the sync's other databases not yet applied here; unknown
    /// when a source that feeds it cannot say (unreachable, never prepared).
    pub pending: Option<i64>,
    /// Age of the oldest change not yet applied here (0 only when nothing is
    /// pending); unknown also without commit timestamps on a source.
    pub lag_seconds: Option<f64>,
    /// Why `pending` or `lag_seconds` is unknown.
    pub unknown: Option<String>,
    /// Its `track_commit_timestamp`.
    pub commit_timestamps: Option<bool>,
    /// On a source: the change rows its logs keep for the database that has
    /// applied the least of them; unknown when it cannot say.
    pub change_log_rows: Option<i64>,
    /// On a source: its change logs' size on disk, in bytes.
    pub change_log_bytes: Option<i64>,
    /// On a source: the databases its change logs keep changes for (that
    /// have not applied them yet).
    pub change_log_for: Vec<String>,
}

impl StatusReport {
    /// Some database of a shown sync could not be reached.
    pub fn unreachable(&self) -> bool {
        self.syncs.iter().any(|s| s.databases.iter().any(|d| !d.reachable))
    }
}

/// Reads the state of every sync of `config`, or only of the sync named `only`.
/// Only a configuration problem (an unknown sync) is an error: unreachable
/// databases are part of the report.
pub async fn gather(config: &Config, only: Option<&str>) -> Result<StatusReport, ReplicaError> {
    let syncs = plan::chosen_syncs(config, only)?;
    let mut ids: Vec<DbId> = Vec::new();
    for id in syncs.iter().flat_map(|s| s.databases()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // All at once, so a dead database costs one connect timeout in total. The
    // driver's own timeout covers connecting, not every name lookup: bound it.
    // SQLite files are opened when read.
    let connected = join_all(ids.iter().map(|id| async move {
        if let Some(Location::Sqlite(path)) = config.database(*id).map(|d| &d.location) {
            return (*id, Ok(Conn::Sqlite(path.clone())));
        }
        let result =
            match tokio::time::timeout(CONNECT_BUDGET, postgres::connect_as(config, *id, "dugong status")).await {
                Ok(Ok(client)) => Ok(Conn::Postgres(client)),
                Ok(Err(e)) => Err(describe_unreachable(&e)),
                Err(_) => Err(format!("no connection within {}s", CONNECT_BUDGET.as_secs())),
            };
        (*id, result)
    }))
    .await;
    let clients: HashMap<DbId, Result<Conn, String>> = connected.into_iter().collect();
    let mut statuses = Vec::with_capacity(syncs.len());
    for sync in syncs {
        let reads = join_all(sync.databases().into_iter().map(|id| {
            let client = &clients[&id];
            async move {
                let late = || ReadError::Unreachable(format!("no answer within {}s", READ_BUDGET.as_secs()));
                let result = match client {
                    Ok(Conn::Postgres(c)) => {
                        match tokio::time::timeout(READ_BUDGET, postgres::status::read_db(c, id, sync)).await {
                            Ok(r) => r,
                            Err(_) => Err(late()),
                        }
                    }
                    Ok(Conn::Sqlite(path)) => {
                        let (path, sync) = (path.clone(), sync.clone());
                        let read = tokio::task::spawn_blocking(move || sqlite::status::read_db(&path, id, &sync));
                        match tokio::time::timeout(READ_BUDGET, read).await {
                            Ok(Ok(r)) => r,
                            Ok(Err(e)) => Err(ReadError::Failed(format!("reading failed: {e}"))),
                            Err(_) => Err(late()),
                        }
                    }
                    Err(why) => Err(ReadError::Unreachable(why.clone())),
                };
                (id, result)
            }
        }))
        .await;
        let mut status = merge::sync_status(sync, reads);
        let pg: Vec<(DbId, &Client)> = sync
            .databases()
            .into_iter()
            .filter_map(|id| match &clients[&id] {
                Ok(Conn::Postgres(c)) => Some((id, c)),
                _ => None,
            })
            .collect();
        // Sites that insert on their own need interleaved sequences.
        if sync.sources.len() > 1 {
            status.0.advice.extend(postgres::setup::sequences::advice(&pg, sync.databases().len()).await);
        }
        differing(&mut status.0, &pg, sync).await;
        statuses.push(status);
    }
    Ok(merge::report(statuses))
}

/// Rows the replicator's consistency check recorded as different: the sync
/// is not healthy while any are, and the advice says how to settle them.
async fn differing(status: &mut SyncStatus, pg: &[(DbId, &Client)], sync: &dugong_config::Sync) {
    status.differing = postgres::consistency::recorded(pg, sync.name.as_str()).await;
    for d in &status.differing {
        status.healthy = false;
        status.advice.push(format!(
            "{} rows of {} differ between the databases (found by the replicator's consistency check; not changes in flight): `dugong repair --sync {} --table {} --dry-run` lists them, and without --dry-run settles them (the later commit wins)",
            d.rows, d.table, sync.name, d.table
        ));
    }
}

/// A database status reads: a PostgreSQL connection, or a SQLite file.
enum Conn {
    Postgres(Client),
    Sqlite(std::path::PathBuf),
}

/// Why a database cannot be reached: where it is and what the connection said,
/// without the password.
fn describe_unreachable(err: &ReplicaError) -> String {
    match err {
        ReplicaError::Unreachable { target, source, .. } | ReplicaError::Refused { target, source, .. } => {
            format!("{target}: {}", describe_pg(source))
        }
        other => other.to_string(),
    }
}
