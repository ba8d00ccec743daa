//! Runs in flight across a WAN: a run's commit on a far database is sent
//! without waiting for its answer, and the next run starts at once. A change
//! then waits for the link once, not for the run ahead of it too.
//!
//! Nothing is promised before an answer: the sources' positions move in
//! memory at once (the next run reads on from there), but the advance that
//! makes them durable is held until every run before it and the run itself
//! committed everywhere, in run order. A crash of the replicator only means
//! delivering those runs again, which is idempotent.
//!
//! Runs commit on a far database in the order they were sent, and each one
//! there checks that the one before it committed ([`chain_guard`]): the run
//! sent before records its number in the session (`dugong.flight`) only after
//! its COMMIT succeeded. A run that failed there therefore fails every run
//! sent behind it, so no later version of a row lands without the earlier
//! ones. The first failure found rewinds the positions to the last run
//! confirmed, and the next run ships everything after it again (deleting
//! every changed key first: some rows may be there already).

use super::node::{Commit, Flight, Kept, Node, Postgres, Window};
use crate::error::{ErrorPolicy, ReplicaError};
use dugong_core::DbId;
use std::time::Duration;

/// A database whose polls take this long is far away: the poll's
/// answer that comes back with a run's commit there spares asking it again,
/// and runs do not wait for their commits there.
pub(crate) const FAR_POLL: Duration = Duration::from_millis(2);

/// A database whose polls take this long is far enough that runs
/// do not wait for their commits there: a link's round trip, not a busy
/// server nearby.
const FLY_POLL: Duration = Duration::from_millis(5);

fn kept(pg: &Postgres) -> Vec<Kept> {
    pg.sources().map(|n| Kept { db: n.id, positions: n.positions.clone(), cursor: n.cursor.clone() }).collect()
}

/// Whether the commit of this run on `db` may go without waiting: `db` is
/// far, the run has no conflicts to log, it read neither `db` nor a table
/// whose hold was lifted (those advances must not wait), and there is room.
pub(crate) fn may_fly(pg: &Postgres, db: DbId, conflicts: bool) -> bool {
    !conflicts
        && at_least(pg.node(db), FLY_POLL)
        && !pg.windows.iter().any(|w: &Window| w.db == db || !w.sweep.is_empty())
        && pg.flights.room()
}

/// Whether `node` is far away: its fastest poll of at least [`POLLS_TO_TELL`]
/// took [`FAR_POLL`] or more.
pub(crate) fn far(node: &Node) -> bool {
    at_least(node, FAR_POLL)
}

/// Polls it takes to tell a remote database from a busy one nearby: the
/// first ones on a new session are slow anyway.
const POLLS_TO_TELL: u32 = 3;

/// Whether there were enough round trips to tell how far `node` is: later
/// ones can only lower its fastest time, which for a database nearby changes
/// nothing.
pub(crate) fn told(node: &Node) -> bool {
    node.polls >= POLLS_TO_TELL
}

fn at_least(node: &Node, poll: Duration) -> bool {
    told(node) && node.poll_time.is_some_and(|t| t >= poll)
}

/// What goes right after the COMMIT of run `number` on a far database: the
/// run's number in the session, reached only when the commit succeeded.
pub(crate) fn mark(pg: &mut Postgres, db: DbId, number: u64) -> (String, Option<u64>) {
    let before = pg.flights.sent.insert(db, number);
    (format!("SELECT set_config('dugong.flight', '{number}', false);\n"), before)
}

/// For a run transaction on `db` while runs sent before are unanswered there:
/// fails it (serialization failure, so it is run again) unless the last of
/// them committed.
pub(crate) fn chain_guard(pg: &Postgres, db: DbId) -> String {
    if !pg.flights.outstanding(db) {
        return String::new();
    }
    let Some(number) = pg.flights.sent.get(&db) else { return String::new() };
    format!(
        "; DO $dugong$ BEGIN IF current_setting('dugong.flight', true) IS DISTINCT FROM '{number}' THEN \
         RAISE EXCEPTION USING ERRCODE = 'serialization_failure', \
         MESSAGE = 'a run sent before this one did not commit here; it is shipped again'; END IF; END $dugong$"
    )
}

