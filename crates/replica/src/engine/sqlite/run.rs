//! One run of a SQLite sync — the same protocol as on PostgreSQL (`crate::run`):
//! read every source's pending changes, resolve conflicts per row with
//! [`crate::resolve`], apply to every other file, commit everywhere, and only
//! then advance the sources' cursors and purge what every sync shipped.
//!
//! Every file's run transaction is `BEGIN IMMEDIATE`: it holds the file's write
//! lock from the start, so the changes read, the rows fetched and the rows
//! written all belong to one consistent state, and an application writing the
//! same file meanwhile simply waits (its busy timeout) — as the run waits for
//! the application's writes. A crash at any point repeats at most the last
//! run; apply is an upsert or delete by key, so repeating it is harmless.

use super::capture::delta_name;
use super::catalog::quoted;
use super::state::micros;
use super::value::{KeyValue, SqliteKey};
use super::{lease, state, Node, Prepared};
use crate::catalog::TableInfo;
use crate::error::{ReplicaError, StatementContext};
use crate::resolve::{self, CommitTime, ConflictRecord, SourceChanges};
use crate::run::{RunLimits, RunOutcome};
use dugong_core::{quote_ident, DbId, TableName};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, CachedStatement, OptionalExtension, Params};
use std::time::{Duration, Instant, SystemTime};

/// Whether any source has changes past this sync's cursor: one read of the
/// change counter per source (a WAL read, never blocked by writers).
pub fn pending(p: &Prepared) -> Result<bool, ReplicaError> {
    for node in p.nodes.iter().filter(|n| n.source) {
        if counter(node)? > node.cursor {
            return Ok(true);
        }
    }
    Ok(false)
}

fn counter(node: &Node) -> Result<i64, ReplicaError> {
    node.conn
        .query_row("SELECT seq FROM dugong_counter WHERE id = 1", [], |r| r.get(0))
        .on_db(node.id, || "polling the change logs".into())
}

