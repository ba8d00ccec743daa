//! Recording runs on PostgreSQL: the state `dugong status` reads
//! (`dugong.sync_state` on every database of the sync), the conflict log, the
//! run's commit, and afterwards the sources' cursors (`dugong.cursor`).

use super::capture;
use super::durable;
use super::flight;
use super::node::{rollback_all, tagged_value, Node, Postgres, Window};
use super::read;
use super::snapshot::Snapshot;
use super::upkeep;
use crate::error::{describe_pg, ReplicaError, StatementContext};
use crate::plan::SyncPlan;
use crate::record::conflict::{RowVersion, RunConflict};
use crate::record::{epoch_seconds, excluded_entries, not_good, Replicator, RunOutcome};
use crate::upkeep::Purge;
use dugong_core::quote_literal;
use dugong_core::{DbId, SyncName};
use futures_util::future::{join_all, try_join_all};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

const UPSERT: &str = "INSERT INTO dugong.sync_state (sync) VALUES ($1) ON CONFLICT (sync) DO NOTHING";

/// The columns every run's state sets, whatever it did: Good from `started`,
/// or — while databases are missing — Bad with the reason, the others going on.
fn run_columns(plan: &SyncPlan, pg: &Postgres, who: &Replicator, started: &str) -> String {
    let excluded: Vec<String> = excluded_entries(&plan.excluded).iter().map(|e| quote_literal(e)).collect();
    let live: Vec<DbId> = pg.nodes.iter().map(|n| n.id).collect();
    let state = match not_good(&pg.missing, &live, plan) {
        None => format!("state = 'Good', last_good_started = {started}, last_good_ended = now()"),
        Some(why) => format!(
            "state = 'Bad', last_bad_started = coalesce(CASE WHEN state = 'Bad' THEN last_bad_started END, {started}),
             last_bad_ended = now(), last_error = {}",
            quote_literal(&why)
        ),
    };
    format!(
        "replicator_pid = {pid}, replicator_host = {host}, heartbeat = now(), {state}, tables = {tables},
            excluded = ARRAY[{excluded}]::text[], commit_timestamps = {commit_ts}, updated_at = now()",
        pid = who.pid,
        host = quote_literal(&who.host),
        tables = plan.tables.len(),
        excluded = excluded.join(", "),
        commit_ts = pg.nodes.iter().filter(|n| n.source).all(|n| n.commit_timestamps),
    )
}

/// Refreshes "last good" after an empty run (the heartbeat: Bucardo shows empty
/// runs as Good too), on every database of the sync. Runs that moved rows record
/// their state inside their own transactions ([`commit`]).
pub async fn record_idle(plan: &SyncPlan, pg: &Postgres, who: &Replicator) -> Result<(), ReplicaError> {
    let sql = format!(
        "UPDATE dugong.sync_state SET {} WHERE sync = {}",
        run_columns(plan, pg, who, "now()"),
        quote_literal(plan.name().as_str()),
    );
    try_join_all(
        pg.nodes
            .iter()
            .map(|node| async { node.client.batch_execute(&sql).await.on_db(node.id, || "recording the run".into()) }),
    )
    .await?;
    Ok(())
}

/// The statement that records a run that moved rows, executed in each
/// database's run transaction just before it commits.
fn good_run_sql(plan: &SyncPlan, pg: &Postgres, who: &Replicator, outcome: &RunOutcome) -> String {
    let started = format!("to_timestamp({})", epoch_seconds(outcome.started.unwrap_or_else(SystemTime::now)));
    let (d, i, t, c) = (outcome.deletes, outcome.inserts, outcome.truncates, outcome.conflicts.len());
    format!(
        "UPDATE dugong.sync_state SET {columns},
            last_rows_started = {started}, last_rows_ended = now(),
            last_deletes = {d}, last_inserts = {i}, last_truncates = {t}, last_conflicts = {c},
            rows_total = rows_total + {d} + {i}, conflicts_total = conflicts_total + {c}
         WHERE sync = {sync}",
        columns = run_columns(plan, pg, who, &started),
        sync = quote_literal(plan.name().as_str()),
    )
}

