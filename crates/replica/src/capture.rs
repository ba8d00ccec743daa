//! Capturing changes — where replication starts: triggers on each source's
//! tables record which keys changed, in the application's own transaction,
//! into a change log per table. Each engine installs its own kind
//! (`engine::postgres::capture`: statement-level triggers into logs indexed by
//! transaction id; `engine::sqlite::capture`: row triggers numbering changes).
//! What they share: which database captures what, and what removing it all
//! reports.

use crate::plan::{SyncPlan, TableInfo};
use dugong_core::{DbId, SyncName, TableName};

/// What capture one database of a sync needs: a source captures the sync's
/// tables and keeps, in its change logs, a position per database its changes
/// go to — every other database of the sync, reachable now or not, so that a
/// site that is down finds its changes waiting when it returns; a target
/// captures nothing (it only receives).
///
/// A held table (not alike everywhere) is captured too, wherever it exists,
/// as that database describes it: its changes wait until it is alike, and
/// its hold is written down in the database, so that no purge takes its
/// change rows meanwhile and a replicator started after it matches again
/// still ships them all.
#[derive(Debug)]
pub struct Install<'a> {
    pub source: bool,
    pub tables: &'a [TableInfo],
    /// Held tables this database has, with why each is held.
    pub held: Vec<(TableInfo, String)>,
    pub sync: SyncName,
    /// The databases this one's changes go to, each with a position that
    /// starts now if it has none yet (sources only).
    pub targets: Vec<DbId>,
}

impl<'a> Install<'a> {
    pub fn for_database(plan: &'a SyncPlan, db: DbId) -> Install<'a> {
        let sync = &plan.sync;
        let held = plan
            .held
            .iter()
            .filter_map(|h| h.on.iter().find(|(d, _)| *d == db).map(|(_, t)| (t.clone(), h.reason.clone())))
            .collect();
        if sync.sources.contains(&db) {
            let targets = sync.databases().into_iter().filter(|d| *d != db).collect();
            Install { source: true, tables: &plan.tables, held, sync: sync.name.clone(), targets }
        } else {
            Install { source: false, tables: &[], held: Vec::new(), sync: sync.name.clone(), targets: Vec::new() }
        }
    }

    /// The held tables' names.
    pub fn held_names(&self) -> Vec<TableName> {
        self.held.iter().map(|(t, _)| t.name.clone()).collect()
    }
}

/// What removing capture took off one database.
#[derive(Debug, Clone, Default)]
pub struct Uninstalled {
    pub tables: Vec<String>,
    pub schema_dropped: bool,
}
