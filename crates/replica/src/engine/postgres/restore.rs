//! Writing a conflict's losing version back on PostgreSQL, on the database
//! that lost it, as an ordinary write of an ordinary session: the capture
//! triggers log it like any application change, so the replicator ships it to
//! every other database (it commits after the winner did, so it wins there).
//!
//! In one transaction: lock the row, check that it is still the version that
//! won (unless forced), write the losing version (`jsonb_populate_record` of
//! the logged JSON, over the columns the replicator copies), and mark the
//! conflict restored in this database's log.

use super::catalog::read_catalog;
use crate::error::StatementContext;
use crate::plan::tables::CatalogRow;
use crate::record::conflict::{LoggedConflict, RestoreError, RestoreWrite};
use dugong_core::{quote_ident, DbId, TableName};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

/// Writes `c`'s losing version back on `db`, the database that lost.
pub async fn restore(
    client: &mut Client,
    db: DbId,
    c: &LoggedConflict,
    force: bool,
) -> Result<RestoreWrite, RestoreError> {
    let ctx = || format!("restoring conflict {} on {}", c.id.as_deref().unwrap_or("?"), c.table);
    let table = find_table(client, db, &c.table_name).await?;
    let key_names = table.key.as_ref().map(|(_, k)| k.clone()).unwrap_or_default();
    let key_types: Vec<&str> = key_names
        .iter()
        .map(|k| table.columns.iter().find(|col| &col.name == k).map(|col| col.type_sql.as_str()).unwrap_or("text"))
        .collect();
    if key_names.len() != c.key.len() {
        return Err(RestoreError::BadVersion {
            db,
            table: c.table.clone(),
            why: format!(
                "the logged key has {} value(s), the table's primary key {} column(s)",
                c.key.len(),
                key_names.len()
            ),
        });
    }
    let n = key_names.len();
    let key_match: Vec<String> = key_names
        .iter()
        .zip(&key_types)
        .enumerate()
        .map(|(i, (k, t))| format!("dugong_row.{} = ${}::text::{t}", quote_ident(k), i + 1))
        .collect();
    let key_match = key_match.join(" AND ");
    let qt = c.table_name.quoted();
    let winner = version_text(&c.winner.row);
    let loser = version_text(&c.loser.row);
    // The columns the losing version has (a column added since keeps its
    // default, or its current value).
    let present: Vec<String> = match &loser {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => {
                let why = "the losing version is not a JSON object".to_string();
                return Err(RestoreError::BadVersion { db, table: c.table.clone(), why });
            }
        },
        None => Vec::new(),
    };
    let columns: Vec<String> =
        table.columns.iter().filter(|col| present.contains(&col.name)).map(|col| quote_ident(&col.name)).collect();
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> =
        c.key.iter().map(|v| (v as &(dyn ToSql + Sync), Type::TEXT)).collect();

    let tx = client.transaction().await.on_db(db, ctx)?;
    let current = {
        let mut p = params.clone();
        p.push((&winner, Type::TEXT));
        p.push((&loser, Type::TEXT));
        let sql = format!(
            "SELECT to_jsonb(dugong_row.*) = ${w}::jsonb, to_jsonb(dugong_row.*) = ${l}::jsonb
             FROM {qt} AS dugong_row WHERE {key_match} FOR UPDATE",
            w = n + 1,
            l = n + 2
        );
        tx.query_typed(&sql, &p).await.on_db(db, ctx)?.into_iter().next()
    };
    let (holds_winner, holds_loser) = match &current {
        None => (winner.is_none(), loser.is_none()),
        Some(r) => (r.get::<_, Option<bool>>(0) == Some(true), r.get::<_, Option<bool>>(1) == Some(true)),
    };
    if !holds_winner && !force {
        return Err(RestoreError::changed(db, c, holds_loser));
    }
    let (sql, write) = match (&loser, &current) {
        (None, _) => (format!("DELETE FROM {qt} AS dugong_row WHERE {key_match}"), RestoreWrite::Deleted),
        (Some(_), Some(_)) => (
            format!(
                "UPDATE {qt} AS dugong_row SET ({cols}) = (SELECT {cols} FROM jsonb_populate_record(NULL::{qt}, ${v}::text::jsonb))
                 WHERE {key_match}",
                cols = columns.join(", "),
                v = n + 1
            ),
            RestoreWrite::Updated,
        ),
        (Some(_), None) => (
            format!(
                "INSERT INTO {qt} ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::{qt}, $1::text::jsonb)",
                cols = columns.join(", ")
            ),
            RestoreWrite::Inserted,
        ),
    };
    if loser.is_some() {
        params.push((&loser, Type::TEXT));
    }
    if write == RestoreWrite::Inserted {
        // The INSERT names no key column by parameter: only the version.
        params.drain(..n);
    }
    tx.query_typed(&sql, &params).await.map_err(|e| restore_error(db, c, e))?;
    tx.execute(
        "UPDATE dugong.conflict_log SET restored_at = now() WHERE conflict_id = $1 AND restored_at IS NULL",
        &[&c.id],
    )
    .await
    .on_db(db, ctx)?;
    tx.commit().await.on_db(db, ctx)?;
    Ok(write)
}

/// A logged version as the text of a JSON object, `None` for no row.
fn version_text(row: &serde_json::value::RawValue) -> Option<String> {
    let text = row.get().trim();
    (text != "null").then(|| text.to_string())
}

/// The conflict's table on `db`, with its columns and primary key.
async fn find_table(client: &Client, db: DbId, name: &TableName) -> Result<CatalogRow, RestoreError> {
    let catalog = read_catalog(client, db).await?;
    catalog
        .into_iter()
        .find(|row| &row.name == name && row.key.is_some())
        .ok_or_else(|| RestoreError::MissingTable { db, table: name.display_name() })
}

/// A write the server refused (a value that no longer fits the column, a
/// constraint): named with the server's reason, never the row's values.
fn restore_error(db: DbId, c: &LoggedConflict, e: tokio_postgres::Error) -> RestoreError {
    RestoreError::BadVersion { db, table: c.table.clone(), why: crate::describe_pg(&e) }
}
