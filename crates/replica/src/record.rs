//! Recording a run — the last stage: what a run did ([`RunOutcome`]), and the
//! state every database of a sync keeps about it, which `dugong status` reads
//! from any of them, with or without a running replicator. The engines write
//! it in their own tables (`dugong.sync_state` on PostgreSQL,
//! `dugong_sync_state` on SQLite), in the run's transactions, together with
//! the conflict log and, after every database committed, the sources'
//! positions; and they read it back as a [`DbRead`]. [`conflict`]: what the
//! conflict log keeps of each conflict.

pub mod conflict;

use crate::plan::{Excluded, SyncPlan};
use crate::read::CommitTime;
use conflict::RunConflict;
use dugong_core::DbId;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a replicator writes its heartbeat unless told otherwise. Status
/// reports a replicator as not running after three intervals without one
/// (plus a second for clocks): 10 s.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);

/// Who is replicating: shown as "PID of Dugong replicator".
#[derive(Debug, Clone)]
pub struct Replicator {
    pub pid: i32,
    pub host: String,
    /// How often it writes its heartbeat.
    pub heartbeat: Duration,
}

impl Replicator {
    pub fn this_process() -> Replicator {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        Replicator { pid: std::process::id() as i32, host, heartbeat: DEFAULT_HEARTBEAT }
    }

    /// Whether a replicator that last wrote its heartbeat `age` ago, every
    /// `interval` (unknown: the default), still runs.
    pub fn alive(age: Duration, interval: Option<Duration>) -> bool {
        age <= interval.unwrap_or(DEFAULT_HEARTBEAT) * 3 + Duration::from_secs(1)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Nothing was pending: no transaction was opened.
    pub empty: bool,
    /// Runs sent across a WAN without waiting for their commits there are
    /// not all answered yet: not caught up, whatever `empty` says.
    pub in_flight: bool,
    pub deletes: u64,
    pub inserts: u64,
    pub truncates: u64,
    /// Every conflict decided, with both versions of its row.
    pub conflicts: Vec<RunConflict>,
    /// The batch was bounded: more changes are waiting.
    pub more: bool,
    /// Age of the oldest change shipped, when commit times are known.
    pub lag: Option<Duration>,
    pub started: Option<SystemTime>,
    pub duration: Duration,
    /// Where the run's time went, for debug logs and tuning.
    pub phases: Phases,
}

impl RunOutcome {
    /// Nothing pending and nothing in flight: every change was shipped and
    /// committed everywhere.
    pub fn caught_up(&self) -> bool {
        self.empty && !self.in_flight
    }
}

/// What runs sent without waiting for their commits (across a WAN) did since
/// the sync was prepared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlightCounts {
    /// Runs not confirmed yet: the commit of one of them, or of a run
    /// before, is not answered.
    pub in_flight: u64,
    /// Commits sent to a far database without waiting for the answer.
    pub sent: u64,
    /// Failures of such a commit, after which everything since the last
    /// confirmed run was shipped again.
    pub rewound: u64,
}

/// Wall time of each phase of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Snapshot, batch bound and changed keys, on every source.
    pub read: Duration,
    /// Deleting changed keys on the databases that take other winners.
    pub delete: Duration,
    /// Moving the winning rows.
    pub copy: Duration,
    /// Committing every database.
    pub commit: Duration,
    /// Advancing the positions (and purging, when caught up).
    pub advance: Duration,
}

/// A database of the sync that a run goes without — unreachable when the sync
/// was prepared — and why. Its changes and the changes meant for it wait in
/// the change logs until it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub db: DbId,
    pub reason: String,
}

/// What the state says while databases are missing: the sync is Bad, for
/// this reason, although the others go on replicating among themselves.
pub fn degraded(missing: &[Missing], live: &[DbId]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let why: Vec<String> = missing.iter().map(|m| m.reason.clone()).collect();
    let live: Vec<String> = live.iter().map(ToString::to_string).collect();
    let going_on = match live.len() {
        0 | 1 => "nothing to replicate until it returns; its changes wait in the change logs".to_string(),
        _ => format!("replicating among {} meanwhile; changes for it wait in the change logs", live.join(", ")),
    };
    Some(format!("{}; {going_on}", why.join("; ")))
}

