//! The tables a sync replicates: chosen from what a database's catalog holds
//! (any engine describes its tables as `CatalogRow`s), and the check that
//! every database of the sync describes them the same way.

use crate::error::ReplicaError;
use dugong_config::{TableRef, TableSelection};
use dugong_core::{DbId, TableName};

/// One column that the replicator copies (generated columns are left out: the
/// target computes them itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The type as `format_type` spells it, e.g. `numeric(10,2)`, `text[]`.
    pub type_sql: String,
}

/// A replicated table as one database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: TableName,
    pub columns: Vec<Column>,
    /// The primary-key columns, in key order.
    pub key: Vec<Column>,
    /// The primary key's constraint name (a unique violation on it during apply
    /// means a concurrent insert of the same key, not a data problem).
    pub key_constraint: String,
    /// Every column's type is one of PostgreSQL's own base types whose binary
    /// form carries the value itself, so rows can be copied in COPY's binary
    /// format between servers of one major version (see `CatalogRow::binary`).
    pub binary_copy: bool,
}

/// A table that `tables: all` leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Excluded {
    pub table: String,
    pub reason: String,
}

/// Every user table of a database as its catalog describes it, whatever the
/// engine: PostgreSQL's `pg_class` (`engine::postgres::catalog`), SQLite's
/// `sqlite_schema` (`engine::sqlite::catalog`). Choosing and checking tables
/// works on these.
#[derive(Debug, Clone)]
pub(crate) struct CatalogRow {
    pub name: TableName,
    /// `r` table, `p` partitioned table, `f` foreign table, `m` materialized
    /// view (PostgreSQL), `v` virtual table (SQLite).
    pub kind: String,
    pub partition: bool,
    pub columns: Vec<Column>,
    /// The primary key's constraint name and columns, in key order.
    pub key: Option<(String, Vec<String>)>,
    /// Every column's type is a base type built into PostgreSQL (its OID is
    /// below the first one a database hands out, 16384, so it is the same type
    /// on every server), with binary send and receive functions, and not an
    /// OID alias (`regclass` and its kin name objects whose OIDs differ from
    /// database to database). Arrays of those qualify. Enums, domains,
    /// composites, ranges and extension types do not: their binary forms carry
    /// this database's own OIDs, change with an extension's version, or do not
    /// exist, while their text is what every server agrees on. SQLite: never.
    pub binary: bool,
}

/// Why a catalog table cannot be replicated, if it cannot.
fn unsupported(row: &CatalogRow) -> Option<&'static str> {
    if row.kind == "p" {
        Some("partitioned tables are not supported yet")
    } else if row.kind == "f" {
        Some("foreign table: its rows live on another server")
    } else if row.kind == "m" {
        Some("materialized view: refresh it on each site")
    } else if row.kind == "v" {
        Some("virtual tables are not supported")
    } else if row.partition {
        Some("partitions are not supported yet")
    } else if row.key.is_none() {
        Some("no primary key")
    } else {
        None
    }
}

fn to_info(row: &CatalogRow) -> TableInfo {
    let (constraint, key_names) = row.key.clone().expect("checked by unsupported()");
    let key = key_names.iter().filter_map(|k| row.columns.iter().find(|c| &c.name == k).cloned()).collect();
    TableInfo {
        name: row.name.clone(),
        columns: row.columns.clone(),
        key,
        key_constraint: constraint,
        binary_copy: row.binary,
    }
}

/// The tables a sync replicates, chosen from the catalog of its reference
/// database `db`, with the tables `all` had to leave out. A listed table that is
/// missing or has no primary key is a configuration error naming it.
pub(crate) fn select_from(
    catalog: &[CatalogRow],
    db: DbId,
    selection: &TableSelection,
    field: &str,
) -> Result<(Vec<TableInfo>, Vec<Excluded>), ReplicaError> {
    match selection {
        TableSelection::All => {
            let mut tables = Vec::new();
            let mut excluded = Vec::new();
            for row in catalog {
                match unsupported(row) {
                    None => tables.push(to_info(row)),
                    Some(reason) => excluded.push(Excluded { table: row.name.display_name(), reason: reason.into() }),
                }
            }
            Ok((tables, excluded))
        }
        TableSelection::List(list) => {
            let mut tables: Vec<TableInfo> = Vec::new();
            for r in list {
                let row = find(catalog, r)
                    .map_err(|why| ReplicaError::Config(format!("{field}: table {}: {why} on {db}", show_ref(r))))?;
                if let Some(reason) = unsupported(row) {
                    let needs = if reason == "no primary key" { "; every replicated table needs one" } else { "" };
                    return Err(ReplicaError::Config(format!("{field}: table {}: {reason} on {db}{needs}", row.name)));
                }
                if !tables.iter().any(|t| t.name == row.name) {
                    tables.push(to_info(row));
                }
            }
            Ok((tables, Vec::new()))
        }
    }
}

