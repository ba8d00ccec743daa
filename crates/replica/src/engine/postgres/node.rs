//! The PostgreSQL engine's state: a connection and what the replicator knows
//! per database of a sync, and the window each source is read in during a run.

use super::capture::Capture;
use super::format::CopyFormat;
use super::snapshot::{BatchBounds, Snapshot};
use crate::error::ReplicaError;
use crate::plan::TableInfo;
use crate::record::FlightCounts;
use crate::record::Missing;
use crate::upkeep::Upkeep;
use dugong_core::{DbId, TableName};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// A sync's PostgreSQL databases, ready to run.
pub struct Postgres {
    /// The sync.
    pub(crate) sync: dugong_core::SyncName,
    /// The databases reachable when the sync was prepared, in its order.
    pub nodes: Vec<Node>,
    /// The databases that were not.
    pub missing: Vec<Missing>,
    /// Every database runs the same major version of PostgreSQL, so the tables
    /// whose types allow it travel in COPY's binary format: PostgreSQL does not
    /// promise that format across major versions.
    pub same_major_version: bool,
    /// The sources' windows of the run in progress (empty between runs).
    pub(crate) windows: Vec<Window>,
    /// The run in progress applies in one flight up to this many change rows
    /// (`RunLimits::one_flight_rows`).
    pub(crate) one_flight_rows: u64,
    /// Runs whose commits on far databases are not answered yet.
    pub(crate) flights: Flights,
    /// Position advances waiting for commits made without waiting for the
    /// flush to be flushed (see `durable`).
    pub(crate) parked: Vec<Parked>,
}

impl Postgres {
    /// The format the rows of `table` travel in from source to targets: binary
    /// when the types and the servers allow it, which spares both ends
    /// printing and parsing every value as text.
    pub fn copy_format(&self, table: &TableInfo) -> CopyFormat {
        if self.same_major_version && table.binary_copy {
            CopyFormat::Binary
        } else {
            CopyFormat::Text
        }
    }

    pub(crate) fn node(&self, id: DbId) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("every database of a run is a node")
    }

    pub(crate) fn node_mut(&mut self, id: DbId) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("every database of a run is a node")
    }

    /// Whether the run in progress ships few enough change rows to apply in
    /// one flight (`RunLimits::one_flight_rows`; truncates aside).
    pub(crate) fn ships_little(&self) -> bool {
        self.windows.iter().map(|w| w.shipped).sum::<u64>() <= self.one_flight_rows
    }

    pub(crate) fn window(&self, id: DbId) -> &Window {
        self.windows.iter().find(|w| w.db == id).expect("every winning source was read")
    }

    pub(crate) fn sources(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.source)
    }

    /// The sources that have a reachable database to deliver to.
    pub(crate) fn delivering(&self) -> impl Iterator<Item = &Node> {
        self.sources().filter(|n| n.live_targets(&self.nodes).next().is_some())
    }
}

/// Ends every database's run transaction without effect. Best effort: a
/// broken connection rolls back by itself. (`staged` is cleared with the
/// run's windows, by `Engine::rollback` and `commit`.)
pub(crate) async fn rollback_all(pg: &Postgres) {
    for n in &pg.nodes {
        // Never opened: nothing to end.
        n.opening.lock().unwrap_or_else(|p| p.into_inner()).take();
        if !n.client.is_closed() {
            let _ = n.client.batch_execute("ROLLBACK").await;
        }
    }
}

/// A source's position advance held until the commits it covers are
/// flushed (see `durable`).
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) db: DbId,
    pub(crate) sql: String,
    /// The WAL position each database must have flushed.
    pub(crate) needs: Vec<(DbId, u64)>,
}

/// The commits on a database not known flushed yet (see `durable`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unflushed {
    /// The WAL position the last one reached.
    pub(crate) lsn: u64,
    /// When the replicator last had them flushed (`durable::quiet`) without that
    /// covering them.
    pub(crate) forced: Option<std::time::Instant>,
}

/// The value of the row marked `tag` (its first column) in a simple query's
/// answer: what a statement sent behind a commit reports.
pub(crate) fn tagged_value(messages: &[tokio_postgres::SimpleQueryMessage], tag: &str) -> Option<u64> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(tag) => r.get(1).and_then(|v| v.parse().ok()),
        _ => None,
    })
}

