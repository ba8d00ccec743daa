//! Applying a run's decisions: fetch each winning row from its source with
//! `COPY … TO STDOUT`, then on every other database delete the changed keys and
//! `COPY … FROM STDIN` the winners' rows, in that database's run transaction
//! (with `session_replication_role = replica`, so nothing echoes back).
//!
//! Rows travel in COPY's binary format when every column's type allows it and
//! every server runs the same major version ([`Prepared::copy_format`]): the
//! source then sends uuids, numbers and times as they are stored, and the
//! targets, whose one COPY backend bounds a catch-up, need not parse them from
//! text. Otherwise they travel as text.

use crate::catalog::TableInfo;
use crate::error::{ReplicaError, StatementContext};
use crate::prepare::{Node, Prepared};
use crate::resolve::{ConflictRecord, Resolution, SourceChanges};
use crate::run::{Key, KeySet};
use bytes::{Bytes, BytesMut};
use dugong_core::{quote_ident, quote_literal, DbId, TableName};
use futures_util::future::try_join_all;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::types::{ToSql, Type};

/// What every database does for one table in this run.
#[derive(Debug)]
pub struct TablePlan {
    /// Index into `Prepared::tables`.
    pub table: usize,
    pub truncate: Option<DbId>,
    /// Every changed key with its winner; in a `single` plan only the keys to
    /// delete first (the rows themselves are selected by the change window).
    pub winners: Vec<(Key, DbId)>,
    /// Per source, the keys it changed but lost: left out of its row fetch.
    pub lost: HashMap<DbId, Vec<Key>>,
    /// Sources that won at least one key.
    pub winning_sources: Vec<DbId>,
    /// Keys no other database should have (only inserted, by one source):
    /// copied without deleting them first.
    pub fresh: KeySet,
}

impl TablePlan {
    /// The plan of a table only `source` changed: it wins every key. `rewritten`
    /// are the keys the others delete before taking the rows (the rest are
    /// fresh: only inserted on the source).
    pub fn single(table: usize, source: DbId, rewritten: Vec<Key>) -> TablePlan {
        TablePlan {
            table,
            truncate: None,
            winners: rewritten.into_iter().map(|k| (k, source)).collect(),
            lost: HashMap::new(),
            winning_sources: vec![source],
            fresh: KeySet::default(),
        }
    }

    pub fn new(table: usize, sources: &[SourceChanges<Key>], resolution: Resolution<Key>) -> TablePlan {
        let winner_of: HashMap<&Key, DbId, foldhash::fast::RandomState> =
            resolution.winners.iter().map(|(k, d)| (k, *d)).collect();
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
        TablePlan {
            table,
            truncate: resolution.truncate,
            winners: resolution.winners,
            lost,
            winning_sources,
            fresh: KeySet::default(),
        }
    }
}

/// Rows fetched from one source for one table, as COPY OUT sent them.
#[derive(Debug, Default)]
pub struct Fetched {
    pub chunks: Vec<Bytes>,
    pub rows: u64,
}

/// The format rows travel in, from a source's COPY OUT straight into the
/// targets' COPY IN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary,
}

impl CopyFormat {
    /// The option list a `COPY` statement takes for this format.
    pub(crate) fn options(self) -> &'static str {
        match self {
            CopyFormat::Text => "",
            CopyFormat::Binary => " (FORMAT binary)",
        }
    }
}

/// Counts the rows in the messages of a COPY OUT. The server sends one
/// message per row; in binary format the first also starts with the file
/// header, and the last is the trailer alone (a field count of -1), no row.
#[derive(Debug)]
pub(crate) struct RowCounter {
    format: CopyFormat,
    header_seen: bool,
    pub(crate) rows: u64,
}

/// The signature that opens a binary COPY; flags and the length of a header
/// extension follow it, four bytes each.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl RowCounter {
    pub(crate) fn new(format: CopyFormat) -> RowCounter {
        RowCounter { format, header_seen: false, rows: 0 }
    }

    pub(crate) fn saw(&mut self, message: &[u8]) {
        match self.format {
            CopyFormat::Text => self.rows += 1,
            CopyFormat::Binary => {
                let mut rest = message;
                if !self.header_seen {
                    self.header_seen = true;
                    if rest.starts_with(BINARY_SIGNATURE) && rest.len() >= BINARY_SIGNATURE.len() + 8 {
                        let at = BINARY_SIGNATURE.len() + 4;
                        let extension = u32::from_be_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
                        rest = rest.get(at + 4 + extension as usize..).unwrap_or_default();
                    }
                }
                if rest.len() >= 2 && rest[..2] != [0xff, 0xff] {
                    self.rows += 1;
                }
            }
        }
    }
}

