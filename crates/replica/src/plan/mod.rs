//! What a sync replicates — the first stage, and the one every later stage
//! reads: the sync as configured, the tables chosen and checked on its
//! databases (`tables`), the order in which databases win ties, and what an
//! initial copy does (`copy`). No I/O: each engine reads its databases'
//! catalogs and hands them here.

pub mod copy;
pub mod tables;

pub use tables::{schema_changed, Column, Excluded, TableInfo};

use crate::error::ReplicaError;
use dugong_config::{Config, Sync};
use dugong_core::{DbId, SyncName};
use tables::CatalogRow;

/// The syncs an operator asked about: every sync of `config`, or only the one
/// named `only` (an unknown name is an error listing the syncs there are).
pub fn chosen_syncs<'c>(config: &'c Config, only: Option<&str>) -> Result<Vec<&'c Sync>, ReplicaError> {
    let Some(name) = only else { return Ok(config.syncs.iter().collect()) };
    let sync = config.sync(name).ok_or_else(|| {
        let names: Vec<&str> = config.syncs.iter().map(|s| s.name.as_str()).collect();
        ReplicaError::Config(format!(
            "no sync named {name:?} in {}; the syncs are: {}",
            config.path.display(),
            names.join(", ")
        ))
    })?;
    Ok(vec![sync])
}

/// A sync as the replicator runs it: what it replicates and how ties go.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    pub sync: Sync,
    /// The replicated tables, as the sync's first database describes them.
    pub tables: Vec<TableInfo>,
    /// Tables `tables: all` left out, each with its reason.
    pub excluded: Vec<Excluded>,
    pub order: DbOrder,
}

impl SyncPlan {
    /// The plan of `sync` from its databases' catalogs; refuses a schema
    /// mismatch, naming every difference.
    pub fn new(config: &Config, sync: &Sync, selection: Selection) -> Result<SyncPlan, ReplicaError> {
        selection.require_same()?;
        Ok(SyncPlan {
            sync: sync.clone(),
            tables: selection.tables,
            excluded: selection.excluded,
            order: DbOrder::new(config.databases.iter().map(|d| d.id).collect()),
        })
    }

    pub fn name(&self) -> &SyncName {
        &self.sync.name
    }

    /// Checks the selection made now against the plan: the same tables with
    /// the same shape on the reference database, and every other database
    /// agreeing with them.
    pub fn check_unchanged(&self, now: Selection, reference: DbId) -> Result<(), ReplicaError> {
        if now.tables != self.tables || now.excluded != self.excluded {
            return Err(schema_changed(&self.tables, &now.tables, reference));
        }
        now.require_same()
    }
}

/// The sync's tables as its first database describes them, and how the
/// others differ.
#[derive(Debug, Clone)]
pub struct Selection {
    pub tables: Vec<TableInfo>,
    pub excluded: Vec<Excluded>,
    /// Every difference of another database from the first, each naming the
    /// table and column; empty when they all match.
    pub problems: Vec<String>,
}

impl Selection {
    /// A schema mismatch naming every difference, if there is one.
    pub fn require_same(&self) -> Result<(), ReplicaError> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(ReplicaError::SchemaMismatch(self.problems.join("; ")))
    }
}

/// Chooses the sync's tables on the first of `catalogs` (the reference) and
/// checks every other database's catalog against them.
pub(crate) fn select(catalogs: &[(DbId, Vec<CatalogRow>)], sync: &Sync) -> Result<Selection, ReplicaError> {
    let (reference, first) = catalogs.first().ok_or_else(|| {
        ReplicaError::Config(format!("syncs[{}] has no databases to read its tables from", sync.index))
    })?;
    let field = format!("syncs[{}].tables", sync.index);
    let (tables, excluded) = tables::select_from(first, *reference, &sync.tables, &field)?;
    let problems =
        catalogs[1..].iter().flat_map(|(id, catalog)| tables::differences(catalog, *id, *reference, &tables)).collect();
    Ok(Selection { tables, excluded, problems })
}

/// The order in which databases win ties: their position in the configuration.
#[derive(Debug, Clone)]
pub struct DbOrder(Vec<DbId>);

impl DbOrder {
    pub fn new(ids: Vec<DbId>) -> Self {
        DbOrder(ids)
    }

    /// The database's place in the order; databases not listed come last.
    pub fn rank(&self, db: DbId) -> usize {
        self.0.iter().position(|d| *d == db).unwrap_or(usize::MAX)
    }
}