/// Runs the sync once; returns at once with `empty` when nothing is pending.
pub fn run_once(p: &mut Prepared, limits: RunLimits) -> Result<RunOutcome, ReplicaError> {
    if !pending(p)? {
        return Ok(RunOutcome { empty: true, ..Default::default() });
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    match run_in_transactions(p, limits) {
        Ok((mut outcome, advances)) => {
            outcome.started = Some(started);
            let committed = p.nodes.iter().try_for_each(|node| {
                state::record_good(p, node, &outcome)?;
                node.conn
                    .execute_batch("DELETE FROM dugong_applying; COMMIT")
                    .on_db(node.id, || "committing the run".into())
            });
            if let Err(e) = committed {
                // Files that committed keep the run; repeating it is harmless.
                rollback_all(p);
                return Err(e);
            }
            advance_cursors(p, &advances)?;
            outcome.duration = clock.elapsed();
            Ok(outcome)
        }
        Err(e) => {
            rollback_all(p);
            Err(e)
        }
    }
}

/// Best effort; a file whose transaction already ended is left alone.
pub(super) fn rollback_all(p: &Prepared) {
    for n in &p.nodes {
        if !n.conn.is_autocommit() {
            let _ = n.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Where a source's cursor goes after the run.
struct Advance {
    db: DbId,
    to: i64,
}

/// One table's pending changes on one source.
type Changes = Vec<(SqliteKey, CommitTime)>;

/// A decided key: its winner and the winning row (`None`: the key is gone).
type Decided = (SqliteKey, DbId, Option<Vec<Value>>);

/// One table's decided keys, with the SQL that writes them (made once per table and run).
struct TableWrites<'a> {
    table: &'a TableInfo,
    delete: String,
    upsert: String,
    rows: Vec<Decided>,
}

/// How long a run waits for the write lock of its second and later files. The
/// first one may take the full busy timeout, since nothing is held yet; after
/// that, waiting long would keep the files already locked from their own
/// applications, whose writes have a busy timeout too. A run that cannot get
/// every lock soon lets go of all of them and is retried at once.
const LATER_LOCK_WAIT: Duration = Duration::from_millis(100);

fn begin(node: &Node, first: bool) -> Result<(), ReplicaError> {
    let ctx = || "starting the run transaction (waiting for the file's write lock)".to_string();
    if first {
        return node.conn.execute_batch("BEGIN IMMEDIATE").on_db(node.id, ctx);
    }
    node.conn.busy_timeout(LATER_LOCK_WAIT).on_db(node.id, ctx)?;
    let result = node.conn.execute_batch("BEGIN IMMEDIATE").on_db(node.id, ctx);
    node.conn.busy_timeout(super::open::BUSY_TIMEOUT).on_db(node.id, ctx)?;
    result
}

fn run_in_transactions(p: &Prepared, limits: RunLimits) -> Result<(RunOutcome, Vec<Advance>), ReplicaError> {
    for (i, node) in p.nodes.iter().enumerate() {
        begin(node, i == 0)?;
        lease::renew(&node.conn, node.id, &p.sync.name, &p.owner)?;
        // From here on, nothing this transaction writes is captured.
        node.conn
            .execute_batch("INSERT OR IGNORE INTO dugong_applying (id) VALUES (1)")
            .on_db(node.id, || "starting the run transaction".into())?;
    }

    // 1. Every source's changes past its cursor, up to a batch bound.
    let mut reads: Vec<(usize, Vec<Changes>)> = Vec::new();
    let mut advances = Vec::new();
    let mut outcome = RunOutcome::default();
    let mut oldest: Option<i64> = None;
    for (i, node) in p.nodes.iter().enumerate().filter(|(_, n)| n.source) {
        let head = counter(node)?;
        let bound = batch_bound(p, node, limits)?.unwrap_or(head);
        outcome.more |= bound < head;
        let mut per_table = Vec::with_capacity(p.tables.len());
        for table in &p.tables {
            let keys = match node.captures.get(&table.name) {
                Some(id) => read_keys(node, table, *id, bound)?,
                None => Vec::new(),
            };
            for (_, t) in &keys {
                if let Some(t) = t {
                    oldest = Some(oldest.map_or(*t, |o: i64| o.min(*t)));
                }
            }
            per_table.push(keys);
        }
        reads.push((i, per_table));
        advances.push(Advance { db: node.id, to: bound });
    }

    // 2. Resolve each table; fetch the winning rows from their sources before
    // anything is written.
    let mut writes: Vec<TableWrites> = Vec::new();
    for (ti, table) in p.tables.iter().enumerate() {
        // Nothing reads a table's changes after its resolution: move them.
        let sources: Vec<SourceChanges<SqliteKey>> = reads
            .iter_mut()
            .map(|(i, r)| SourceChanges { db: p.nodes[*i].id, keys: std::mem::take(&mut r[ti]), truncated: None })
            .collect();
        if sources.iter().all(|s| s.keys.is_empty()) {
            continue;
        }
        let resolution = resolve::resolve(&p.sync.conflict_strategy, &p.order, &sources)
            .map_err(|aborted| resolve::abort_error(&table.name, &aborted))?;
        for c in &resolution.conflicts {
            outcome.conflicts.push((table.name.clone(), text_record(c)));
        }
        let mut rows = Vec::with_capacity(resolution.winners.len());
        let fetch = fetch_sql(table);
        let ctx = || format!("reading rows of {}", table.name);
        // One statement per file, prepared (from the connection's cache) when
        // the file first wins a key, and used for all the keys it wins.
        let mut fetches: Vec<Option<CachedStatement>> = p.nodes.iter().map(|_| None).collect();
        for (key, winner) in resolution.winners {
            let at = p.nodes.iter().position(|n| n.id == winner).expect("every database of a run is a node");
            let stmt = match &mut fetches[at] {
                Some(stmt) => stmt,
                slot => slot.insert(p.nodes[at].conn.prepare_cached(&fetch).on_db(winner, ctx)?),
            };
            let row = stmt
                .query_row(params_from_iter(key.iter()), |r| {
                    (0..table.columns.len()).map(|c| r.get::<_, Value>(c)).collect::<Result<Vec<_>, _>>()
                })
                .optional()
                .on_db(winner, ctx)?;
            outcome.inserts += u64::from(row.is_some());
            rows.push((key, winner, row));
        }
        writes.push(TableWrites { table, delete: delete_sql(table), upsert: upsert_sql(table), rows });
    }

    // 3. Apply everywhere but at the winner: deletions first (a key that moved
    // frees its unique values), then upserts.
    for node in &p.nodes {
        for w in &writes {
            let gone = w.rows.iter().filter(|(_, winner, row)| *winner != node.id && row.is_none());
            outcome.deletes +=
                apply_each(node, w.table, &w.delete, gone.map(|(key, _, _)| params_from_iter(key.iter())))?;
        }
        for w in &writes {
            let kept = w.rows.iter().filter(|(_, winner, _)| *winner != node.id).filter_map(|(_, _, row)| row.as_ref());
            apply_each(node, w.table, &w.upsert, kept.map(|values| params_from_iter(values.iter())))?;
        }
    }
    if !outcome.conflicts.is_empty() {
        log_conflicts(p, &outcome.conflicts)?;
    }
    outcome.lag = oldest.map(|t| Duration::from_micros((micros(SystemTime::now()) - t).max(0) as u64));
    Ok((outcome, advances))
}

/// Runs `sql` on `node` once per parameter list; returns the rows it changed.
/// The statement is prepared once, only when there is something to write, and
/// from the connection's cache, so the next run reuses it.
fn apply_each<P: Params>(
    node: &Node,
    table: &TableInfo,
    sql: &str,
    params: impl Iterator<Item = P>,
) -> Result<u64, ReplicaError> {
    let mut params = params.peekable();
    if params.peek().is_none() {
        return Ok(0);
    }
    let ctx = || format!("applying changes to {}", table.name);
    let mut stmt = node.conn.prepare_cached(sql).on_db(node.id, ctx)?;
    let mut changed = 0;
    for p in params {
        changed += stmt.execute(p).on_db(node.id, ctx)? as u64;
    }
    Ok(changed)
}

/// The sequence number of the `batch_rows`-th pending change, when more are pending.
fn batch_bound(p: &Prepared, node: &Node, limits: RunLimits) -> Result<Option<i64>, ReplicaError> {
    let parts: Vec<String> = p
        .tables
        .iter()
        .filter_map(|t| node.captures.get(&t.name))
        .map(|id| format!("SELECT seq FROM {} WHERE seq > ?1", delta_name(*id)))
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    let sql = format!("SELECT seq FROM ({}) ORDER BY seq LIMIT 1 OFFSET ?2", parts.join(" UNION ALL "));
    node.conn
        .query_row(&sql, rusqlite::params![node.cursor, limits.batch_rows.saturating_sub(1) as i64], |r| r.get(0))
        .optional()
        .on_db(node.id, || "sizing the batch".into())
}

/// Each changed key once, with the time of its latest change.
fn read_keys(node: &Node, table: &TableInfo, id: i64, bound: i64) -> Result<Changes, ReplicaError> {
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "SELECT {k}, max(at) FROM {delta} WHERE seq > ?1 AND seq <= ?2 GROUP BY {k}",
        k = kcols.join(", "),
        delta = delta_name(id)
    );
    let n = table.key.len();
    let ctx = || format!("reading the changes of {}", table.name);
    let mut stmt = node.conn.prepare_cached(&sql).on_db(node.id, ctx)?;
    let rows = stmt
        .query_map([node.cursor, bound], |r| {
            let key: SqliteKey = (0..n).map(|i| r.get_ref(i).map(KeyValue::from)).collect::<Result<_, _>>()?;
            Ok((key, r.get::<_, Option<i64>>(n)?))
        })
        .on_db(node.id, ctx)?;
    rows.collect::<Result<_, _>>().on_db(node.id, ctx)
}

fn key_match(table: &TableInfo) -> String {
    table
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} IS ?{}", quote_ident(&c.name), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn column_list(table: &TableInfo) -> String {
    table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

fn fetch_sql(table: &TableInfo) -> String {
    format!("SELECT {} FROM {} WHERE {}", column_list(table), quoted(&table.name), key_match(table))
}

fn delete_sql(table: &TableInfo) -> String {
    format!("DELETE FROM {} WHERE {}", quoted(&table.name), key_match(table))
}

/// An insert that updates the row in place when its key exists: an
/// application's triggers (a change feed) see an update, as they would on the
/// source.
fn upsert_sql(table: &TableInfo) -> String {
    let placeholders: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    let keys: Vec<String> = table.key.iter().map(|c| quote_ident(&c.name)).collect();
    let sets: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !table.key.iter().any(|k| k.name == c.name))
        .map(|c| format!("{0} = excluded.{0}", quote_ident(&c.name)))
        .collect();
    let action = if sets.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", sets.join(", ")) };
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
        quoted(&table.name),
        column_list(table),
        placeholders.join(", "),
        keys.join(", ")
    )
}