/// Records the run's conflicts and state in every database's run transaction,
/// and commits them all. A conflict log that cannot be written rolls the run
/// back. A far database's commit may go without waiting for its answer (see
/// `flight`): the run is then queued, and its advance waits for the answer.
pub async fn commit(
    plan: &Arc<SyncPlan>,
    pg: &mut Postgres,
    who: &Replicator,
    outcome: &RunOutcome,
) -> Result<Vec<(DbId, bool)>, ReplicaError> {
    if !outcome.conflicts.is_empty() {
        if let Err(e) = log_conflicts(plan, pg, &outcome.conflicts).await {
            rollback_all(pg).await;
            return Err(e);
        }
    }
    let sql = good_run_sql(plan, pg, who, outcome);
    let number = pg.flights.number();
    // Applied in one flight (see `apply::apply_all`), with no conflicts to log.
    let small = pg.ships_little() && outcome.truncates == 0 && outcome.conflicts.is_empty();
    let mut messages = Vec::with_capacity(pg.nodes.len());
    for i in 0..pg.nodes.len() {
        let n = &pg.nodes[i];
        let (id, far, told) = (n.id, flight::far(n), flight::told(n));
        let fly = flight::may_fly(pg, id, !outcome.conflicts.is_empty());
        // A source whose held tables shipped whole lifts their holds with the run.
        let sweep = pg.windows.iter().find(|w| w.db == id).map(|w| w.sweep.as_slice()).unwrap_or_default();
        // A small run's rows go with the commit: one message; and after it,
        // a source's poll from where the run leaves its cursor.
        let poll = next_poll(pg, n);
        // A small run commits nearby without waiting for the flush; its
        // positions wait for it instead (see `durable`).
        let quick = !fly && !far && small && sweep.is_empty();
        let body = format!(
            "{}{}{}{sql};\n{}COMMIT;\n{}{}",
            read::take_opening(n),
            n.staged,
            if quick { durable::ASYNC_COMMIT } else { "" },
            capture::release_sql(plan.name().as_str(), sweep),
            if quick { durable::COMMIT_LSN } else { "" },
            if n.unflushed.is_some() { durable::FLUSHED_BEHIND_COMMIT } else { "" },
        );
        let (mark, before) = if far { flight::mark(pg, id, number) } else { (String::new(), None) };
        let has_poll = poll.is_some();
        // A commit waited for also times the link (what is left of its wait
        // once the server's time is taken off), as a poll does, until the
        // distance is told: runs that follow one another without polls, as in
        // a catch-up, still tell a remote database from one nearby, and fly
        // there.
        let timing = if fly || told { "" } else { SERVER_TIME };
        messages.push((id, fly, format!("{body}{mark}{timing}{}", poll.unwrap_or_default()), has_poll, before));
    }
    // The commits that do not wait leave first, so every later statement on
    // their connections queues behind them.
    let mut flying = Vec::new();
    let mut waited = Vec::new();
    for (id, fly, sql, has_poll, before) in messages {
        if fly {
            let client = pg.node(id).client.clone();
            let plan = plan.clone();
            let mut commit = Box::pin(async move {
                let messages = client.simple_query(&sql).await.map_err(|e| super::apply::commit_error(id, &plan, e))?;
                Ok::<_, ReplicaError>(poll_answer(&messages, has_poll))
            });
            // The first poll hands the message to the connection.
            let handle = match futures_util::poll!(commit.as_mut()) {
                std::task::Poll::Ready(done) => tokio::spawn(async move { done }),
                std::task::Poll::Pending => tokio::spawn(commit),
            };
            flying.push((id, handle, before));
        } else {
            waited.push((id, sql, has_poll, before));
        }
    }
    let nodes = &pg.nodes;
    let committed = join_all(waited.iter().map(|(id, sql, has_poll, _)| async move {
        let n = nodes.iter().find(|n| n.id == *id).expect("every commit is a node's");
        let asked = std::time::Instant::now();
        let commit = async { n.client.simple_query(sql).await.map_err(|e| super::apply::commit_error(n.id, plan, e)) };
        // What later runs open and read with is prepared behind the commit,
        // in its round trip (polled second, it is sent second). What fails
        // (behind a failed commit) is prepared with a later one; what is
        // there already (prepared behind a commit whose run failed elsewhere,
        // so it was not counted) is this session's, the same.
        let prepare = async {
            !n.prepared
                && match n.client.batch_execute(&prepare_sql(plan, n)).await {
                    Ok(()) => true,
                    Err(e) => e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_PSTATEMENT),
                }
        };
        let (messages, check) = futures_util::join!(commit, prepare);
        let messages = messages?;
        let link = server_time(&messages).map(|server| asked.elapsed().saturating_sub(server));
        let lsn = (durable::commit_lsn(&messages), durable::flushed_behind(&messages));
        Ok::<_, ReplicaError>((n.id, poll_answer(&messages, *has_poll), link, check, lsn))
    }))
    .await;
    if committed.iter().all(Result::is_ok) {
        flight::queue(pg, flying.into_iter().map(|(id, handle, _)| (id, handle)).collect());
        let mut answers = Vec::with_capacity(committed.len());
        for (id, answer, link, check, (lsn, flushed)) in committed.into_iter().flatten() {
            durable::committed(pg, id, lsn);
            if let Some(flushed) = flushed {
                durable::flushed(pg, id, flushed);
            }
            let node = pg.node_mut(id);
            if let Some(took) = link {
                node.timed(took);
            }
            node.prepared |= check;
            answers.extend(answer.map(|a| (id, a)));
        }
        return Ok(answers);
    }
    // A statement before COMMIT failed: that transaction is aborted, not
    // ended. The databases that committed keep the run; repeating it is
    // harmless. Those sent without waiting are waited for now. Where the
    // commit failed, the session keeps the number of the run before.
    let mut error = None;
    for ((id, _, _, before), result) in waited.into_iter().zip(committed) {
        if let Err(e) = result {
            pg.flights.unmark(id, number, before);
            error.get_or_insert(e);
        }
    }
    for (id, handle, before) in flying {
        if !matches!(handle.await, Ok(Ok(_))) {
            pg.flights.unmark(id, number, before);
        }
    }
    rollback_all(pg).await;
    // The good runs before keep their progress if the engine is dropped now.
    durable::settle(pg).await;
    Err(error.expect("a commit failed"))
}

