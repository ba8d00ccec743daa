//! The conflict log on PostgreSQL (`dugong.conflict_log`): both versions of
//! each conflicted row read in the run (`to_jsonb` of the row, on the source
//! that held it, in its run snapshot), the retention purge, and what
//! `dugong conflicts` reads back. Restoring a losing version is `restore`.

use super::node::{Node, Postgres};
use crate::apply::TableConflict;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{SyncPlan, TableInfo};
use crate::read::TextKey;
use crate::record::conflict::{
    json_null, utc, version_from_text, versions_wanted, ConflictKind, LogFilter, LogShape, LoggedConflict, RunConflict,
    Side,
};
use dugong_core::{quote_ident, DbId, TableName};
use futures_util::future::try_join_all;
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

/// Reads both versions of every conflicted row, one query per source and
/// table, in the sources' run transactions (before the apply).
pub async fn versions(
    pg: &Postgres,
    plan: &SyncPlan,
    conflicts: Vec<TableConflict<TextKey>>,
) -> Result<Vec<RunConflict>, ReplicaError> {
    let wanted = versions_wanted(&conflicts);
    let reads = wanted.iter().map(|((db, table), keys)| read_rows(pg.node(*db), &plan.tables[*table], keys));
    let found: Vec<HashMap<TextKey, Box<RawValue>>> = try_join_all(reads).await?;
    let rows: HashMap<(DbId, usize), HashMap<TextKey, Box<RawValue>>> = wanted.into_keys().zip(found).collect();
    let take = |db: DbId, table: usize, key: &TextKey| rows.get(&(db, table)).and_then(|r| r.get(key).cloned());
    Ok(conflicts
        .iter()
        .map(|c| {
            let winner_row = take(c.record.winner, c.table, &c.record.key);
            let loser_row = take(c.record.loser, c.table, &c.record.key);
            RunConflict::new(plan, c, c.record.key.clone(), winner_row, loser_row)
        })
        .collect())
}

/// The rows of `keys` on `node`, as JSON, by key; a key without a row is absent.
async fn read_rows(
    node: &Node,
    table: &TableInfo,
    keys: &[&TextKey],
) -> Result<HashMap<TextKey, Box<RawValue>>, ReplicaError> {
    let n = table.key.len();
    let mut columns: Vec<Vec<&str>> = vec![Vec::with_capacity(keys.len()); n];
    for key in keys {
        for (i, v) in key.iter().enumerate() {
            columns[i].push(v.as_str());
        }
    }
    let sql = format!(
        "SELECT {}, to_jsonb(dugong_row.*)::text FROM {} AS dugong_row WHERE {}",
        key_texts(table),
        table.name.quoted(),
        keys_in_arrays(table, 1)
    );
    let params: Vec<(&(dyn ToSql + Sync), Type)> =
        columns.iter().map(|c| (c as &(dyn ToSql + Sync), Type::TEXT_ARRAY)).collect();
    let ctx = || format!("reading both versions of conflicted rows of {}", table.name);
    let rows = node.client.query_typed(&sql, &params).await.on_db(node.id, ctx)?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let key: TextKey = (0..n).map(|i| r.get::<_, String>(i)).collect();
        let json = RawValue::from_string(r.get::<_, String>(n))
            .map_err(|e| ReplicaError::Protocol { db: node.id, message: format!("a row as JSON: {e}") })?;
        out.insert(key, json);
    }
    Ok(out)
}

/// The key columns of `dugong_row` as text, as the change logs' keys read.
pub(super) fn key_texts(table: &TableInfo) -> String {
    let parts: Vec<String> = table.key.iter().map(|c| format!("dugong_row.{}::text", quote_ident(&c.name))).collect();
    parts.join(", ")
}

/// `(key columns) IN (…)` over text arrays of key values, parameters `$first…`.
fn keys_in_arrays(table: &TableInfo, first: usize) -> String {
    super::rows::keys_in(table, &super::rows::quoted_key(table, "dugong_row"), first)
}