/// A conflict with its key as text, the shape `RunOutcome` carries.
fn text_record(c: &ConflictRecord<SqliteKey>) -> ConflictRecord<crate::run::Key> {
    ConflictRecord {
        key: c.key.iter().map(KeyValue::text).collect(),
        winner: c.winner,
        winner_time: c.winner_time,
        loser: c.loser,
        loser_time: c.loser_time,
        by_truncate: c.by_truncate,
    }
}

/// Records the run's conflicts in every file's conflict log, in the run transaction.
fn log_conflicts(p: &Prepared, conflicts: &[(TableName, ConflictRecord<crate::run::Key>)]) -> Result<(), ReplicaError> {
    let now = micros(SystemTime::now());
    for node in &p.nodes {
        let mut stmt = node
            .conn
            .prepare_cached(
                "INSERT INTO dugong_conflict_log (at, sync, table_name, key, winner, loser, winner_changed, loser_changed, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'changed on both')",
            )
            .on_db(node.id, || "recording conflicts".into())?;
        for (table, c) in conflicts {
            let key = serde_json::to_string(&c.key).unwrap_or_default();
            stmt.execute(rusqlite::params![
                now,
                p.sync.name.as_str(),
                table.name,
                key,
                c.winner.to_string(),
                c.loser.to_string(),
                c.winner_time,
                c.loser_time
            ])
            .on_db(node.id, || "recording conflicts".into())?;
        }
    }
    Ok(())
}

