//! Reading a run's pending changes on PostgreSQL: the poll, each source's run
//! snapshot and batch bound, the change counts per table, and the changed keys.
//!
//! A source's window is every change of a transaction visible in the run's
//! snapshot and not in the cursor (the snapshot of what was shipped), below
//! the batch bound — never "ids above the highest seen", which loses changes
//! because transactions commit out of id order (see `snapshot`).

use super::capture::{delta_key_columns, Capture};
use super::flight;
use super::node::{run_error, Ahead, Node, Postgres, Window};
use super::snapshot::{choose_bound, BatchBounds, Snapshot};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{SyncPlan, TableInfo};
use crate::read::{ChangedKeys, KeyRead, KeyRequest, KeySet, RunLimits, SourceRead, TableSummary, TextKey};
use dugong_core::{quote_ident, DbId, TableName};
use futures_util::future::try_join_all;
use std::collections::HashMap;
use tokio_postgres::types::Type;

/// A change not in the cursor `$1`.
const NOT_SHIPPED: &str = "dugong_txid >= pg_snapshot_xmin($1::text::pg_snapshot) AND NOT pg_visible_in_snapshot(dugong_txid, $1::text::pg_snapshot)";

/// A change not in the cursor that the SQL text expression `cursor` gives (a
/// literal of digits, colons and commas, or a prepared statement's
/// parameter). Every such change is at or above the cursor's xmin, which lets
/// the change log's index skip the shipped ones.
fn not_shipped(cursor: &str) -> String {
    format!(
        "dugong_txid >= pg_snapshot_xmin({cursor}::pg_snapshot) AND NOT pg_visible_in_snapshot(dugong_txid, {cursor}::pg_snapshot)"
    )
}