/// Sent after a commit that is waited for: the time the server spent on the
/// message since it arrived, in microseconds, in a row marked as such.
const SERVER_TIME: &str =
    "SELECT 'dugong.server_us', (extract(epoch from clock_timestamp() - statement_timestamp()) * 1000000)::int8;\n";

/// The server's time on a message that carried [`SERVER_TIME`].
fn server_time(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<std::time::Duration> {
    tagged_value(messages, "dugong.server_us").map(std::time::Duration::from_micros)
}

/// The answer of the poll sent behind a commit: the last row's first value.
fn poll_answer(messages: &[tokio_postgres::SimpleQueryMessage], has_poll: bool) -> Option<bool> {
    if !has_poll {
        return None;
    }
    messages.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
        _ => None,
    })
}

/// The poll of source `n` from the cursor it will have once this run's
/// positions advance, to send right after its commit; `None` for a database
/// that is not a source delivering to anyone, and for one nearby: the next
/// run asks it afresh anyway (see `read::pending`), and the answer would only
/// hold the run's end back.
fn next_poll(pg: &Postgres, n: &Node) -> Option<String> {
    if !flight::far(n) || n.poll_text().is_none() || n.live_targets(&pg.nodes).next().is_none() {
        return None;
    }
    let cursor = match pg.windows.iter().find(|w| w.db == n.id) {
        Some(w) => {
            let mut positions = n.positions.clone();
            positions.extend(advanced_positions(n, w));
            n.window_start_with(&positions, &pg.nodes).0
        }
        None => n.cursor.clone(),
    };
    Some(read::poll_from(n, &cursor))
}

