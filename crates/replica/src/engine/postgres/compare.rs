//! `dugong compare` on PostgreSQL, through the shared report and merge
//! (`crate::compare`). Per table, each database first computes its row count
//! and an order-independent checksum — nothing but two numbers crosses the
//! network; only when those differ does each stream `(md5 of key, md5 of row,
//! key)` ordered by the key's md5 for the merge.

use super::catalog;
use super::connect::connect_as;
use super::rows;
use crate::diff::merge;
use crate::diff::{empty, fill_differences, held, RowCount, TableComparison, Uncompared};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::TableInfo;
use dugong_config::{Config, Sync};
use dugong_core::{quote_ident, DbId};
use futures_util::future::{join_all, try_join_all};
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use tokio_postgres::Client;

/// Compares the tables of a PostgreSQL sync across its databases.
pub async fn compare_tables(
    config: &Config,
    sync: &Sync,
    ids: &[DbId],
    limit: usize,
) -> Result<Vec<TableComparison>, Uncompared> {
    // All at once, so dead databases cost one connect timeout in total.
    let connected = join_all(ids.iter().map(|id| connect_as(config, *id, "dugong compare"))).await;
    let mut clients = Vec::with_capacity(ids.len());
    let mut failures = Vec::new();
    for (id, c) in ids.iter().zip(connected) {
        match c {
            Ok(c) => clients.push((*id, c)),
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        return Err(Uncompared::unreachable(&failures));
    }
    let refs: Vec<(DbId, &Client)> = clients.iter().map(|(id, c)| (*id, c)).collect();
    let selection = catalog::select(&refs, sync).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(selection.tables.len() + selection.held.len());
    for table in &selection.tables {
        out.push(compare_table(&clients, table, limit).await.map_err(|e| e.to_string())?);
    }
    out.extend(selection.held.iter().map(held));
    Ok(out)
}

/// Compares one table whose schema agrees on every database.
pub async fn compare_table(
    clients: &[(DbId, Client)],
    table: &TableInfo,
    limit: usize,
) -> Result<TableComparison, ReplicaError> {
    let sums = sums(clients, table, "").await?;
    let mut out = empty(table, sums.iter().all(|s| *s == sums[0]));
    out.rows =
        clients.iter().zip(&sums).map(|((id, _), (n, _))| RowCount { database: id.to_string(), rows: *n }).collect();
    if out.identical {
        return Ok(out);
    }
    let diff = merge::diff(key_streams(clients, table, "").await?, limit).await?;
    let names: Vec<String> = clients.iter().map(|(id, _)| id.to_string()).collect();
    fill_differences(&mut out, diff, &names);
    Ok(out)
}

/// Each database's row count and order-independent checksum of the table's
/// rows that match `filter` (an SQL condition, or empty for all).
pub(crate) async fn sums(
    clients: &[(DbId, Client)],
    table: &TableInfo,
    filter: &str,
) -> Result<Vec<(i64, String)>, ReplicaError> {
    let qt = table.name.quoted();
    let row = rows::row_text(table, "");
    let filter = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
    let sums_sql = format!(
        "SELECT count(*), coalesce(sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint::numeric), 0)::text FROM ONLY {qt}{filter}"
    );
    try_join_all(clients.iter().map(|(id, c)| {
        let sql = &sums_sql;
        async move {
            let r = c.query_one(sql.as_str(), &[]).await.on_db(*id, || format!("counting {}", table.name))?;
            Ok::<_, ReplicaError>((r.get::<_, i64>(0), r.get::<_, String>(1)))
        }
    }))
    .await
}

/// A row stream of the merge per database: `(md5 of key, md5 of row, key)`
/// of the rows matching `filter` (or all), ordered by the key's md5.
pub(crate) async fn key_streams<'a>(
    clients: &'a [(DbId, Client)],
    table: &TableInfo,
    filter: &str,
) -> Result<Vec<Pin<Box<dyn Stream<Item = Result<merge::Entry, ReplicaError>> + Send + 'a>>>, ReplicaError> {
    let keys: Vec<String> = table.key.iter().map(|c| quote_ident(&c.name)).collect();
    let key_texts: Vec<String> = keys.iter().map(|k| format!("{k}::text")).collect();
    let filter = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
    let sql = format!(
        "SELECT md5(ROW({})::text) COLLATE \"C\", md5({}), ARRAY[{}]::text[] FROM ONLY {}{filter} ORDER BY 1",
        keys.join(", "),
        rows::row_text(table, ""),
        key_texts.join(", "),
        table.name.quoted()
    );
    try_join_all(clients.iter().map(|(id, c)| {
        let sql = &sql;
        async move {
            let rows = c
                .query_raw(sql.as_str(), [0i32; 0])
                .await
                .on_db(*id, || format!("reading the keys of {}", table.name))?;
            let id = *id;
            let name = table.name.clone();
            let stream: Pin<Box<dyn Stream<Item = Result<merge::Entry, ReplicaError>> + Send + 'a>> =
                Box::pin(rows.map(move |r| {
                    r.map(|r| merge::Entry { key_hash: r.get(0), row_hash: r.get(1), key: r.get(2) })
                        .on_db(id, || format!("reading the keys of {name}"))
                }));
            Ok::<_, ReplicaError>(stream)
        }
    }))
    .await
}
