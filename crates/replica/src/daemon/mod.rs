//! The replication daemon: one task per sync that prepares it, runs it whenever
//! changes are pending, and heals by itself — a database that goes away makes
//! the sync Bad while the others go on replicating among themselves, and a
//! probe takes it back in when it returns (`probe`).

mod health;
mod probe;

use crate::engine::postgres::{Postgres, COMMIT_TIMESTAMP_ADVICE};
use crate::engine::sqlite::Sqlite;
use crate::engine::{self, Engine, EngineKind, Prepared};
use crate::error::{Backoff, ErrorClass, ErrorPolicy, ReplicaError};
use crate::metrics as m;
use crate::read::RunLimits;
use crate::record::{degraded, epoch_seconds, Replicator, RunOutcome, DEFAULT_HEARTBEAT};
use crate::run;
use dugong_config::{Config, Sync};
use dugong_core::{DbId, SyncName};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// How often a busy sync polls its change logs: one that moved rows in
    /// the last second ([`BUSY_FOR`]).
    pub poll_interval: Duration,
    /// How often a sync idle for longer polls at least: the interval doubles
    /// from `poll_interval` with every empty poll, up to this.
    pub idle_poll_interval: Duration,
    /// How often the replicator writes its heartbeat (status reports it as not
    /// running after three intervals without one), and an idle sync refreshes
    /// "last good" in its state.
    pub heartbeat: Duration,
    /// About how many change rows one run ships per source; `None`: the
    /// engine's default ([`Engine::DEFAULT_BATCH_ROWS`]: 50,000 on PostgreSQL,
    /// 20,000 on SQLite files).
    pub batch_rows: Option<usize>,
    /// Run every sync until nothing is pending, then stop.
    pub once: bool,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Show a progress bar for initial copies.
    pub progress: bool,
    /// How often a running sync checks that its tables kept their shape.
    pub schema_check: Duration,
    /// How often a standby checks whether the active replicator is gone.
    pub standby_retry: Duration,
    /// The background consistency check (`crate::consistency`); `None`: off.
    pub consistency: Option<crate::consistency::ConsistencyOptions>,
    /// Tables the initial copy copies again although it has looked at them
    /// before (`--recopy`): `schema.name` or `name`.
    pub recopy: Vec<String>,
    /// How often a running sync that applied changes since its last look
    /// looks for foreign-key orphans (a parent deleted on one site while a
    /// child was written for it on another). Each look reads every child
    /// table of a foreign key between replicated tables.
    pub orphan_check: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            poll_interval: Duration::from_millis(1),
            idle_poll_interval: Duration::from_millis(50),
            heartbeat: DEFAULT_HEARTBEAT,
            batch_rows: None,
            once: false,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            progress: false,
            schema_check: Duration::from_secs(5),
            standby_retry: Duration::from_millis(500),
            consistency: None,
            recopy: Vec::new(),
            orphan_check: Duration::from_secs(300),
        }
    }
}

/// How often a running sync purges conflicts past their retention (and once
/// after the first run whenever it is prepared).
const CONFLICT_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How many schema-check intervals a check may wait for a moment without
/// runs in flight.
const SCHEMA_CHECK_IN_FLIGHT: u32 = 6;

/// How each sync ended (meaningful with `once`).
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub sync: SyncName,
    pub good: bool,
    pub error: Option<String>,
    /// What kind of problem the error is, when not good.
    pub class: Option<ErrorClass>,
}

impl SyncReport {
    fn good(sync: SyncName) -> SyncReport {
        SyncReport { sync, good: true, error: None, class: None }
    }

    fn failed(sync: SyncName, e: &ReplicaError) -> SyncReport {
        SyncReport { sync, good: false, error: Some(e.to_string()), class: Some(e.class()) }
    }

    fn bad(sync: SyncName, text: String) -> SyncReport {
        SyncReport { sync, good: false, error: Some(text), class: Some(ErrorClass::Bad) }
    }

