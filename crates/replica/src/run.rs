//! One run of a sync: read every source's pending changes in one snapshot each,
//! resolve conflicts per row, apply to every other database in one transaction
//! each, and only after all of them committed, advance the sources' cursors.
//!
//! A crash at any point repeats at most the last run: its changes are shipped
//! again as row states, which is idempotent — nothing is lost or duplicated.

use crate::apply::{self, TablePlan};
use crate::catalog::TableInfo;
use crate::error::{ReplicaError, StatementContext};
use crate::prepare::{Node, Prepared};
use crate::resolve::{self, CommitTime, ConflictRecord, SourceChanges};
use crate::snapshot::{choose_bound, Snapshot};
use dugong_core::{DbId, TableName};
use futures_util::future::try_join_all;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::Type;

/// A changed key: the text form of each primary-key column.
pub type Key = Vec<String>;

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Nothing was pending: no transaction was opened.
    pub empty: bool,
    pub deletes: u64,
    pub inserts: u64,
    pub truncates: u64,
    pub conflicts: Vec<(TableName, ConflictRecord<Key>)>,
    /// The batch was bounded: more changes are waiting.
    pub more: bool,
    /// Age of the oldest change shipped, when commit times are known.
    pub lag: Option<Duration>,
    pub started: Option<SystemTime>,
    pub duration: Duration,
}

/// Run tuning.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// About how many change rows one run ships per source.
    pub batch_rows: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { batch_rows: 20_000 }
    }
}

const NOT_SHIPPED: &str = "NOT pg_visible_in_snapshot(dugong_txid, $1::text::pg_snapshot)";

/// Whether any source has changes this sync has not shipped. One cheap query per
/// source; this is the poll that replaces Bucardo's NOTIFY kick.
pub async fn pending(p: &Prepared) -> Result<bool, ReplicaError> {
    let checks = p.nodes.iter().filter(|n| n.source).map(|node| async move {
        let cursor = node.cursor.to_string();
        let statement = node.poll.as_ref().expect("sources have a poll statement");
        let row =
            node.client.query_one(statement, &[&cursor]).await.on_db(node.id, || "polling the change logs".into())?;
        Ok::<bool, ReplicaError>(row.get(0))
    });
    Ok(try_join_all(checks).await?.into_iter().any(|b| b))
}

/// The poll query of a source: is any change of the sync's tables not visible
/// in the cursor (`$1`)? Prepared once per connection.
pub(crate) fn pending_sql(tables: &[TableInfo], node: &Node) -> String {
    let mut parts: Vec<String> = tables
        .iter()
        .filter_map(|t| node.captures.get(&t.name))
        .map(|c| format!("EXISTS (SELECT 1 FROM {} WHERE {NOT_SHIPPED})", c.delta))
        .collect();
    let ids: Vec<String> =
        tables.iter().filter_map(|t| node.captures.get(&t.name)).map(|c| c.table_id.to_string()).collect();
    if !ids.is_empty() {
        parts.push(format!(
            "EXISTS (SELECT 1 FROM dugong.truncate_log WHERE table_id IN ({}) AND {NOT_SHIPPED})",
            ids.join(",")
        ));
    }
    if parts.is_empty() {
        return "SELECT false".into();
    }
    format!("SELECT {}", parts.join(" OR "))
}

/// A source's view of this run.
struct SourceRead {
    snapshot: Snapshot,
    bound: u64,
    /// Per table, in the order of `Prepared::tables`.
    changes: Vec<TableChanges>,
}

/// One table's pending changes on one source.
struct TableChanges {
    keys: Vec<(Key, CommitTime)>,
    truncated: Option<CommitTime>,
}