/// Why a sync that runs is not Good, if it is not: databases it runs
/// without, tables it holds back.
pub fn not_good(missing: &[Missing], live: &[DbId], plan: &SyncPlan) -> Option<String> {
    let reasons: Vec<String> = degraded(missing, live).into_iter().chain(plan.held_reason()).collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// How a table left out by `tables: all` is listed in the state: `name (reason)`.
pub fn excluded_entries(excluded: &[Excluded]) -> Vec<String> {
    excluded.iter().map(|e| format!("{} ({})", e.table, e.reason)).collect()
}

/// Microseconds since the Unix epoch.
pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// How long ago a change committed at `oldest` (microseconds since the
/// epoch), when its time is known.
pub fn lag(oldest: CommitTime) -> Option<Duration> {
    let oldest = oldest?;
    Some(Duration::from_micros((micros(SystemTime::now()) - oldest).max(0) as u64))
}

/// Why a database could not be read.
#[derive(Debug, Clone)]
pub enum ReadError {
    /// No connection, a broken one, or no answer in time.
    Unreachable(String),
    /// Connected, but a query failed (permissions, a damaged schema…).
    Failed(String),
}

/// Everything status learned from one database.
#[derive(Debug, Clone, Default)]
pub struct DbRead {
    /// The database's `now()`, in microseconds since the Unix epoch.
    pub now_us: i64,
    /// Dugong's schema (`dugong.sync_state`) exists.
    pub installed: bool,
    pub commit_timestamps: bool,
    /// The sync's row of `dugong.sync_state`, if the replicator ever wrote one.
    pub state: Option<StateRow>,
    /// This source's change logs: what each target has not applied yet,
    /// and their size (sources whose positions exist only).
    pub backlog: Option<Backlog>,
    /// A part that could not be read although the database answered.
    pub problem: Option<String>,
}

/// A `dugong.sync_state` row; times in microseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateRow {
    pub state: String,
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub heartbeat: Option<i64>,
    pub last_good_started: Option<i64>,
    pub last_good_ended: Option<i64>,
    pub last_rows_started: Option<i64>,
    pub last_rows_ended: Option<i64>,
    pub last_bad_started: Option<i64>,
    pub last_bad_ended: Option<i64>,
    pub last_deletes: i64,
    pub last_inserts: i64,
    pub last_truncates: i64,
    pub last_conflicts: i64,
    pub last_error: Option<String>,
    pub tables: i32,
    pub excluded: Vec<String>,
    pub rows_total: i64,
    pub conflicts_total: i64,
    pub updated_at: i64,
    pub heartbeat_interval_ms: Option<i64>,
    /// The replicator standing by, and when it was last seen.
    pub standby_pid: Option<i32>,
    pub standby_host: Option<String>,
    pub standby_seen: Option<i64>,
}

/// What one source's change logs hold for a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Per target, the changes it has not applied yet.
    pub waiting: Vec<Waiting>,
    /// The change logs' size on disk, in bytes: changes not applied
    /// everywhere yet, and applied ones awaiting the next purge. The logs
    /// are per table, shared by every sync of the table.
    pub bytes: i64,
}

impl Backlog {
    /// The change rows kept for the database that has applied the least.
    pub fn rows(&self) -> i64 {
        self.waiting.iter().map(|w| w.rows).max().unwrap_or(0)
    }
}

/// Changes of one source not yet delivered to one target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub target: DbId,
    pub rows: i64,
    /// `now() −` the commit time of the oldest one, in microseconds (0 when
    /// none waits); `None` when commit times are not tracked.
    pub oldest_age_us: Option<i64>,
}

/// Rows of one table that the background consistency check
/// (`crate::consistency`) found different between the databases, as
/// recorded in them for `dugong status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Divergence {
    /// `schema.name`.
    pub table: String,
    /// Rows known to differ (the largest count any database holds).
    pub rows: i64,
    /// When they were first found.
    pub found_at: chrono::DateTime<chrono::Utc>,
}