    fn unreachable(sync: SyncName, text: String) -> SyncReport {
        SyncReport { sync, good: false, error: Some(text), class: Some(ErrorClass::Unreachable) }
    }
}

/// Runs every sync of `config` until `shutdown` fires (or, with `once`, until
/// each sync has run once). A run in progress finishes or rolls back first.
pub async fn run(config: Arc<Config>, options: DaemonOptions, shutdown: CancellationToken) -> Vec<SyncReport> {
    m::describe();
    if let Err(e) = crate::plan::check_no_cascade(&config) {
        tracing::error!(error = %e, "cannot start");
        return config.syncs.iter().map(|s| SyncReport::failed(s.name.clone(), &e)).collect();
    }
    let tracker = TaskTracker::new();
    let mut handles = Vec::new();
    for sync in &config.syncs {
        let task = SyncTask {
            config: config.clone(),
            sync: sync.clone(),
            options: options.clone(),
            shutdown: shutdown.clone(),
            who: Replicator { heartbeat: options.heartbeat, ..Replicator::this_process() },
            orphans_reported: Default::default(),
            active: Default::default(),
        };
        // The consistency check only reads: a task of its own beside the
        // sync's, checking while this replicator is the sync's active one.
        if let (Some(check), false) = (options.consistency, options.once) {
            let active = task.active.clone();
            tracker.spawn(crate::consistency::run(config.clone(), sync.clone(), check, active, shutdown.clone()));
        }
        handles.push(tracker.spawn(task.run()));
    }
    tracker.close();
    let mut reports = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => reports.push(r),
            Err(e) => reports.push(SyncReport::bad(SyncName("?".into()), format!("sync task panicked: {e}"))),
        }
    }
    reports
}