/// Runs the sync once. Returns at once with `empty` when nothing is pending.
pub async fn run_once(p: &mut Prepared, limits: RunLimits) -> Result<RunOutcome, ReplicaError> {
    if !pending(p).await? {
        // Caught up: purge what a backlog left, then give the space back.
        for node in p.nodes.iter_mut().filter(|n| n.purge_due) {
            node.client.batch_execute(&purge_sql(node)).await.on_db(node.id, || "purging the change logs".into())?;
            node.purge_due = false;
        }
        for node in p.nodes.iter_mut().filter(|n| n.shipped_since_vacuum >= VACUUM_AFTER_ROWS) {
            vacuum_change_logs(node).await;
        }
        return Ok(RunOutcome { empty: true, ..Default::default() });
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let result = run_in_transactions(p, limits).await;
    match result {
        Ok((mut outcome, cursors)) => {
            outcome.started = Some(started);
            commit_all(p, &crate::state::good_run_sql(p, &outcome)).await?;
            advance_cursors(p, &cursors).await?;
            outcome.duration = clock.elapsed();
            Ok(outcome)
        }
        Err(e) => {
            rollback_all(p).await;
            Err(e)
        }
    }
}

/// Every run transaction: one snapshot for reading and applying, and applied
/// rows never echo back as changes.
const BEGIN_RUN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL session_replication_role = replica";

/// Starts the run transaction of the databases that are only targets (sources
/// start theirs while reading).
async fn begin_targets(p: &Prepared) -> Result<(), ReplicaError> {
    try_join_all(p.nodes.iter().filter(|n| !n.source).map(|n| async move {
        n.client.batch_execute(BEGIN_RUN).await.on_db(n.id, || "starting the run transaction".into())
    }))
    .await?;
    Ok(())
}

/// Commits every database's run transaction, recording the run's state in the
/// same transaction (no extra round trip).
async fn commit_all(p: &Prepared, state_sql: &str) -> Result<(), ReplicaError> {
    let sql = format!("{state_sql};\nCOMMIT");
    try_join_all(
        p.nodes
            .iter()
            .map(|n| async { n.client.batch_execute(&sql).await.on_db(n.id, || "committing the run".into()) }),
    )
    .await?;
    Ok(())
}

/// Best effort: a broken connection rolls back by itself.
pub(crate) async fn rollback_all(p: &Prepared) {
    for n in &p.nodes {
        if !n.client.is_closed() {
            let _ = n.client.batch_execute("ROLLBACK").await;
        }
    }
}

/// Everything of a run up to (not including) the commits. Returns the outcome
/// and what each source advances to.
async fn run_in_transactions(p: &Prepared, limits: RunLimits) -> Result<(RunOutcome, Vec<Advance>), ReplicaError> {
    // 1. Read every source's pending changes, in its run snapshot.
    let futures = p.nodes.iter().enumerate().filter(|(_, n)| n.source).map(|(i, n)| async move {
        let read = read_source(p, n, limits).await?;
        Ok::<_, ReplicaError>((i, read))
    });
    let ((), reads) = futures_util::future::try_join(begin_targets(p), try_join_all(futures)).await?;

    let mut outcome = RunOutcome::default();
    let mut oldest: Option<i64> = None;
    // 2. Resolve each table, and plan what every database must do.
    let mut plans: Vec<TablePlan> = Vec::with_capacity(p.tables.len());
    let mut more = false;
    for (ti, table) in p.tables.iter().enumerate() {
        let sources: Vec<SourceChanges<Key>> = reads
            .iter()
            .map(|(i, r)| {
                let c = &r.changes[ti];
                SourceChanges { db: p.nodes[*i].id, keys: c.keys.clone(), truncated: c.truncated }
            })
            .collect();
        for s in &sources {
            for (_, t) in &s.keys {
                if let Some(t) = t {
                    oldest = Some(oldest.map_or(*t, |o: i64| o.min(*t)));
                }
            }
        }
        if sources.iter().all(|s| s.keys.is_empty() && s.truncated.is_none()) {
            continue;
        }
        let resolution = resolve::resolve(&p.sync.conflict_strategy, &p.order, &sources)
            .map_err(|aborted| resolve::abort_error(&table.name, &aborted))?;
        for c in &resolution.conflicts {
            outcome.conflicts.push((table.name.clone(), c.clone()));
        }
        plans.push(TablePlan::new(ti, &sources, resolution));
    }
    for (_, r) in &reads {
        more |= r.bound < r.snapshot.xmax;
    }

    // 3. Apply on every database, in its run transaction, streaming the winning
    // rows from their sources.
    let windows: Vec<apply::Window> = reads
        .iter()
        .map(|(i, r)| apply::Window {
            db: p.nodes[*i].id,
            cursor: p.nodes[*i].cursor.to_string(),
            bound: r.bound.to_string(),
        })
        .collect();
    let totals = apply::apply_all(p, &plans, &windows).await?;
    outcome.deletes = totals.deletes;
    outcome.inserts = totals.inserts;
    outcome.truncates = totals.truncates;
    if !outcome.conflicts.is_empty() {
        apply::log_conflicts(p, &outcome.conflicts).await?;
    }
    outcome.more = more;
    outcome.lag = oldest.and_then(|t| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_micros() as i64;
        Some(Duration::from_micros(now.saturating_sub(t).max(0) as u64))
    });
    let cursors = reads
        .into_iter()
        .map(|(i, r)| Advance {
            db: p.nodes[i].id,
            shipped: r.changes.iter().map(|c| c.keys.len() as u64).sum(),
            caught_up: r.bound >= r.snapshot.xmax,
            cursor: r.snapshot.truncated_at(r.bound),
        })
        .collect();
    Ok((outcome, cursors))
}

