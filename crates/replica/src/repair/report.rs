//! What `dugong repair` is asked ([`RepairOptions`]) and what it did
//! ([`RepairReport`]).

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
