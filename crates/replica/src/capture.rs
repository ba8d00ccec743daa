//! Capturing changes — where replication starts: triggers on each source's
//! tables record which keys changed, in the application's own transaction,
//! into a change log per table. Each engine installs its own kind
//! (`engine::postgres::capture`: statement-level triggers into logs indexed by
//! transaction id; `engine::sqlite::capture`: row triggers numbering changes).
//! What they share: which database captures what, and what removing it all
//! reports.

use crate::plan::TableInfo;
use dugong_config::Sync;
use dugong_core::{DbId, SyncName};

/// What capture one database of a sync needs: a source captures the sync's
/// tables and keeps a position for the sync in its change logs; a target
/// captures nothing (it only receives).
#[derive(Debug)]
pub struct Install<'a> {
    pub source: bool,
    pub tables: &'a [TableInfo],
    /// Syncs whose position starts now, if they have none yet.
    pub positions: Vec<SyncName>,
}

impl<'a> Install<'a> {
    pub fn for_database(sync: &Sync, tables: &'a [TableInfo], db: DbId) -> Install<'a> {
        if sync.sources.contains(&db) {
            Install { source: true, tables, positions: vec![sync.name.clone()] }
        } else {
            Install { source: false, tables: &[], positions: Vec::new() }
        }
    }
}

/// What removing capture took off one database.
#[derive(Debug, Clone, Default)]
pub struct Uninstalled {
    pub tables: Vec<String>,
    pub schema_dropped: bool,
}
