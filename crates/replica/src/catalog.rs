//! What the databases hold: the tables a sync replicates, their columns and
//! primary keys, and the check that every database of a sync agrees on them.

use crate::error::{ReplicaError, StatementContext};
use dugong_config::{TableRef, TableSelection};
use dugong_core::{DbId, TableName};
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// Schemas the replicator never replicates, even with `tables: all`.
pub const SKIPPED_SCHEMAS: &[&str] = &["pg_catalog", "information_schema", "dugong", "dugong_local", "bucardo"];

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
    /// format between servers of one major version (see [`CatalogRow::binary`]).
    pub binary_copy: bool,
}

/// A table that `tables: all` leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Excluded {
    pub table: String,
    pub reason: String,
}

/// Every user table of a database as its catalog describes it, whatever the
/// engine: PostgreSQL's `pg_class` here, SQLite's `sqlite_schema` in
/// `engine::sqlite::catalog`. Choosing and checking tables works on these.
#[derive(Debug, Clone)]
pub(crate) struct CatalogRow {
    pub name: TableName,
    /// `r` table, `p` partitioned table (PostgreSQL), `v` virtual table (SQLite).
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

const CATALOG_SQL: &str = "
SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relispartition,
  coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
  coalesce((SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
  k.conname::text,
  (SELECT array_agg(a.attname::text ORDER BY array_position(k.conkey, a.attnum)) FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum = ANY(k.conkey)),
  coalesce((SELECT bool_and(t.oid < 16384 AND t.typtype = 'b' AND t.typsend::oid <> 0 AND t.typreceive::oid <> 0
                            AND t.typname !~ '^_?reg')
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'p'
WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
  AND n.nspname <> ALL($1::text[]) AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2";

async fn read_catalog(client: &Client, db: DbId) -> Result<Vec<CatalogRow>, ReplicaError> {
    let skipped: Vec<String> = SKIPPED_SCHEMAS.iter().map(|s| s.to_string()).collect();
    let rows = client.query(CATALOG_SQL, &[&skipped]).await.on_db(db, || "reading the table catalog".into())?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let names: Vec<String> = row.get(4);
        let types: Vec<String> = row.get(5);
        let columns = names.into_iter().zip(types).map(|(name, type_sql)| Column { name, type_sql }).collect();
        let key = match (row.get::<_, Option<String>>(6), row.get::<_, Option<Vec<String>>>(7)) {
            (Some(name), Some(cols)) => Some((name, cols)),
            _ => None,
        };
        out.push(CatalogRow {
            name: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            kind: row.get(2),
            partition: row.get(3),
            columns,
            key,
            binary: row.get(8),
        });
    }
    Ok(out)
}

/// Why a catalog table cannot be replicated, if it cannot.
fn unsupported(row: &CatalogRow) -> Option<&'static str> {
    if row.kind == "p" {
        Some("partitioned tables are not supported yet")
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

/// The tables a sync replicates, read from its reference database, with the
/// tables `all` had to leave out. A listed table that is missing or has no
/// primary key is a configuration error naming it.
pub async fn select_tables(
    client: &Client,
    db: DbId,
    selection: &TableSelection,
    field: &str,
) -> Result<(Vec<TableInfo>, Vec<Excluded>), ReplicaError> {
    let catalog = read_catalog(client, db).await?;
    select_from(&catalog, db, selection, field)
}

/// [`select_tables`] over a catalog already read, from any engine.
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
                    return Err(ReplicaError::Config(format!(
                        "{field}: table {}: {reason} on {db}; every replicated table needs one",
                        row.name
                    )));
                }
                if !tables.iter().any(|t| t.name == row.name) {
                    tables.push(to_info(row));
                }
            }
            Ok((tables, Vec::new()))
        }
    }
}

fn show_ref(r: &TableRef) -> String {
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

/// Checks that `other` describes every table of `reference` the same way: same
/// columns with the same types and the same primary key. Returns every
/// difference, each naming the table and column.
pub async fn check_same_schema(
    client: &Client,
    db: DbId,
    reference_db: DbId,
    reference: &[TableInfo],
) -> Result<Vec<String>, ReplicaError> {
    let catalog = read_catalog(client, db).await?;
    Ok(differences(&catalog, db, reference_db, reference))
}

/// [`check_same_schema`] over a catalog already read, from any engine.
pub(crate) fn differences(
    catalog: &[CatalogRow],
    db: DbId,
    reference_db: DbId,
    reference: &[TableInfo],
) -> Vec<String> {
    let by_name: BTreeMap<&TableName, &CatalogRow> = catalog.iter().map(|r| (&r.name, r)).collect();
    let mut problems = Vec::new();
    for table in reference {
        let Some(row) = by_name.get(&table.name) else {
            problems.push(format!("table {} exists on {reference_db} but not on {db}", table.name));
            continue;
        };
        for col in &table.columns {
            match row.columns.iter().find(|c| c.name == col.name) {
                None => problems.push(format!("table {}: column \"{}\" is missing on {db}", table.name, col.name)),
                Some(c) if c.type_sql != col.type_sql => problems.push(format!(
                    "table {}: column \"{}\" is {} on {reference_db} but {} on {db}",
                    table.name, col.name, col.type_sql, c.type_sql
                )),
                Some(_) => {}
            }
        }
        for c in &row.columns {
            if !table.columns.iter().any(|col| col.name == c.name) {
                problems.push(format!(
                    "table {}: column \"{}\" exists on {db} but not on {reference_db}",
                    table.name, c.name
                ));
            }
        }
        let key: Option<Vec<&str>> = row.key.as_ref().map(|(_, k)| k.iter().map(String::as_str).collect());
        let want: Vec<&str> = table.key.iter().map(|c| c.name.as_str()).collect();
        if key.as_ref() != Some(&want) {
            problems.push(format!(
                "table {}: primary key is ({}) on {reference_db} but {} on {db}",
                table.name,
                want.join(", "),
                key.map(|k| format!("({})", k.join(", "))).unwrap_or_else(|| "missing".into())
            ));
        }
    }
    problems
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