/// Quoted column names of `table`, comma-separated.
pub(crate) fn column_list(table: &TableInfo) -> String {
    table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// Quoted key column names of `table`, comma-separated.
pub(crate) fn key_list(table: &TableInfo) -> String {
    table.key.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// How a statement finds the rows of changed keys in their table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// As the server plans it: a backlog's many keys may be found faster by
    /// reading the table whole than key by key.
    Planned,
    /// Key by key, through the table's key index, whatever the server thinks
    /// of the table: for a flight of changes at most. Planned, the rows of a
    /// handful of keys were found by reading the whole table wherever its
    /// statistics were stale (a table that grew since it was last analyzed
    /// looks a few pages big) or a generic plan guessed so — measured here on
    /// a table that grew by 200 rows a second, the reading of every small
    /// run grew by 1.7 ms in 30 s.
    ByKey,
}

/// The `SELECT` of `table`'s rows whose keys changed in its change log
/// `delta` after the SQL text expression `cursor` and below the SQL `xid8`
/// expression `bound`, less the keys `except` excludes (a condition on the
/// change log's key columns `k0`…, or empty), found as `lookup` says.
pub(crate) fn changed_rows_sql(
    table: &TableInfo,
    delta: &str,
    cursor: &str,
    bound: &str,
    except: &str,
    lookup: Lookup,
) -> String {
    let kcols = delta_key_columns(table);
    let changed = format!("FROM {delta} WHERE {} AND dugong_txid < {bound}{except}", not_shipped(cursor));
    match lookup {
        Lookup::Planned => format!(
            "SELECT {} FROM {} WHERE ({}) IN (SELECT {} {changed})",
            column_list(table),
            table.name.quoted(),
            key_list(table),
            kcols.join(", "),
        ),
        // The subquery's OFFSET keeps the server from flattening it into a
        // join it could plan otherwise. Its aliases name no user's table.
        Lookup::ByKey => {
            let outer: Vec<String> = kcols.iter().map(|k| format!("dugong_keys.{k}")).collect();
            format!(
                "SELECT dugong_row.* FROM (SELECT DISTINCT {} {changed}) dugong_keys CROSS JOIN LATERAL \
                 (SELECT {} FROM {} WHERE ({}) = ({}) OFFSET 0) dugong_row",
                kcols.join(", "),
                column_list(table),
                table.name.quoted(),
                key_list(table),
                outer.join(", "),
            )
        }
    }
}

/// Each row of `select` (of `table`'s columns) as one text: a tuple of SQL
/// literals, as an `INSERT`'s `VALUES` takes it.
pub(crate) fn as_literals(table: &TableInfo, select: &str) -> String {
    let quoted: Vec<String> =
        table.columns.iter().map(|c| format!("quote_nullable(r.{})", quote_ident(&c.name))).collect();
    format!("SELECT '(' || concat_ws(', ', {}) || ')' AS r FROM ({select}) r", quoted.join(", "))
}

/// Whether any source has changes this sync has not shipped. One cheap query per
/// source; this is the poll that replaces Bucardo's NOTIFY kick. Each source
/// remembers its answer, so the run reads only those with something new; the
/// last run's position advance rides along with the poll.
pub async fn pending(pg: &mut Postgres) -> Result<bool, ReplicaError> {
    // Sources far away whose last commit brought the poll's answer back are
    // not asked again (their position advance waits for the next statement
    // they get). Those nearby are asked afresh, which costs nothing: their
    // answer came back before the far ones' commits did, and may be stale.
    // Runs in flight that answered are confirmed first (their polls' answers
    // come with them); one that failed rewinds the positions.
    if let Some(e) = pg.flights.failure.take() {
        return Err(e);
    }
    flight::settle(pg, false).await?;
    let delivering: Vec<DbId> = pg.delivering().map(|n| n.id).collect();
    let (mut any, answered) = answers_at_hand(pg, &delivering);
    let deferred: Vec<(DbId, String)> = pg
        .nodes
        .iter_mut()
        .filter(|n| !answered.contains(&n.id))
        .filter_map(|n| n.deferred.take().map(|sql| (n.id, sql)))
        .collect();
    let delivering: Vec<DbId> = delivering.into_iter().filter(|id| !answered.contains(id)).collect();
    let nodes = &pg.nodes;
    let checks = nodes
        .iter()
        .filter(|n| delivering.contains(&n.id) || deferred.iter().any(|(d, _)| *d == n.id) || n.unflushed.is_some())
        .map(|node| {
            let deferred = deferred.iter().find(|(d, _)| *d == node.id).map(|(_, sql)| sql.as_str());
            let poll = delivering.contains(&node.id);
            async move {
                let cursor = node.cursor.to_string();
                // Sent one after the other without waiting: one round trip.
                let advance = async {
                    match deferred {
                        Some(sql) => {
                            node.client.batch_execute(sql).await.on_db(node.id, || "advancing the positions".into())
                        }
                        None => Ok(()),
                    }
                };
                let check = async {
                    if !poll {
                        return Ok(None);
                    }
                    let statement = node.poll.as_ref().expect("sources have a poll statement");
                    let row = node
                        .client
                        .query_one(statement, &[&cursor])
                        .await
                        .on_db(node.id, || "polling the change logs".into())?;
                    Ok::<_, ReplicaError>(Some(row.get::<_, bool>(0)))
                };
                // Whether the commits made here without waiting for the
                // flush are flushed now: the advances they hold may go.
                let flush = async {
                    if node.unflushed.is_none() {
                        return Ok(None);
                    }
                    let messages = node
                        .client
                        .simple_query(super::durable::FLUSH_LSN)
                        .await
                        .on_db(node.id, || "asking how far the WAL is flushed".into())?;
                    Ok::<_, ReplicaError>(super::durable::flush_answer(&messages))
                };
                let asked = std::time::Instant::now();
                let ((), found, flushed) = futures_util::future::try_join3(advance, check, flush).await?;
                Ok::<_, ReplicaError>((node.id, found, asked.elapsed(), flushed))
            }
        });
    let answers = match try_join_all(checks).await {
        Ok(answers) => answers,
        Err(e) => {
            // A failed advance leaves its transaction open: end it.
            super::node::rollback_all(pg).await;
            // Sent again with the next statement (a later advance covers it).
            for (id, sql) in deferred {
                if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == id) {
                    n.deferred.get_or_insert(sql);
                }
            }
            // What may go before the engine is prepared again goes now.
            super::durable::settle(pg).await;
            return Err(e);
        }
    };
    let mut released = Vec::new();
    for (id, found, took, flushed) in answers {
        if let Some(lsn) = flushed {
            released.extend(super::durable::flushed(pg, id, lsn));
        }
        if let Some(found) = found {
            any |= found;
            if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == id) {
                n.polled = Some(found);
                n.timed(took);
            }
        }
    }
    if !any {
        super::durable::quiet(pg, released).await;
    }
    Ok(any)
}

