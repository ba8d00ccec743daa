//! Applying a run's table plans on PostgreSQL: fetch each winning row from its
//! source with `COPY … TO STDOUT`, then on every other database delete the
//! changed keys and `COPY … FROM STDIN` the winners' rows, in that database's
//! run transaction (with `session_replication_role = replica`, so nothing
//! echoes back).
//!
//! Rows travel in COPY's binary format when every column's type allows it and
//! every server runs the same major version ([`Postgres::copy_format`]): the
//! source then sends uuids, numbers and times as they are stored, and the
//! targets, whose one COPY backend bounds a catch-up, need not parse them from
//! text. Otherwise they travel as text.

use super::capture::delta_key_columns;
use super::format::{CopyFormat, RowCounter};
use super::node::{Node, Postgres, Window};
use super::read::{as_literals, changed_rows_sql, column_list, key_list, opened, Lookup};
use crate::apply::{TablePlan, Totals};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{SyncPlan, TableInfo};
use crate::read::TextKey;
use bytes::{Bytes, BytesMut};
use dugong_core::{quote_ident, quote_literal, DbId};
use futures_util::future::try_join_all;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::Instant;
use tokio_postgres::types::{ToSql, Type};

/// Rows fetched from one source for one table, as COPY OUT sent them.
#[derive(Debug, Default)]
pub struct Fetched {
    pub chunks: Vec<Bytes>,
    pub rows: u64,
}

/// The `COPY … TO STDOUT` of the rows `source` won in `plan`: its changed keys
/// in this run's window (after `cursor`, below `bound`), less those it lost.
fn fetch_sql(pg: &Postgres, table: &TableInfo, plan: &TablePlan<TextKey>, source: &Node, window: &Window) -> String {
    format!(
        "COPY ({}) TO STDOUT{}",
        select_sql(table, plan, source, window, Lookup::Planned),
        pg.copy_format(table).options()
    )
}

/// The `SELECT` of the rows `source` won in `plan`, as [`fetch_sql`] copies
/// them, or as a small run reads them (`lookup`).
fn select_sql(table: &TableInfo, plan: &TablePlan<TextKey>, source: &Node, window: &Window, lookup: Lookup) -> String {
    let capture = &source.captures[&table.name];
    let (cursor, bound) = window.range(&table.name);
    let except = match plan.lost.get(&source.id) {
        Some(lost) => {
            let lost: Vec<&TextKey> = lost.iter().collect();
            format!(" AND ({}) NOT IN (VALUES {})", delta_key_columns(table).join(", "), key_values(table, &lost))
        }
        None => String::new(),
    };
    changed_rows_sql(table, &capture.delta, &format!("'{cursor}'::text"), &format!("'{bound}'::xid8"), &except, lookup)
}

/// Streams `COPY … TO STDOUT` of `from` into `COPY … FROM STDIN` of every
/// target at once, so the source's reading and the targets' writing overlap.
/// Returns the number of rows.
async fn stream_copy(
    from: (&tokio_postgres::Client, DbId),
    out_sql: &str,
    targets: &[(&Node, DbId)],
    in_sql: &str,
    table: &TableInfo,
    format: CopyFormat,
) -> Result<u64, ReplicaError> {
    // Every target's COPY starts while the source's starts: one round trip
    // for all of them.
    let sinks = try_join_all(targets.iter().map(|(node, id)| async move {
        let statement = copy_in_statement(node, table, in_sql).await?;
        let sink = opened(node, async {
            node.client.copy_in::<_, Bytes>(&statement).await.map_err(|e| apply_error(*id, table, e))
        })
        .await?;
        Ok::<_, ReplicaError>((*id, Box::pin(sink)))
    }));
    let stream = async { from.0.copy_out(out_sql).await.on_db(from.1, || format!("reading rows of {}", table.name)) };
    let (mut sinks, stream) = futures_util::future::try_join(sinks, stream).await?;
    futures_util::pin_mut!(stream);
    let mut rows = RowCounter::new(format);
    // The server sends one message per row; the targets parse fewer, larger
    // ones faster (as psql sends them).
    let mut pending = BytesMut::with_capacity(COPY_CHUNK + 4096);
    loop {
        let row = stream.next().await.transpose().on_db(from.1, || format!("reading rows of {}", table.name))?;
        if let Some(row) = &row {
            rows.saw(row);
            pending.extend_from_slice(row);
        }
        if pending.len() >= COPY_CHUNK || (row.is_none() && !pending.is_empty()) {
            let chunk = pending.split().freeze();
            for (id, sink) in sinks.iter_mut() {
                sink.feed(chunk.clone()).await.map_err(|e| apply_error(*id, table, e))?;
            }
        }
        if row.is_none() {
            break;
        }
    }
    for (id, mut sink) in sinks {
        sink.as_mut().finish().await.map_err(|e| apply_error(id, table, e))?;
    }
    Ok(rows.rows)
}

/// The size of the COPY messages sent to targets.
const COPY_CHUNK: usize = 64 * 1024;

