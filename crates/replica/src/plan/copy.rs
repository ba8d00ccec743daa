//! What an initial copy (`onetimecopy`) does, table by table: 1 empties each
//! target table and copies it from the first source; 2 fills only empty
//! tables. For a sync of several sources without targets, mode 2 fills each
//! empty table from the one source that has rows (several with rows is an
//! error) and mode 1 is refused — Bucardo silently copies nothing there;
//! Dugong never does nothing silently. The engines move the rows.

use crate::error::ReplicaError;
use dugong_config::{OneTimeCopy, Sync};
use dugong_core::{DbId, TableName};

/// The sync's initial copy mode, `None` when there is nothing to copy; refuses mode 1 between
/// masters only (it would empty tables that hold the only copy of their rows).
pub fn copy_mode(sync: &Sync, has_tables: bool) -> Result<Option<OneTimeCopy>, ReplicaError> {
    let mode = sync.onetimecopy;
    if mode == OneTimeCopy::None || !has_tables {
        return Ok(None);
    }
    if mode == OneTimeCopy::Full && sync.targets.is_empty() && sync.sources.len() > 1 {
        return Err(ReplicaError::Config(format!(
            "syncs[{}].onetimecopy: 1 empties every target table and copies it from a source, but {} has {} sources and no targets; use onetimecopy 2 to fill empty tables from the one source that has rows, or copy first with a one-way sync (\"sources\": [0], \"targets\": [1], \"onetimecopy\": 1)",
            sync.index,
            sync.name,
            sync.sources.len()
        )));
    }
    Ok(Some(mode))
}

/// Whether the initial copy looks at `table` this time: once per sync and
/// table, ever — the databases record each table the copy has looked at — so
/// that a restart with `onetimecopy` still in the file never copies again
/// (it would bring back rows a site deleted meanwhile), unless the operator
/// names the table in `recopy` (`dugong replicate --recopy TABLE`).
pub fn wanted(table: &TableName, done: &[TableName], recopy: &[String]) -> bool {
    let named = recopy.iter().any(|r| *r == table.display_name() || *r == table.name || *r == table.to_string());
    named || !done.contains(table)
}

/// Where one table's rows go in an initial copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub from: DbId,
    pub into: Vec<DbId>,
    /// Empty the target tables first (mode 1).
    pub empty_first: bool,
}

/// Routes one table's initial copy under `mode`. `dbs` are the sync's
/// databases and `with_rows` whether the table has rows on each. `None`
/// when nothing is to be copied.
pub fn route(
    sync: &Sync,
    mode: OneTimeCopy,
    table: &TableName,
    dbs: &[DbId],
    with_rows: &[bool],
) -> Result<Option<Route>, ReplicaError> {
    let empty_first = mode == OneTimeCopy::Full;
    let has_rows = |id: DbId| dbs.iter().zip(with_rows).any(|(d, rows)| *d == id && *rows);
    let (from, into) = if sync.targets.is_empty() {
        // Several masters: the one that has rows fills the empty ones.
        // Tables that have rows everywhere (a restart after the copy) are done.
        match fill_source(sync.index, table, dbs, with_rows)? {
            Some(from) => (from, dbs.iter().copied().filter(|d| *d != from).collect::<Vec<_>>()),
            None => return Ok(None),
        }
    } else {
        let from = sync.sources[0];
        if mode == OneTimeCopy::EmptyOnly && !has_rows(from) {
            return Ok(None);
        }
        let into =
            dbs.iter().copied().filter(|d| !sync.sources.contains(d) && (empty_first || !has_rows(*d))).collect();
        (from, into)
    };
    if into.is_empty() {
        return Ok(None);
    }
    Ok(Some(Route { from, into, empty_first }))
}

/// Mode 2 between masters: the one database whose table has rows fills the
/// empty ones. `None` when there is nothing to do (empty everywhere, or rows
/// everywhere: a restart after the copy); an error naming the databases when
/// several have rows.
fn fill_source(
    sync_index: usize,
    table: &TableName,
    dbs: &[DbId],
    with_rows: &[bool],
) -> Result<Option<DbId>, ReplicaError> {
    let full: Vec<DbId> = dbs.iter().zip(with_rows).filter(|(_, rows)| **rows).map(|(d, _)| *d).collect();
    match full.len() {
        0 => Ok(None),
        n if n == dbs.len() => Ok(None),
        1 => Ok(Some(full[0])),
        _ => {
            let names: Vec<String> = full.iter().map(ToString::to_string).collect();
            Err(ReplicaError::Config(format!(
                "syncs[{sync_index}].onetimecopy: 2 fills empty tables from the one source that has rows, but table {table} is empty somewhere and has rows on {}; empty it on all but one, or use a one-way sync with onetimecopy 1",
                names.join(" and ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dugong_config::Config;
    use std::path::Path;

    fn sync(sources: &str, targets: &str, copy: u8) -> Sync {
        let json = format!(
            r#"{{"databases": [{{"id": 0, "url": "sqlite:/a"}}, {{"id": 1, "url": "sqlite:/b"}}, {{"id": 2, "url": "sqlite:/c"}}],
                "syncs": [{{"sources": [{sources}], "targets": [{targets}], "tables": "all", "onetimecopy": {copy}}}]}}"#
        );
        Config::from_str(&json, Path::new("t.json")).unwrap().syncs[0].clone()
    }

    const DBS: [DbId; 3] = [DbId(0), DbId(1), DbId(2)];

    fn t() -> TableName {
        TableName::new("public", "t")
    }

    #[test]
    fn one_way_copies_go_from_the_first_source_into_targets() {
        let s = sync("0", "1,2", 1);
        let full = route(&s, OneTimeCopy::Full, &t(), &DBS, &[true, true, false]).unwrap().unwrap();
        assert_eq!(full, Route { from: DbId(0), into: vec![DbId(1), DbId(2)], empty_first: true });
        let s = sync("0", "1,2", 2);
        let empty_only = route(&s, OneTimeCopy::EmptyOnly, &t(), &DBS, &[true, true, false]).unwrap().unwrap();
        assert_eq!(empty_only.into, vec![DbId(2)], "mode 2 leaves tables with rows alone");
        assert_eq!(route(&s, OneTimeCopy::EmptyOnly, &t(), &DBS, &[false, false, false]).unwrap(), None);
    }

    #[test]
    fn a_table_is_copied_once_unless_named_again() {
        let t = t();
        assert!(wanted(&t, &[], &[]));
        assert!(!wanted(&t, std::slice::from_ref(&t), &[]), "recorded: never again");
        assert!(wanted(&t, std::slice::from_ref(&t), &["public.t".into()]));
        assert!(wanted(&t, std::slice::from_ref(&t), &["t".into()]));
    }

    #[test]
    fn between_masters_the_one_site_with_rows_fills_the_others() {
        let s = sync("0,1,2", "", 2);
        let r = route(&s, OneTimeCopy::EmptyOnly, &t(), &DBS, &[false, true, false]).unwrap().unwrap();
        assert_eq!(r, Route { from: DbId(1), into: vec![DbId(0), DbId(2)], empty_first: false });
        assert_eq!(route(&s, OneTimeCopy::EmptyOnly, &t(), &DBS, &[true, true, true]).unwrap(), None);
        let err = route(&s, OneTimeCopy::EmptyOnly, &t(), &DBS, &[true, true, false]).unwrap_err().to_string();
        assert!(err.contains("has rows on db0 and db1"), "{err}");
        let mut full = s.clone();
        full.onetimecopy = OneTimeCopy::Full;
        assert!(copy_mode(&full, true).is_err(), "mode 1 between masters is refused");
    }
}
