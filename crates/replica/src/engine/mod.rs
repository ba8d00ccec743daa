//! The seam between the replication pipeline and the databases it runs on.
//!
//! The stages — [`plan`](crate::plan), [`read`](crate::read),
//! [`resolve`](crate::resolve), [`apply`](crate::apply),
//! [`record`](crate::record) — decide; an [`Engine`] does the I/O each stage
//! asks for, on its kind of database: [`postgres`] (servers, snapshots as
//! positions, COPY) and [`sqlite`] (files, sequence numbers as positions,
//! upserts). `run::run_once` is the one run loop and `daemon` the one daemon
//! over both. A sync runs on one engine: all
//! its databases are PostgreSQL, or all are SQLite files.

pub mod postgres;
pub mod sqlite;

use crate::apply::{TableConflict, TablePlan, Totals};
use crate::error::ReplicaError;
use crate::plan::SyncPlan;
use crate::read::{ChangedKeys, KeyRequest, RunLimits, SourceRead, TextKey};
use crate::record::conflict::{Orphan, RunConflict};
use crate::record::{Backlog, Missing, Replicator, RunOutcome};
use dugong_config::{Config, Location, Sync};
use dugong_core::DbId;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A sync prepared on an engine: what it replicates, who runs it, and the
/// engine's connections and positions.
pub struct Prepared<E> {
    pub plan: Arc<SyncPlan>,
    pub who: Replicator,
    pub engine: E,
    /// The last run was bounded: changes are known to be waiting, so the next
    /// run needs no poll first.
    pub(crate) more_pending: bool,
}

impl<E> Prepared<E> {
    pub fn new(plan: SyncPlan, who: Replicator, engine: E) -> Prepared<E> {
        Prepared { plan: Arc::new(plan), who, engine, more_pending: false }
    }
}