/// The SQL expression of a change's commit time in microseconds, or NULL.
fn commit_time_expr(node: &Node, txid: &str) -> String {
    if node.commit_timestamps {
        format!("(extract(epoch from max(pg_xact_commit_timestamp(({txid})::xid))) * 1000000)::int8")
    } else {
        "NULL::int8".into()
    }
}

/// Starts the source's run transaction, takes its snapshot and sizes the batch,
/// in one round trip (a simple query: the cursor is a safe literal).
async fn read_source(p: &Prepared, node: &Node, limits: RunLimits) -> Result<SourceRead, ReplicaError> {
    let id = node.id;
    let cursor = node.cursor.to_string();
    let deltas: Vec<&str> =
        p.tables.iter().filter_map(|t| node.captures.get(&t.name)).map(|c| c.delta.as_str()).collect();
    // The transaction id of the batch_rows-th pending change bounds the batch.
    let nth_sql = if deltas.is_empty() {
        "NULL::text".to_string()
    } else {
        let union: Vec<String> = deltas
            .iter()
            .map(|d| format!("SELECT dugong_txid FROM {d} WHERE NOT pg_visible_in_snapshot(dugong_txid, '{cursor}')"))
            .collect();
        format!(
            // Sort by the xid8 itself, not by its text (where 10000 < 9999).
            "(SELECT s.dugong_txid::text FROM ({}) s ORDER BY s.dugong_txid OFFSET {} LIMIT 1)",
            union.join(" UNION ALL "),
            limits.batch_rows.saturating_sub(1)
        )
    };
    let sql = format!("{BEGIN_RUN}; SELECT pg_current_snapshot()::text, {nth_sql}");
    let messages = node.client.simple_query(&sql).await.on_db(id, || "starting the run".into())?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| ReplicaError::Protocol { db: id, message: "no snapshot returned".into() })?;
    let protocol = |message: String| ReplicaError::Protocol { db: id, message };
    let snapshot: Snapshot = row.get(0).unwrap_or_default().parse().map_err(|e| protocol(format!("{e}")))?;
    let nth = match row.get(1) {
        Some(text) => Some(text.parse::<u64>().map_err(|_| protocol("a transaction id that is not a number".into()))?),
        None => None,
    };
    let bound = choose_bound(nth, &node.cursor, &snapshot);
    let bound_text = bound.to_string();
    let reads = p.tables.iter().map(|table| {
        let cursor = &cursor;
        let bound_text = &bound_text;
        async move {
            let Some(capture) = node.captures.get(&table.name) else {
                return Ok(TableChanges { keys: Vec::new(), truncated: None });
            };
            let (keys, truncated) = futures_util::future::try_join(
                read_keys(node, table, &capture.delta, cursor, bound_text),
                read_truncate(node, capture.table_id, cursor, bound_text),
            )
            .await?;
            Ok::<_, ReplicaError>(TableChanges { keys, truncated })
        }
    });
    let changes = try_join_all(reads).await?;
    Ok(SourceRead { snapshot, bound, changes })
}

async fn read_keys(
    node: &Node,
    table: &TableInfo,
    delta: &str,
    cursor: &str,
    bound: &str,
) -> Result<Vec<(Key, CommitTime)>, ReplicaError> {
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
    let ktext: Vec<String> = kcols.iter().map(|k| format!("{k}::text")).collect();
    let sql = format!(
        "SELECT {}, {} FROM {delta} WHERE {NOT_SHIPPED} AND dugong_txid < $2::text::xid8 GROUP BY {}",
        ktext.join(", "),
        commit_time_expr(node, "dugong_txid"),
        kcols.join(", ")
    );
    let rows = node
        .client
        .query_typed(&sql, &[(&cursor, Type::TEXT), (&bound, Type::TEXT)])
        .await
        .on_db(node.id, || format!("reading the changes of {}", table.name))?;
    let n = table.key.len();
    Ok(rows
        .iter()
        .map(|r| {
            let key: Key = (0..n).map(|i| r.get::<_, String>(i)).collect();
            (key, r.get::<_, Option<i64>>(n))
        })
        .collect())
}

