//! `dugong repair`: makes databases that diverged outside the replicator
//! (manual fixes, restored backups, rows written before capture was
//! installed) identical again.
//!
//! Per table, the checksums of `compare` say whether anything differs; if
//! so, every database streams its keys and row hashes in one order and the
//! merge of `diff` yields each differing key, in constant memory whatever the
//! table's size. Keys are settled in batches: each database's version is
//! read (and locked), [`decide`] picks the winner, and the losers take it in
//! a transaction with `session_replication_role = replica` (nothing echoes
//! back as a change), which also records every change in the conflict log,
//! like a conflict: both versions, who won and why (`dugong conflicts` lists
//! them, and `restore` undoes one). Keys with changes waiting in a change log
//! are replication in flight: left to the replicator, and counted.
//! `--dry-run` reads and decides, and writes nothing.

pub mod decide;
mod render;

pub use render::render_text;

use crate::engine::{self, postgres, EngineKind};
use crate::error::ReplicaError;
use crate::plan::{self, DbOrder};
use dugong_config::Config;
use dugong_core::DbId;
use serde::Serialize;

/// How many differing keys are settled per transaction.
pub const DEFAULT_BATCH: usize = 1000;

/// How many settled keys each table lists in the report.
pub const LISTED_KEYS: usize = 10;

/// What `dugong repair` was asked to do.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// One sync, or every sync of the configuration.
    pub sync: Option<String>,
    /// One table (`schema.name`, or a bare name in any schema).
    pub table: Option<String>,
    /// Decide and report, write nothing.
    pub dry_run: bool,
    /// This database's version wins everywhere (its missing rows are deleted elsewhere).
    pub source: Option<DbId>,
    pub batch: usize,
}

impl Default for RepairOptions {
    fn default() -> Self {
        RepairOptions { sync: None, table: None, dry_run: false, source: None, batch: DEFAULT_BATCH }
    }
}

/// What repair did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    pub syncs: Vec<SyncRepair>,
}

impl RepairReport {
    /// Some sync could not be repaired because a database could not be reached.
    pub fn unreachable(&self) -> bool {
        self.syncs.iter().any(|s| s.unreachable)
    }

    /// Some sync or table could not be repaired.
    pub fn errors(&self) -> bool {
        self.syncs.iter().any(|s| s.error.is_some() || s.tables.iter().any(|t| t.problem.is_some()))
    }

    /// Keys left to the replicator because they were changing.
    pub fn changing(&self) -> u64 {
        self.syncs.iter().flat_map(|s| &s.tables).map(|t| t.changing).sum()
    }
}

/// One sync's repair.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRepair {
    pub name: String,
    pub databases: Vec<String>,
    pub error: Option<String>,
    pub unreachable: bool,
    pub tables: Vec<TableRepair>,
}

/// One table's repair.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableRepair {
    pub table: String,
    pub key_columns: Vec<String>,
    /// Keys that differed when read.
    pub differing: u64,
    /// Keys settled (written, or to be written on a dry run).
    pub settled: u64,
    /// Keys with changes waiting in a change log: left to the replicator.
    pub changing: u64,
    /// Per database: rows it took or lost.
    pub writes: Vec<DatabaseWrites>,
    /// The first settled keys.
    pub keys: Vec<KeyRepair>,
    /// Why the table could not be repaired (a schema difference…).
    pub problem: Option<String>,
}

/// What one database took in one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseWrites {
    pub database: String,
    /// Rows it did not have.
    pub inserted: u64,
    /// Rows replaced by another database's version.
    pub updated: u64,
    /// Rows deleted (only with `--source`).
    pub deleted: u64,
}

/// One key settled.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRepair {
    pub key: Vec<String>,
    pub winner: String,
    /// Each database that took the winner's version, with why.
    pub losers: Vec<(String, String)>,
}

/// Repairs every sync of `config` (or the one asked for).
pub async fn repair(config: &Config, options: &RepairOptions) -> Result<RepairReport, ReplicaError> {
    let syncs = plan::chosen_syncs(config, options.sync.as_deref())?;
    if let Some(src) = options.source {
        if let Some(s) = syncs.iter().find(|s| !s.databases().contains(&src)) {
            return Err(ReplicaError::Config(format!("--source {src}: {} has no database {src}", s.name)));
        }
    }
    let order = DbOrder::new(config.databases.iter().map(|d| d.id).collect());
    let mut out = Vec::with_capacity(syncs.len());
    for sync in syncs {
        let ids = sync.databases();
        let mut result = SyncRepair {
            name: sync.name.to_string(),
            databases: ids.iter().map(ToString::to_string).collect(),
            error: None,
            unreachable: false,
            tables: Vec::new(),
        };
        let repaired = match engine::kind_of(config, sync)? {
            EngineKind::Postgres => postgres::repair::repair_sync(config, sync, options, &order).await,
            EngineKind::Sqlite => Err(ReplicaError::Config(format!(
                "{}: repair works between PostgreSQL databases; for SQLite files, copy the file of the site you trust over the other",
                sync.name
            ))),
        };
        match repaired {
            Ok(tables) => result.tables = tables,
            Err(e) => {
                result.unreachable = e.is_unreachable();
                result.error = Some(e.to_string());
            }
        }
        out.push(result);
    }
    Ok(RepairReport { dry_run: options.dry_run, syncs: out })
}
