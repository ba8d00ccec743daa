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
use crate::upkeep;
use dugong_core::{DbId, TableName};
use futures_util::future::try_join_all;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::Type;

/// A changed key: the text form of each primary-key column.
pub type Key = Vec<String>;

/// A set of changed keys, hashed fast: a run can handle tens of thousands.
pub type KeySet = std::collections::HashSet<Key, foldhash::fast::RandomState>;

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
    /// Where the run's time went, for debug logs and tuning.
    pub phases: Phases,
}

/// Wall time of each phase of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Snapshot, batch bound and changed keys, on every source.
    pub read: Duration,
    /// Deleting changed keys on the databases that take other winners.
    pub delete: Duration,
    /// Streaming the winning rows.
    pub copy: Duration,
    /// Committing every database.
    pub commit: Duration,
    /// Advancing the cursors (and purging, when caught up).
    pub advance: Duration,
}

/// Run tuning.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// About how many change rows one run ships per source.
    pub batch_rows: usize,
}

/// How many change rows a PostgreSQL run ships per source by default. Only a
/// backlog fills a batch; bigger batches spend less of a catch-up between runs
/// (50,000 beat 20,000 by about 4% in the catch-up benchmark).
pub const DEFAULT_BATCH_ROWS: usize = 50_000;

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { batch_rows: DEFAULT_BATCH_ROWS }
    }
}

/// A change not in the cursor `$1`.
const NOT_SHIPPED: &str = "dugong_txid >= pg_snapshot_xmin($1::text::pg_snapshot) AND NOT pg_visible_in_snapshot(dugong_txid, $1::text::pg_snapshot)";

/// A change not in the cursor whose text is `cursor` (a safe literal: digits,
/// colons and commas). Every such change is at or above the cursor's xmin,
/// which lets the change log's index skip the shipped ones.
pub(crate) fn not_shipped(cursor: &str) -> String {
    format!(
        "dugong_txid >= pg_snapshot_xmin('{cursor}'::pg_snapshot) AND NOT pg_visible_in_snapshot(dugong_txid, '{cursor}'::pg_snapshot)"
    )
}

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
        // The first pending change in txid order: the index finds it without
        // visiting the shipped rows that wait for a purge, whatever the plan.
        .map(|c| format!("(SELECT true FROM {} WHERE {NOT_SHIPPED} ORDER BY dugong_txid LIMIT 1) IS NOT NULL", c.delta))
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
    /// Bounds of the batches after this one, as far as the backlog was counted.
    later: BatchBounds,
    /// Per table, in the order of `Prepared::tables`.
    summaries: Vec<TableSummary>,
}

/// One table's pending changes on one source, counted before any key is read.
#[derive(Debug, Clone, Copy, Default)]
struct TableSummary {
    /// Change rows in the window.
    changes: i64,
    /// Change rows that are not inserts (updates, deletes, key changes).
    rewritten: i64,
    /// Commit time of the oldest change, when commit times are known.
    oldest: CommitTime,
    truncated: Option<CommitTime>,
}

impl TableSummary {
    fn changed(&self) -> bool {
        self.changes > 0 || self.truncated.is_some()
    }
}

/// A table's changed keys read from one source, with their commit times, and
/// those of them that were only inserted.
type ChangedKeys = (Vec<(Key, CommitTime)>, KeySet);

/// How much of a table's changed keys a run must read from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRead {
    /// Several sources changed the table, or one truncated it: every key with
    /// its commit time, for conflict resolution.
    Resolve,
    /// Only this source changed the table: no conflict is possible, so only the
    /// keys the targets must delete first (with `NewKeys::Trust`, those not
    /// only inserted). The rows themselves are selected by the change window.
    Single,
}

