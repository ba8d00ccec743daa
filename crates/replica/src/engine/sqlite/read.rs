//! Reading a run's pending changes on SQLite: the poll, each source's window
//! (sequence numbers past its cursor, up to a batch bound), the change counts
//! per table, and the changed keys with the time of their latest change.
//!
//! Every file's run transaction is `BEGIN IMMEDIATE`: it holds the file's write
//! lock from the start, so the changes read, the rows fetched and the rows
//! written all belong to one consistent state, and an application writing the
//! same file meanwhile simply waits (its busy timeout) — as the run waits for
//! the application's writes. A crash at any point repeats at most the last
//! run; apply is an upsert or delete by key, so repeating it is harmless.

use super::capture::delta_name;
use super::lease;
use super::node::{Files, Node, Window};
use super::value::{KeyValue, SqliteKey};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{SyncPlan, TableInfo};
use crate::read::{ChangedKeys, KeyRequest, RunLimits, SourceRead, TableSummary};
use rusqlite::OptionalExtension;
use std::time::Duration;

/// Whether any source has changes past this sync's cursor: one read of the
/// change counter per source (a WAL read, never blocked by writers).
pub fn pending(files: &Files) -> Result<bool, ReplicaError> {
    for node in files.nodes.iter().filter(|n| n.source) {
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

/// How long a run waits for the write lock of its second and later files. The
/// first one may take the full busy timeout, since nothing is held yet; after
/// that, waiting long would keep the files already locked from their own
/// applications, whose writes have a busy timeout too. A run that cannot get
/// every lock soon lets go of all of them and is retried at once.
const LATER_LOCK_WAIT: Duration = Duration::from_millis(100);

/// The file's schema counter, which every schema change moves.
pub(super) fn schema_version(conn: &rusqlite::Connection, db: dugong_core::DbId) -> Result<i64, ReplicaError> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).on_db(db, || "reading the schema version".into())
}

/// Takes one file's write lock for the run.
fn lock(node: &Node, first: bool) -> Result<(), ReplicaError> {
    let ctx = || "starting the run transaction (waiting for the file's write lock)".to_string();
    if first {
        return node.conn.execute_batch("BEGIN IMMEDIATE").on_db(node.id, ctx);
    }
    node.conn.busy_timeout(LATER_LOCK_WAIT).on_db(node.id, ctx)?;
    let result = node.conn.execute_batch("BEGIN IMMEDIATE").on_db(node.id, ctx);
    node.conn.busy_timeout(super::open::BUSY_TIMEOUT).on_db(node.id, ctx)?;
    result
}

/// Starts the run transaction on every file (taking its write lock, renewing
/// the lease, and marking the transaction as the replicator's so nothing it
/// writes is captured), then reads each source's window and change counts.
pub fn begin(files: &mut Files, plan: &SyncPlan, limits: RunLimits) -> Result<Vec<SourceRead>, ReplicaError> {
    for (i, node) in files.nodes.iter().enumerate() {
        lock(node, i == 0)?;
        if schema_version(&node.conn, node.id)? != node.schema_version {
            return Err(ReplicaError::SchemaChanged(format!("the schema of {} changed", node.id)));
        }
        lease::renew(&node.conn, node.id, plan.name(), &files.owner)?;
        // From here on, nothing this transaction writes is captured.
        node.conn
            .execute_batch("INSERT OR IGNORE INTO dugong_applying (id) VALUES (1)")
            .on_db(node.id, || "starting the run transaction".into())?;
    }
    let mut windows = Vec::new();
    let mut reads = Vec::new();
    for node in files.nodes.iter().filter(|n| n.source) {
        let head = counter(node)?;
        let to = batch_bound(plan, node, limits)?.unwrap_or(head);
        let window = Window { db: node.id, from: node.cursor, to, sweep: node.sweep.clone() };
        let summaries = plan
            .tables
            .iter()
            .map(|table| match node.captures.get(&table.name) {
                Some(id) => summarize(node, table, *id, &window),
                None => Ok(TableSummary::default()),
            })
            .collect::<Result<_, _>>()?;
        // What is read whole was partly shipped before the hold.
        let uneven = node.uneven() || !window.sweep.is_empty();
        reads.push(SourceRead { db: node.id, more: to < head, uneven, summaries });
        windows.push(window);
    }
    files.windows = windows;
    Ok(reads)
}

/// Counts a table's changes in the window and finds the oldest one's time.
/// Change logs do not tell inserts from other changes: every change counts
/// as one to delete first.
fn summarize(node: &Node, table: &TableInfo, id: i64, window: &Window) -> Result<TableSummary, ReplicaError> {
    let sql = format!("SELECT count(*), min(at) FROM {} WHERE seq > ?1 AND seq <= ?2", delta_name(id));
    let ctx = || format!("counting the changes of {}", table.name);
    let mut stmt = node.conn.prepare_cached(&sql).on_db(node.id, ctx)?;
    let (changes, oldest): (i64, Option<i64>) = stmt
        .query_row(<[i64; 2]>::from(window.range(&table.name)), |r| Ok((r.get(0)?, r.get(1)?)))
        .on_db(node.id, ctx)?;
    Ok(TableSummary { changes, rewritten: changes, oldest, truncated: None })
}

/// Reads the changed keys each request asks for: every key with the time of
/// its latest change (upserts and deletes need them all, whatever the request).
pub fn read_keys(
    files: &Files,
    plan: &SyncPlan,
    requests: &[KeyRequest],
) -> Result<Vec<ChangedKeys<SqliteKey>>, ReplicaError> {
    requests
        .iter()
        .map(|r| {
            let node = files.node(r.db);
            let table = &plan.tables[r.table];
            let keys = read_table_keys(node, table, node.captures[&table.name], files.window(r.db))?;
            Ok(ChangedKeys { keys, ..Default::default() })
        })
        .collect()
}

/// The sequence number of the `batch_rows`-th pending change, when more are pending.
fn batch_bound(plan: &SyncPlan, node: &Node, limits: RunLimits) -> Result<Option<i64>, ReplicaError> {
    let parts: Vec<String> = plan
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
fn read_table_keys(
    node: &Node,
    table: &TableInfo,
    id: i64,
    window: &Window,
) -> Result<Vec<(SqliteKey, crate::read::CommitTime)>, ReplicaError> {
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
        .query_map(<[i64; 2]>::from(window.range(&table.name)), |r| {
            let key: SqliteKey = (0..n).map(|i| r.get_ref(i).map(KeyValue::from)).collect::<Result<_, _>>()?;
            Ok((key, r.get::<_, Option<i64>>(n)?))
        })
        .on_db(node.id, ctx)?;
    rows.collect::<Result<_, _>>().on_db(node.id, ctx)
}
