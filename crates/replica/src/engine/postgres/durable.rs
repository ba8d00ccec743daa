//! Commits that do not wait for the disk, and positions that do.
//!
//! A small run's commit on a database nearby goes with `synchronous_commit =
//! off`, as native logical replication applies by default: the row is
//! visible the moment the server answers, without waiting for its WAL to be
//! flushed (about half a millisecond of every small run's lag here, and more
//! on slower disks). What the run promises is unchanged: a source's position
//! advance — the statement that says "delivered" durably — is held here
//! until every such commit before it is flushed on its database, so a
//! position never runs ahead of the rows it covers, even if a target's
//! server crashes and loses its last commits.
//!
//! How a flush is known: the WAL position a commit reached is read right
//! after its COMMIT, in the same message; the server's flush position is
//! asked later on the same session (riding the next poll there, so it costs
//! no round trip of its own), and a synchronous commit there covers every
//! earlier one — a run's, or one the replicator makes for the purpose when
//! a poll finds nothing new ([`quiet`]), so positions trail the rows by a
//! few milliseconds after a run, and by the server's WAL writer
//! (`wal_writer_delay`) at most while changes keep coming. Only the same
//! session can tell: after a crash the WAL goes on from where the flushed
//! part ended, so a new session could see a flush position past a commit
//! that was lost. A session that breaks fails the run,
//! the engine is prepared again from the positions stored on the sources,
//! and the runs whose advances were held here are delivered again, which is
//! idempotent.
//!
//! Where a synchronous standby is configured (`synchronous_standby_names`),
//! commits stay synchronous: the local flush would not say the standby has
//! the rows.

use super::node::{tagged_value, Parked, Postgres, Unflushed};
use dugong_core::DbId;
use std::time::{Duration, Instant};

/// Put in a small run's transaction on a database nearby, before its COMMIT:
/// the commit does not wait for the flush, unless a synchronous standby is
/// configured.
pub(crate) const ASYNC_COMMIT: &str = "SELECT set_config('synchronous_commit', 'off', true) \
     WHERE current_setting('synchronous_standby_names') = '';\n";

/// Sent right after such a COMMIT: the WAL position the commit reached, in a
/// row marked as such; no row when the commit was synchronous.
pub(crate) const COMMIT_LSN: &str = "SELECT 'dugong.commit_lsn', (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8 \
     WHERE current_setting('synchronous_standby_names') = '';\n";

/// The server's WAL flush position.
pub(crate) const FLUSH_LSN: &str = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8";

/// Sent after a commit where earlier ones are not known flushed: the flush
/// position, in a row marked as such, so runs that follow one another without
/// polls (a backlog in small runs) still let their advances go.
pub(crate) const FLUSHED_BEHIND_COMMIT: &str =
    "SELECT 'dugong.flushed', (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8;\n";

/// The WAL position a commit's message reported ([`COMMIT_LSN`]).
pub(crate) fn commit_lsn(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<u64> {
    tagged_value(messages, "dugong.commit_lsn")
}

/// The flush position a commit's message reported ([`FLUSHED_BEHIND_COMMIT`]).
pub(crate) fn flushed_behind(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<u64> {
    tagged_value(messages, "dugong.flushed")
}

/// How long before the replicator tries again to have commits flushed whose
/// last try did not cover them (a role whose own commits do not wait for the
/// flush either).
const FORCE_AGAIN: Duration = Duration::from_millis(200);

/// A commit on `db` answered: an asynchronous one (its WAL position known)
/// is not flushed yet; a synchronous one (a run's transaction always writes
/// its state row, so it waited for its flush) flushed every commit before it.
pub(crate) fn committed(pg: &mut Postgres, db: DbId, lsn: Option<u64>) {
    match lsn {
        Some(lsn) => {
            let node = pg.nodes.iter_mut().find(|n| n.id == db).expect("every commit is a node's");
            let lsn = node.unflushed.map_or(lsn, |before| before.lsn.max(lsn));
            node.unflushed = Some(Unflushed { lsn, forced: None });
        }
        // What the advances held waited for there is flushed too.
        None => {
            flushed(pg, db, u64::MAX);
        }
    }
}

/// A position advance of source `db`, ready to go with the next statement
/// there — now, or once every asynchronous commit made so far is flushed. A
/// later advance of the same source covers the earlier one (positions only
/// grow) and takes its place.
pub(crate) fn release(pg: &mut Postgres, db: DbId, sql: String) {
    let needs: Vec<(DbId, u64)> = pg.nodes.iter().filter_map(|n| n.unflushed.map(|u| (n.id, u.lsn))).collect();
    pg.parked.retain(|p| p.db != db);
    if needs.is_empty() {
        if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == db) {
            n.deferred = Some(sql);
        }
    } else {
        pg.parked.push(Parked { db, sql, needs });
    }
}

/// `db`'s server has flushed its WAL up to `flushed` (asked on the session
/// that made the commits): the advances waiting for no more than that go.
/// Returns the sources whose advances go.
pub(crate) fn flushed(pg: &mut Postgres, db: DbId, flushed: u64) -> Vec<DbId> {
    if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == db) {
        if n.unflushed.is_some_and(|u| u.lsn <= flushed) {
            n.unflushed = None;
        }
    }
    for p in &mut pg.parked {
        p.needs.retain(|(id, lsn)| *id != db || *lsn > flushed);
    }
    let (ready, waiting): (Vec<Parked>, Vec<Parked>) =
        std::mem::take(&mut pg.parked).into_iter().partition(|p| p.needs.is_empty());
    pg.parked = waiting;
    let mut released = Vec::with_capacity(ready.len());
    for p in ready {
        if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == p.db) {
            // Parked after any advance of this source still to go: it covers it.
            n.deferred = Some(p.sql);
            released.push(p.db);
        }
    }
    released
}