/// Where a run that read window `w` leaves the positions of its source `node`
/// for each target it delivered to: past the window (never back: a target
/// that was ahead keeps what it had).
fn advanced_positions(node: &Node, w: &Window) -> Vec<(DbId, Snapshot)> {
    let shipped = w.snapshot.truncated_at(w.bound);
    w.targets
        .iter()
        .map(|t| (*t, node.positions.get(t).map_or_else(|| shipped.clone(), |p| p.union(&shipped))))
        .collect()
}

/// Records every conflict of the run in each database's conflict log, in the
/// run transaction, with both versions of its row (a deleted one as JSON
/// `null`). A conflict already logged under its id (a run repeated after a
/// crash) is not logged twice.
pub(crate) async fn log_conflicts(plan: &SyncPlan, pg: &Postgres, cs: &[RunConflict]) -> Result<(), ReplicaError> {
    // Databases the run has not written yet open their run transaction first.
    for n in &pg.nodes {
        read::opened(n, async { Ok(()) }).await?;
    }
    let clients: Vec<(DbId, &Client)> = pg.nodes.iter().map(|n| (n.id, &*n.client)).collect();
    insert_conflicts(&clients, plan.name().as_str(), cs).await
}

/// Inserts conflicts into the conflict log of each database of `clients`, in
/// whatever transaction each is in (a run's, `dugong repair`'s or the orphan
/// look's).
pub(crate) async fn insert_conflicts(
    clients: &[(DbId, &Client)],
    sync: &str,
    cs: &[RunConflict],
) -> Result<(), ReplicaError> {
    // One array per column, unnested by the server: about twice as fast as a
    // JSON array of records (20,000 conflicts in 0.25 s instead of 0.46 s).
    let column = |f: &dyn Fn(&RunConflict) -> String| cs.iter().map(f).collect::<Vec<String>>();
    let ids = column(&|c| c.id.clone());
    let schemas = column(&|c| c.table.schema.clone());
    let names = column(&|c| c.table.name.clone());
    let keys = column(&|c| array_literal(&c.key));
    let kinds = column(&|c| c.kind.as_str().to_string());
    let winners = column(&|c| c.winner.to_string());
    let losers = column(&|c| c.loser.to_string());
    let reasons = column(&|c| c.reason.clone());
    let winner_us: Vec<Option<i64>> = cs.iter().map(|c| c.winner_time).collect();
    let loser_us: Vec<Option<i64>> = cs.iter().map(|c| c.loser_time).collect();
    let version = |v: &RowVersion| v.as_ref().map_or_else(|| "null".to_string(), |r| r.get().to_string());
    let winner_rows = column(&|c| version(&c.winner_row));
    let loser_rows = column(&|c| version(&c.loser_row));
    let sql = "INSERT INTO dugong.conflict_log (conflict_id, sync, table_schema, table_name, key, kind, winner, loser,
                                               winner_committed, loser_committed, winner_row, loser_row, reason)
        SELECT u.id, $1, u.table_schema, u.table_name, u.key::text[], u.kind, u.winner, u.loser,
               to_timestamp(u.winner_us / 1000000.0), to_timestamp(u.loser_us / 1000000.0),
               u.winner_row::jsonb, u.loser_row::jsonb, u.reason
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                    $9::int8[], $10::int8[], $11::text[], $12::text[], $13::text[])
             AS u(id, table_schema, table_name, key, kind, winner, loser, winner_us, loser_us, winner_row, loser_row, reason)
        ON CONFLICT (conflict_id) DO NOTHING";
    let text: [&(dyn ToSql + Sync); 7] = [&ids, &schemas, &names, &keys, &kinds, &winners, &losers];
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&sync, Type::TEXT)];
    params.extend(text.into_iter().map(|p| (p, Type::TEXT_ARRAY)));
    params.extend([(&winner_us as &(dyn ToSql + Sync), Type::INT8_ARRAY), (&loser_us, Type::INT8_ARRAY)]);
    params.extend([(&winner_rows as &(dyn ToSql + Sync), Type::TEXT_ARRAY), (&loser_rows, Type::TEXT_ARRAY)]);
    params.push((&reasons, Type::TEXT_ARRAY));
    try_join_all(clients.iter().map(|(id, client)| {
        let params = &params;
        async move { client.query_typed(sql, params).await.on_db(*id, || "recording conflicts".into()) }
    }))
    .await?;
    Ok(())
}