/// The sources among `delivering` whose poll needs no round trip: the first
/// run uses the answer of the poll made at start-up; later ones that of a far
/// source's last commit, or, while runs are in flight there, take it to have
/// nothing new (the next run only delivers there, and its unread guard fails
/// that run if something new did arrive). Returns whether any has changes,
/// and which were answered.
fn answers_at_hand(pg: &mut Postgres, delivering: &[DbId]) -> (bool, Vec<DbId>) {
    let mut any = false;
    let mut answered = Vec::new();
    let flights = &pg.flights;
    for n in pg.nodes.iter_mut().filter(|n| delivering.contains(&n.id)) {
        let far = flight::far(n);
        if let Some(found) = n.started.take().or_else(|| n.answered.take().filter(|_| far)) {
            n.polled = Some(found);
            any |= found;
            answered.push(n.id);
        } else if far && flights.outstanding(n.id) {
            n.polled = Some(false);
            answered.push(n.id);
        }
    }
    (any, answered)
}

/// The poll query of a source with these change logs (`Node::captures`): is
/// any change of the sync's tables not visible in the cursor (`$1`)?
/// Prepared once per connection.
pub(crate) fn pending_sql(tables: &[TableInfo], captures: &HashMap<TableName, Capture>) -> String {
    let mut parts: Vec<String> = tables
        .iter()
        .filter_map(|t| captures.get(&t.name))
        // The first pending change in txid order: the index finds it without
        // visiting the shipped rows that wait for a purge, whatever the plan.
        .map(|c| format!("(SELECT true FROM {} WHERE {NOT_SHIPPED} ORDER BY dugong_txid LIMIT 1) IS NOT NULL", c.delta))
        .collect();
    let ids: Vec<String> =
        tables.iter().filter_map(|t| captures.get(&t.name)).map(|c| c.table_id.to_string()).collect();
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

/// The poll of source `n` as a statement of its own, from `cursor` (a safe
/// literal: digits, colons and commas), to send inside a simple query.
pub(crate) fn poll_from(n: &Node, cursor: &Snapshot) -> String {
    n.poll_sql.replace("$1::text", &format!("'{cursor}'::text"))
}

/// Every run transaction: one snapshot for reading and applying. Applied
/// rows never echo back as changes: the run connection's session applies
/// as a replica (see `prepare::check_replication_role`).
pub(crate) const BEGIN_RUN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ";

/// `executes` (this session's prepared statements, run in the run
/// transaction) on generic plans without sequential scans. Left to choose,
/// the server planned these statements again in every run, judging a plan
/// that knows the cursor cheaper: measured here, planning a source's reading
/// took 1 ms of every run against 0.2 ms of executing it. A generic plan is
/// made once per session (again when the tables' catalog or statistics
/// change). It does not know the cursor, so it guesses how much of a change
/// log the window covers; kept from sequential scans, it finds the window
/// through the change log's transaction-id index, as a plan knowing the
/// cursor does, even where the statistics say the change log is big (a
/// backlog's shipped rows waiting for their purge). The settings go back
/// to the session's right after, for everything else the run sends.
pub(crate) fn generic(executes: &str) -> String {
    format!(
        "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off;\n{executes};\n\
         SET LOCAL plan_cache_mode TO DEFAULT; SET LOCAL enable_seqscan TO DEFAULT"
    )
}

/// Opens the run transaction of the databases this run does not read —
/// targets, and sources whose poll found nothing new (a run opens no snapshot
/// there) — when the run first needs them: see [`opened`].
fn begin_targets(pg: &Postgres, read: &[DbId]) {
    for n in pg.nodes.iter().filter(|n| !read.contains(&n.id)) {
        // Prepared, the check is not planned again in every run.
        let check = if n.prepared {
            generic(&format!("EXECUTE {}('{}')", super::node::CHECK_STATEMENT, n.cursor))
        } else {
            n.shape.run_check(unread_poll(n).as_deref())
        };
        let sql = format!(
            "{}{BEGIN_RUN}{}; {check}",
            n.deferred.as_deref().unwrap_or_default(),
            flight::chain_guard(pg, n.id),
        );
        *n.opening.lock().unwrap_or_else(|p| p.into_inner()) = Some(sql);
    }
}

/// For a source this run does not read (its poll found nothing new): its
/// poll again, in the run transaction's snapshot, for `dugong.run_check` to
/// fail the transaction with a serialization failure when it finds changes —
/// so the run starts again and reads it. Without it, a change committed there
/// after the poll would be visible in the snapshot the run applies in, and
/// overwritten by another source's older version of its row instead of being
/// resolved against it. A change committed after the snapshot makes the apply
/// fail the same way, as in every run transaction.
fn unread_poll(n: &Node) -> Option<String> {
    n.poll_text().map(|_| poll_from(n, &n.cursor))
}

/// Runs `work` on `node` in the run transaction: when the transaction is not
/// open yet, its opening is sent just before `work`'s first statement, and
/// both take one round trip. Nothing sent behind a failed opening takes
/// effect: the server refuses every statement in a failed transaction block,
/// and the run rolls back. The opening also checks the tables' shape on the
/// server (`dugong.run_check`), before the run writes anything there — as
/// it does when it goes in front of the commit instead ([`take_opening`]).
pub(crate) async fn opened<T>(
    node: &Node,
    work: impl std::future::Future<Output = Result<T, ReplicaError>>,
) -> Result<T, ReplicaError> {
    let opening = node.opening.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(sql) = opening else { return work.await };
    let open = async {
        node.client
            .simple_query(&sql)
            .await
            .map_err(|e| run_error(node.id, || "starting the run transaction".into(), e))?;
        Ok(())
    };
    // Polled in order: the opening is sent first.
    let ((), out) = futures_util::future::try_join(open, work).await?;
    Ok(out)
}

/// The opening of the run transaction on `node` when not sent yet, to put in
/// front of a simple query (the run's commit).
pub(crate) fn take_opening(node: &Node) -> String {
    node.opening.lock().unwrap_or_else(|p| p.into_inner()).take().map(|s| format!("{s};\n")).unwrap_or_default()
}

/// Starts the run transaction on every database and reads each source's
/// window: its snapshot, batch bound and change counts per table. The windows
/// stay with the engine until the run ends.
pub async fn begin(pg: &mut Postgres, plan: &SyncPlan, limits: RunLimits) -> Result<Vec<SourceRead>, ReplicaError> {
    // Read: the sources whose poll found changes, or that were not polled
    // since a bounded run, and those with held tables to ship whole.
    pg.one_flight_rows = limits.one_flight_rows;
    // After a bounded run nothing was polled: the answers at hand still
    // spare reading far sources with nothing new (a catch-up reads only where
    // the backlog is, and its runs fly to the far databases).
    let unpolled: Vec<DbId> = pg.delivering().filter(|n| n.polled.is_none()).map(|n| n.id).collect();
    answers_at_hand(pg, &unpolled);
    let read: Vec<DbId> =
        pg.delivering().filter(|n| n.polled != Some(false) || !n.sweep.is_empty()).map(|n| n.id).collect();
    let sources = pg.nodes.iter().filter(|n| read.contains(&n.id)).map(|node| read_source(plan, pg, node, limits));
    begin_targets(pg, &read);
    let result = try_join_all(sources).await;
    for n in &mut pg.nodes {
        n.polled = None;
        // Sent with the run's first statement, committed or not.
        n.deferred = None;
    }
    let reads = result?;
    pg.flights.verify_next = false;
    let (windows, reads): (Vec<Window>, Vec<SourceRead>) = reads.into_iter().unzip();
    for w in &windows {
        pg.node_mut(w.db).read_ahead = w.shipped <= limits.one_flight_rows;
    }
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
    // The transaction id of the batch_rows-th pending change bounds the batch.
    let cached = node.batch_bounds.next_after(&node.cursor, limits.batch_rows);
    // The counts go right behind, in the same statement list: bounded by
    // what the batch bounds already say, else by the run's snapshot (the
    // bound of every run that is not a backlog's). A backlog counted just now
    // bounds the batch lower, and is counted again below.
    let early_bound = cached.as_ref().and_then(|(nth, _)| *nth).map(|nth| nth.saturating_add(1).max(node.cursor.xmax));
    let count = cached.is_none();
    let rows_per_batch = limits.batch_rows.max(1);
    // Prepared (see `prepare_sql`), the statements are not planned again in
    // every run; a table whose hold was lifted is read the one time inline.
    // Where the last run here was small, this one most likely is too: the
    // rows it ships are read ahead, in this round trip (see `rows_ahead_sql`).
    let ahead = node.read_ahead
        && early_bound.is_none()
        && node.sweep.is_empty()
        && limits.one_flight_rows > 0
        && plan.tables.iter().any(|t| node.captures.contains_key(&t.name))
        && (node.prepared || flight::far(node));
    let ahead_limit = limits.one_flight_rows.saturating_add(1);
    let prepared = node.prepared && node.sweep.is_empty();
    let (window, counts, ahead) = if prepared {
        (
            format!("EXECUTE {READ_STATEMENT}('{cursor}', {rows_per_batch}, {count})"),
            Some(format!("EXECUTE {COUNT_STATEMENT}('{cursor}', {})", xid8_or_null(early_bound))),
            ahead.then(|| format!("EXECUTE {ROWS_STATEMENT}('{cursor}', {ahead_limit})")),
        )
    } else {
        let cursor = format!("'{cursor}'::text");
        (
            window_sql(plan, node, &cursor, &rows_per_batch.to_string(), &count.to_string()),
            counts_sql(plan, node, &cursor, &xid8_or_null(early_bound), &node.sweep),
            ahead.then(|| rows_ahead_sql(plan, node, &cursor, &ahead_limit.to_string())).flatten(),
        )
    };
    let mut reads = vec![window.as_str()];
    reads.extend(counts.as_deref());
    reads.extend(ahead.as_deref());
    let reads = reads.join(";\n");
    let reads = if prepared { generic(&reads) } else { reads };
    let sql = format!(
        "{}{BEGIN_RUN}{}; {reads};\n",
        node.deferred.as_deref().unwrap_or_default(),
        flight::chain_guard(pg, id)
    );
    let messages = node.client.simple_query(&sql).await.on_db(id, || "starting the run".into())?;
    let mut rows = rows(&messages);
    let row = rows.next().ok_or_else(|| ReplicaError::Protocol { db: id, message: "no snapshot returned".into() })?;
    let early = read_summaries(plan, node, &mut rows)?;
    // Kept only for a window small enough for one flight: a table with more
    // changes was not read ahead at all.
    let few = early.iter().map(|s| s.changes.max(0) as u64).sum::<u64>() <= limits.one_flight_rows;
    let ahead = match ahead {
        Some(_) if few => Some(read_ahead(id, rows)?),
        _ => None,
    };
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
    let summaries = if count && nth.is_some() { summaries(plan, node, &cursor, bound).await? } else { early };
    let shipped = summaries.iter().map(|s| s.changes.max(0) as u64).sum();
    let (_, uneven) = node.window_start(&pg.nodes);
    let targets = node.live_targets(&pg.nodes).collect();
    let sweep = node.sweep.clone();
    // What is read whole was partly shipped before the hold: delete first.
    let uneven = uneven || !sweep.is_empty() || pg.flights.verify_next;
    let window = Window { db: id, cursor, bound, later, shipped, snapshot, targets, sweep, ahead };
    let read = SourceRead { db: id, more: !window.caught_up(), uneven, summaries };
    Ok((window, read))
}

/// The names of the statements a source's run reads with ([`window_sql`] and
/// [`counts_sql`]), once prepared on its run session.
const READ_STATEMENT: &str = "dugong_run_read";
const COUNT_STATEMENT: &str = "dugong_run_counts";

/// The statements that prepare what a run's opening and reading send to
/// `node` (the shape check, and a source's reads), so that the server does
/// not plan them again in every run: sent behind a commit waited for there.
pub(crate) fn prepare_sql(plan: &SyncPlan, node: &Node) -> String {
    let mut sql = format!("{};\n", node.prepare_check_sql());
    if !node.source {
        return sql;
    }
    let window = window_sql(plan, node, "$1::text", "$2::int8", "$3::bool");
    sql.push_str(&format!("PREPARE {READ_STATEMENT} (text, int8, bool) AS {window};\n"));
    // Without the tables whose hold is lifted: runs read those inline.
    if let Some(counts) = counts_sql(plan, node, "$1::text", "$2::xid8", &[]) {
        sql.push_str(&format!("PREPARE {COUNT_STATEMENT} (text, xid8) AS {counts};\n"));
    }
    if let Some(ahead) = rows_ahead_sql(plan, node, "$1::text", "$2::int8") {
        sql.push_str(&format!("PREPARE {ROWS_STATEMENT} (text, int8) AS {ahead};\n"));
    }
    sql
}

/// The name of the statement that reads a small run's rows and keys ahead
/// ([`rows_ahead_sql`]), once prepared on a source's run session.
const ROWS_STATEMENT: &str = "dugong_run_rows";

/// The statement that reads ahead, in a source's first message of a run,
/// what a small run needs from it besides the counts: every changed row of
/// every table after the SQL text expression `cursor` and up to the run's
/// snapshot, as SQL literals (see [`as_literals`]), and the keys among them
/// that were not only inserted (those a target deletes first), each after
/// its table's place in the plan — nothing of a table with `limit` (an SQL
/// integer) changes or more. A small run then stages the rows with its
/// commit (`apply::stage_all`) and takes the keys as read
/// ([`read_keys`]) without asking the source again: one or two round trips
/// fewer. Where the source lost some of its keys to another, where keys are
/// read otherwise (to resolve or to verify), or where the window ends below
/// the snapshot, they are read again as before. `None` without a change log.
fn rows_ahead_sql(plan: &SyncPlan, node: &Node, cursor: &str, limit: &str) -> Option<String> {
    let upto = "pg_snapshot_xmax(pg_current_snapshot())";
    let window = format!("{} AND dugong_txid < {upto}", not_shipped(cursor));
    let mut gates = Vec::new();
    let mut parts = Vec::new();
    for (i, table) in plan.tables.iter().enumerate() {
        let Some(capture) = node.captures.get(&table.name) else { continue };
        let delta = &capture.delta;
        // Only where the table has few changes, which the change log's index
        // tells by counting at most `limit` of them, once for both reads;
        // else nothing is read, whatever plan the server chose (a backlog's
        // first run reads no table whole for nothing).
        gates.push(format!(
            "few{i} AS (SELECT count(*) < {limit} AS yes FROM (SELECT 1 FROM {delta} WHERE {window} LIMIT {limit}) c)"
        ));
        let few = format!("(SELECT yes FROM few{i})");
        let kcols = delta_key_columns(table);
        let ktext: Vec<String> = kcols.iter().map(|k| format!("{k}::text")).collect();
        parts.push(format!(
            "SELECT 'r' AS kind, {i} AS i, l.r AS v FROM ({}) l WHERE {few}
             UNION ALL
             SELECT 'k', {i}, json_build_array({})::text FROM {delta} WHERE {window} AND {few}
             GROUP BY {} HAVING NOT bool_and(dugong_inserted IS TRUE)",
            as_literals(table, &changed_rows_sql(table, delta, cursor, upto, "", Lookup::ByKey)),
            ktext.join(", "),
            kcols.join(", "),
        ));
    }
    (!parts.is_empty()).then(|| {
        format!("WITH {}\n             {}", gates.join(",\n             "), parts.join("\n             UNION ALL "))
    })
}

/// What [`rows_ahead_sql`] read. (Its rows are no more than the window's
/// changes, which the caller checked fit one flight.)
fn read_ahead<'a>(
    id: DbId,
    rows: impl Iterator<Item = &'a tokio_postgres::SimpleQueryRow>,
) -> Result<Ahead, ReplicaError> {
    let protocol = |message: &str| ReplicaError::Protocol { db: id, message: message.into() };
    let mut ahead = Ahead::default();
    for row in rows {
        let table = row.get(1).and_then(|i| i.parse::<usize>().ok());
        let (Some(table), Some(value)) = (table, row.get(2)) else {
            return Err(protocol("a row read ahead without its table"));
        };
        if row.get(0) == Some("k") {
            let key: TextKey =
                serde_json::from_str(value).map_err(|_| protocol("a key read ahead that is not a list"))?;
            ahead.keys.entry(table).or_default().push(key);
        } else {
            ahead.rows.entry(table).or_default().push(value.to_string());
        }
    }
    Ok(ahead)
}