/// One database of a prepared sync.
pub struct Node {
    pub id: DbId,
    /// Its entry in the configuration, for connections beside `client`.
    pub database: dugong_config::Database,
    /// Shared with the commits in flight (see `flight`).
    pub client: Arc<Client>,
    /// Sources capture changes; targets only receive.
    pub source: bool,
    /// Change logs of the sync's tables (sources only).
    pub captures: HashMap<TableName, Capture>,
    /// Change logs of its held tables: not shipped while held, never purged.
    pub held: HashMap<TableName, Capture>,
    /// Replicated tables whose hold was lifted: the next run ships their
    /// change logs whole (what was captured while held), then lifts it.
    pub sweep: Vec<TableName>,
    /// What this sync has delivered of this database's changes to each other
    /// database of the sync, reachable or not (sources only).
    pub positions: BTreeMap<DbId, Snapshot>,
    /// Where a run starts reading this source: what every reachable target
    /// has (sources only).
    pub cursor: Snapshot,
    /// `track_commit_timestamp = on`: real commit times for conflicts.
    pub commit_timestamps: bool,
    /// The server's major version (`server_version_num / 10000`).
    pub major_version: i32,
    /// The prepared poll statement (sources only): it runs every few ms.
    pub poll: Option<tokio_postgres::Statement>,
    /// Its text, with the cursor as `$1`: also sent after a run's commit.
    pub(crate) poll_sql: String,
    /// The poll's answer that came back with the last run's commit here
    /// (sources only): the next poll uses it instead of asking again, so a
    /// busy sync asks a remote site nothing between its runs.
    pub(crate) answered: Option<bool>,
    /// The fastest round trip here so far, of a poll or of a commit waited
    /// for (less the server's time on it): what tells a database across a
    /// WAN (never faster than the link's round trip) from one nearby (fast at
    /// least now and then, however busy its server)...
    pub(crate) poll_time: Option<std::time::Duration>,
    /// ...once there were a few to take it from.
    pub(crate) polls: u32,
    /// The answer of the poll made at start-up (sources only), for the first
    /// run: it asks nothing again.
    pub(crate) started: Option<bool>,
    /// Where the next batches of a backlog end (sources only).
    pub batch_bounds: BatchBounds,
    /// The replicated tables' columns as prepared, checked by every run.
    pub shape: Shape,
    /// Whether what a run's opening and a source's reading send here is
    /// prepared on this connection (`read::prepare_sql`: the check of
    /// [`CHECK_STATEMENT`], a source's window and counts): once a commit here
    /// was waited for (they go behind that commit, in its round trip). Until
    /// then runs send them inline, and the server plans them each run.
    pub(crate) prepared: bool,
    /// Whether the last run here shipped few enough changes to go in one
    /// flight (sources only): the next one then reads its rows ahead.
    pub(crate) read_ahead: bool,
    /// What the change logs' upkeep has waiting (sources only)...
    pub upkeep: Upkeep,
    /// ...and the background task doing it, at most one at a time.
    pub(crate) upkeep_task: Option<JoinHandle<()>>,
    /// What the last poll found here (sources only): `Some(false)`, nothing
    /// new, so the next run only delivers to this database and opens no
    /// snapshot on it; `None`, no poll since the last run (a bounded run left
    /// more), so the run reads it.
    pub(crate) polled: Option<bool>,
    /// The last run's position advance (and purge), not sent yet: it travels
    /// with the next statement this database gets — the poll or the next run —
    /// instead of costing a round trip of its own. Losing it in a crash only
    /// means delivering that run again, which is idempotent.
    pub(crate) deferred: Option<String>,
    /// The WAL position of the last commit here that did not wait for the
    /// flush and is not known flushed yet (see `durable`).
    pub(crate) unflushed: Option<Unflushed>,
    /// The run transaction's opening, when this run does not read the
    /// database and has not sent it a statement yet: it goes right before the
    /// first one ([`super::read::opened`]), in the same round trip.
    pub(crate) opening: std::sync::Mutex<Option<String>>,
    /// A small run's deletes and inserts for this database, sent with its
    /// commit (`RunLimits::one_flight_rows`).
    pub(crate) staged: String,
    /// `COPY … FROM STDIN` of each replicated table, prepared once on this
    /// connection and kept across runs.
    pub(crate) copy_in: std::sync::Mutex<HashMap<TableName, tokio_postgres::Statement>>,
}