/// How long [`Bells::stop`] waits for the bells' connections to end.
const BELLS_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// A source's doorbell, as the daemon sees it.
pub trait Bell: Send + std::marker::Sync {
    /// Whether it rings now.
    fn ringing(&self) -> bool;
    /// Asks it to rest — to end its stream, and with it the WAL decoding the
    /// server does for it — while the daemon is busy and finds changes at
    /// every poll, so needs no ring; `false` asks it to ring again.
    fn rest(&self, resting: bool);
    /// Lets it connect now if it still waits to: the daemon's first run is
    /// done and confirmed, so its connections are in nobody's way.
    fn settled(&self);
    /// Stops it and waits until its connection has ended (and with it what
    /// the server kept for it).
    fn stop(self: Box<Self>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The doorbells of a sync's sources ([`Engine::doorbells`]). Dropped, they
/// stop without waiting; [`Bells::stop`] waits.
#[derive(Default)]
pub struct Bells {
    bells: Vec<Box<dyn Bell>>,
}

impl Bells {
    pub fn push(&mut self, bell: impl Bell + 'static) {
        self.bells.push(Box::new(bell));
    }

    /// Whether every source has a bell and each rings: only then may the
    /// daemon poll rarely while idle.
    pub fn all_ringing(&self) -> bool {
        !self.bells.is_empty() && self.bells.iter().all(|b| b.ringing())
    }

    /// Asks every bell to rest while the daemon is busy, or to ring again
    /// ([`Bell::rest`]); a bell already doing so is left alone.
    pub fn rest(&self, resting: bool) {
        for bell in &self.bells {
            bell.rest(resting);
        }
    }

    /// Lets every bell still waiting to connect do so ([`Bell::settled`]).
    pub fn settled(&self) {
        for bell in &self.bells {
            bell.settled();
        }
    }

    /// Stops every bell and waits until their connections have ended, so a
    /// replicator that exits leaves nothing behind on the servers.
    pub async fn stop(self) {
        let stopped = futures_util::future::join_all(self.bells.into_iter().map(Bell::stop));
        // A connection whose link is gone must not hold the exit up: the
        // server ends it on its own (wal_sender_timeout).
        let _ = tokio::time::timeout(BELLS_STOP, stopped).await;
    }
}

/// What the pipeline needs of a database engine. The run steps are called in
/// order — `pending`, then `begin`, `read_keys`, `conflict_versions` (when
/// the run has conflicts), `apply`, `commit` and `advance`, or `rollback`
/// after a failure — and the engine keeps what `begin` read (each source's
/// window) until the run ends.
pub trait Engine: Send + Sized + 'static {
    /// A changed key as this engine reads it from its change logs.
    type Key: Clone + Eq + Hash + Send + std::marker::Sync + 'static;
    /// The engine's name in logs.
    const NAME: &'static str;
    /// How many change rows a run ships per source unless configured.
    const DEFAULT_BATCH_ROWS: usize;

    /// Connects to every database of `sync`, claims the sync (failing with
    /// [`ReplicaError::Standby`] when another replicator holds it), chooses
    /// and checks its tables, installs capture and loads the positions.
    fn prepare(
        config: &Arc<Config>,
        sync: &Sync,
        who: &Replicator,
    ) -> impl Future<Output = Result<Prepared<Self>, ReplicaError>> + Send;

    /// Records a failed preparation on every database of `sync` that answers
    /// and has Dugong's tables. Never fails; returns whether each database
    /// could be reached.
    fn record_unprepared(
        config: &Arc<Config>,
        sync: &Sync,
        who: &Replicator,
        started: SystemTime,
        error: &str,
    ) -> impl Future<Output = Vec<(DbId, bool)>> + Send;

    /// A key as text, for conflict records.
    fn key_text(key: &Self::Key) -> TextKey;

    /// The sync's health watch: connections of its own, beside the runs, for
    /// as long as the replicator runs the sync (or tries to).
    type Watch: Send + 'static;

    /// A watch on every database of `sync`; it connects when first used.
    fn watch(config: &Arc<Config>, sync: &Sync) -> Self::Watch;

    /// Writes the replicator's heartbeat on every database that answers;
    /// returns which did.
    fn heartbeat(watch: &mut Self::Watch, who: &Replicator) -> impl Future<Output = Vec<(DbId, bool)>> + Send;

    /// What each source that answers has waiting for each of its targets,
    /// and its change logs' size (`None`: not known there).
    fn backlog(watch: &mut Self::Watch) -> impl Future<Output = Vec<(DbId, Option<Backlog>)>> + Send;

    /// Whether database `db` of the configuration answers now (a connection
    /// opens): a missing database that does is taken back in.
    fn probe(config: &Arc<Config>, db: DbId) -> impl Future<Output = bool> + Send;

    /// The sync's databases the engine runs with, in the sync's order.
    fn databases(&self) -> Vec<DbId>;

    /// The sync's databases it runs without (unreachable when prepared).
    fn missing(&self) -> &[Missing];

    /// Sources whose commit times are unknown, so conflicts there go to the
    /// database listed first.
    fn without_commit_timestamps(&self) -> Vec<DbId>;

    /// Starts the doorbells of `sync`'s sources where the engine has them:
    /// each rings `ring` as soon as a transaction that wrote its change logs
    /// commits, so the daemon polls at once instead of on its next tick. The
    /// bells stop when the returned [`Bells`] is dropped. None by default:
    /// the daemon polls.
    fn doorbells(config: &Arc<Config>, sync: &Sync, ring: &Arc<Notify>) -> Bells {
        let _ = (config, sync, ring);
        Bells::default()
    }

    /// Whether any source has changes the sync has not shipped: the poll.
    fn pending(&mut self) -> impl Future<Output = Result<bool, ReplicaError>> + Send;

    /// Nothing was pending: time for what waits for a lull.
    fn idle(&mut self);

    /// Runs sent without waiting for their commits (across a WAN) are not
    /// all answered yet: what they shipped is not confirmed.
    fn in_flight(&self) -> bool {
        false
    }

    /// What such runs did since the sync was prepared.
    fn flight_counts(&self) -> crate::record::FlightCounts {
        Default::default()
    }

    /// Starts the run transaction on every database and counts each source's
    /// pending changes per table, up to a batch bound.
    fn begin(
        &mut self,
        plan: &Arc<SyncPlan>,
        limits: RunLimits,
    ) -> impl Future<Output = Result<Vec<SourceRead>, ReplicaError>> + Send;

    /// Reads the changed keys of each request, answering them in order.
    fn read_keys(
        &mut self,
        plan: &Arc<SyncPlan>,
        requests: &[KeyRequest],
    ) -> impl Future<Output = Result<Vec<ChangedKeys<Self::Key>>, ReplicaError>> + Send;

    /// Reads both versions of each conflicted row — the winner's and the
    /// loser's, each from its own source in the run transaction, before
    /// `apply` overwrites the loser's — with one query per source and table,
    /// and returns the conflicts as the conflict log keeps them.
    fn conflict_versions(
        &mut self,
        plan: &Arc<SyncPlan>,
        conflicts: Vec<TableConflict<Self::Key>>,
    ) -> impl Future<Output = Result<Vec<RunConflict>, ReplicaError>> + Send;

    /// Carries out every table plan on every database, in the run transactions.
    fn apply(
        &mut self,
        plan: &Arc<SyncPlan>,
        tables: Vec<TablePlan<Self::Key>>,
    ) -> impl Future<Output = Result<Totals, ReplicaError>> + Send;

    /// Records the run (state and conflicts) in every run transaction and
    /// commits them all.
    fn commit(
        &mut self,
        plan: &Arc<SyncPlan>,
        who: &Replicator,
        outcome: &RunOutcome,
    ) -> impl Future<Output = Result<(), ReplicaError>> + Send;

    /// After every database committed: moves each source's position past what
    /// the run shipped (purging what every sync shipped, when cheap).
    fn advance(&mut self, plan: &Arc<SyncPlan>) -> impl Future<Output = Result<(), ReplicaError>> + Send;

    /// Ends the run transactions without effect. Best effort.
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;

    /// Finishes what waits for a lull, now (before exiting after `--once`).
    fn finish_upkeep(&mut self) -> impl Future<Output = ()> + Send;

    /// The sync's initial copy (`onetimecopy`), when configured: each table
    /// once, ever, unless named in `recopy`; rolled back when `shutdown` comes
    /// first.
    fn initial_copy(
        &mut self,
        plan: &Arc<SyncPlan>,
        progress: bool,
        shutdown: &CancellationToken,
        recopy: &[String],
    ) -> impl Future<Output = Result<(), ReplicaError>> + Send;

    /// Checks that the sync's tables still look as they did when it was
    /// prepared; [`ReplicaError::SchemaChanged`] when they don't.
    fn check_unchanged(&mut self, plan: &Arc<SyncPlan>) -> impl Future<Output = Result<(), ReplicaError>> + Send;

    /// Refreshes "last good" after empty runs: the heartbeat.
    fn record_idle(
        &mut self,
        plan: &Arc<SyncPlan>,
        who: &Replicator,
    ) -> impl Future<Output = Result<(), ReplicaError>> + Send;

    /// Records a failed run on every database that can be reached. Never fails.
    fn record_bad(
        &mut self,
        plan: &Arc<SyncPlan>,
        who: &Replicator,
        started: SystemTime,
        error: &str,
    ) -> impl Future<Output = ()> + Send;

    /// Looks for foreign-key orphans among the sync's tables on every
    /// database (a parent deleted on one site while a child was written for
    /// it on another) and logs each new one as a conflict of kind foreign
    /// key on every database. Between runs.
    fn check_orphans(&mut self, plan: &Arc<SyncPlan>)
        -> impl Future<Output = Result<Vec<Orphan>, ReplicaError>> + Send;

    /// Deletes the sync's conflicts older than its `conflict_retention` from
    /// every database's conflict log, between runs. Returns how many went
    /// (counted on the sync's first database).
    fn purge_conflicts(&mut self, plan: &Arc<SyncPlan>) -> impl Future<Output = Result<u64, ReplicaError>> + Send;

    /// Marks the sync as not running (the replicator `who` stops cleanly).
    fn record_stopped(&mut self, plan: &Arc<SyncPlan>, who: &Replicator) -> impl Future<Output = ()> + Send;
}

/// The engine a sync runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Postgres,
    Sqlite,
}

/// The engine of `sync`'s databases; refuses a sync that mixes PostgreSQL and
/// SQLite databases, naming them.
pub fn kind_of(config: &Config, sync: &Sync) -> Result<EngineKind, ReplicaError> {
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    for id in sync.databases() {
        match config.database(id).map(|d| &d.location) {
            Some(Location::Sqlite(_)) => sqlite.push(id.to_string()),
            Some(Location::Postgres(_)) => postgres.push(id.to_string()),
            None => {}
        }
    }
    match (sqlite.is_empty(), postgres.is_empty()) {
        (false, false) => Err(ReplicaError::Config(format!(
            "syncs[{}] mixes SQLite ({}) and PostgreSQL ({}) databases; a sync replicates between databases of one kind",
            sync.index,
            sqlite.join(", "),
            postgres.join(", ")
        ))),
        (false, true) => Ok(EngineKind::Sqlite),
        _ => Ok(EngineKind::Postgres),
    }
}
