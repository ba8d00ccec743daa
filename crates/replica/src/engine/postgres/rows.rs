//! Rows of one table read and written by key, across the databases of a sync:
//! what `dugong repair` and the background consistency check share.
//!
//! Keys travel as text (one text array per key column, unnested by the
//! server and cast back to each column's type), so a batch of keys is one
//! statement whatever their number or types. Versions of a row are its
//! `to_jsonb` text, with the commit time of the transaction that wrote it
//! (`pg_xact_commit_timestamp(xmin)`, when `track_commit_timestamp` is on).

use crate::error::{ReplicaError, StatementContext};
use crate::plan::TableInfo;
use crate::read::{CommitTime, TextKey};
use dugong_core::{quote_ident, DbId};
use std::collections::{HashMap, HashSet};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

/// The primary-key columns, quoted and joined.
pub(crate) fn key_columns(table: &TableInfo) -> String {
    table.key.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// The replicated (non-generated) columns, quoted and joined.
pub(crate) fn columns(table: &TableInfo) -> String {
    table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// `ARRAY[k0::text, …]`: a row's key as text, as `compare` prints it.
pub(crate) fn key_text(table: &TableInfo, alias: &str) -> String {
    let parts: Vec<String> = table.key.iter().map(|c| format!("{alias}.{}::text", quote_ident(&c.name))).collect();
    format!("ARRAY[{}]::text[]", parts.join(", "))
}

/// `(k0, k1) IN (SELECT u0::t0, u1::t1 FROM unnest($p, $p+1) …)`: the keys of
/// `columns` (the table's key columns, or a change log's `k0…`) among the
/// text arrays bound from parameter `first` on.
pub(crate) fn keys_in(table: &TableInfo, columns: &[String], first: usize) -> String {
    let params: Vec<String> = (0..table.key.len()).map(|i| format!("${}::text[]", first + i)).collect();
    let names: Vec<String> = (0..table.key.len()).map(|i| format!("u{i}")).collect();
    let casts: Vec<String> = table.key.iter().enumerate().map(|(i, c)| format!("u{i}::{}", c.type_sql)).collect();
    format!(
        "({}) IN (SELECT {} FROM unnest({}) AS u({}))",
        columns.join(", "),
        casts.join(", "),
        params.join(", "),
        names.join(", ")
    )
}

/// The table's key columns, quoted, for [`keys_in`].
pub(crate) fn quoted_key(table: &TableInfo, alias: &str) -> Vec<String> {
    table.key.iter().map(|c| format!("{alias}.{}", quote_ident(&c.name))).collect()
}

/// One text array per key column, for the parameters of [`keys_in`].
pub(crate) fn key_params(table: &TableInfo, keys: &[TextKey]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::with_capacity(keys.len()); table.key.len()];
    for key in keys {
        for (i, v) in key.iter().enumerate().take(table.key.len()) {
            out[i].push(v.clone());
        }
    }
    out
}

/// A row as one database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// When the transaction that wrote it committed (µs since the epoch), when
    /// known.
    pub committed: CommitTime,
    /// The row as `to_jsonb` prints it.
    pub json: String,
    /// md5 of the row as `compare` prints it.
    pub hash: String,
}

/// The current version of each of `keys` that `db` holds (absent keys are
/// missing from the map). With `lock`, the rows are locked `FOR UPDATE`
/// until the caller's transaction ends, so nobody changes them meanwhile.
pub(crate) async fn versions(
    client: &Client,
    db: DbId,
    table: &TableInfo,
    keys: &[TextKey],
    commit_times: bool,
    lock: bool,
) -> Result<HashMap<TextKey, Version>, ReplicaError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let committed = if commit_times {
        "(extract(epoch FROM pg_xact_commit_timestamp(r.xmin)) * 1000000)::int8"
    } else {
        "NULL::int8"
    };
    let sql = format!(
        "SELECT {key}, {committed}, to_jsonb(r.*)::text, md5({row}) FROM ONLY {qt} AS r WHERE {matching}{lock}",
        key = key_text(table, "r"),
        row = row_text(table, "r"),
        qt = table.name.quoted(),
        matching = keys_in(table, &quoted_key(table, "r"), 1),
        lock = if lock { " FOR UPDATE" } else { "" },
    );
    let params = key_params(table, keys);
    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
        params.iter().map(|p| (p as &(dyn ToSql + Sync), Type::TEXT_ARRAY)).collect();
    let rows = client.query_typed(&sql, &typed).await.on_db(db, || format!("reading rows of {}", table.name))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get::<_, TextKey>(0), Version { committed: r.get(1), json: r.get(2), hash: r.get(3) }))
        .collect())
}

