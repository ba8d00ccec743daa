//! Reading a run's pending changes on PostgreSQL: the poll, each source's run
//! snapshot and batch bound, the change counts per table, and the changed keys.
//!
//! A source's window is every change of a transaction visible in the run's
//! snapshot and not in the cursor (the snapshot of what was shipped), below
//! the batch bound — never "ids above the highest seen", which loses changes
//! because transactions commit out of id order (see `snapshot`).

use super::node::{Node, Postgres, Window};
use super::snapshot::{choose_bound, BatchBounds, Snapshot};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{SyncPlan, TableInfo};
use crate::read::{ChangedKeys, CommitTime, KeyRead, KeyRequest, KeySet, RunLimits, SourceRead, TableSummary, TextKey};
use futures_util::future::try_join_all;
use tokio_postgres::types::Type;

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
pub async fn pending(pg: &Postgres) -> Result<bool, ReplicaError> {
    let checks = pg.delivering().map(|node| async move {
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
        // No table to poll (all held): the cursor parameter is still bound.
        return "SELECT false FROM (SELECT $1::text) AS nothing".into();
    }
    format!("SELECT {}", parts.join(" OR "))
}

/// Every run transaction: one snapshot for reading and applying, and applied
/// rows never echo back as changes.
pub(crate) const BEGIN_RUN: &str =
    "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL session_replication_role = replica";

/// Starts the run transaction of the databases that are only targets (sources
/// start theirs while reading).
async fn begin_targets(pg: &Postgres) -> Result<(), ReplicaError> {
    try_join_all(pg.nodes.iter().filter(|n| !n.source).map(|n| async move {
        let sql = format!("{BEGIN_RUN}; SELECT ({})", n.shape.sql);
        let messages = n.client.simple_query(&sql).await.on_db(n.id, || "starting the run transaction".into())?;
        n.shape.check(n.id, first_row(&messages).and_then(|r| r.get(0)))
    }))
    .await?;
    Ok(())
}

/// The first row of a simple query's answer.
fn first_row(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

/// Starts the run transaction on every database and reads each source's
/// window: its snapshot, batch bound and change counts per table. The windows
/// stay with the engine until the run ends.
pub async fn begin(pg: &mut Postgres, plan: &SyncPlan, limits: RunLimits) -> Result<Vec<SourceRead>, ReplicaError> {
    let sources = pg.delivering().map(|node| read_source(plan, pg, node, limits));
    let ((), reads) = futures_util::future::try_join(begin_targets(pg), try_join_all(sources)).await?;
    let (windows, reads): (Vec<Window>, Vec<SourceRead>) = reads.into_iter().unzip();
    pg.windows = windows;
    Ok(reads)
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
async fn read_source(
    plan: &SyncPlan,
    pg: &Postgres,
    node: &Node,
    limits: RunLimits,
) -> Result<(Window, SourceRead), ReplicaError> {
    let id = node.id;
    let cursor = node.cursor.to_string();
    let deltas: Vec<&str> =
        plan.tables.iter().filter_map(|t| node.captures.get(&t.name)).map(|c| c.delta.as_str()).collect();
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
    // The tables' shape is read after the snapshot is taken: a column added
    // before the run's snapshot shows here, so no row written into it ships
    // with the old column list.
    let sql = format!("{BEGIN_RUN}; SELECT pg_current_snapshot()::text, {nth_sql}, ({})", node.shape.sql);
    let messages = node.client.simple_query(&sql).await.on_db(id, || "starting the run".into())?;
    let row = first_row(&messages)
        .ok_or_else(|| ReplicaError::Protocol { db: id, message: "no snapshot returned".into() })?;
    node.shape.check(id, row.get(2))?;
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
            (counted.next(), BatchBounds::counted(limits.batch_rows, counted.collect()))
        }
    };
    let bound = choose_bound(nth, &node.cursor, &snapshot);
    let bound_text = bound.to_string();
    let whole = format!("{}", snapshot.xmax);
    let reads = plan.tables.iter().map(|table| {
        // A table whose hold was lifted is read whole, up to the snapshot.
        let swept = node.sweep.contains(&table.name);
        let cursor = if swept { "1:1:" } else { cursor.as_str() };
        let bound_text = if swept { &whole } else { &bound_text };
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
    let summaries: Vec<TableSummary> = try_join_all(reads).await?;
    let shipped = summaries.iter().map(|s| s.changes.max(0) as u64).sum();
    let (_, uneven) = node.window_start(&pg.nodes);
    let targets = node.live_targets(&pg.nodes).collect();
    let sweep = node.sweep.clone();
    // What is read whole was partly shipped before the hold: delete first.
    let uneven = uneven || !sweep.is_empty();
    let window = Window { db: id, cursor, bound, later, shipped, snapshot, targets, sweep };
    let read = SourceRead { db: id, more: !window.caught_up(), uneven, summaries };
    Ok((window, read))
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

/// Reads the changed keys each request asks for, all at once.
pub async fn read_keys(
    pg: &Postgres,
    plan: &SyncPlan,
    requests: &[KeyRequest],
) -> Result<Vec<ChangedKeys<TextKey>>, ReplicaError> {
    let reads = requests.iter().map(|r| {
        let node = pg.node(r.db);
        let window = pg.window(r.db);
        let table = &plan.tables[r.table];
        let delta = &node.captures[&table.name].delta;
        read_table_keys(node, table, delta, window, r.how, r.only_rewritten)
    });
    try_join_all(reads).await
}

/// The changed keys of a table in the window. With `KeyRead::Resolve`, each
/// with the commit time of its latest change, and the set of those that were
/// only inserted; with `KeyRead::Single`, keys only, and when `only_rewritten`
/// only those that were not only inserted.
async fn read_table_keys(
    node: &Node,
    table: &TableInfo,
    delta: &str,
    window: &Window,
    how: KeyRead,
    only_rewritten: bool,
) -> Result<ChangedKeys<TextKey>, ReplicaError> {
    let (cursor, bound) = window.range(&table.name);
    let bound = bound.to_string();
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
        let key: TextKey = (0..n).map(|i| r.get::<_, String>(i)).collect();
        if how == KeyRead::Single {
            keys.push((key, None));
            continue;
        }
        if r.get::<_, bool>(n + 1) {
            inserted.insert(key.clone());
        }
        keys.push((key, r.get::<_, Option<i64>>(n)));
    }
    Ok(ChangedKeys { keys, inserted })
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