/// The flush position in a [`FLUSH_LSN`] answer.
pub(crate) fn flush_answer(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<u64> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|lsn| lsn.parse().ok()),
        _ => None,
    })
}

/// When a poll found nothing new anywhere: has the databases with commits
/// not known flushed flush them now ([`force`]),
/// rather than wait for the server's WAL writer (`wal_writer_delay`, 200 ms
/// by default). The positions, and what `dugong status` counts as pending,
/// then trail the rows by a few milliseconds after a run, and the flush
/// costs the next change nothing unless it comes in that moment; runs that
/// follow one another without a lull are not held up by flushes of their
/// own. (Waiting 20 ms into the lull measured no better through this
/// machine's noise, and left positions behind where a caller looks right
/// after a run.)
///
/// The advances that go then (with `released`, those the poll's own flush
/// check let go) are sent at once: nothing else would carry them before the
/// next poll, and a replicator run `--once` stops at this moment.
pub(crate) async fn quiet(pg: &mut Postgres, mut released: Vec<DbId>) {
    let due = |u: &Unflushed| u.forced.is_none_or(|t| t.elapsed() >= FORCE_AGAIN);
    released.extend(force(pg, due).await);
    send_deferred(pg, |id| released.contains(&id)).await;
}

/// Sends the deferred position advances of the databases `which` picks now.
/// Best effort: one not sent goes with the next statement there, and one
/// never sent only means delivering that run again.
pub(crate) async fn send_deferred(pg: &mut Postgres, which: impl Fn(DbId) -> bool) {
    for node in pg.nodes.iter_mut().filter(|n| which(n.id)) {
        if let Some(sql) = node.deferred.take() {
            if let Err(e) = node.client.batch_execute(&sql).await {
                let _ = node.client.batch_execute("ROLLBACK").await;
                tracing::debug!(db = %node.id, error = %crate::error::describe_pg(&e), "could not advance the positions");
            }
        }
    }
}

/// Before the replicator stops, or after a run failed (the engine may be
/// prepared again, and what it held would be lost): makes every database's
/// asynchronous commits durable, and sends the advances that then go. A run
/// that fails on its data after good ones thus keeps their progress.
pub(crate) async fn settle(pg: &mut Postgres) {
    // A database cut off answers nothing: its held advances wait, and the
    // others' go, within a bound.
    let settled = async {
        let released = force(pg, |_| true).await;
        send_deferred(pg, |id| released.contains(&id)).await;
    };
    if tokio::time::timeout(SETTLE_AT_MOST, settled).await.is_err() {
        tracing::debug!("could not flush the last commits in time; their runs are delivered again");
    }
}

/// How long [`settle`] waits for the databases.
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// Flushes the commits that did not wait for it on the databases `which`
/// picks, with a synchronous commit of its own on the same session: it
/// touches the sync's state row (a transaction that writes no WAL before its
/// commit record commits asynchronously whatever the setting), and waiting
/// for its flush covers every commit before it. The advances they held may
/// go. Best effort: a database that cannot be reached keeps its held
/// advances, and the runs they cover are delivered again.
async fn force(pg: &mut Postgres, which: impl Fn(&Unflushed) -> bool) -> Vec<DbId> {
    let touch = format!(
        "INSERT INTO dugong.sync_state (sync) VALUES ({}) ON CONFLICT (sync) DO UPDATE SET updated_at = now()",
        dugong_core::quote_literal(pg.sync.as_str())
    );
    let mut picked = Vec::new();
    for n in &mut pg.nodes {
        if let Some(u) = n.unflushed.as_mut().filter(|u| which(u)) {
            u.forced = Some(Instant::now());
            picked.push(n.id);
        }
    }
    let touch = &touch;
    let forced = pg.nodes.iter().filter(|n| picked.contains(&n.id)).map(|n| async move {
        // Sent together, answered in order: the flush position is read once
        // the touch's commit is flushed. It counts only if the touch did.
        let flushed = async {
            let (touched, asked) = futures_util::join!(n.client.batch_execute(touch), n.client.simple_query(FLUSH_LSN));
            touched.and(asked)
        };
        match flushed.await {
            Ok(messages) => flush_answer(&messages).map(|lsn| (n.id, lsn)),
            Err(e) => {
                tracing::debug!(db = %n.id, error = %crate::error::describe_pg(&e), "could not flush the last commits");
                None
            }
        }
    });
    let mut released = Vec::new();
    for (db, lsn) in futures_util::future::join_all(forced).await.into_iter().flatten() {
        released.extend(flushed(pg, db, lsn));
    }
    released
}
