//! `dugong compare`: proves (or disproves) that every synced table holds the
//! same rows on every database of its sync.
//!
//! Per table, each database first computes its row count and an
//! order-independent checksum (a sum of 60-bit slices of each row's md5) —
//! nothing but two numbers crosses the network. Only when those differ does
//! each database stream `(md5 of key, md5 of row, key)` ordered by the key's
//! md5, and `merge` joins the streams to name the keys that are missing or
//! differ: the first `limit` of them and the totals, keys only (never other
//! column values). Memory stays constant whatever the table size.
//!
//! Rows are compared as PostgreSQL prints them, with the session settings every
//! Dugong connection uses (UTC, ISO dates, full float precision, hex bytea), so
//! equal values print equally on every server. Tables that change while they
//! are compared can show transient differences: compare when writes are quiet.

mod render;

use crate::engine::{self, postgres, sqlite, EngineKind};
use crate::error::ReplicaError;
use crate::plan;
use dugong_config::{Config, Sync};
use serde::Serialize;

pub use crate::diff::{KeyDifference, MissingCount, RowCount, TableComparison, Uncompared};
pub use render::render_text;

/// How many differing keys each table lists by default.
pub const DEFAULT_LIMIT: usize = 10;

/// The comparison of every shown sync.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// Every compared table is identical on every database.
    pub identical: bool,
    /// Some sync could not be compared (see its `error`).
    pub errors: bool,
    pub syncs: Vec<SyncComparison>,
}

impl CompareReport {
    /// Some sync could not be compared because a database could not be reached.
    pub fn unreachable(&self) -> bool {
        self.syncs.iter().any(|s| s.unreachable)
    }
}

/// One sync's tables, compared across its databases.
#[derive(Debug, Clone, Serialize)]
pub struct SyncComparison {
    pub name: String,
    pub databases: Vec<String>,
    /// Why the sync could not be compared (an unreachable database…).
    pub error: Option<String>,
    /// It could not be compared because a database could not be reached.
    pub unreachable: bool,
    pub tables: Vec<TableComparison>,
}

/// Compares every sync of `config`, or only the one named `only`. An unknown
/// sync name is an error; an unreachable database is reported in its sync.
pub async fn compare(config: &Config, only: Option<&str>, limit: usize) -> Result<CompareReport, ReplicaError> {
    let syncs = plan::chosen_syncs(config, only)?;
    let mut out = Vec::with_capacity(syncs.len());
    for sync in syncs {
        out.push(compare_sync(config, sync, limit).await);
    }
    Ok(CompareReport {
        identical: out.iter().all(|s| s.error.is_none() && s.tables.iter().all(|t| t.identical)),
        errors: out.iter().any(|s| s.error.is_some()),
        syncs: out,
    })
}

/// Compares one sync's tables; any failure lands in `error`.
pub async fn compare_sync(config: &Config, sync: &Sync, limit: usize) -> SyncComparison {
    let ids = sync.databases();
    let mut result = SyncComparison {
        name: sync.name.to_string(),
        databases: ids.iter().map(ToString::to_string).collect(),
        error: None,
        unreachable: false,
        tables: Vec::new(),
    };
    let compared = match engine::kind_of(config, sync) {
        Ok(EngineKind::Sqlite) => sqlite::compare::compare_tables(config, sync, &ids, limit).await,
        Ok(EngineKind::Postgres) => postgres::compare::compare_tables(config, sync, &ids, limit).await,
        Err(e) => Err(Uncompared::from(e.to_string())),
    };
    match compared {
        Ok(tables) => result.tables = tables,
        Err(e) => {
            result.error = Some(e.why);
            result.unreachable = e.unreachable;
        }
    }
    result
}
