//! The tables of a SQLite file as [`CatalogRow`]s, so choosing and checking
//! tables is the same code as on PostgreSQL (`crate::plan`).
//!
//! Tables named `sqlite_*` (SQLite's own) and `dugong_*` (the replicator's
//! bookkeeping, and the application server's site-local `dugong_local_*`
//! tables) are never replicated, even with `tables: all` — the way PostgreSQL
//! skips the `dugong` and `dugong_local` schemas. Tables live in schema `main`.

use crate::error::{ReplicaError, StatementContext};
use crate::plan::tables::{CatalogRow, Column};
use crate::plan::{self, Selection};
use dugong_config::Sync;
use dugong_core::{quote_ident, DbId, TableName};
use rusqlite::Connection;

/// The schema name of a SQLite file's own tables.
pub const MAIN: &str = "main";

/// Every user table of the file.
pub(crate) fn read(conn: &Connection, db: DbId) -> Result<Vec<CatalogRow>, ReplicaError> {
    let ctx = || "reading the table catalog".to_string();
    let tables: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'table'
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'dugong\\_%' ESCAPE '\\'
                 ORDER BY name",
            )
            .on_db(db, ctx)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).on_db(db, ctx)?;
        rows.collect::<Result<_, _>>().on_db(db, ctx)?
    };
    let mut out = Vec::with_capacity(tables.len());
    for (name, sql) in tables {
        let is_virtual = sql.trim_start().get(..14).is_some_and(|s| s.eq_ignore_ascii_case("CREATE VIRTUAL"));
        let mut columns = Vec::new();
        let mut key: Vec<(i64, String)> = Vec::new();
        if !is_virtual {
            // table_xinfo also lists generated columns (hidden 2 and 3): the
            // target computes those itself, as on PostgreSQL.
            let mut stmt = conn
                .prepare(&format!("SELECT name, upper(type), pk, hidden FROM pragma_table_xinfo({})", sql_text(&name)))
                .on_db(db, ctx)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                })
                .on_db(db, ctx)?;
            for row in rows {
                let (col, type_sql, pk, hidden) = row.on_db(db, ctx)?;
                if hidden == 2 || hidden == 3 {
                    continue;
                }
                if pk > 0 {
                    key.push((pk, col.clone()));
                }
                columns.push(Column { name: col, type_sql });
            }
        }
        key.sort();
        out.push(CatalogRow {
            name: TableName::new(MAIN, name),
            kind: if is_virtual { "v".into() } else { "r".into() },
            partition: false,
            columns,
            key: (!key.is_empty()).then(|| ("primary key".to_string(), key.into_iter().map(|(_, c)| c).collect())),
            binary: false,
        });
    }
    Ok(out)
}

/// A string literal for SQL.
fn sql_text(s: &str) -> String {
    dugong_core::quote_literal(s)
}

/// `"name"` of a table in SQL (SQLite's tables live in `main`, the only schema
/// a trigger may write to unqualified).
pub fn quoted(name: &TableName) -> String {
    quote_ident(&name.name)
}

/// Reads the catalogs of a sync's files (the first is the reference), and
/// chooses and checks its tables.
pub(crate) fn select<'c>(
    files: impl IntoIterator<Item = (DbId, &'c Connection)>,
    sync: &Sync,
) -> Result<Selection, ReplicaError> {
    let catalogs = files.into_iter().map(|(id, conn)| Ok((id, read(conn, id)?))).collect::<Result<Vec<_>, _>>()?;
    plan::select(&catalogs, sync)
}