impl Node {
    /// The statement that prepares the shape check of a run that does not
    /// read this database, with the unread guard where it is a source (its
    /// poll, from the cursor `$1`): see `dugong.run_check`.
    pub(crate) fn prepare_check_sql(&self) -> String {
        let check = match self.poll_text() {
            Some(poll) => self.shape.run_check(Some(poll)),
            // The cursor parameter is still bound.
            None => format!("{} FROM (SELECT $1::text) AS unread", self.shape.run_check(None)),
        };
        format!("PREPARE {CHECK_STATEMENT} (text) AS {check}")
    }

    /// The poll of this database, from the cursor `$1`, where it is polled
    /// (a source with tables to poll).
    pub(crate) fn poll_text(&self) -> Option<&str> {
        self.poll.as_ref().and(Some(self.poll_sql.as_str())).filter(|sql| !sql.is_empty())
    }

    /// One more round trip here took `took`.
    pub(crate) fn timed(&mut self, took: std::time::Duration) {
        self.poll_time = Some(self.poll_time.map_or(took, |t| t.min(took)));
        self.polls = self.polls.saturating_add(1);
    }

    /// The targets a run delivers to: the other reachable databases.
    pub(crate) fn live_targets<'a>(&'a self, nodes: &'a [Node]) -> impl Iterator<Item = DbId> + 'a {
        nodes.iter().map(|n| n.id).filter(move |id| *id != self.id && self.positions.contains_key(id))
    }

    /// Where a run starts reading: what every reachable target has been
    /// delivered; and whether their positions differ (a target that was away
    /// gets again some of what the others have).
    /// With no reachable target, what every target has: nothing is read then,
    /// but upkeep still knows what was delivered.
    pub(crate) fn window_start(&self, nodes: &[Node]) -> (Snapshot, bool) {
        self.window_start_with(&self.positions, nodes)
    }

    /// [`Node::window_start`] were its positions `positions`.
    pub(crate) fn window_start_with(&self, positions: &BTreeMap<DbId, Snapshot>, nodes: &[Node]) -> (Snapshot, bool) {
        let ids: Vec<DbId> = nodes.iter().map(|n| n.id).collect();
        window_start_among(self.id, positions, &ids)
    }

    /// A background upkeep task is still running.
    pub(crate) fn upkeep_busy(&self) -> bool {
        self.upkeep_task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// [`Node::window_start`] of database `own` with these positions, among the
/// reachable databases `ids`: also before its node is made (a start polls
/// with it early, `prepare`).
pub(crate) fn window_start_among(own: DbId, positions: &BTreeMap<DbId, Snapshot>, ids: &[DbId]) -> (Snapshot, bool) {
    let live: Vec<&Snapshot> = ids
        .iter()
        .copied()
        .filter(|id| *id != own && positions.contains_key(id))
        .filter_map(|id| positions.get(&id))
        .collect();
    let mut positions: Box<dyn Iterator<Item = &Snapshot>> =
        if live.is_empty() { Box::new(positions.values()) } else { Box::new(live.into_iter()) };
    // Nothing delivered anywhere yet: no transaction is visible.
    let Some(first) = positions.next() else { return (Snapshot { xmin: 1, xmax: 1, xip: vec![] }, false) };
    let mut start = first.clone();
    let mut uneven = false;
    for p in positions {
        uneven |= p != first;
        start = start.intersection(p);
    }
    (start, uneven)
}

/// A fingerprint of the replicated tables' columns on one database, as the
/// sync was prepared, and the query that reads it again. Every run reads it
/// in its own transaction: a column added, dropped or retyped since makes the
/// run stop before it ships a row, and the sync prepare again.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Yields one text: the fingerprint.
    pub sql: String,
    pub expected: String,
}

impl Shape {
    /// The shape query for tables of these OIDs (`pg_class.oid`).
    pub fn of(oids: &[u32]) -> String {
        let list: Vec<String> = oids.iter().map(ToString::to_string).collect();
        format!(
            "SELECT md5(coalesce(string_agg(a.attrelid::text || '.' || a.attnum || '.' || a.attname || '.' || a.atttypid
                                              || '.' || a.atttypmod || '.' || a.attisdropped, ',' ORDER BY a.attrelid, a.attnum), ''))
             FROM pg_attribute a WHERE a.attrelid = ANY('{{{}}}'::oid[]) AND a.attnum > 0",
            list.join(",")
        )
    }

    /// Checks what a run read against what was prepared.
    pub fn check(&self, db: DbId, read: Option<&str>) -> Result<(), crate::error::ReplicaError> {
        match read {
            Some(now) if now == self.expected => Ok(()),
            _ => Err(changed(db)),
        }
    }

    /// The statement that checks the shape on the server, in a run
    /// transaction about to write (`dugong.run_check`): it fails the
    /// transaction, and so the commit that follows it in the same message,
    /// when the columns changed — or when `unread`, a poll in the run's
    /// snapshot of a database the run did not read, finds changes.
    pub fn run_check(&self, unread: Option<&str>) -> String {
        format!(
            "SELECT dugong.run_check(({}), {}, {})",
            self.sql,
            dugong_core::quote_literal(&self.expected),
            unread.map_or_else(|| "false".to_string(), |poll| format!("({poll})"))
        )
    }
}