/// Runs the sync once. Returns at once with `empty` when nothing is pending.
pub async fn run_once(p: &mut Prepared, limits: RunLimits) -> Result<RunOutcome, ReplicaError> {
    // After a bounded run the poll is redundant: changes are known to wait.
    let known_pending = std::mem::take(&mut p.more_pending);
    if !known_pending && !pending(p).await? {
        // Caught up: in a lull, purge what big runs left and vacuum.
        for node in p.nodes.iter_mut().filter(|n| n.source) {
            upkeep::when_idle(node);
        }
        return Ok(RunOutcome { empty: true, ..Default::default() });
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let result = match run_in_transactions(p, limits, NewKeys::Trust).await {
        // A key inserted on its source already exists on a target: a run
        // repeated after a crash, or an application's insert of the same key.
        // Run again, deleting every changed key first.
        Err(ReplicaError::ConcurrentWrite { db, table }) => {
            tracing::debug!(db = %db, table = %table, "a new key already exists on a target; running again with deletes");
            rollback_all(p).await;
            run_in_transactions(p, limits, NewKeys::Verify).await
        }
        other => other,
    };
    match result {
        Ok((mut outcome, cursors)) => {
            outcome.started = Some(started);
            let phase = Instant::now();
            commit_all(p, &crate::state::good_run_sql(p, &outcome)).await?;
            outcome.phases.commit = phase.elapsed();
            let phase = Instant::now();
            advance_cursors(p, &cursors).await?;
            outcome.phases.advance = phase.elapsed();
            p.more_pending = outcome.more;
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

/// Whether a run trusts that keys only ever inserted on their source are new
/// on the targets, and copies them without deleting them first.
///
/// Deleting 20,000 keys that are not there costs a target as much as a third
/// of inserting their rows. Trusting is safe: a key that does exist after all
/// makes the primary key refuse the row, and the run is repeated with
/// `Verify`, which deletes every changed key as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewKeys {
    Trust,
    Verify,
}

/// Everything of a run up to (not including) the commits. Returns the outcome
/// and what each source advances to.
async fn run_in_transactions(
    p: &Prepared,
    limits: RunLimits,
    new_keys: NewKeys,
) -> Result<(RunOutcome, Vec<Advance>), ReplicaError> {
    // 1. Count every source's pending changes, in its run snapshot.
    let phase = Instant::now();
    let futures = p.nodes.iter().enumerate().filter(|(_, n)| n.source).map(|(i, n)| async move {
        let read = read_source(p, n, limits).await?;
        Ok::<_, ReplicaError>((i, read))
    });
    let ((), reads) = futures_util::future::try_join(begin_targets(p), try_join_all(futures)).await?;

    // 2. Read the changed keys each table needs: all of them where sources
    // compete, only those to delete first where one source changed the table.
    let how: Vec<Option<KeyRead>> = (0..p.tables.len())
        .map(|ti| {
            let changers = reads.iter().filter(|(_, r)| r.summaries[ti].changed()).count();
            let truncated = reads.iter().any(|(_, r)| r.summaries[ti].truncated.is_some());
            match changers {
                0 => None,
                1 if !truncated => Some(KeyRead::Single),
                _ => Some(KeyRead::Resolve),
            }
        })
        .collect();
    let mut wanted = Vec::new();
    for (ti, how) in how.iter().enumerate() {
        let Some(how) = *how else { continue };
        for (ri, (i, r)) in reads.iter().enumerate() {
            let s = r.summaries[ti];
            if s.changes > 0 && (how == KeyRead::Resolve || new_keys == NewKeys::Verify || s.rewritten > 0) {
                wanted.push((ti, ri, *i, how, r.bound.to_string()));
            }
        }
    }
    let key_reads = wanted.iter().map(|(ti, ri, i, how, bound)| async move {
        let node = &p.nodes[*i];
        let table = &p.tables[*ti];
        let delta = &node.captures[&table.name].delta;
        let only_rewritten = *how == KeyRead::Single && new_keys == NewKeys::Trust;
        let read = read_keys(node, table, delta, &node.cursor.to_string(), bound, *how, only_rewritten).await?;
        Ok::<_, ReplicaError>(((*ti, *ri), read))
    });
    let mut keys: std::collections::HashMap<(usize, usize), ChangedKeys> =
        try_join_all(key_reads).await?.into_iter().collect();

    let mut outcome = RunOutcome::default();
    outcome.phases.read = phase.elapsed();
    let oldest = reads.iter().flat_map(|(_, r)| r.summaries.iter().filter_map(|s| s.oldest)).min();
    // 3. Resolve each table, and plan what every database must do.
    let mut plans: Vec<TablePlan> = Vec::with_capacity(p.tables.len());
    for (ti, table) in p.tables.iter().enumerate() {
        match how[ti] {
            None => continue,
            Some(KeyRead::Single) => {
                let ri =
                    (0..reads.len()).find(|ri| reads[*ri].1.summaries[ti].changed()).expect("one source changed it");
                let (keys, _) = keys.remove(&(ti, ri)).unwrap_or_default();
                let source = p.nodes[reads[ri].0].id;
                plans.push(TablePlan::single(ti, source, keys.into_iter().map(|(k, _)| k).collect()));
                continue;
            }
            Some(KeyRead::Resolve) => {}
        }
        let mut inserted = Vec::with_capacity(reads.len());
        let sources: Vec<SourceChanges<Key>> = reads
            .iter()
            .enumerate()
            .map(|(ri, (i, r))| {
                let (keys, fresh) = keys.remove(&(ti, ri)).unwrap_or_default();
                inserted.push(fresh);
                SourceChanges { db: p.nodes[*i].id, keys, truncated: r.summaries[ti].truncated }
            })
            .collect();
        let resolution = resolve::resolve(&p.sync.conflict_strategy, &p.order, &sources)
            .map_err(|aborted| resolve::abort_error(&table.name, &aborted))?;
        for c in &resolution.conflicts {
            outcome.conflicts.push((table.name.clone(), c.clone()));
        }
        let mut plan = TablePlan::new(ti, &sources, resolution);
        if new_keys == NewKeys::Trust && plan.truncate.is_none() {
            plan.fresh = fresh_keys(&sources, inserted);
        }
        plans.push(plan);
    }
    let more = reads.iter().any(|(_, r)| r.bound < r.snapshot.xmax);

    // 4. Apply on every database, in its run transaction, streaming the winning
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
    outcome.phases.delete = totals.delete_time;
    outcome.phases.copy = totals.copy_time;
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
        .map(|(i, r)| {
            let shipped = r.summaries.iter().map(|c| c.changes.max(0) as u64).sum();
            let caught_up = r.bound >= r.snapshot.xmax;
            Advance {
                db: p.nodes[i].id,
                shipped,
                caught_up,
                purge: p.nodes[i].upkeep.purge_after(caught_up, shipped),
                cursor: r.snapshot.truncated_at(r.bound),
                later: r.later,
            }
        })
        .collect();
    Ok((outcome, cursors))
}

/// The keys changed by exactly one source, and only by inserts there: no other
/// database can have them unless a run is repeated or the same key was
/// inserted elsewhere (which the primary key will catch).
fn fresh_keys(sources: &[SourceChanges<Key>], inserted: Vec<KeySet>) -> KeySet {
    let mut changers: std::collections::HashMap<&Key, usize, foldhash::fast::RandomState> = Default::default();
    for s in sources {
        for (key, _) in &s.keys {
            *changers.entry(key).or_default() += 1;
        }
    }
    inserted.into_iter().flatten().filter(|key| changers.get(key) == Some(&1)).collect()
}

/// The SQL expression of the latest (`max`) or earliest (`min`) commit time of
/// the transactions `txid`, in microseconds, or NULL.
fn commit_time_expr(node: &Node, txid: &str, aggregate: &str) -> String {
    if node.commit_timestamps {
        format!("(extract(epoch from {aggregate}(pg_xact_commit_timestamp(({txid})::xid))) * 1000000)::int8")
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
    let cached = node.batch_bounds.next_after(&node.cursor, limits.batch_rows);
    let nth_sql = if deltas.is_empty() || cached.is_some() {
        "NULL::text".to_string()
    } else {
        // Each change log counts its own changes per transaction: in txid order
        // off its index, or hashed when its statistics know it is big. Only
        // those counts (one row per transaction) are merged and sorted. Grouped
        // after the union instead, every change of a backlog was sorted again,
        // on disk past work_mem, because a change log's statistics rarely know
        // how big its backlog has grown.
        let union: Vec<String> = deltas
            .iter()
            .map(|d| {
                format!(
                    "SELECT dugong_txid AS t, count(*) AS c FROM {d} WHERE {} GROUP BY dugong_txid",
                    not_shipped(&cursor)
                )
            })
            .collect();
        // Summing the counts in transaction order finds every batch's bound in
        // one pass, where an ORDER BY … OFFSET would read every change of the
        // backlog again in each run.
        format!(
            "(SELECT string_agg(w.t::text, ',' ORDER BY w.t) FROM (
                SELECT g.t, g.c, (sum(g.c) OVER (ORDER BY g.t))::int8 AS upto
                FROM (SELECT s.t, sum(s.c)::int8 AS c FROM ({}) s GROUP BY s.t) g) w
             WHERE (w.upto - w.c) / {n} < w.upto / {n})",
            union.join(" UNION ALL "),
            n = limits.batch_rows.max(1)
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
    let (nth, later) = match cached {
        Some(next) => next,
        None => {
            let mut counted = Vec::new();
            for text in row.get(1).unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
                counted
                    .push(text.parse::<u64>().map_err(|_| protocol("a transaction id that is not a number".into()))?);
            }
            let mut counted = counted.into_iter();
            (counted.next(), BatchBounds { rows: limits.batch_rows, bounds: counted.collect() })
        }
    };
    let bound = choose_bound(nth, &node.cursor, &snapshot);
    let bound_text = bound.to_string();
    let reads = p.tables.iter().map(|table| {
        let cursor = &cursor;
        let bound_text = &bound_text;
        async move {
            let Some(capture) = node.captures.get(&table.name) else { return Ok(TableSummary::default()) };
            let (mut summary, truncated) = futures_util::future::try_join(
                summarize(node, table, &capture.delta, cursor, bound_text),
                read_truncate(node, capture.table_id, cursor, bound_text),
            )
            .await?;
            summary.truncated = truncated;
            Ok::<_, ReplicaError>(summary)
        }
    });
    let summaries = try_join_all(reads).await?;
    Ok(SourceRead { snapshot, bound, later, summaries })
}

/// Counts a table's changes in the window (after `cursor`, below `bound`) and
/// finds the oldest one's commit time, in one pass over the change log.
async fn summarize(
    node: &Node,
    table: &TableInfo,
    delta: &str,
    cursor: &str,
    bound: &str,
) -> Result<TableSummary, ReplicaError> {
    let sql = format!(
        "SELECT sum(g.c)::int8, sum(g.r)::int8, {}
         FROM (SELECT dugong_txid AS t, count(*) AS c, count(*) FILTER (WHERE dugong_inserted IS NOT TRUE) AS r
               FROM {delta} WHERE {NOT_SHIPPED} AND dugong_txid < $2::text::xid8 GROUP BY dugong_txid) g",
        commit_time_expr(node, "g.t", "min")
    );
    let row = node
        .client
        .query_typed(&sql, &[(&cursor, Type::TEXT), (&bound, Type::TEXT)])
        .await
        .on_db(node.id, || format!("counting the changes of {}", table.name))?
        .into_iter()
        .next()
        .ok_or_else(|| ReplicaError::Protocol { db: node.id, message: "no change count".into() })?;
    Ok(TableSummary {
        changes: row.get::<_, Option<i64>>(0).unwrap_or(0),
        rewritten: row.get::<_, Option<i64>>(1).unwrap_or(0),
        oldest: row.get(2),
        truncated: None,
    })
}

/// The changed keys of a table in the window. With `KeyRead::Resolve`, each
/// with the commit time of its latest change, and the set of those that were
/// only inserted; with `KeyRead::Single`, keys only, and when `only_rewritten`
/// only those that were not only inserted.
async fn read_keys(
    node: &Node,
    table: &TableInfo,
    delta: &str,
    cursor: &str,
    bound: &str,
    how: KeyRead,
    only_rewritten: bool,
) -> Result<ChangedKeys, ReplicaError> {
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
    let ktext: Vec<String> = kcols.iter().map(|k| format!("{k}::text")).collect();
    let (extra, having) = match how {
        KeyRead::Resolve => {
            (format!(", {}, bool_and(dugong_inserted IS TRUE)", commit_time_expr(node, "dugong_txid", "max")), "")
        }
        KeyRead::Single if only_rewritten => (String::new(), " HAVING NOT bool_and(dugong_inserted IS TRUE)"),
        KeyRead::Single => (String::new(), ""),
    };
    let sql = format!(
        "SELECT {}{extra} FROM {delta} WHERE {NOT_SHIPPED} AND dugong_txid < $2::text::xid8 GROUP BY {}{having}",
        ktext.join(", "),
        kcols.join(", ")
    );
    let rows = node
        .client
        .query_typed(&sql, &[(&cursor, Type::TEXT), (&bound, Type::TEXT)])
        .await
        .on_db(node.id, || format!("reading the changes of {}", table.name))?;
    let n = table.key.len();
    let mut keys = Vec::with_capacity(rows.len());
    let mut inserted = KeySet::default();
    for r in &rows {
        let key: Key = (0..n).map(|i| r.get::<_, String>(i)).collect();
        if how == KeyRead::Single {
            keys.push((key, None));
            continue;
        }
        if r.get::<_, bool>(n + 1) {
            inserted.insert(key.clone());
        }
        keys.push((key, r.get::<_, Option<i64>>(n)));
    }
    Ok((keys, inserted))
}

async fn read_truncate(
    node: &Node,
    table_id: i32,
    cursor: &str,
    bound: &str,
) -> Result<Option<CommitTime>, ReplicaError> {
    let sql = format!(
        "SELECT count(*), {} FROM dugong.truncate_log WHERE table_id = $3 AND {NOT_SHIPPED} AND dugong_txid < $2::text::xid8",
        commit_time_expr(node, "dugong_txid", "max")
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
    /// Change rows shipped by the run.
    shipped: u64,
    /// No batch bound held this source's changes back.
    caught_up: bool,
    /// When the shipped change rows are purged.
    purge: upkeep::Purge,
    later: BatchBounds,
}

async fn advance_cursors(p: &mut Prepared, cursors: &[Advance]) -> Result<(), ReplicaError> {
    let sync = p.sync.name.clone();
    let work = p.nodes.iter().filter(|n| n.source).map(|node| {
        let advance = cursors.iter().find(|a| a.db == node.id);
        let sync = &sync;
        async move {
            let Some(advance) = advance else { return Ok(()) };
            // A cursor lost in a crash only means shipping again, which is
            // idempotent: no need to wait for the flush.
            let mut sql = String::from("BEGIN;\nSET LOCAL synchronous_commit = off;\n");
            sql.push_str(&format!(
                "UPDATE dugong.cursor SET snapshot = '{}'::pg_snapshot, updated_at = now() WHERE sync = {};\n",
                advance.cursor,
                dugong_core::quote_literal(sync.as_str())
            ));
            if advance.purge == upkeep::Purge::Inline {
                sql.push_str(&upkeep::purge_sql(node));
            }
            sql.push_str("COMMIT;");
            node.client.batch_execute(&sql).await.on_db(node.id, || "advancing the cursor".into())
        }
    });
    try_join_all(work).await?;
    for node in p.nodes.iter_mut() {
        if let Some(a) = cursors.iter().find(|a| a.db == node.id) {
            node.cursor = a.cursor.clone();
            node.batch_bounds = a.later.clone();
            upkeep::after_run(node, a.purge, a.caught_up, a.shipped);
        }
    }
    Ok(())
}

/// The bounds of a backlog's next batches, counted once when the backlog was
/// first seen: while they last, a run needs no counting query.
#[derive(Debug, Clone, Default)]
pub struct BatchBounds {
    /// The batch size they were counted for.
    rows: usize,
    /// Transaction ids, ascending: each is the last of a batch.
    bounds: Vec<u64>,
}

impl BatchBounds {
    /// The next batch's bound and the rest, for a cursor at `cursor` and
    /// batches of `rows`; `None` when none is left (or the size changed).
    /// Bounds the cursor has passed are dropped, so every run progresses.
    fn next_after(&self, cursor: &Snapshot, rows: usize) -> Option<(Option<u64>, BatchBounds)> {
        if self.rows != rows {
            return None;
        }
        let mut left = self.bounds.iter().copied().filter(|b| *b >= cursor.xmax);
        let next = left.next()?;
        Some((Some(next), BatchBounds { rows, bounds: left.collect() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        vec![k.to_string()]
    }

    #[test]
    fn batch_bounds_skip_what_the_cursor_passed_and_always_progress() {
        let bounds = BatchBounds { rows: 100, bounds: vec![110, 150, 190] };
        let cursor: Snapshot = "105:110:107".parse().unwrap();
        let (next, rest) = bounds.next_after(&cursor, 100).unwrap();
        assert_eq!(next, Some(110));
        assert!(choose_bound(next, &cursor, &"300:300:".parse().unwrap()) > cursor.xmax);
        assert_eq!(rest.bounds, vec![150, 190]);
        let cursor: Snapshot = "151:151:".parse().unwrap();
        let (next, rest) = bounds.next_after(&cursor, 100).unwrap();
        assert_eq!((next, rest.bounds), (Some(190), vec![]));
        assert!(bounds.next_after(&"191:191:".parse().unwrap(), 100).is_none(), "all passed: count again");
        assert!(bounds.next_after(&cursor, 50).is_none(), "another batch size: count again");
    }

    #[test]
    fn fresh_keys_are_inserted_by_exactly_one_source() {
        let changes = |db: u32, keys: &[&str]| SourceChanges {
            db: DbId(db),
            keys: keys.iter().map(|k| (key(k), None)).collect(),
            truncated: None,
        };
        let sources = [changes(0, &["a", "b", "c"]), changes(1, &["c", "d"])];
        let inserted0: KeySet = [key("a"), key("c")].into_iter().collect();
        let inserted1: KeySet = [key("c")].into_iter().collect();
        let fresh = fresh_keys(&sources, vec![inserted0, inserted1]);
        // b was updated or deleted; c was inserted on both sites (a conflict);
        // d was not inserted.
        assert_eq!(fresh, [key("a")].into_iter().collect());
    }
}