/// A text array literal of `values` (`{"a","b\"c"}`): each element quoted,
/// backslashes and quotes escaped, as PostgreSQL reads arrays.
fn array_literal(values: &[String]) -> String {
    let quoted: Vec<String> =
        values.iter().map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", quoted.join(","))
}

/// The names of a source's position advance ([`advance_sql`]) and of its
/// change logs' purges (`upkeep::purge_statements`, numbered from 0), once
/// prepared on its run session: every small run's advance sends them, and
/// planned each time they took 0.4 ms of the source's server, four times
/// what running them took.
const ADVANCE_STATEMENT: &str = "dugong_advance";
const PURGE_STATEMENT: &str = "dugong_purge";

/// The statement that moves `sync`'s position at a source for the target
/// the SQL text expression `target` names to the snapshot the SQL text
/// expression `position` gives.
fn advance_sql(sync: &SyncName, target: &str, position: &str) -> String {
    format!(
        "UPDATE dugong.cursor SET snapshot = {position}::pg_snapshot, updated_at = now() WHERE sync = {} AND target = {target}",
        quote_literal(sync.as_str())
    )
}

/// What prepares, on `node`'s run session, what a run prepares there
/// (`read::prepare_sql`) and, at a source, its advance and purges.
fn prepare_sql(plan: &SyncPlan, node: &Node) -> String {
    let mut sql = read::prepare_sql(plan, node);
    if node.source {
        let advance = advance_sql(plan.name(), "$1::text", "$2::text");
        sql.push_str(&format!("PREPARE {ADVANCE_STATEMENT} (text, text) AS {advance};\n"));
        for (i, purge) in upkeep::purge_statements(node).iter().enumerate() {
            sql.push_str(&format!("PREPARE {PURGE_STATEMENT}_{i} AS {purge};\n"));
        }
    }
    sql
}

/// After every database committed: moves each source's position for every
/// target the run delivered to past the run's window (never back: a target
/// that was ahead keeps what it had), and purges the change rows every
/// configured sync and target has been delivered, when the upkeep policy says
/// the purge goes with it.
pub async fn advance(pg: &mut Postgres, sync: &SyncName) -> Result<(), ReplicaError> {
    let windows = std::mem::take(&mut pg.windows);
    let mut advances = Vec::with_capacity(windows.len());
    for w in &windows {
        let node = pg.node(w.db);
        let purge = node.upkeep.purge_after(node.upkeep_busy(), w.caught_up(), w.shipped);
        let positions = advanced_positions(node, w);
        advances.push((positions, purge));
    }
    let mut held = Vec::with_capacity(windows.len());
    for (w, (positions, purge)) in windows.iter().zip(&advances) {
        let node = pg.node(w.db);
        // A position lost in a crash only means delivering again, which is
        // idempotent: no need to wait for the flush, nor for the answer — the
        // statement goes with the next one this database gets.
        let mut sql = String::from("BEGIN;\nSET LOCAL synchronous_commit = off;\n");
        for (target, position) in positions {
            sql.push_str(&if node.prepared {
                format!("EXECUTE {ADVANCE_STATEMENT}('{target}', '{position}');\n")
            } else {
                format!("{};\n", advance_sql(sync, &format!("'{target}'"), &format!("'{position}'")))
            });
        }
        if *purge == Purge::Inline {
            if node.prepared {
                sql.extend((0..upkeep::purge_count(node)).map(|i| format!("EXECUTE {PURGE_STATEMENT}_{i};\n")));
            } else {
                sql.push_str(&upkeep::purge_sql(node));
            }
        }
        sql.push_str("COMMIT;\n");
        held.push((w.db, sql));
    }
    // Behind runs in flight, the advance waits for them and for this run.
    // Else it waits for the flush of the commits it covers.
    for (db, sql) in pg.flights.hold(held).unwrap_or_default() {
        durable::release(pg, db, sql);
    }
    for (w, (positions, purge)) in windows.into_iter().zip(advances) {
        let i = pg.nodes.iter().position(|n| n.id == w.db).expect("every window is a node's");
        pg.nodes[i].positions.extend(positions);
        let (cursor, _) = pg.nodes[i].window_start(&pg.nodes);
        let node = &mut pg.nodes[i];
        node.cursor = cursor;
        // Shipped whole and released with the commit.
        node.sweep.retain(|t| !w.sweep.contains(t));
        let caught_up = w.caught_up();
        node.batch_bounds = w.later;
        upkeep::after_run(node, purge, caught_up, w.shipped);
    }
    flight::sealed(pg);
    Ok(())
}