/// The name of the run check prepared on a run connection.
pub(crate) const CHECK_STATEMENT: &str = "dugong_run_check";

/// A statement's error as the run takes it: the shape check's (SQLSTATE
/// DG001, from `dugong.run_check`) means the sync is prepared again.
pub(crate) fn run_error(
    db: DbId,
    context: impl FnOnce() -> String,
    e: tokio_postgres::Error,
) -> crate::error::ReplicaError {
    if e.as_db_error().is_some_and(|d| d.code().code() == "DG001") {
        return changed(db);
    }
    crate::error::ReplicaError::Statement { db, context: context(), source: e }
}

fn changed(db: DbId) -> crate::error::ReplicaError {
    crate::error::ReplicaError::SchemaChanged(format!("the columns of a replicated table changed on {db}"))
}

/// The change window a source is read in during a run: its changes after the
/// cursor and below the batch bound, as visible in the run's snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub db: DbId,
    /// The cursor the run started from (`pg_snapshot` text).
    pub cursor: String,
    /// The run's snapshot.
    pub snapshot: Snapshot,
    /// The batch bound: only transactions below it are shipped.
    pub bound: u64,
    /// Bounds of the batches after this one, as far as the backlog was counted.
    pub later: BatchBounds,
    /// Change rows in the window, over every table.
    pub shipped: u64,
    /// The reachable targets this window delivers to.
    pub targets: Vec<DbId>,
    /// Tables read whole this run (their holds were lifted).
    pub sweep: Vec<TableName>,
    /// What a small run needs of this source, read ahead with the window
    /// (`read::rows_ahead_sql`). `None` when not read (nor while a table is
    /// read whole), or when the window had more changes than one flight.
    pub ahead: Option<Ahead>,
}

/// A small run's rows and keys read ahead with its window, by the table's
/// place in the plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ahead {
    /// Every changed row up to the run's snapshot, as SQL literals.
    pub rows: HashMap<usize, Vec<String>>,
    /// The changed keys that were not only inserted.
    pub keys: HashMap<usize, Vec<crate::read::TextKey>>,
}

/// A cursor that covers no transaction: a change log read from it is read
/// whole.
const NOTHING_SHIPPED: &str = "1:1:";

impl Window {
    /// No batch bound held this source's changes back.
    pub fn caught_up(&self) -> bool {
        self.bound >= self.snapshot.xmax
    }

    /// The rows of table `index` read ahead, as the run ships them.
    pub fn ahead_rows(&self, index: usize) -> Option<&[String]> {
        Some(self.ahead_holds()?.rows.get(&index).map_or(&[], Vec::as_slice))
    }

    /// The keys of table `index` read ahead that were not only inserted.
    pub fn ahead_keys(&self, index: usize) -> Option<&[crate::read::TextKey]> {
        Some(self.ahead_holds()?.keys.get(&index).map_or(&[], Vec::as_slice))
    }

