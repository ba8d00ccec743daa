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
//! `--dry-run` reads and decides, and writes nothing. [`report`]: what was
//! asked and what was done.

pub mod decide;
mod render;
pub mod report;

pub use render::render_text;
pub use report::{
    DatabaseWrites, KeyRepair, RepairOptions, RepairReport, SyncRepair, TableRepair, DEFAULT_BATCH, LISTED_KEYS,
};

use crate::engine::{self, postgres, EngineKind};
use crate::error::ReplicaError;
use crate::plan::{self, DbOrder};
use dugong_config::Config;

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
