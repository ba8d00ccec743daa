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
/// tables and keeps, in its change logs, a position per database its changes
/// go to — every other database of the sync, reachable now or not, so that a
/// site that is down finds its changes waiting when it returns; a target
/// captures nothing (it only receives).
#[derive(Debug)]
pub struct Install<'a> {
    pub source: bool,
    pub tables: &'a [TableInfo],
    pub sync: SyncName,
    /// The databases this one's changes go to, each with a position that
    /// starts now if it has none yet (sources only).
    pub targets: Vec<DbId>,
}

impl<'a> Install<'a> {
    pub fn for_database(sync: &Sync, tables: &'a [TableInfo], db: DbId) -> Install<'a> {
        if sync.sources.contains(&db) {
            let targets = sync.databases().into_iter().filter(|d| *d != db).collect();
            Install { source: true, tables, sync: sync.name.clone(), targets }
        } else {
            Install { source: false, tables: &[], sync: sync.name.clone(), targets: Vec::new() }
        }
    }
}

/// What removing capture took off one database.
#[derive(Debug, Clone, Default)]
pub struct Uninstalled {
    pub tables: Vec<String>,
    pub schema_dropped: bool,
}