    /// What was read ahead, where it holds: the window ends at the run's
    /// snapshot, as it was read.
    fn ahead_holds(&self) -> Option<&Ahead> {
        self.ahead.as_ref().filter(|_| self.bound == self.snapshot.xmax)
    }

    /// The cursor and bound `table` is read between: the window's, or for a
    /// table read whole, from nothing shipped up to the run's snapshot.
    pub fn range(&self, table: &TableName) -> (&str, u64) {
        if self.sweep.contains(table) {
            (NOTHING_SHIPPED, self.snapshot.xmax)
        } else {
            (&self.cursor, self.bound)
        }
    }
}

// Runs in flight across a WAN (see `flight`): the state; `flight` does the work.

/// At most this many runs in flight; the next one waits for its commits.
pub(crate) const MAX_IN_FLIGHT: usize = 32;

/// A commit sent and not answered yet; its answer is the poll that went
/// behind it (`None` without one).
pub(crate) type Commit = JoinHandle<Result<Option<bool>, ReplicaError>>;

/// The runs whose commits are not all confirmed yet, oldest first.
#[derive(Default)]
pub(crate) struct Flights {
    pub(crate) queue: VecDeque<Flight>,
    /// The sources' positions as the last confirmed run left them: where a
    /// failure rewinds to.
    pub(crate) confirmed: Vec<Kept>,
    /// The number of the next run, for [`super::flight::chain_guard`].
    pub(crate) next: u64,
    /// The number of the last run sent to each far database.
    pub(crate) sent: BTreeMap<DbId, u64>,
    /// The run in progress was queued by its commit; its advance is held.
    pub(crate) open: bool,
    /// The last rewind may have left rows on a target that the next run
    /// ships again: that run deletes every changed key first.
    pub(crate) verify_next: bool,
    /// A failure of a run in flight found while a run was rolled back: the
    /// next poll reports it.
    pub(crate) failure: Option<ReplicaError>,
    /// Commits sent without waiting, and failures that shipped runs again,
    /// since the sync was prepared.
    pub(crate) counts: FlightCounts,
}

pub(crate) struct Flight {
    pub(crate) commits: Vec<(DbId, Commit)>,
    /// Each source's position advance, sent once the run is confirmed.
    pub(crate) advances: Vec<(DbId, String)>,
    /// The sources' positions once the run is confirmed.
    pub(crate) after: Vec<Kept>,
}

#[derive(Clone)]
pub(crate) struct Kept {
    pub(crate) db: DbId,
    pub(crate) positions: BTreeMap<DbId, Snapshot>,
    pub(crate) cursor: Snapshot,
}

impl Flights {
    /// Whether any run is in flight.
    pub(crate) fn any(&self) -> bool {
        !self.queue.is_empty()
    }

    /// What runs in flight did since the sync was prepared, and how many are
    /// in flight now.
    pub(crate) fn counts(&self) -> FlightCounts {
        FlightCounts { in_flight: self.queue.len() as u64, ..self.counts }
    }

    /// Whether commits sent to `db` are still unanswered.
    pub(crate) fn outstanding(&self, db: DbId) -> bool {
        self.queue.iter().any(|f| f.commits.iter().any(|(id, _)| *id == db))
    }

    /// Room for one more run in flight.
    pub(crate) fn room(&self) -> bool {
        self.queue.len() < MAX_IN_FLIGHT
    }

    /// The number of the run being committed, taken once per run.
    pub(crate) fn number(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A commit of run `number` on `db` failed before it was queued: the
    /// session there still holds the number sent before.
    pub(crate) fn unmark(&mut self, db: DbId, number: u64, before: Option<u64>) {
        if self.sent.get(&db) == Some(&number) {
            match before {
                Some(b) => self.sent.insert(db, b),
                None => self.sent.remove(&db),
            };
        }
    }

    /// The advance of the run in progress, when it is held: it waits for the
    /// run's confirmation.
    pub(crate) fn hold(&mut self, advances: Vec<(DbId, String)>) -> Option<Vec<(DbId, String)>> {
        if !self.open {
            return Some(advances);
        }
        self.queue.back_mut().expect("an open run is queued").advances = advances;
        None
    }
}
