//! `dugong ddl` on PostgreSQL: one schema statement on every database of the
//! chosen syncs, all or none.
//!
//! The statement runs in an open transaction on every database first, and
//! commits only once it succeeded everywhere: a site that refuses it leaves
//! every site as it was. A table the statement creates that a sync
//! replicates gets its capture in the same transaction, so a row written into
//! it the moment it exists is captured. The statement's locks make the
//! replicator's runs wait on the changed tables while it applies; each run
//! reads the tables' shape in its own snapshot, so no row of the new shape
//! ships with the old column list — the sync prepares again and ships it.
//!
//! A run that holds a table on one site while the statement waits for it
//! there, and waits for the statement's lock on another, would deadlock
//! across servers: the statement gives up after the lock timeout, rolls back
//! everywhere and tries again.

use super::capture::{install_table, INSTALL_LOCK};
use super::catalog;
use super::connect::connect_as;
use crate::error::{Backoff, ReplicaError, StatementContext};
use dugong_config::{Config, Sync};
use dugong_core::{DbId, TableName};
use futures_util::future::join_all;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// How a statement is applied.
#[derive(Debug, Clone)]
pub struct DdlOptions {
    /// How long the statement waits for a lock on one database before the
    /// attempt rolls back everywhere (an application's long transaction, or
    /// a replicator run holding the table elsewhere).
    pub lock_timeout: Duration,
    /// Attempts before giving up on busy locks.
    pub attempts: u32,
}

impl Default for DdlOptions {
    fn default() -> Self {
        DdlOptions { lock_timeout: Duration::from_secs(2), attempts: 10 }
    }
}

/// What applying a statement did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Each database, in order, with how long the statement took there.
    pub sites: Vec<(DbId, Duration)>,
    /// Tables the statement created that a sync replicates, each with a
    /// database it was captured on in the same transaction.
    pub captured: Vec<(TableName, DbId)>,
    /// Tables not alike on every database after the statement, with why.
    pub held: Vec<String>,
    /// Attempts it took (busy locks roll back and try again).
    pub attempts: u32,
}

/// Why a statement was not applied everywhere.
#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    #[error("{0}")]
    Config(String),
    #[error("{} — nothing was changed: a schema change goes to every site at once", describe(.0))]
    Unreachable(Vec<ReplicaError>),
    #[error("{db} refused the statement: {why}. Nothing was changed on any site")]
    Statement { db: DbId, why: String },
    #[error("{db}: a lock the statement needs stayed busy through {attempts} attempts ({why}). Nothing was changed on any site; run it again when the long transactions holding the table have ended, or raise --lock-timeout")]
    Busy { db: DbId, attempts: u32, why: String },
    #[error("the statement committed on {} but not on {} ({why}). The replicator holds the tables that differ until every site has the change: run the same statement with --database {} (the sites that have it are left as they are)", list(.committed), list(.left), ids(.left))]
    Partial { committed: Vec<DbId>, left: Vec<DbId>, why: String },
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