/// Applies every plan on every database of the sync, each in its open run
/// transaction: first the deletes everywhere, then each winning source's rows
/// streamed straight into the databases that take them.
///
/// A run that ships few change rows (`RunLimits::one_flight_rows`) and no
/// truncate is applied in one flight instead: its rows are read as SQL
/// literals, and each target's deletes and inserts go with its commit, in one
/// message — they become visible there half a round trip after they were
/// sent, where COPY waits for the server three times. Such a run only reads
/// the rows here, and returns per database the statements its commit carries.
pub async fn apply_all(
    pg: &Postgres,
    p: &SyncPlan,
    plans: &[TablePlan<TextKey>],
) -> Result<(Totals, Vec<(DbId, String)>), ReplicaError> {
    if pg.ships_little() && plans.iter().all(|plan| plan.truncate.is_none()) {
        return stage_all(pg, p, plans).await;
    }
    Ok((stream_all(pg, p, plans).await?, Vec::new()))
}

/// The one-flight apply of a small run: every winning row read from its
/// source as a tuple of literals, and per database the statements that apply
/// them — deletes first, as [`stream_all`] does — to send with its commit.
async fn stage_all(
    pg: &Postgres,
    p: &SyncPlan,
    plans: &[TablePlan<TextKey>],
) -> Result<(Totals, Vec<(DbId, String)>), ReplicaError> {
    let phase = Instant::now();
    // Rows read from each source: one query per table, all at once.
    let reads = plans.iter().flat_map(|plan| plan.winning_sources.iter().map(move |s| (plan, *s))).map(|(plan, s)| {
        let table = &p.tables[plan.table];
        let node = pg.node(s);
        // Read ahead with the window, unless the source lost some of them.
        let ahead = pg.window(s).ahead_rows(plan.table).filter(|_| !plan.lost.contains_key(&s));
        let sql = as_literals(table, &select_sql(table, plan, node, pg.window(s), Lookup::ByKey));
        async move {
            if let Some(rows) = ahead {
                return Ok((plan.table, s, rows.to_vec()));
            }
            let messages =
                node.client.simple_query(&sql).await.on_db(s, || format!("reading rows of {}", table.name))?;
            let rows: Vec<String> = messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect();
            Ok::<_, ReplicaError>((plan.table, s, rows))
        }
    });
    let fetched = try_join_all(reads).await?;
    let mut totals = Totals::default();
    let mut staged = Vec::with_capacity(pg.nodes.len());
    for node in &pg.nodes {
        let mut sql = String::new();
        for plan in plans {
            let table = &p.tables[plan.table];
            let keys: Vec<&TextKey> =
                plan.winners.iter().filter(|(k, w)| *w != node.id && !plan.fresh.contains(k)).map(|(k, _)| k).collect();
            if !keys.is_empty() {
                totals.deletes += keys.len() as u64;
                sql.push_str(&format!(
                    "DELETE FROM {} WHERE ({}) IN (VALUES {});\n",
                    table.name.quoted(),
                    key_list(table),
                    key_values(table, &keys)
                ));
            }
        }
        for (ti, _, rows) in fetched.iter().filter(|(_, s, rows)| *s != node.id && !rows.is_empty()) {
            let table = &p.tables[*ti];
            sql.push_str(&format!(
                "INSERT INTO {} ({}) VALUES {};\n",
                table.name.quoted(),
                column_list(table),
                rows.join(", ")
            ));
        }
        if !sql.is_empty() {
            staged.push((node.id, sql));
        }
    }
    totals.inserts = fetched.iter().map(|(_, _, rows)| rows.len() as u64).sum();
    totals.copy_time = phase.elapsed();
    Ok((totals, staged))
}

/// `('a'::int, 'b'::text), …`: keys as typed literals for `IN (VALUES …)`.
fn key_values(table: &TableInfo, keys: &[&TextKey]) -> String {
    let values: Vec<String> = keys
        .iter()
        .map(|key| {
            let parts: Vec<String> =
                key.iter().zip(&table.key).map(|(v, c)| format!("{}::{}", quote_literal(v), c.type_sql)).collect();
            format!("({})", parts.join(", "))
        })
        .collect();
    values.join(", ")
}