/// Counts of a run, in Bucardo's terms.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Rows deleted, summed over all databases written.
    pub deletes: u64,
    /// Rows read from sources (not multiplied by the databases written).
    pub inserts: u64,
    pub truncates: u64,
    /// Wall time of the deletes, and of streaming the rows.
    pub delete_time: Duration,
    pub copy_time: Duration,
}

fn column_list(table: &TableInfo) -> String {
    table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

fn key_list(table: &TableInfo) -> String {
    table.key.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// The `COPY … TO STDOUT` of the rows `source` won in `plan`: its changed keys
/// in this run's window (after `cursor`, below `bound`), less those it lost.
fn fetch_sql(p: &Prepared, plan: &TablePlan, source: &Node, window: &Window) -> String {
    let table = &p.tables[plan.table];
    let capture = &source.captures[&table.name];
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
    let mut sql = format!(
        "COPY (SELECT {} FROM {} WHERE ({}) IN (SELECT {} FROM {} WHERE {} AND dugong_txid < '{}'::xid8)",
        column_list(table),
        table.name.quoted(),
        key_list(table),
        kcols.join(", "),
        capture.delta,
        crate::run::not_shipped(&window.cursor),
        window.bound,
    );
    if let Some(lost) = plan.lost.get(&source.id) {
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
    sql.push_str(p.copy_format(table).options());
    sql
}

/// The change window a source's rows are read in this run.
#[derive(Debug, Clone)]
pub struct Window {
    pub db: DbId,
    /// The cursor the run started from (`pg_snapshot` text).
    pub cursor: String,
    /// The batch bound (`xid8` text).
    pub bound: String,
}

fn node(p: &Prepared, id: DbId) -> &Node {
    p.nodes.iter().find(|n| n.id == id).expect("every database of a plan is a node")
}

/// Streams `COPY … TO STDOUT` of `from` into `COPY … FROM STDIN` of every
/// target at once, so the source's reading and the targets' writing overlap.
/// Returns the number of rows.
async fn stream_copy(
    from: (&tokio_postgres::Client, DbId),
    out_sql: &str,
    targets: &[(&tokio_postgres::Client, DbId)],
    in_sql: &str,
    table: &TableInfo,
    format: CopyFormat,
) -> Result<u64, ReplicaError> {
    let mut sinks = Vec::with_capacity(targets.len());
    for (client, id) in targets {
        let sink = client.copy_in::<_, Bytes>(in_sql).await.map_err(|e| apply_error(*id, table, e))?;
        sinks.push((*id, Box::pin(sink)));
    }
    let stream = from.0.copy_out(out_sql).await.on_db(from.1, || format!("reading rows of {}", table.name))?;
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
pub async fn apply_all(p: &Prepared, plans: &[TablePlan], windows: &[Window]) -> Result<Totals, ReplicaError> {
    let window = |id: DbId| windows.iter().find(|w| w.db == id).expect("every winning source was read");
    // A database emptied by another's truncate takes its own winning rows back:
    // read them before it is emptied.
    let mut buffered: HashMap<(usize, DbId), Fetched> = HashMap::new();
    for (pi, plan) in plans.iter().enumerate() {
        let Some(truncator) = plan.truncate else { continue };
        for source in plan.winning_sources.iter().filter(|s| **s != truncator) {
            let n = node(p, *source);
            let table = &p.tables[plan.table];
            let sql = fetch_sql(p, plan, n, window(*source));
            let stream = n.client.copy_out(&sql).await.on_db(n.id, || format!("reading rows of {}", table.name))?;
            let chunks: Vec<Bytes> =
                stream.try_collect().await.on_db(n.id, || format!("reading rows of {}", table.name))?;
            let mut rows = RowCounter::new(p.copy_format(table));
            chunks.iter().for_each(|c| rows.saw(c));
            buffered.insert((pi, *source), Fetched { chunks, rows: rows.rows });
        }
    }

    let phase = Instant::now();
    let per_node = p.nodes.iter().map(|node| async move {
        let mut deletes = 0u64;
        for plan in plans {
            let table = &p.tables[plan.table];
            if plan.truncate.is_some_and(|t| t != node.id) {
                // DELETE, not TRUNCATE: foreign keys pointing here would make
                // TRUNCATE fail, and replica mode already skips their triggers.
                node.client
                    .execute(&format!("DELETE FROM {}", table.name.quoted()), &[])
                    .await
                    .on_db(node.id, || format!("emptying {} after a truncate", table.name))?;
            } else {
                deletes += delete_keys(node.id, &node.client, table, plan, node.id).await?;
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
        let format = p.copy_format(table);
        let in_sql = format!("COPY {} ({}) FROM STDIN{}", table.name.quoted(), column_list(table), format.options());
        for source in &plan.winning_sources {
            if let Some(fetched) = buffered.get(&(pi, *source)) {
                // Every database takes these rows: the others as usual, the
                // source itself because the truncate emptied it.
                for n in &p.nodes {
                    copy_in(&n.client, n.id, &in_sql, table, fetched).await?;
                }
                inserts += fetched.rows;
                continue;
            }
            let from = node(p, *source);
            let targets: Vec<(&tokio_postgres::Client, DbId)> =
                p.nodes.iter().filter(|n| n.id != *source).map(|n| (&n.client, n.id)).collect();
            let out_sql = fetch_sql(p, plan, from, window(*source));
            inserts += stream_copy((&from.client, from.id), &out_sql, &targets, &in_sql, table, format).await?;
        }
    }
    let truncates = plans.iter().filter(|p| p.truncate.is_some()).count() as u64;
    Ok(Totals { deletes, inserts, truncates, delete_time, copy_time: phase.elapsed() })
}

/// Deletes on database `me` every key whose winner is another database, but
/// the plan's fresh keys.
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
        if *winner != me && !plan.fresh.contains(key) {
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
    in_sql: &str,
    table: &TableInfo,
    fetched: &Fetched,
) -> Result<(), ReplicaError> {
    if fetched.rows == 0 {
        return Ok(());
    }
    let sink = client.copy_in::<_, Bytes>(in_sql).await.map_err(|e| apply_error(db, table, e))?;
    futures_util::pin_mut!(sink);
    for chunk in &fetched.chunks {
        sink.feed(chunk.clone()).await.map_err(|e| apply_error(db, table, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(extension: &[u8]) -> Vec<u8> {
        let mut h = BINARY_SIGNATURE.to_vec();
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&(extension.len() as u32).to_be_bytes());
        h.extend_from_slice(extension);
        h
    }

    /// A binary row of one int4 field.
    fn row(v: i32) -> Vec<u8> {
        let mut r = 1u16.to_be_bytes().to_vec();
        r.extend_from_slice(&4u32.to_be_bytes());
        r.extend_from_slice(&v.to_be_bytes());
        r
    }

    const TRAILER: [u8; 2] = [0xff, 0xff];

    fn count(format: CopyFormat, messages: &[Vec<u8>]) -> u64 {
        let mut c = RowCounter::new(format);
        messages.iter().for_each(|m| c.saw(m));
        c.rows
    }

    #[test]
    fn rows_are_counted_in_either_format_whatever_the_header() {
        assert_eq!(count(CopyFormat::Text, &[b"1\ta\n".to_vec(), b"2\t\\N\n".to_vec()]), 2);
        // As PostgreSQL sends it: the header with the first row, the trailer alone.
        let first = [header(b""), row(1)].concat();
        assert_eq!(count(CopyFormat::Binary, &[first, row(2), row(-1), TRAILER.to_vec()]), 3);
        // No rows: header and trailer in one message.
        assert_eq!(count(CopyFormat::Binary, &[[header(b""), TRAILER.to_vec()].concat()]), 0);
        // A header extension is skipped, and a header sent on its own is no row.
        let first = [header(b"ext"), row(-1)].concat();
        assert_eq!(count(CopyFormat::Binary, &[first, TRAILER.to_vec()]), 1);
        assert_eq!(count(CopyFormat::Binary, &[header(b""), row(0xffff), TRAILER.to_vec()]), 1);
    }
}