fn describe(errors: &[ReplicaError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn list(dbs: &[DbId]) -> String {
    dbs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn ids(dbs: &[DbId]) -> String {
    dbs.iter().map(|d| d.0.to_string()).collect::<Vec<_>>().join(",")
}

/// Applies `sql` on every database of `syncs`, all or none.
pub async fn apply(config: &Config, syncs: &[&Sync], sql: &str, options: &DdlOptions) -> Result<Applied, DdlError> {
    let mut dbs: Vec<DbId> = Vec::new();
    for id in syncs.iter().flat_map(|s| s.databases()) {
        if !dbs.contains(&id) {
            dbs.push(id);
        }
    }
    let connected = join_all(dbs.iter().map(|id| connect_as(config, *id, "dugong ddl"))).await;
    let mut clients = Vec::with_capacity(dbs.len());
    let mut unreachable = Vec::new();
    for (id, c) in dbs.iter().zip(connected) {
        match c {
            Ok(c) => clients.push((*id, c)),
            Err(e) => unreachable.push(e),
        }
    }
    if !unreachable.is_empty() {
        return Err(DdlError::Unreachable(unreachable));
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match attempt_once(&clients, syncs, sql, options).await {
            Ok(mut report) => {
                report.attempts = attempt;
                return Ok(report);
            }
            Err(Attempt::Busy { db, why }) if attempt < options.attempts => {
                tracing::info!(db = %db, attempt, error = %why, "a lock the statement needs is busy; trying again");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(Attempt::Busy { db, why }) => return Err(DdlError::Busy { db, attempts: attempt, why }),
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
}

/// Why one attempt ended without committing.
enum Attempt {
    /// A lock could not be taken in time (or a deadlock was broken): nothing
    /// changed, try again.
    Busy {
        db: DbId,
        why: String,
    },
    Failed(DdlError),
}

/// One attempt: the statement in a transaction on every database, capture
/// for new tables, then the commits in order.
async fn attempt_once(
    clients: &[(DbId, Client)],
    syncs: &[&Sync],
    sql: &str,
    options: &DdlOptions,
) -> Result<Applied, Attempt> {
    let mut report = Applied::default();
    let mut open: Vec<&(DbId, Client)> = Vec::new();
    let outcome = async {
        for entry in clients {
            let (id, client) = entry;
            let begin = format!("BEGIN; SET LOCAL lock_timeout = {}", options.lock_timeout.as_millis().max(1));
            client.batch_execute(&begin).await.map_err(|e| statement_failed(*id, "starting the transaction", e))?;
            open.push(entry);
            let clock = Instant::now();
            client.batch_execute(sql).await.map_err(|e| statement_failed(*id, "the statement", e))?;
            report.sites.push((*id, clock.elapsed()));
        }
        for sync in syncs {
            capture_new_tables(clients, sync, &mut report).await.map_err(|e| Attempt::Failed(DdlError::Replica(e)))?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        for (_, client) in &open {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        return Err(e);
    }
    let mut committed: Vec<DbId> = Vec::new();
    for (id, client) in clients {
        if let Err(e) = client.batch_execute("COMMIT").await {
            let failed = (*id, crate::describe_pg(&e));
            // The others are still open: roll them back, so at most the
            // committed ones differ.
            for (other, c) in clients.iter().filter(|(other, _)| *other != *id && !committed.contains(other)) {
                let _ = c.batch_execute("ROLLBACK").await;
                tracing::debug!(db = %other, "rolled back after a failed commit elsewhere");
            }
            if committed.is_empty() {
                return Err(Attempt::Failed(DdlError::Statement { db: failed.0, why: failed.1 }));
            }
            let left: Vec<DbId> = clients.iter().map(|(d, _)| *d).filter(|d| !committed.contains(d)).collect();
            return Err(Attempt::Failed(DdlError::Partial {
                committed,
                left,
                why: format!("{}: {}", failed.0, failed.1),
            }));
        }
        committed.push(*id);
    }
    Ok(report)
}

/// An error of the statement on `db`: a busy lock or a broken deadlock is
/// worth another attempt; anything else is the statement's own.
fn statement_failed(db: DbId, what: &str, e: tokio_postgres::Error) -> Attempt {
    let busy = [SqlState::LOCK_NOT_AVAILABLE, SqlState::T_R_DEADLOCK_DETECTED, SqlState::T_R_SERIALIZATION_FAILURE];
    let why = crate::describe_pg(&e);
    if e.code().is_some_and(|c| busy.contains(c)) {
        return Attempt::Busy { db, why };
    }
    if e.as_db_error().is_none() {
        return Attempt::Failed(DdlError::Replica(ReplicaError::Statement { db, context: what.into(), source: e }));
    }
    Attempt::Failed(DdlError::Statement { db, why })
}

/// Installs capture, in the open transactions, on the tables `sync`
/// replicates now that its sources do not capture yet (tables the statement
/// created). Databases the replicator never prepared are left alone: its
/// first start installs everything.
async fn capture_new_tables(clients: &[(DbId, Client)], sync: &Sync, report: &mut Applied) -> Result<(), ReplicaError> {
    let refs: Vec<(DbId, &Client)> =
        clients.iter().filter(|(id, _)| sync.databases().contains(id)).map(|(id, c)| (*id, c)).collect();
    let selection = catalog::select(&refs, sync).await?;
    for (id, client) in refs.iter().filter(|(id, _)| sync.sources.contains(id)) {
        let installed: bool = client
            .query_one("SELECT to_regclass('dugong.captured') IS NOT NULL", &[])
            .await
            .on_db(*id, || "looking for Dugong's schema".into())?
            .get(0);
        if !installed {
            continue;
        }
        let rows = client
            .query("SELECT table_schema, table_name FROM dugong.captured", &[])
            .await
            .on_db(*id, || "reading the captured tables".into())?;
        let captured: Vec<TableName> =
            rows.iter().map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))).collect();
        let new: Vec<_> = selection.tables.iter().filter(|t| !captured.contains(&t.name)).collect();
        if new.is_empty() {
            continue;
        }
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
            .await
            .on_db(*id, || "waiting for the install lock".into())?;
        for table in new {
            install_table(*client, *id, table).await?;
            report.captured.push((table.name.clone(), *id));
        }
    }
    report.held.extend(selection.held.iter().map(|h| format!("{}: {}", h.table, h.reason)));
    Ok(())
}