/// Applies a run by streaming: deletes everywhere, then COPY from each
/// winning source into every other database.
async fn stream_all(pg: &Postgres, p: &SyncPlan, plans: &[TablePlan<TextKey>]) -> Result<Totals, ReplicaError> {
    // A database emptied by another's truncate takes its own winning rows back:
    // read them before it is emptied.
    let mut buffered: HashMap<(usize, DbId), Fetched> = HashMap::new();
    for (pi, plan) in plans.iter().enumerate() {
        let Some(truncator) = plan.truncate else { continue };
        for source in plan.winning_sources.iter().filter(|s| **s != truncator) {
            let n = pg.node(*source);
            let table = &p.tables[plan.table];
            let sql = fetch_sql(pg, table, plan, n, pg.window(*source));
            let stream = n.client.copy_out(&sql).await.on_db(n.id, || format!("reading rows of {}", table.name))?;
            let chunks: Vec<Bytes> =
                stream.try_collect().await.on_db(n.id, || format!("reading rows of {}", table.name))?;
            let mut rows = RowCounter::new(pg.copy_format(table));
            chunks.iter().for_each(|c| rows.saw(c));
            buffered.insert((pi, *source), Fetched { chunks, rows: rows.rows });
        }
    }

    let phase = Instant::now();
    let per_node = pg.nodes.iter().map(|node| async move {
        let mut deletes = 0u64;
        for plan in plans {
            let table = &p.tables[plan.table];
            if plan.truncate.is_some_and(|t| t != node.id) {
                // DELETE, not TRUNCATE: foreign keys pointing here would make
                // TRUNCATE fail, and replica mode already skips their triggers.
                let empty = async {
                    node.client
                        .execute(&format!("DELETE FROM {}", table.name.quoted()), &[])
                        .await
                        .on_db(node.id, || format!("emptying {} after a truncate", table.name))
                };
                opened(node, empty).await?;
            } else {
                deletes += delete_keys(node, table, plan).await?;
            }
        }
        Ok::<u64, ReplicaError>(deletes)
    });
    let deletes: u64 = try_join_all(per_node).await?.into_iter().sum();
    let delete_time = phase.elapsed();
    let phase = Instant::now();

    let mut inserts = 0u64;
    for (pi, plan) in plans.iter().enumerate() {
        let table = &p.tables[plan.table];
        let format = pg.copy_format(table);
        let in_sql = format!("COPY {} ({}) FROM STDIN{}", table.name.quoted(), column_list(table), format.options());
        for source in &plan.winning_sources {
            if let Some(fetched) = buffered.get(&(pi, *source)) {
                // Every database takes these rows: the others as usual, the
                // source itself because the truncate emptied it.
                for n in &pg.nodes {
                    copy_in(n, &in_sql, table, fetched).await?;
                }
                inserts += fetched.rows;
                continue;
            }
            let from = pg.node(*source);
            let targets: Vec<(&Node, DbId)> = pg.nodes.iter().filter(|n| n.id != *source).map(|n| (n, n.id)).collect();
            let out_sql = fetch_sql(pg, table, plan, from, pg.window(*source));
            inserts += stream_copy((&from.client, from.id), &out_sql, &targets, &in_sql, table, format).await?;
        }
    }
    let truncates = plans.iter().filter(|p| p.truncate.is_some()).count() as u64;
    Ok(Totals { deletes, inserts, truncates, delete_time, copy_time: phase.elapsed() })
}

/// Deletes on `node` every key whose winner is another database, but the
/// plan's fresh keys.
async fn delete_keys(node: &Node, table: &TableInfo, plan: &TablePlan<TextKey>) -> Result<u64, ReplicaError> {
    let db = node.id;
    let n = table.key.len();
    let mut columns: Vec<Vec<&str>> = vec![Vec::new(); n];
    for (key, winner) in &plan.winners {
        if *winner != db && !plan.fresh.contains(key) {
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
    let rows =
        opened(node, async { node.client.query_typed(&sql, &params).await.map_err(|e| apply_error(db, table, e)) })
            .await?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
}

/// The prepared `COPY … FROM STDIN` of `table` on `node`: prepared on first
/// use and kept, so a run's COPY costs no round trip to prepare it.
async fn copy_in_statement(
    node: &Node,
    table: &TableInfo,
    in_sql: &str,
) -> Result<tokio_postgres::Statement, ReplicaError> {
    let kept = node.copy_in.lock().unwrap_or_else(|p| p.into_inner()).get(&table.name).cloned();
    if let Some(statement) = kept {
        return Ok(statement);
    }
    let statement = node.client.prepare(in_sql).await.map_err(|e| apply_error(node.id, table, e))?;
    node.copy_in.lock().unwrap_or_else(|p| p.into_inner()).insert(table.name.clone(), statement.clone());
    Ok(statement)
}

async fn copy_in(node: &Node, in_sql: &str, table: &TableInfo, fetched: &Fetched) -> Result<(), ReplicaError> {
    let db = node.id;
    if fetched.rows == 0 {
        return Ok(());
    }
    let statement = copy_in_statement(node, table, in_sql).await?;
    let sink = opened(node, async {
        node.client.copy_in::<_, Bytes>(&statement).await.map_err(|e| apply_error(db, table, e))
    })
    .await?;
    futures_util::pin_mut!(sink);
    for chunk in &fetched.chunks {
        sink.feed(chunk.clone()).await.map_err(|e| apply_error(db, table, e))?;
    }
    sink.finish().await.map_err(|e| apply_error(db, table, e))?;
    Ok(())
}

/// An error of a run's commit, which carries a small run's statements: a
/// unique violation on a replicated table's primary key is a clash with an
/// application's insert, as [`apply_error`] says.
pub(crate) fn commit_error(db: DbId, p: &SyncPlan, e: tokio_postgres::Error) -> ReplicaError {
    if let Some(dbe) = e.as_db_error() {
        if dbe.code().code() == "23505" {
            if let Some(table) = p.tables.iter().find(|t| dbe.constraint() == Some(t.key_constraint.as_str())) {
                return ReplicaError::ConcurrentWrite { db, table: table.name.clone() };
            }
        }
    }
    super::node::run_error(db, || "committing the run".into(), e)
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
