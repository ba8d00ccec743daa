//! Applying a run's decisions: fetch each winning row from its source with
//! `COPY … TO STDOUT`, then on every other database delete the changed keys and
//! `COPY … FROM STDIN` the winners' rows, in that database's run transaction
//! (with `session_replication_role = replica`, so nothing echoes back).

use crate::catalog::TableInfo;
use crate::error::{ReplicaError, StatementContext};
use crate::prepare::Prepared;
use crate::resolve::{ConflictRecord, Resolution, SourceChanges};
use crate::run::Key;
use bytes::Bytes;
use dugong_core::{quote_ident, quote_literal, DbId, TableName};
use futures_util::future::try_join_all;
use futures_util::{SinkExt, TryStreamExt};
use std::collections::HashMap;
use tokio_postgres::types::{ToSql, Type};

/// What every database does for one table in this run.
#[derive(Debug)]
pub struct TablePlan {
    /// Index into `Prepared::tables`.
    pub table: usize,
    pub truncate: Option<DbId>,
    pub winners: Vec<(Key, DbId)>,
    /// Per source, the keys it changed but lost: left out of its row fetch.
    pub lost: HashMap<DbId, Vec<Key>>,
    /// Sources that won at least one key.
    pub winning_sources: Vec<DbId>,
}

impl TablePlan {
    pub fn new(table: usize, sources: &[SourceChanges<Key>], resolution: Resolution<Key>) -> TablePlan {
        let winner_of: HashMap<&Key, DbId> = resolution.winners.iter().map(|(k, d)| (k, *d)).collect();
        let mut lost: HashMap<DbId, Vec<Key>> = HashMap::new();
        let mut winning_sources = Vec::new();
        for s in sources {
            let mut won_any = false;
            for (key, _) in &s.keys {
                if winner_of.get(key) == Some(&s.db) {
                    won_any = true;
                } else {
                    lost.entry(s.db).or_default().push(key.clone());
                }
            }
            if won_any {
                winning_sources.push(s.db);
            }
        }
        TablePlan { table, truncate: resolution.truncate, winners: resolution.winners, lost, winning_sources }
    }
}

/// Rows fetched from one source for one table, in COPY text format.
#[derive(Debug, Default)]
pub struct Fetched {
    pub chunks: Vec<Bytes>,
    pub rows: u64,
}

/// Counts of a run, in Bucardo's terms.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Rows deleted, summed over all databases written.
    pub deletes: u64,
    /// Rows read from sources (not multiplied by the databases written).
    pub inserts: u64,
    pub truncates: u64,
}