/// Records a failed run on every database of the sync that can be reached.
/// Never fails: the databases that are down are what the error is about.
pub async fn record_bad(
    clients: &[(DbId, &Client)],
    sync: &SyncName,
    who: &Replicator,
    started: SystemTime,
    error: &str,
) {
    let started_s = epoch_seconds(started);
    for (id, client) in clients {
        let result = async {
            client.execute(UPSERT, &[&sync.as_str()]).await?;
            client
                .execute(
                    "UPDATE dugong.sync_state SET replicator_pid = $2, replicator_host = $3, heartbeat = now(), state = 'Bad',
                        last_bad_started = to_timestamp($4), last_bad_ended = now(), last_error = $5, updated_at = now()
                     WHERE sync = $1",
                    &[&sync.as_str(), &who.pid, &who.host, &started_s, &error],
                )
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(db = %id, sync = %sync, error = %describe_pg(&e), "could not record the failed run");
        }
    }
}

/// Marks the sync as not running on every database (the replicator stopped),
/// and takes its heartbeat away; sends the last run's position advance first.
pub async fn record_stopped(pg: &mut Postgres, sync: &SyncName, who: &Replicator) {
    flight::settle_after_rollback(pg).await;
    durable::settle(pg).await;
    flush_deferred(pg).await;
    for node in &pg.nodes {
        let _ = node
            .client
            .execute(
                "UPDATE dugong.sync_state SET replicator_pid = NULL, updated_at = now() WHERE sync = $1",
                &[&sync.as_str()],
            )
            .await;
        let _ = node
            .client
            .execute(
                "DELETE FROM dugong.heartbeat WHERE sync = $1 AND role = 'active' AND pid = $2 AND host = $3",
                &[&sync.as_str(), &who.pid, &who.host],
            )
            .await;
    }
}

/// Sends every database's deferred position advance now. Best effort: one
/// not sent only means delivering that run again.
pub(crate) async fn flush_deferred(pg: &mut Postgres) {
    durable::send_deferred(pg, |_| true).await;
}

/// Writes a replicator's heartbeat in its role (`active` or `standby`).
pub async fn heartbeat(
    client: &Client,
    sync: &SyncName,
    role: &str,
    who: &Replicator,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO dugong.heartbeat (sync, role, pid, host, at, interval_ms) VALUES ($1, $2, $3, $4, now(), $5)
             ON CONFLICT (sync, role) DO UPDATE SET pid = excluded.pid, host = excluded.host, at = now(),
                 interval_ms = excluded.interval_ms",
            &[&sync.as_str(), &role, &who.pid, &who.host, &(who.heartbeat.as_millis() as i32)],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::array_literal;

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(array_literal(&["1".into()]), r#"{"1"}"#);
        assert_eq!(array_literal(&[r#"a"b\c"#.into(), "{x, NULL}".into()]), r#"{"a\"b\\c","{x, NULL}"}"#);
    }
}