struct SyncTask {
    config: Arc<Config>,
    sync: Sync,
    options: DaemonOptions,
    shutdown: CancellationToken,
    who: Replicator,
    /// Ids of the orphans already reported by this process.
    orphans_reported: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether this replicator runs the sync now (not standing by).
    active: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncTask {
    /// Runs the sync on its engine until shutdown.
    async fn run(self) -> SyncReport {
        match engine::kind_of(&self.config, &self.sync) {
            Ok(EngineKind::Postgres) => self.drive::<Postgres>().await,
            Ok(EngineKind::Sqlite) => self.drive::<Sqlite>().await,
            Err(e) => {
                // Bad configuration fails at start instead of retrying forever.
                tracing::error!(sync = %self.sync.name, error = %e, "cannot start the sync");
                self.shutdown.cancel();
                SyncReport::failed(self.sync.name.clone(), &e)
            }
        }
    }

    /// Drives the sync until it ends, then stops its doorbells and waits for
    /// their connections to end: a replicator that exits leaves no slot
    /// behind on the servers.
    async fn drive<E: Engine>(&self) -> SyncReport {
        let mut bells = None;
        let report = self.drive_with::<E>(&mut bells).await;
        if let Some(bells) = bells {
            bells.stop().await;
        }
        report
    }

    async fn drive_with<E: Engine>(&self, bells: &mut Option<engine::Bells>) -> SyncReport {
        let name = self.sync.name.clone();
        let health =
            health::Health::start::<E>(self.config.clone(), self.sync.clone(), self.who.clone(), self.active.clone());
        let mut backoff = Backoff::new(self.options.backoff_min, self.options.backoff_max);
        let mut copied = false;
        let mut prepared_once = false;
        let mut standing_by = false;
        let mut standby_waits = 0u32;
        // Set once the engine is known; kept across preparations so a batch
        // shrunk by failing data stays small until runs succeed again.
        let mut batch_rows: Option<usize> = None;
        // The sources' doorbells ring while this replicator runs the sync
        // (not while it stands by); with `once` it polls.
        let ring = Arc::new(tokio::sync::Notify::new());
        loop {
            if self.shutdown.is_cancelled() {
                return SyncReport::good(name);
            }
            let started = SystemTime::now();
            let prepared = tokio::select! {
                p = self.prepare::<E>(&mut copied) => p,
                _ = self.shutdown.cancelled() => return SyncReport::good(name),
            };
            let mut p = match prepared {
                Ok(p) => p,
                Err(ReplicaError::Standby { db, holder }) => {
                    // Not Bad: the active replicator's state stands. With --once,
                    // wait a while for a replicator that is just exiting.
                    health.set_active(false);
                    *bells = None;
                    if !standing_by {
                        tracing::info!(sync = %name, db = %db, holder = %holder, "another replicator runs this sync; standing by");
                        standing_by = true;
                    }
                    standby_waits += 1;
                    if self.options.once && standby_waits > 20 {
                        let text = format!("the sync is being replicated by {holder}");
                        return SyncReport::bad(name, text);
                    }
                    if !self.wait(self.options.standby_retry).await {
                        return SyncReport::good(name);
                    }
                    continue;
                }
                Err(e) if !prepared_once && e.is_fatal_at_start() => {
                    // Bad configuration fails at start instead of retrying forever.
                    tracing::error!(sync = %name, error = %e, "cannot start the sync");
                    self.shutdown.cancel();
                    return SyncReport::failed(name, &e);
                }
                Err(e) => {
                    self.bad::<E>(&e, started).await;
                    if self.options.once {
                        return SyncReport::failed(name, &e);
                    }
                    if !self.wait(backoff.next_delay()).await {
                        return SyncReport::failed(name, &e);
                    }
                    continue;
                }
            };
            prepared_once = true;
            health.set_active(true);
            if bells.is_none() && !self.options.once {
                *bells = Some(E::doorbells(&self.config, &self.sync, &ring));
            }
            let rung = Rung { ring: &ring, bells: bells.as_ref() };
            if standing_by {
                tracing::info!(sync = %name, "took over the sync");
                standing_by = false;
            }
            for id in p.engine.databases() {
                metrics::gauge!(m::DATABASE_UP, "sync" => name.to_string(), "db" => id.to_string()).set(1.0);
            }
            for missing in p.engine.missing() {
                tracing::warn!(sync = %name, db = %missing.db, reason = %missing.reason, "running without an unreachable database; its changes wait in the change logs until it returns");
                metrics::gauge!(m::DATABASE_UP, "sync" => name.to_string(), "db" => missing.db.to_string()).set(0.0);
            }
            let missing: Vec<DbId> = p.engine.missing().iter().map(|m| m.db).collect();
            let probe = probe::Probe::start::<E>(
                self.config.clone(),
                missing,
                self.options.backoff_min,
                self.options.backoff_max,
            );
            let configured = self.options.batch_rows.unwrap_or(E::DEFAULT_BATCH_ROWS).max(1);
            let batch = batch_rows.get_or_insert(configured);
            match self.run_prepared(&mut p, &probe, batch, configured, &rung).await {
                Ok(()) => {
                    // The heartbeat stops before the state says stopped.
                    health.stop().await;
                    p.engine.record_stopped(&p.plan, &self.who).await;
                    let live: Vec<DbId> = p.engine.databases();
                    return match (degraded(p.engine.missing(), &live), p.plan.held_reason()) {
                        // Ran among fewer databases than the sync has.
                        (Some(why), _) => SyncReport::unreachable(name, why),
                        // Held tables back.
                        (None, Some(why)) => SyncReport::bad(name, why),
                        (None, None) => SyncReport::good(name),
                    };
                }
                Err(ReplicaError::SchemaChanged(what)) => {
                    tracing::warn!(sync = %name, change = %what, "replicated tables changed; preparing the sync again");
                    continue;
                }
                Err(ReplicaError::Returned { db }) => {
                    tracing::info!(sync = %name, db = %db, "a missing database is reachable again; preparing the sync with it");
                    continue;
                }
                Err(ReplicaError::Standby { db, holder }) => {
                    // Another replicator took the sync over (our lease expired
                    // while a run waited): it is the active one now.
                    health.set_active(false);
                    *bells = None;
                    tracing::warn!(sync = %name, db = %db, holder = %holder, "another replicator took the sync over; standing by");
                    drop(p);
                    if !self.wait(self.options.standby_retry).await {
                        return SyncReport::good(name);
                    }
                    continue;
                }
                Err(e) => {
                    let text = e.to_string();
                    tracing::error!(sync = %name, error = %text, "sync run failed");
                    p.engine.record_bad(&p.plan, &self.who, started, &text).await;
                    metrics::gauge!(m::SYNC_GOOD, "sync" => name.to_string()).set(0.0);
                    metrics::counter!(m::RUNS, "sync" => name.to_string(), "result" => "bad").increment(1);
                    if let Some(db) = e.db().filter(|_| e.is_unreachable()) {
                        metrics::gauge!(m::DATABASE_UP, "sync" => name.to_string(), "db" => db.to_string()).set(0.0);
                    }
                    if self.options.once {
                        return SyncReport::failed(name, &e);
                    }
                    drop(p);
                    if !self.wait(backoff.next_delay()).await {
                        return SyncReport::failed(name, &e);
                    }
                }
            }
        }
    }

    /// Prepares the sync on its engine; the first time in this process also
    /// does its initial copy, when configured.
    async fn prepare<E: Engine>(&self, copied: &mut bool) -> Result<Prepared<E>, ReplicaError> {
        let mut p = E::prepare(&self.config, &self.sync, &self.who).await?;
        let name = p.plan.name().clone();
        for e in &p.plan.excluded {
            tracing::warn!(sync = %name, table = %e.table, reason = %e.reason, "table excluded from replication");
        }
        let without = p.engine.without_commit_timestamps();
        if !without.is_empty() {
            let names: Vec<String> = without.iter().map(ToString::to_string).collect();
            tracing::warn!(sync = %name, dbs = %names.join(","), "{COMMIT_TIMESTAMP_ADVICE}");
        }
        tracing::info!(sync = %name, tables = p.plan.tables.len(), excluded = p.plan.excluded.len(), strategy = %self.sync.conflict_strategy, engine = E::NAME, "sync prepared");
        if !*copied {
            p.engine.initial_copy(&p.plan, self.options.progress, &self.shutdown, &self.options.recopy).await?;
            *copied = true;
        }
        Ok(p)
    }

    /// Deletes conflicts older than the sync's retention. A failure is only
    /// logged: the next purge (or the next start) tries again.
    async fn purge_conflicts<E: Engine>(&self, p: &mut Prepared<E>) {
        match p.engine.purge_conflicts(&p.plan).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(sync = %p.plan.name(), purged = n, retention = %humantime::format_duration(p.plan.sync.conflict_retention), "purged conflicts past their retention")
            }
            Err(e) => tracing::warn!(sync = %p.plan.name(), error = %e, "could not purge old conflicts"),
        }
    }

    /// Looks for foreign-key orphans; each one found for the first time by
    /// this process is logged as a warning and counted as a conflict (the
    /// conflict log holds it once, whoever found it). A failure is only
    /// logged: the next look tries again.
    async fn check_orphans<E: Engine>(&self, p: &mut Prepared<E>) {
        match p.engine.check_orphans(&p.plan).await {
            Ok(orphans) => {
                let name = p.plan.name();
                let mut reported = self.orphans_reported.lock().unwrap_or_else(|e| e.into_inner());
                for o in orphans {
                    let id = o.conflict(name).id;
                    if !reported.insert(id.clone()) {
                        continue;
                    }
                    tracing::warn!(sync = %name, table = %o.table, parent = %o.parent, conflict = %id, "row refers to a parent row that no longer exists; see dugong conflicts");
                    metrics::counter!(m::CONFLICTS, "sync" => name.to_string(), "table" => o.table.display_name())
                        .increment(1);
                }
            }
            Err(e) => tracing::warn!(sync = %p.plan.name(), error = %e, "could not look for foreign-key orphans"),
        }
    }

    /// Runs a prepared sync until shutdown (or, with `once`, until caught up).
    /// `batch_rows` shrinks while runs fail on data (a constraint violated on
    /// apply) so everything before the failing source transaction still ships,
    /// and grows back as runs succeed.
    async fn run_prepared<E: Engine>(
        &self,
        p: &mut Prepared<E>,
        probe: &probe::Probe,
        batch_rows: &mut usize,
        configured: usize,
        rung: &Rung<'_>,
    ) -> Result<(), ReplicaError> {
        let name = p.plan.name().to_string();
        let mut last_heartbeat: Option<std::time::Instant> = None;
        let mut last_schema_check = std::time::Instant::now();
        // The first purge waits for the first run, as the first look for
        // orphans does: a start ships what waited without its round trips first.
        let mut last_conflict_purge: Option<std::time::Instant> = None;
        let mut last_orphan_check: Option<std::time::Instant> = None;
        let mut applied_since_orphan_check = false;
        let mut ran = false;
        let mut bells_settled = false;
        let mut retries = 0u32;
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
        let mut poll = Poll::new(self.options.poll_interval, self.options.idle_poll_interval);
        let mut shipped_again = 0;
        // Exported from the start, at 0: a dashboard's rate() needs the series.
        metrics::counter!(m::RUNS_SHIPPED_AGAIN, "sync" => name.clone()).increment(0);
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if let Some(db) = probe.returned() {
                return Err(ReplicaError::Returned { db });
            }
            // While runs fly across a WAN, the catalog look (which waits for
            // them, then crosses the link) would hold back every change behind
            // it: it waits for a moment with none in flight, or six intervals.
            // Every run checks its tables' columns meanwhile.
            let since = last_schema_check.elapsed();
            if since >= self.options.schema_check
                && (!p.engine.in_flight() || since >= self.options.schema_check * SCHEMA_CHECK_IN_FLIGHT)
            {
                p.engine.check_unchanged(&p.plan).await?;
                last_schema_check = std::time::Instant::now();
            }
            if last_conflict_purge.map_or(ran, |t| t.elapsed() >= CONFLICT_PURGE_INTERVAL) {
                self.purge_conflicts(p).await;
                last_conflict_purge = Some(std::time::Instant::now());
            }
            // Orphans come only from runs that applied something: an idle
            // sync does not scan its tables again. The first look (for what an
            // earlier replicator left) waits for the first run, which ships
            // what waited meanwhile without the look's round trips first.
            let due = match last_orphan_check {
                None => ran,
                Some(t) => applied_since_orphan_check && t.elapsed() >= self.options.orphan_check,
            };
            if due {
                self.check_orphans(p).await;
                last_orphan_check = Some(std::time::Instant::now());
                applied_since_orphan_check = false;
            }
            let result = run::run_once(p, RunLimits { batch_rows: *batch_rows, ..Default::default() }).await;
            let flights = p.engine.flight_counts();
            metrics::gauge!(m::RUNS_IN_FLIGHT, "sync" => name.clone()).set(flights.in_flight as f64);
            if flights.rewound > shipped_again {
                metrics::counter!(m::RUNS_SHIPPED_AGAIN, "sync" => name.clone())
                    .increment(flights.rewound - shipped_again);
                shipped_again = flights.rewound;
            }
            match result {
                Ok(outcome) => {
                    ran = true;
                    retries = 0;
                    backoff.reset();
                    if !outcome.empty {
                        *batch_rows = (*batch_rows * 2).min(configured);
                        applied_since_orphan_check = true;
                        poll.moved(outcome.inserts + outcome.deletes);
                    }
                    // Before any wait: a woken bell needs a moment to listen.
                    rung.rest(poll.bells_rest());
                    // A run done and confirmed (across a WAN a commit may
                    // still be on its way): the bells may connect.
                    if !bells_settled && !outcome.in_flight {
                        rung.settled();
                        bells_settled = true;
                    }
                    if !outcome.empty {
                        last_heartbeat = Some(std::time::Instant::now());
                    } else if last_heartbeat.is_none_or(|t| t.elapsed() >= self.options.heartbeat) {
                        p.engine.record_idle(&p.plan, &p.who).await?;
                        last_heartbeat = Some(std::time::Instant::now());
                    }
                    self.observe(&name, &outcome, !p.engine.missing().is_empty() || !p.plan.held.is_empty());
                    if outcome.empty {
                        // Once: until what runs in flight shipped is confirmed.
                        if self.options.once && !outcome.in_flight {
                            // Caught up: report what the runs left orphaned,
                            // and leave the change logs purged, as a daemon
                            // would.
                            self.check_orphans(p).await;
                            if last_conflict_purge.is_none() {
                                self.purge_conflicts(p).await;
                            }
                            p.engine.finish_upkeep().await;
                            return Ok(());
                        }
                        let wait = poll.next_wait(rung.all_ringing());
                        match self.wait_or_ring(wait, rung.ring).await {
                            Waited::Shutdown => return Ok(()),
                            Waited::Rung => poll.rung(),
                            Waited::Out => {}
                        }
                    }
                }
                Err(e) if e.policy() == ErrorPolicy::RetrySoon && retries < 50 => {
                    retries += 1;
                    tracing::debug!(sync = %name, error = %e, retries, "run clashed with application writes; retrying");
                    if !self.wait(backoff.next_delay()).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    if matches!(e, ReplicaError::Statement { .. } | ReplicaError::Sqlite { .. })
                        && !e.is_unreachable()
                        && *batch_rows > 1
                    {
                        *batch_rows = (*batch_rows / 2).max(1);
                        tracing::info!(sync = %name, batch_rows = *batch_rows, "run failed on data; smaller batches isolate the failing change");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Metrics and logs of a run. A run among fewer databases than the sync
    /// has (`degraded`) is not a good one.
    fn observe(&self, name: &str, o: &RunOutcome, degraded: bool) {
        let sync = name.to_string();
        metrics::gauge!(m::SYNC_GOOD, "sync" => sync.clone()).set(if degraded { 0.0 } else { 1.0 });
        if !degraded {
            metrics::gauge!(m::LAST_GOOD_SECONDS, "sync" => sync.clone()).set(epoch_seconds(SystemTime::now()));
        }
        if o.empty {
            return;
        }
        metrics::counter!(m::RUNS, "sync" => sync.clone(), "result" => "good").increment(1);
        metrics::counter!(m::ROWS_APPLIED, "sync" => sync.clone()).increment(o.inserts);
        metrics::counter!(m::ROWS_DELETED, "sync" => sync.clone()).increment(o.deletes);
        let mut by_table: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for c in &o.conflicts {
            *by_table.entry(c.table.display_name()).or_default() += 1;
        }
        for (table, n) in by_table {
            metrics::counter!(m::CONFLICTS, "sync" => sync.clone(), "table" => table).increment(n);
        }
        metrics::histogram!(m::RUN_DURATION_SECONDS, "sync" => sync).record(o.duration.as_secs_f64());
        if !o.conflicts.is_empty() {
            tracing::info!(sync = %name, conflicts = o.conflicts.len(), "conflicts resolved; both versions are in the conflict log: dugong conflicts --sync {name}");
        }
        let ph = &o.phases;
        tracing::debug!(
            sync = %name, inserts = o.inserts, deletes = o.deletes, truncates = o.truncates,
            us = o.duration.as_micros() as u64, read_us = ph.read.as_micros() as u64,
            delete_us = ph.delete.as_micros() as u64, copy_us = ph.copy.as_micros() as u64,
            commit_us = ph.commit.as_micros() as u64, advance_us = ph.advance.as_micros() as u64,
            "run applied"
        );
    }

    /// Records a failed preparation on every database that answers.
    async fn bad<E: Engine>(&self, e: &ReplicaError, started: SystemTime) {
        let text = e.to_string();
        tracing::error!(sync = %self.sync.name, error = %text, "sync is Bad");
        metrics::gauge!(m::SYNC_GOOD, "sync" => self.sync.name.to_string()).set(0.0);
        for (id, up) in E::record_unprepared(&self.config, &self.sync, &self.who, started, &text).await {
            let up = if up { 1.0 } else { 0.0 };
            metrics::gauge!(m::DATABASE_UP, "sync" => self.sync.name.to_string(), "db" => id.to_string()).set(up);
        }
    }

    /// Waits for `d` or a doorbell, unless shutdown comes first.
    async fn wait_or_ring(&self, d: Duration, ring: &tokio::sync::Notify) -> Waited {
        tokio::select! {
            _ = tokio::time::sleep(d) => Waited::Out,
            _ = ring.notified() => Waited::Rung,
            _ = self.shutdown.cancelled() => Waited::Shutdown,
        }
    }

    /// Waits, unless shutdown comes first. Returns false on shutdown.
    async fn wait(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// The doorbell a running sync waits for between polls, and its sources'
/// bells (none with `once`, or on an engine without them).
struct Rung<'a> {
    ring: &'a tokio::sync::Notify,
    bells: Option<&'a engine::Bells>,
}

impl Rung<'_> {
    fn all_ringing(&self) -> bool {
        self.bells.is_some_and(engine::Bells::all_ringing)
    }

    /// Lets bells still waiting to connect do so.
    fn settled(&self) {
        if let Some(bells) = self.bells {
            bells.settled();
        }
    }

    /// Lets the bells rest while the sync is busy, or wakes them.
    fn rest(&self, resting: bool) {
        if let Some(bells) = self.bells {
            bells.rest(resting);
        }
    }
}

/// How a wait between polls ended.
enum Waited {
    Out,
    Rung,
    Shutdown,
}

/// How often an idle sync polls when every source's doorbell rings: the bells
/// tell it of every change; this poll is the net under them.
pub const BELL_IDLE_POLL: Duration = Duration::from_secs(1);

/// How long after its last run that moved rows a sync counts as busy.
pub const BUSY_FOR: Duration = Duration::from_secs(1);

/// Above this many rows a second moved, the doorbells rest. A bell's
/// walsender decodes every write of its database on the database's own
/// CPUs — about 6 µs a row measured here, 3% of a core at this rate, a fifth
/// of the throughput of a saturated two-core server — while a ring saves a
/// sync this busy at most its 1 ms busy poll.
pub const BELLS_REST_ABOVE: u64 = 5_000;

/// The span over which [`BELLS_REST_ABOVE`] is measured...
const RATE_SPAN: Duration = Duration::from_millis(500);

/// ...and the rows moved in one span above which the bells rest.
const REST_ABOVE_PER_SPAN: u64 = BELLS_REST_ABOVE * RATE_SPAN.as_millis() as u64 / 1000;

/// The poll's pace: every `busy` while rows moved in the last [`BUSY_FOR`],
/// then slower with every empty poll, up to `idle`. A busy sync notices a
/// change within about a millisecond; an idle one costs its databases and
/// itself a few dozen cheap queries a second.
struct Poll {
    busy: Duration,
    idle: Duration,
    last_moved: std::time::Instant,
    wait: Duration,
    /// Rows moved in the current span, since when, and in the one before.
    span_start: std::time::Instant,
    span_rows: u64,
    last_span_rows: u64,
}

impl Poll {
    fn new(busy: Duration, idle: Duration) -> Poll {
        let now = std::time::Instant::now();
        Poll {
            busy,
            idle: idle.max(busy),
            last_moved: now,
            wait: busy,
            span_start: now,
            span_rows: 0,
            last_span_rows: 0,
        }
    }

    /// A run moved `rows` rows.
    fn moved(&mut self, rows: u64) {
        self.last_moved = std::time::Instant::now();
        self.wait = self.busy;
        self.next_span();
        self.span_rows += rows;
    }

    /// Starts a new span once the current one is over.
    fn next_span(&mut self) {
        let over = self.span_start.elapsed();
        if over >= RATE_SPAN {
            self.last_span_rows = if over < RATE_SPAN * 2 { self.span_rows } else { 0 };
            self.span_rows = 0;
            self.span_start = std::time::Instant::now();
        }
    }

    /// Whether the sync moves more than [`BELLS_REST_ABOVE`] rows a second —
    /// in the last whole span, or already in this one — so its doorbells
    /// may rest. They wake within two spans of the rate falling, while the
    /// busy pace still polls every millisecond.
    fn bells_rest(&mut self) -> bool {
        self.next_span();
        self.span_rows.max(self.last_span_rows) > REST_ABOVE_PER_SPAN
    }

    /// A doorbell rang: the change may not be visible yet when the poll
    /// runs (the bell can ring between the commit's WAL flush and the moment
    /// it shows to other sessions), so the next polls start again at the
    /// busy pace.
    fn rung(&mut self) {
        self.wait = self.busy;
    }

    /// How long to wait after an empty poll; up to [`BELL_IDLE_POLL`] when
    /// every source's doorbell rings.
    fn next_wait(&mut self, bells: bool) -> Duration {
        if self.last_moved.elapsed() < BUSY_FOR {
            return self.busy;
        }
        let idle = if bells { BELL_IDLE_POLL.max(self.idle) } else { self.idle };
        let wait = self.wait.min(idle);
        self.wait = (self.wait * 2).min(idle);
        wait
    }
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn an_idle_sync_polls_ever_slower_up_to_the_idle_interval_and_a_run_makes_it_busy_again() {
        let mut poll = Poll::new(Duration::from_millis(1), Duration::from_millis(20));
        // Busy since start: the busy pace.
        assert_eq!(poll.next_wait(false), Duration::from_millis(1));
        poll.last_moved -= BUSY_FOR;
        let waits: Vec<u128> = (0..7).map(|_| poll.next_wait(false).as_millis()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 20, 20]);
        poll.moved(1);
        assert_eq!(poll.next_wait(false), Duration::from_millis(1));
    }

    #[test]
    fn with_every_bell_ringing_an_idle_sync_polls_once_a_second_and_a_ring_makes_it_look_again_soon() {
        let mut poll = Poll::new(Duration::from_millis(1), Duration::from_millis(50));
        poll.last_moved -= BUSY_FOR;
        let waits: Vec<u128> = (0..12).map(|_| poll.next_wait(true).as_millis()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000]);
        // A bell whose commit is not visible yet: the next polls come soon.
        poll.rung();
        assert_eq!(poll.next_wait(true), Duration::from_millis(1));
        assert_eq!(poll.next_wait(true), Duration::from_millis(2));
        // A bell that stops ringing: back to the idle interval at once.
        for _ in 0..12 {
            poll.next_wait(true);
        }
        assert_eq!(poll.next_wait(false), Duration::from_millis(50));
    }

    #[test]
    fn bells_rest_while_rows_move_faster_than_the_threshold_and_wake_within_two_spans_of_it_falling() {
        let mut poll = Poll::new(Duration::from_millis(1), Duration::from_millis(50));
        let per_span = REST_ABOVE_PER_SPAN;
        assert!(!poll.bells_rest(), "nothing moved yet");
        // A steady trickle (the lag benchmark's 200 rows a second) keeps them ringing.
        poll.moved(100);
        assert!(!poll.bells_rest());
        // More than the threshold in this span: rest at once.
        poll.moved(per_span);
        assert!(poll.bells_rest());
        // The next span starts empty, but the last whole one was busy.
        poll.span_start -= RATE_SPAN;
        assert!(poll.bells_rest());
        assert_eq!(poll.span_rows, 0);
        // A quiet span after it: ringing again.
        poll.span_start -= RATE_SPAN;
        assert!(!poll.bells_rest());
        // After a long pause the busy span long gone counts for nothing.
        poll.moved(per_span + 1);
        poll.span_start -= RATE_SPAN * 3;
        assert!(!poll.bells_rest());
    }
}