/// After every file committed: move each source's cursor and purge the change
/// rows every sync of the file has shipped.
fn advance_cursors(p: &mut Prepared, advances: &[Advance]) -> Result<(), ReplicaError> {
    let sync = p.sync.name.clone();
    for node in p.nodes.iter_mut() {
        let Some(a) = advances.iter().find(|a| a.db == node.id) else { continue };
        let ctx = || "advancing the cursor".to_string();
        node.conn.execute_batch("BEGIN IMMEDIATE").on_db(node.id, ctx)?;
        let result = (|| {
            node.conn
                .execute(
                    &format!(
                        "UPDATE dugong_cursor SET seq = ?2, updated_at = {} WHERE sync = ?1",
                        super::capture::NOW_US
                    ),
                    rusqlite::params![sync.as_str(), a.to],
                )
                .on_db(node.id, ctx)?;
            for id in node.captures.values() {
                node.conn
                    .execute(
                        &format!("DELETE FROM {} WHERE seq <= (SELECT min(seq) FROM dugong_cursor)", delta_name(*id)),
                        [],
                    )
                    .on_db(node.id, || "purging the change logs".into())?;
            }
            Ok(())
        })();
        lease::finish(&node.conn, node.id, result)?;
        node.cursor = a.to;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Column;

    fn table() -> TableInfo {
        let col = |n: &str| Column { name: n.into(), type_sql: "TEXT".into() };
        TableInfo {
            name: TableName::new("main", "t"),
            columns: vec![col("a"), col("b"), col("v")],
            key: vec![col("a"), col("b")],
            key_constraint: "primary key".into(),
            binary_copy: false,
        }
    }

    #[test]
    fn upserts_update_non_key_columns_in_place() {
        assert_eq!(
            upsert_sql(&table()),
            r#"INSERT INTO "t" ("a", "b", "v") VALUES (?1, ?2, ?3) ON CONFLICT ("a", "b") DO UPDATE SET "v" = excluded."v""#
        );
        assert_eq!(delete_sql(&table()), r#"DELETE FROM "t" WHERE "a" IS ?1 AND "b" IS ?2"#);
    }
}