/// `bound` as an SQL `xid8` (a safe literal: digits), or NULL.
fn xid8_or_null(bound: Option<u64>) -> String {
    bound.map_or_else(|| "NULL::xid8".into(), |b| format!("'{b}'::xid8"))
}

/// The statement that opens a source's window, from the SQL text expression
/// `cursor`: the run's snapshot; when `count` (an SQL boolean), the transaction
/// ids that end each batch of `rows` (an SQL integer) changes, comma-separated;
/// and the tables' shape, read after the snapshot is taken (a column added
/// before the run's snapshot shows here, so no row written into it ships with
/// the old column list).
fn window_sql(plan: &SyncPlan, node: &Node, cursor: &str, rows: &str, count: &str) -> String {
    let deltas: Vec<&str> =
        plan.tables.iter().filter_map(|t| node.captures.get(&t.name)).map(|c| c.delta.as_str()).collect();
    let nth = if deltas.is_empty() {
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
                    not_shipped(cursor)
                )
            })
            .collect();
        // Summing the counts in transaction order finds every batch's bound in
        // one pass, where an ORDER BY … OFFSET would read every change of the
        // backlog again in each run. Not counted, the subquery is not run.
        format!(
            "CASE WHEN {count} THEN (SELECT string_agg(w.t::text, ',' ORDER BY w.t) FROM (
                SELECT g.t, g.c, (sum(g.c) OVER (ORDER BY g.t))::int8 AS upto
                FROM (SELECT s.t, sum(s.c)::int8 AS c FROM ({}) s GROUP BY s.t) g) w
             WHERE (w.upto - w.c) / {rows} < w.upto / {rows}) END",
            union.join(" UNION ALL "),
        )
    };
    format!("SELECT pg_current_snapshot()::text, {nth}, ({})", node.shape.sql)
}