/// Deletes the sync's conflicts older than its retention on every database.
pub async fn purge(pg: &Postgres, plan: &SyncPlan) -> Result<u64, ReplicaError> {
    let sync = plan.name().as_str();
    let seconds = plan.sync.conflict_retention.as_secs_f64();
    // Typed and counted in SQL: one round trip, no statement prepared first.
    let sql = "WITH purged AS (
                   DELETE FROM dugong.conflict_log WHERE sync = $1 AND at < now() - make_interval(secs => $2)
                   RETURNING 1)
               SELECT count(*) FROM purged";
    let purged = try_join_all(pg.nodes.iter().map(|n| async move {
        let rows = n
            .client
            .query_typed(sql, &[(&sync, Type::TEXT), (&seconds, Type::FLOAT8)])
            .await
            .on_db(n.id, || "purging old conflicts".into())?;
        Ok::<u64, ReplicaError>(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }))
    .await?;
    Ok(purged.first().copied().unwrap_or(0))
}

/// Whether the database has a conflict log, and of which shape.
pub async fn log_shape(client: &Client) -> Result<LogShape, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('dugong.conflict_log') IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('dugong.conflict_log')
                            AND attname = 'conflict_id' AND NOT attisdropped)",
            &[],
        )
        .await?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (false, _) => LogShape::Missing,
        (true, false) => LogShape::Old,
        (true, true) => LogShape::Current,
    })
}

/// A timestamp column as microseconds since the epoch.
fn micros(column: &str) -> String {
    format!("(extract(epoch from {column}) * 1000000)::int8")
}

/// The conflicts `filter` asks for, newest first.
pub async fn read_log(client: &Client, filter: &LogFilter) -> Result<Vec<LoggedConflict>, tokio_postgres::Error> {
    let (schema, name) = match filter.table_parts() {
        Some((schema, name)) => (schema, Some(name)),
        None => (None, None),
    };
    let since = filter.since.map(|d| d.as_secs_f64());
    let limit = filter.limit.min(i64::MAX as usize) as i64;
    let sql = format!(
        "SELECT conflict_id, {at}, sync, table_schema, table_name, key, kind, winner, loser, {wc}, {lc},
                winner_row::text, loser_row::text, reason, {restored}
         FROM dugong.conflict_log
         WHERE sync = $1 AND ($2::text IS NULL OR table_schema = $2) AND ($3::text IS NULL OR table_name = $3)
           AND ($4::float8 IS NULL OR at >= now() - make_interval(secs => $4))
           AND ($5::text IS NULL OR starts_with(conflict_id, $5))
         ORDER BY at DESC, id DESC LIMIT $6",
        at = micros("at"),
        wc = micros("winner_committed"),
        lc = micros("loser_committed"),
        restored = micros("restored_at"),
    );
    let rows = client.query(&sql, &[&filter.sync, &schema, &name, &since, &filter.id_prefix, &limit]).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let winner_row: Option<String> = r.get(11);
            let loser_row: Option<String> = r.get(12);
            let recorded = r.get::<_, Option<String>>(6).is_some();
            let side = |database: String, committed: Option<i64>, row: Option<String>| Side {
                database,
                committed: committed.map(utc),
                // A version the log holds is JSON the server made; anything
                // else reads as no version rather than failing the listing.
                row: version_from_text(row).ok().flatten().unwrap_or_else(json_null),
            };
            LoggedConflict {
                id: r.get(0),
                at: utc(r.get(1)),
                sync: r.get(2),
                table: format!("{}.{}", r.get::<_, String>(3), r.get::<_, String>(4)),
                table_name: TableName::new(r.get::<_, String>(3), r.get::<_, String>(4)),
                key: r.get(5),
                kind: r.get::<_, Option<String>>(6).as_deref().and_then(ConflictKind::parse),
                winner: side(r.get(7), r.get(9), winner_row),
                loser: side(r.get(8), r.get(10), loser_row),
                versions_recorded: recorded,
                reason: r.get(13),
                restored_at: r.get::<_, Option<i64>>(14).map(utc),
            }
        })
        .collect())
}

/// Marks conflict `id` restored in this database's log. Returns whether it was there.
pub async fn mark_restored(client: &Client, id: &str) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE dugong.conflict_log SET restored_at = now() WHERE conflict_id = $1 AND restored_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(n > 0)
}