/// Queues the run being committed behind the runs in flight, with the
/// commits it sent without waiting. A run that sent none is queued only when
/// runs are in flight: its advance must wait for theirs.
pub(crate) fn queue(pg: &mut Postgres, commits: Vec<(DbId, Commit)>) {
    if commits.is_empty() && pg.flights.queue.is_empty() {
        pg.flights.open = false;
        return;
    }
    if pg.flights.queue.is_empty() {
        pg.flights.confirmed = kept(pg);
    }
    pg.flights.counts.sent += commits.len() as u64;
    pg.flights.queue.push_back(Flight { commits, advances: Vec::new(), after: Vec::new() });
    pg.flights.open = true;
}

/// After the run's advance moved the positions in memory: what they are once
/// the run is confirmed.
pub(crate) fn sealed(pg: &mut Postgres) {
    if std::mem::take(&mut pg.flights.open) {
        let after = kept(pg);
        pg.flights.queue.back_mut().expect("an open run is queued").after = after;
    }
}

/// After a run failed and rolled back: waits for the runs in flight, so the
/// next run starts from positions every database confirmed. A failure among
/// them is reported by the next poll.
pub(crate) async fn settle_after_rollback(pg: &mut Postgres) {
    if let Err(e) = settle(pg, true).await {
        pg.flights.failure.get_or_insert(e);
    }
}

/// Confirms the runs whose commits all answered, oldest first, releasing
/// their advances; with `wait`, waits for every run in flight. The first
/// failure rewinds the positions to the last run confirmed; a clash with the
/// application's writes (which the next run resolves) is not an error.
pub(crate) async fn settle(pg: &mut Postgres, wait: bool) -> Result<(), ReplicaError> {
    while let Some(front) = pg.flights.queue.front() {
        if !wait && !front.commits.iter().all(|(_, c)| c.is_finished()) {
            return Ok(());
        }
        let flight = pg.flights.queue.pop_front().expect("the front run is there");
        let mut failure = None;
        let mut answers = Vec::new();
        for (db, commit) in flight.commits {
            match commit.await {
                Ok(Ok(answer)) => answers.extend(answer.map(|a| (db, a))),
                Ok(Err(e)) => {
                    failure.get_or_insert((e, db));
                }
                Err(join) => {
                    let message = format!("a commit in flight was lost: {join}");
                    failure.get_or_insert((ReplicaError::Protocol { db, message }, db));
                }
            }
        }
        if let Some((e, db)) = failure {
            return rewind(pg, e, db).await;
        }
        for (db, sql) in flight.advances {
            // Positions only grow: the later advance covers the earlier. It
            // still waits for the flush of the commits nearby it covers.
            super::durable::release(pg, db, sql);
        }
        for (db, answer) in answers {
            if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == db) {
                n.answered = Some(answer);
            }
        }
        pg.flights.confirmed = flight.after;
    }
    Ok(())
}

/// A run in flight failed with `e`: waits out the runs sent behind it (they
/// fail too, see [`chain_guard`]), puts the positions back where the last
/// confirmed run left them, and has the next run read every source.
async fn rewind(pg: &mut Postgres, e: ReplicaError, failed: DbId) -> Result<(), ReplicaError> {
    let mut ended = vec![failed];
    for flight in std::mem::take(&mut pg.flights.queue) {
        for (db, commit) in flight.commits {
            let _ = commit.await;
            ended.push(db);
        }
    }
    // A statement that failed before its COMMIT left that transaction open
    // and aborted, and everything queued behind it failed too: end it. (Where
    // none is open, the server only warns.)
    ended.sort();
    ended.dedup();
    for db in ended {
        if let Some(n) = pg.nodes.iter().find(|n| n.id == db) {
            let _ = n.client.batch_execute("ROLLBACK").await;
        }
    }
    pg.flights.open = false;
    for k in std::mem::take(&mut pg.flights.confirmed) {
        if let Some(n) = pg.nodes.iter_mut().find(|n| n.id == k.db) {
            n.positions = k.positions;
            n.cursor = k.cursor;
            n.batch_bounds = Default::default();
        }
    }
    for n in &mut pg.nodes {
        n.polled = None;
        n.answered = None;
    }
    pg.flights.verify_next = true;
    pg.flights.counts.rewound += 1;
    if e.policy() == ErrorPolicy::RetrySoon {
        tracing::debug!(error = %e, "a run in flight did not commit; shipping again from the last confirmed run");
        Ok(())
    } else {
        Err(e)
    }
}