async fn read_truncate(
    node: &Node,
    table_id: i32,
    cursor: &str,
    bound: &str,
) -> Result<Option<CommitTime>, ReplicaError> {
    let sql = format!(
        "SELECT count(*), {} FROM dugong.truncate_log WHERE table_id = $3 AND {NOT_SHIPPED} AND dugong_txid < $2::text::xid8",
        commit_time_expr(node, "dugong_txid")
    );
    let rows = node
        .client
        .query_typed(&sql, &[(&cursor, Type::TEXT), (&bound, Type::TEXT), (&table_id, Type::INT4)])
        .await
        .on_db(node.id, || "reading truncates".into())?;
    let row =
        rows.first().ok_or_else(|| ReplicaError::Protocol { db: node.id, message: "no truncate count".into() })?;
    let count: i64 = row.get(0);
    Ok((count > 0).then(|| row.get::<_, Option<i64>>(1)))
}

/// After every database committed: record what each source's changes shipped,
/// and purge change rows every configured sync has shipped.
/// What a source's cursor advances to after a run.
struct Advance {
    db: DbId,
    cursor: Snapshot,
    /// Changed keys shipped by the run.
    shipped: u64,
    /// No batch bound held this source's changes back.
    caught_up: bool,
}

async fn advance_cursors(p: &mut Prepared, cursors: &[Advance]) -> Result<(), ReplicaError> {
    let sync = p.sync.name.clone();
    let work = p.nodes.iter().filter(|n| n.source).map(|node| {
        let next = cursors.iter().find(|a| a.db == node.id).map(|a| a.cursor.clone());
        let caught_up = cursors.iter().find(|a| a.db == node.id).is_none_or(|a| a.caught_up);
        let sync = &sync;
        async move {
            let Some(next) = next else { return Ok(()) };
            // A cursor lost in a crash only means shipping again, which is
            // idempotent: no need to wait for the flush.
            let mut sql = String::from("BEGIN;\nSET LOCAL synchronous_commit = off;\n");
            sql.push_str(&format!(
                "UPDATE dugong.cursor SET snapshot = '{next}'::pg_snapshot, updated_at = now() WHERE sync = {};\n",
                dugong_core::quote_literal(sync.as_str())
            ));
            // Purging scans the whole change log: during a backlog, wait until
            // this source has caught up.
            if caught_up {
                sql.push_str(&purge_sql(node));
            }
            sql.push_str("COMMIT;");
            node.client.batch_execute(&sql).await.on_db(node.id, || "advancing the cursor".into())
        }
    });
    try_join_all(work).await?;
    for node in p.nodes.iter_mut() {
        if let Some(a) = cursors.iter().find(|a| a.db == node.id) {
            node.cursor = a.cursor.clone();
            node.purge_due = !a.caught_up;
            node.shipped_since_vacuum += a.shipped;
            if node.shipped_since_vacuum >= VACUUM_DURING_BACKLOG {
                vacuum_change_logs(node).await;
            }
        }
    }
    Ok(())
}

/// Deletes the change rows every configured sync has shipped.
fn purge_sql(node: &Node) -> String {
    let shipped_by_all =
        "NOT EXISTS (SELECT 1 FROM dugong.cursor c WHERE NOT pg_visible_in_snapshot(d.dugong_txid, c.snapshot))";
    let mut sql = String::new();
    for c in node.captures.values() {
        sql.push_str(&format!("DELETE FROM {} d WHERE {shipped_by_all};\n", c.delta));
    }
    sql.push_str(&format!("DELETE FROM dugong.truncate_log d WHERE {shipped_by_all};\n"));
    sql
}

/// Keys shipped (and purged) since a source's change logs were last vacuumed,
/// beyond which they are vacuumed once the source has caught up...
const VACUUM_AFTER_ROWS: u64 = 20_000;
/// ...or, during a long backlog, anyway.
const VACUUM_DURING_BACKLOG: u64 = 500_000;

/// After a backlog has been shipped and purged, the change logs are mostly dead
/// rows that every poll would scan until autovacuum comes by; vacuum them now
/// (which also gives the emptied pages back), so the next burst runs as fast as
/// the first. Best effort: a failure only costs speed.
async fn vacuum_change_logs(node: &mut Node) {
    let mut tables: Vec<&str> = node.captures.values().map(|c| c.delta.as_str()).collect();
    tables.push("dugong.truncate_log");
    if let Err(e) = node.client.batch_execute(&format!("VACUUM {}", tables.join(", "))).await {
        tracing::debug!(db = %node.id, error = %crate::describe_pg(&e), "could not vacuum the change logs");
    }
    node.shipped_since_vacuum = 0;
}