/// The row as text, columns in name order so column order on disk never
/// matters (as `compare` hashes it); columns qualified with `alias` unless
/// it is empty.
pub(crate) fn row_text(table: &TableInfo, alias: &str) -> String {
    let mut names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let dot = if alias.is_empty() { String::new() } else { format!("{alias}.") };
    let cols: Vec<String> = names.into_iter().map(|n| format!("{dot}{}", quote_ident(n))).collect();
    format!("ROW({})::text", cols.join(", "))
}

/// Which of `keys` have changes in `db`'s change log that some database of
/// `sync` has not been delivered yet: the replicator is about to ship them,
/// so a difference there is replication in flight, not divergence. A
/// truncate waiting to be shipped puts every key in flight. A database
/// without capture on the table has nothing in flight.
pub(crate) async fn in_flight(
    client: &Client,
    db: DbId,
    sync: &str,
    table: &TableInfo,
    keys: &[TextKey],
) -> Result<HashSet<TextKey>, ReplicaError> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let ctx = || format!("reading the change log of {}", table.name);
    let captured = client
        .query_opt(
            "SELECT c.id FROM dugong.captured c
             WHERE to_regclass('dugong.captured') IS NOT NULL AND c.table_schema = $1 AND c.table_name = $2",
            &[&table.name.schema, &table.name.name],
        )
        .await;
    let id: i32 = match captured {
        Ok(Some(row)) => row.get(0),
        Ok(None) => return Ok(HashSet::new()),
        // No dugong schema at all: nothing is captured here.
        Err(e) if e.code().map(|c| c.code()) == Some("42P01") => return Ok(HashSet::new()),
        Err(e) => return Err(e).on_db(db, ctx),
    };
    let pending = "EXISTS (SELECT 1 FROM dugong.cursor c WHERE c.sync = $1 AND c.target <> '*'
                           AND NOT pg_visible_in_snapshot(d.dugong_txid, c.snapshot))";
    let truncated: bool = client
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM dugong.truncate_log d WHERE d.table_id = $2 AND {pending})"),
            &[&sync, &id],
        )
        .await
        .on_db(db, ctx)?
        .get(0);
    if truncated {
        return Ok(keys.iter().cloned().collect());
    }
    let delta = super::capture::delta_name(id);
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("d.k{i}")).collect();
    let ktext: Vec<String> = kcols.iter().map(|k| format!("{k}::text")).collect();
    let sql = format!(
        "SELECT DISTINCT ARRAY[{}]::text[] FROM {delta} AS d WHERE {} AND {pending}",
        ktext.join(", "),
        keys_in(table, &kcols, 2)
    );
    let params = key_params(table, keys);
    let mut typed: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&sync, Type::TEXT)];
    typed.extend(params.iter().map(|p| (p as &(dyn ToSql + Sync), Type::TEXT_ARRAY)));
    let rows = client.query_typed(&sql, &typed).await.on_db(db, ctx)?;
    Ok(rows.into_iter().map(|r| r.get::<_, TextKey>(0)).collect())
}

/// Deletes `keys` from the table on `db` (in the caller's transaction).
pub(crate) async fn delete(
    client: &Client,
    db: DbId,
    table: &TableInfo,
    keys: &[TextKey],
) -> Result<u64, ReplicaError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let sql =
        format!("DELETE FROM ONLY {} AS r WHERE {}", table.name.quoted(), keys_in(table, &quoted_key(table, "r"), 1));
    let params = key_params(table, keys);
    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
        params.iter().map(|p| (p as &(dyn ToSql + Sync), Type::TEXT_ARRAY)).collect();
    let rows = client.query_typed(&format!("WITH d AS ({sql} RETURNING 1) SELECT count(*) FROM d"), &typed).await;
    Ok(rows.on_db(db, || format!("deleting rows of {}", table.name))?.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
}

/// Inserts rows given as `to_jsonb` texts into the table on `db` (in the
/// caller's transaction), over the columns the replicator copies.
pub(crate) async fn insert_json(
    client: &Client,
    db: DbId,
    table: &TableInfo,
    rows: &[&str],
) -> Result<u64, ReplicaError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let array = format!("[{}]", rows.join(","));
    let qt = table.name.quoted();
    let cols = columns(table);
    let sql =
        format!("INSERT INTO {qt} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{qt}, $1::text::jsonb)");
    client.query_typed(&sql, &[(&array, Type::TEXT)]).await.on_db(db, || format!("writing rows of {}", table.name))?;
    Ok(rows.len() as u64)
}
