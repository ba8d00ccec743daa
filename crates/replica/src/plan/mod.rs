//! What a sync replicates — the first stage, and the one every later stage
//! reads: the sync as configured, the tables chosen and checked on its
//! databases (`tables`), the order in which databases win ties, and what an
//! initial copy does (`copy`). No I/O: each engine reads its databases'
//! catalogs and hands them here.

pub mod copy;
pub mod tables;

pub use tables::{schema_changed, Column, Excluded, TableInfo};

use crate::error::ReplicaError;
use dugong_config::{Config, Sync, TableSelection};
use dugong_core::{DbId, SyncName, TableName};
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

/// Refuses a configuration in which a database receives one sync's changes
/// and is a source of another sync over the same tables: rows a sync applies
/// are applied without capture (that is what keeps them from echoing back),
/// so the other sync would never pass them on — silently. Names the database,
/// both syncs and what to do instead.
pub fn check_no_cascade(config: &Config) -> Result<(), ReplicaError> {
    for receiving in &config.syncs {
        for db in receiving.databases() {
            // It receives when another database of the sync is a source.
            if !receiving.sources.iter().any(|s| *s != db) {
                continue;
            }
            for sending in config.syncs.iter().filter(|s| s.index != receiving.index && s.sources.contains(&db)) {
                if sending.databases().len() < 2 || !overlap(&receiving.tables, &sending.tables) {
                    continue;
                }
                let onward: Vec<String> =
                    sending.databases().into_iter().filter(|d| *d != db).map(|d| d.to_string()).collect();
                return Err(ReplicaError::Config(format!(
                    "{db} receives the changes of {} and is a source of {} over the same tables: rows {} applies to {db} are applied without capture (so they never echo back), so {} would never pass them on to {}. Put these databases in one sync (sources of one master-master sync), or let the two syncs replicate different tables",
                    receiving.name,
                    sending.name,
                    receiving.name,
                    sending.name,
                    onward.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Whether two table selections may name a common table.
fn overlap(a: &TableSelection, b: &TableSelection) -> bool {
    match (a, b) {
        (TableSelection::List(a), TableSelection::List(b)) => a.iter().any(|x| {
            b.iter().any(|y| {
                x.name.eq_ignore_ascii_case(&y.name)
                    && (x.schema.is_none()
                        || y.schema.is_none()
                        || x.schema.as_deref().map(str::to_lowercase) == y.schema.as_deref().map(str::to_lowercase))
            })
        }),
        _ => true,
    }
}

/// A sync as the replicator runs it: what it replicates and how ties go.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    pub sync: Sync,
    /// The replicated tables, as the sync's first database describes them.
    pub tables: Vec<TableInfo>,
    /// Tables `tables: all` left out, each with its reason.
    pub excluded: Vec<Excluded>,
    /// Tables held back until every database has them alike: their changes
    /// are captured where they exist and wait, the other tables go on.
    pub held: Vec<Held>,
    pub order: DbOrder,
}

/// A table of the sync that does not look the same on every database (it is
/// missing somewhere, or a column or the key differs): no row of it is
/// shipped with a column list some database lacks. Its changes wait in the
/// change logs — captured wherever it exists — and all ship when it matches
/// everywhere again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub table: TableName,
    /// Every difference, each naming the database and column.
    pub reason: String,
    /// The table as each database that has it describes it (capture there
    /// uses that database's own key).
    pub on: Vec<(DbId, TableInfo)>,
}

impl SyncPlan {
    /// The plan of `sync` from its databases' catalogs: the tables alike
    /// everywhere, and those held with every difference named.
    pub fn new(config: &Config, sync: &Sync, selection: Selection) -> Result<SyncPlan, ReplicaError> {
        Ok(SyncPlan {
            sync: sync.clone(),
            tables: selection.tables,
            excluded: selection.excluded,
            held: selection.held,
            order: DbOrder::new(config.databases.iter().map(|d| d.id).collect()),
        })
    }

    /// How database `db` describes the held tables it has.
    pub fn held_on(&self, db: DbId) -> Vec<TableInfo> {
        self.held.iter().filter_map(|h| h.on.iter().find(|(d, _)| *d == db).map(|(_, t)| t.clone())).collect()
    }

    /// What the state says of the held tables, if any are.
    pub fn held_reason(&self) -> Option<String> {
        if self.held.is_empty() {
            return None;
        }
        let each: Vec<String> = self.held.iter().map(|h| format!("table {} held: {}", h.table, h.reason)).collect();
        Some(format!(
            "{}; its changes wait in the change logs and ship once the table matches everywhere",
            each.join("; ")
        ))
    }

    pub fn name(&self) -> &SyncName {
        &self.sync.name
    }

    /// Checks the selection made now against the plan: the same tables alike
    /// everywhere, the same held for the same reasons. Anything else — a
    /// column added on one site, a missing table created — prepares the sync
    /// again, so no row ships with a column list that is no longer right and a
    /// held table joins as soon as it matches.
    pub fn check_unchanged(&self, now: Selection, reference: DbId) -> Result<(), ReplicaError> {
        let held = |h: &[Held]| h.iter().map(|h| (h.table.clone(), h.reason.clone())).collect::<Vec<_>>();
        if now.tables != self.tables || now.excluded != self.excluded || held(&now.held) != held(&self.held) {
            return Err(schema_changed(&self.tables, &now.tables, reference));
        }
        Ok(())
    }
}

/// The sync's tables alike on every database, as the first describes them;
/// those that are not, held with every difference.
#[derive(Debug, Clone)]
pub struct Selection {
    pub tables: Vec<TableInfo>,
    pub excluded: Vec<Excluded>,
    pub held: Vec<Held>,
}

impl Selection {
    /// The differences of a held table, in the words `compare` shows.
    pub fn problems(&self) -> Vec<String> {
        self.held.iter().map(|h| format!("table {}: {}", h.table, h.reason)).collect()
    }
}

/// Chooses the sync's tables from its databases' catalogs (the first is the
/// reference): a table alike everywhere is replicated; one missing or shaped
/// differently somewhere is held, naming each difference. A listed table no
/// database has is a configuration error naming it.
pub(crate) fn select(catalogs: &[(DbId, Vec<CatalogRow>)], sync: &Sync) -> Result<Selection, ReplicaError> {
    let (reference, first) = catalogs.first().ok_or_else(|| {
        ReplicaError::Config(format!("syncs[{}] has no databases to read its tables from", sync.index))
    })?;
    let field = format!("syncs[{}].tables", sync.index);
    let offers: Vec<(DbId, tables::Offer)> =
        catalogs.iter().map(|(id, catalog)| (*id, tables::offer(catalog, &sync.tables))).collect();
    // A listed table no database has is a mistake in the configuration; one
    // the reference cannot replicate (no key…) is refused as before.
    if let TableSelection::List(_) = &sync.tables {
        for lacking in &offers[0].1.lacks {
            if offers[1..].iter().all(|(_, o)| o.lacks.contains(lacking)) {
                let why = format!("{field}: table {}: does not exist on {reference}", tables::show_ref(lacking));
                return Err(ReplicaError::Config(why));
            }
        }
        tables::select_from(first, *reference, &sync.tables, &field).or_else(|e| match e {
            ReplicaError::Config(why) if why.contains("does not exist") => Ok(Default::default()),
            other => Err(other),
        })?;
    }
    // Every table some database offers, the reference's first, in order.
    let mut names: Vec<TableName> = Vec::new();
    for (_, offer) in &offers {
        for t in &offer.tables {
            if !names.contains(&t.name) {
                names.push(t.name.clone());
            }
        }
    }
    let mut selection = Selection { tables: Vec::new(), excluded: offers[0].1.excluded.clone(), held: Vec::new() };
    for name in names {
        let on: Vec<(DbId, TableInfo)> = offers
            .iter()
            .filter_map(|(id, o)| o.tables.iter().find(|t| t.name == name).map(|t| (*id, t.clone())))
            .collect();
        let (model_db, model) = on[0].clone();
        let mut problems = Vec::new();
        for (id, offer) in &offers {
            match on.iter().find(|(d, _)| d == id) {
                Some((_, t)) => problems.extend(tables::table_differences(&model, model_db, t, *id)),
                None => match offer.excluded.iter().find(|e| e.table == name.display_name()) {
                    Some(e) => problems.push(format!("{} on {id}", e.reason)),
                    None => problems.push(format!("missing on {id}")),
                },
            }
        }
        if problems.is_empty() {
            selection.tables.push(model);
        } else {
            selection.excluded.retain(|e| e.table != name.display_name());
            selection.held.push(Held { table: name, reason: problems.join(", "), on });
        }
    }
    Ok(selection)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(syncs: &str) -> Config {
        let json = format!(
            r#"{{"databases": [{{"id": 0, "url": "sqlite:/a"}}, {{"id": 1, "url": "sqlite:/b"}}, {{"id": 2, "url": "sqlite:/c"}}],
                "syncs": [{syncs}]}}"#
        );
        Config::from_str(&json, Path::new("t.json")).unwrap()
    }

    #[test]
    fn a_database_passing_one_syncs_changes_on_to_another_is_refused_by_name() {
        let chained = config(
            r#"{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0},
               {"sources": [1, 2], "targets": [], "tables": "all", "onetimecopy": 0}"#,
        );
        let err = check_no_cascade(&chained).unwrap_err().to_string();
        assert!(err.contains("db1 receives the changes of sync0 and is a source of sync1"), "{err}");
        assert!(err.contains("pass them on to db2"), "{err}");
        let one_way = config(
            r#"{"sources": [0], "targets": [1], "tables": "t", "onetimecopy": 0},
               {"sources": [1], "targets": [2], "tables": "public.t", "onetimecopy": 0}"#,
        );
        assert!(check_no_cascade(&one_way).is_err(), "the same table, named two ways");
        let disjoint = config(
            r#"{"sources": [0, 1], "targets": [], "tables": "a", "onetimecopy": 0},
               {"sources": [1, 2], "targets": [], "tables": "b", "onetimecopy": 0}"#,
        );
        assert!(check_no_cascade(&disjoint).is_ok(), "different tables never cascade");
        let one = config(r#"{"sources": [0, 1, 2], "targets": [], "tables": "all", "onetimecopy": 0}"#);
        assert!(check_no_cascade(&one).is_ok());
    }
}