/// Counts every table's changes after `cursor` and below `bound` (or the run's
/// snapshot), with its truncates: one round trip.
async fn summaries(plan: &SyncPlan, node: &Node, cursor: &str, bound: u64) -> Result<Vec<TableSummary>, ReplicaError> {
    let sql = if node.prepared && node.sweep.is_empty() {
        Some(generic(&format!("EXECUTE {COUNT_STATEMENT}('{cursor}', '{bound}')")))
    } else {
        counts_sql(plan, node, &format!("'{cursor}'::text"), &format!("'{bound}'::xid8"), &node.sweep)
    };
    let Some(sql) = sql else { return read_summaries(plan, node, std::iter::empty()) };
    let messages = node.client.simple_query(&sql).await.on_db(node.id, || "counting the changes".into())?;
    read_summaries(plan, node, rows(&messages))
}

/// The rows of a simple query's answer, in order.
fn rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> impl Iterator<Item = &tokio_postgres::SimpleQueryRow> {
    messages.iter().filter_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

/// One statement yielding a row per table with a change log, in the plan's
/// order (its place first): the table's changes in the window (after the SQL
/// text expression `cursor`, below the SQL `xid8` expression `bound` or the
/// run's snapshot), those that are not inserts, the oldest one's commit time,
/// and its truncates with the latest one's commit time — one pass over the
/// change log. Tables in `sweep` (hold lifted) are read whole, up to the
/// snapshot. `None` without a change log.
fn counts_sql(plan: &SyncPlan, node: &Node, cursor: &str, bound: &str, sweep: &[TableName]) -> Option<String> {
    let mut parts = Vec::new();
    for table in &plan.tables {
        let Some(capture) = node.captures.get(&table.name) else { continue };
        let swept = sweep.contains(&table.name);
        let (cursor, bound) = if swept { ("'1:1:'::text", "NULL::xid8") } else { (cursor, bound) };
        let window = format!(
            "{} AND dugong_txid < least({bound}, pg_snapshot_xmax(pg_current_snapshot()))",
            not_shipped(cursor)
        );
        parts.push(format!(
            "SELECT {i} AS i, c.changes, c.rewritten, c.oldest, t.truncates, t.latest
             FROM (SELECT sum(g.c)::int8 AS changes, sum(g.r)::int8 AS rewritten, {} AS oldest
                   FROM (SELECT dugong_txid AS t, count(*) AS c, count(*) FILTER (WHERE dugong_inserted IS NOT TRUE) AS r
                         FROM {} WHERE {window} GROUP BY dugong_txid) g) c,
                  (SELECT count(*) AS truncates, {} AS latest
                   FROM dugong.truncate_log WHERE table_id = {} AND {window}) t",
            commit_time_expr(node, "g.t", "min"),
            capture.delta,
            commit_time_expr(node, "dugong_txid", "max"),
            capture.table_id,
            i = parts.len(),
        ));
    }
    (!parts.is_empty())
        .then(|| format!("SELECT * FROM ({}) counts ORDER BY i", parts.join("\n             UNION ALL ")))
}

/// The rows of [`counts_sql`], one per table with a change log.
fn read_summaries<'a>(
    plan: &SyncPlan,
    node: &Node,
    mut rows: impl Iterator<Item = &'a tokio_postgres::SimpleQueryRow>,
) -> Result<Vec<TableSummary>, ReplicaError> {
    let protocol = |message: &str| ReplicaError::Protocol { db: node.id, message: message.into() };
    let number = |row: &tokio_postgres::SimpleQueryRow, i: usize| -> Result<Option<i64>, ReplicaError> {
        row.get(i).map(|v| v.parse::<i64>().map_err(|_| protocol("a change count that is not a number"))).transpose()
    };
    let mut summaries = Vec::with_capacity(plan.tables.len());
    for table in &plan.tables {
        if !node.captures.contains_key(&table.name) {
            summaries.push(TableSummary::default());
            continue;
        }
        // The first column is the table's place among those counted.
        let row = rows.next().ok_or_else(|| protocol("no change count"))?;
        let truncates = number(row, 4)?.unwrap_or(0);
        summaries.push(TableSummary {
            changes: number(row, 1)?.unwrap_or(0),
            rewritten: number(row, 2)?.unwrap_or(0),
            oldest: number(row, 3)?,
            truncated: (truncates > 0).then(|| number(row, 5)).transpose()?,
        });
    }
    Ok(summaries)
}

/// Reads the changed keys each request asks for, all at once. The keys to
/// delete first of a table one source changed were read ahead in a small
/// run (see [`rows_ahead_sql`]).
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
        let ahead = window.ahead_keys(r.table).filter(|_| r.how == KeyRead::Single && r.only_rewritten);
        async move {
            match ahead {
                Some(keys) => Ok(ChangedKeys {
                    keys: keys.iter().map(|k| (k.clone(), None)).collect(),
                    inserted: KeySet::default(),
                }),
                None => read_table_keys(node, table, delta, window, r.how, r.only_rewritten).await,
            }
        }
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
    let kcols = delta_key_columns(table);
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