/// What one database offers of the sync's tables, leniently: the listed
/// tables it lacks are returned, not refused (another database may have them).
pub(crate) struct Offer {
    pub tables: Vec<TableInfo>,
    pub excluded: Vec<Excluded>,
    /// Listed tables this database does not have.
    pub lacks: Vec<TableRef>,
}

/// [`select_from`], but a listed table this database lacks is noted, and one
/// it cannot replicate is excluded with its reason, for the caller to weigh
/// against the other databases.
pub(crate) fn offer(catalog: &[CatalogRow], selection: &TableSelection) -> Offer {
    match selection {
        TableSelection::All => {
            let mut offer = Offer { tables: Vec::new(), excluded: Vec::new(), lacks: Vec::new() };
            for row in catalog {
                match unsupported(row) {
                    None => offer.tables.push(to_info(row)),
                    Some(reason) => {
                        offer.excluded.push(Excluded { table: row.name.display_name(), reason: reason.into() })
                    }
                }
            }
            offer
        }
        TableSelection::List(list) => {
            let mut offer = Offer { tables: Vec::new(), excluded: Vec::new(), lacks: Vec::new() };
            for r in list {
                match find(catalog, r) {
                    Err(_) => offer.lacks.push(r.clone()),
                    Ok(row) => match unsupported(row) {
                        Some(reason) => {
                            offer.excluded.push(Excluded { table: row.name.display_name(), reason: reason.into() })
                        }
                        None if !offer.tables.iter().any(|t| t.name == row.name) => offer.tables.push(to_info(row)),
                        None => {}
                    },
                }
            }
            offer
        }
    }
}

/// How `other` (on database `db`) differs from `table` (on `reference_db`):
/// columns, their types, the primary key; each difference named.
pub(crate) fn table_differences(table: &TableInfo, reference_db: DbId, other: &TableInfo, db: DbId) -> Vec<String> {
    let mut problems = Vec::new();
    for col in &table.columns {
        match other.columns.iter().find(|c| c.name == col.name) {
            None => problems.push(format!("column \"{}\" is missing on {db}", col.name)),
            Some(c) if c.type_sql != col.type_sql => problems.push(format!(
                "column \"{}\" is {} on {reference_db} but {} on {db}",
                col.name, col.type_sql, c.type_sql
            )),
            Some(_) => {}
        }
    }
    for c in &other.columns {
        if !table.columns.iter().any(|col| col.name == c.name) {
            problems.push(format!("column \"{}\" exists on {db} but not on {reference_db}", c.name));
        }
    }
    let want: Vec<&str> = table.key.iter().map(|c| c.name.as_str()).collect();
    let key: Vec<&str> = other.key.iter().map(|c| c.name.as_str()).collect();
    if key != want {
        problems.push(format!(
            "primary key is ({}) on {reference_db} but ({}) on {db}",
            want.join(", "),
            key.join(", ")
        ));
    }
    problems
}

pub(crate) fn show_ref(r: &TableRef) -> String {
    match &r.schema {
        Some(s) => format!("{s}.{}", r.name),
        None => r.name.clone(),
    }
}

/// Finds a listed table: quoted names match exactly, unquoted ones also
/// case-insensitively (PostgreSQL folds them); without a schema, `public` first,
/// then a unique match in any schema.
fn find<'a>(catalog: &'a [CatalogRow], r: &TableRef) -> Result<&'a CatalogRow, String> {
    let name_matches =
        |candidate: &str, wanted: &str| candidate == wanted || (!r.quoted && candidate == wanted.to_lowercase());
    let matches: Vec<&CatalogRow> = catalog
        .iter()
        .filter(|row| name_matches(&row.name.name, &r.name))
        .filter(|row| match &r.schema {
            Some(s) => name_matches(&row.name.schema, s),
            None => true,
        })
        .collect();
    match matches.len() {
        0 => Err("does not exist".into()),
        1 => Ok(matches[0]),
        _ => {
            if let Some(public) = matches.iter().find(|m| m.name.schema == "public") {
                return Ok(public);
            }
            let schemas: Vec<&str> = matches.iter().map(|m| m.name.schema.as_str()).collect();
            Err(format!("is ambiguous (schemas {}); qualify it with a schema", schemas.join(", ")))
        }
    }
}

/// The error for a table selection that changed while replicating: which tables came or went,
/// or (same tables) that columns or keys changed on the reference database.
pub fn schema_changed(before: &[TableInfo], after: &[TableInfo], reference: DbId) -> ReplicaError {
    let names = |t: &[TableInfo]| t.iter().map(|t| t.name.display_name()).collect::<Vec<String>>();
    let (before, after) = (names(before), names(after));
    let what = if before != after {
        format!("tables were {}, now {}", before.join(", "), after.join(", "))
    } else {
        format!("columns or keys changed on {reference}")
    };
    ReplicaError::SchemaChanged(what)
}