fn column_list(table: &TableInfo) -> String {
    table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

fn key_list(table: &TableInfo) -> String {
    table.key.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// Fetches the winning rows of each plan from their sources. `reads` gives, per
/// source node index, the run's bound and the cursor it read from.
pub async fn fetch_rows(
    p: &Prepared,
    plans: &[TablePlan],
    reads: &[(usize, String, String)],
) -> Result<HashMap<(usize, DbId), Fetched>, ReplicaError> {
    let mut jobs = Vec::new();
    for (pi, plan) in plans.iter().enumerate() {
        for source in &plan.winning_sources {
            let Some((ni, bound, cursor)) = reads.iter().find(|(ni, _, _)| p.nodes[*ni].id == *source) else {
                continue;
            };
            jobs.push((pi, *ni, bound.as_str(), cursor.as_str()));
        }
    }
    let fetches = jobs.into_iter().map(|(pi, ni, bound, cursor)| async move {
        let plan = &plans[pi];
        let table = &p.tables[plan.table];
        let node = &p.nodes[ni];
        let capture = &node.captures[&table.name];
        let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
        let mut sql = format!(
            "COPY (SELECT {} FROM {} WHERE ({}) IN (SELECT {} FROM {} WHERE NOT pg_visible_in_snapshot(dugong_txid, '{cursor}'::pg_snapshot) AND dugong_txid < '{bound}'::xid8)",
            column_list(table),
            table.name.quoted(),
            key_list(table),
            kcols.join(", "),
            capture.delta,
        );
        if let Some(lost) = plan.lost.get(&node.id) {
            let values: Vec<String> = lost
                .iter()
                .map(|key| {
                    let parts: Vec<String> =
                        key.iter().zip(&table.key).map(|(v, c)| format!("{}::{}", quote_literal(v), c.type_sql)).collect();
                    format!("({})", parts.join(", "))
                })
                .collect();
            sql.push_str(&format!(" AND ({}) NOT IN (VALUES {})", key_list(table), values.join(", ")));
        }
        sql.push_str(") TO STDOUT");
        let stream = node.client.copy_out(&sql).await.on_db(node.id, || format!("reading rows of {}", table.name))?;
        let chunks: Vec<Bytes> = stream.try_collect().await.on_db(node.id, || format!("reading rows of {}", table.name))?;
        let rows = chunks.iter().map(|c| c.iter().filter(|b| **b == b'\n').count() as u64).sum();
        Ok::<_, ReplicaError>(((pi, node.id), Fetched { chunks, rows }))
    });
    Ok(try_join_all(fetches).await?.into_iter().collect())
}

/// Applies every plan on every database of the sync, each in its open run
/// transaction.
pub async fn apply_all(
    p: &Prepared,
    plans: &[TablePlan],
    rows: &mut HashMap<(usize, DbId), Fetched>,
) -> Result<Totals, ReplicaError> {
    let rows = &*rows;
    let per_node = p.nodes.iter().map(|node| async move {
        let mut deletes = 0u64;
        for (pi, plan) in plans.iter().enumerate() {
            let table = &p.tables[plan.table];
            let emptied = plan.truncate.is_some_and(|t| t != node.id);
            if emptied {
                // DELETE, not TRUNCATE: foreign keys pointing here would make
                // TRUNCATE fail, and replica mode already skips their triggers.
                node.client
                    .execute(&format!("DELETE FROM {}", table.name.quoted()), &[])
                    .await
                    .on_db(node.id, || format!("emptying {} after a truncate", table.name))?;
            } else {
                deletes += delete_keys(node.id, &node.client, table, plan, node.id).await?;
            }
            for source in &plan.winning_sources {
                if *source == node.id && !emptied {
                    continue;
                }
                if let Some(fetched) = rows.get(&(pi, *source)) {
                    copy_in(&node.client, node.id, table, fetched).await?;
                }
            }
        }
        Ok::<u64, ReplicaError>(deletes)
    });
    let deletes: u64 = try_join_all(per_node).await?.into_iter().sum();
    let inserts = rows.values().map(|f| f.rows).sum();
    let truncates = plans.iter().filter(|p| p.truncate.is_some()).count() as u64;
    Ok(Totals { deletes, inserts, truncates })
}

/// Deletes on database `me` every key whose winner is another database.
async fn delete_keys(
    db: DbId,
    client: &tokio_postgres::Client,
    table: &TableInfo,
    plan: &TablePlan,
    me: DbId,
) -> Result<u64, ReplicaError> {
    let n = table.key.len();
    let mut columns: Vec<Vec<&str>> = vec![Vec::new(); n];
    for (key, winner) in &plan.winners {
        if *winner != me {
            for (i, v) in key.iter().enumerate() {
                columns[i].push(v.as_str());
            }
        }
    }
    if columns[0].is_empty() {
        return Ok(0);
    }
    let sql = if n == 1 {
        format!(
            "DELETE FROM {} WHERE {} = ANY($1::text[]::{}[])",
            table.name.quoted(),
            quote_ident(&table.key[0].name),
            table.key[0].type_sql
        )
    } else {
        let params: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
        let casts: Vec<String> = table.key.iter().enumerate().map(|(i, c)| format!("u{i}::{}", c.type_sql)).collect();
        let names: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
        format!(
            "DELETE FROM {} WHERE ({}) IN (SELECT {} FROM unnest({}) AS u({}))",
            table.name.quoted(),
            key_list(table),
            casts.join(", "),
            params.join(", "),
            names.join(", ")
        )
    };
    // Typed parameters and a counting CTE: one round trip, no separate prepare.
    let sql = format!("WITH d AS ({sql} RETURNING 1) SELECT count(*) FROM d");
    let params: Vec<(&(dyn ToSql + Sync), Type)> =
        columns.iter().map(|c| (c as &(dyn ToSql + Sync), Type::TEXT_ARRAY)).collect();
    let rows = client.query_typed(&sql, &params).await.map_err(|e| apply_error(db, table, e))?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
}

async fn copy_in(
    client: &tokio_postgres::Client,
    db: DbId,
    table: &TableInfo,
    fetched: &Fetched,
) -> Result<(), ReplicaError> {
    if fetched.rows == 0 {
        return Ok(());
    }
    let sql = format!("COPY {} ({}) FROM STDIN", table.name.quoted(), column_list(table));
    let sink = client.copy_in::<_, Bytes>(&sql).await.map_err(|e| apply_error(db, table, e))?;
    futures_util::pin_mut!(sink);
    for chunk in &fetched.chunks {
        sink.send(chunk.clone()).await.map_err(|e| apply_error(db, table, e))?;
    }
    sink.finish().await.map_err(|e| apply_error(db, table, e))?;
    Ok(())
}

/// A unique violation on the primary key while applying means an application
/// inserted the same key after the run's snapshot: a clash to retry at once.
/// Anything else (a unique constraint on other columns, a check) is the sync's
/// problem, named with its constraint.
fn apply_error(db: DbId, table: &TableInfo, e: tokio_postgres::Error) -> ReplicaError {
    if let Some(dbe) = e.as_db_error() {
        if dbe.code().code() == "23505" && dbe.constraint() == Some(table.key_constraint.as_str()) {
            return ReplicaError::ConcurrentWrite { db, table: table.name.clone() };
        }
    }
    ReplicaError::Statement { db, context: format!("applying changes to {}", table.name), source: e }
}

/// Records every conflict of the run in each database's conflict log, in the
/// run transaction.
pub async fn log_conflicts(p: &Prepared, conflicts: &[(TableName, ConflictRecord<Key>)]) -> Result<(), ReplicaError> {
    let records: Vec<serde_json::Value> = conflicts
        .iter()
        .map(|(table, c)| {
            serde_json::json!({
                "table_schema": table.schema,
                "table_name": table.name,
                "key": c.key,
                "winner": c.winner.to_string(),
                "loser": c.loser.to_string(),
                "winner_us": c.winner_time,
                "loser_us": c.loser_time,
                "reason": if c.by_truncate { "truncate" } else { "changed on both" },
            })
        })
        .collect();
    let json = serde_json::Value::Array(records).to_string();
    let sync = p.sync.name.as_str();
    let sql = "INSERT INTO dugong.conflict_log (sync, table_schema, table_name, key, winner, loser, winner_committed, loser_committed, reason)
        SELECT $1, x.table_schema, x.table_name, x.key, x.winner, x.loser,
               to_timestamp(x.winner_us / 1000000.0), to_timestamp(x.loser_us / 1000000.0), x.reason
        FROM jsonb_to_recordset($2::text::jsonb) AS x(table_schema text, table_name text, key text[], winner text, loser text,
                                                   winner_us bigint, loser_us bigint, reason text)";
    try_join_all(p.nodes.iter().map(|n| {
        let json = &json;
        async move { n.client.execute(sql, &[&sync, json]).await.on_db(n.id, || "recording conflicts".into()) }
    }))
    .await?;
    Ok(())
}
