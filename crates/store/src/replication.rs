//! What `dugong replicate` records in a site's database, as the server reads
//! it for its info, banner and status page: each sync's state and last runs,
//! the replicators' heartbeats (active and standing by), and the changes made
//! here that the sync has not yet delivered to each other database, with the
//! age of the oldest (the lag). A database only knows its own backlog; the
//! other sites' backlogs are in their databases.
//!
//! The tables are the replicator's (crates/replica/src/engine/*/schema.sql);
//! the rule for a live replicator is `Replicator::alive` there.

use std::time::Duration;

/// How often a replicator writes its heartbeat when it did not record its
/// interval (the replicator's default).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);

/// One replicated sync as this database records it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncHealth {
    pub sync: String,
    /// `Good`, `Bad`, … as the last run left it.
    pub state: String,
    /// Age of the oldest change made here and not yet shipped everywhere,
    /// when commit times are tracked (0 when nothing waits).
    pub lag: Option<Duration>,
    /// Time since the last good run ended.
    pub last_good_age: Option<Duration>,
    /// Time since the last bad run ended.
    pub last_bad_age: Option<Duration>,
    /// What the last bad run said.
    pub last_error: Option<String>,
    /// Conflicts decided since the sync began.
    pub conflicts_total: i64,
    /// The replicator running the sync, as its last heartbeat tells.
    pub replicator: Option<Heartbeat>,
    /// A replicator standing by to take over.
    pub standby: Option<Heartbeat>,
    /// Changes made here not yet delivered, per other database.
    pub backlog: Vec<Backlog>,
}

/// A replicator's last sign of life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub pid: i64,
    pub host: String,
    /// How long ago it was written, by the database's clock.
    pub age: Duration,
    /// How often it writes one, when recorded.
    pub interval: Option<Duration>,
    /// It recorded that it stopped (a clean stop: its pid is gone from the
    /// state); `pid` is 0 then.
    pub stopped: bool,
}

impl Heartbeat {
    /// Whether it still runs: not stopped, and a heartbeat younger than three
    /// intervals (plus a second for clocks).
    pub fn alive(&self) -> bool {
        !self.stopped && self.age <= self.interval.unwrap_or(DEFAULT_HEARTBEAT) * 3 + Duration::from_secs(1)
    }
}

/// Changes made here that one other database has not received yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// `db<id>`; `*` for a position an earlier replicator kept for every
    /// database at once.
    pub target: String,
    pub rows: i64,
    /// Age of the oldest, when commit times are tracked (0 when none waits).
    pub lag: Option<Duration>,
}

impl SyncHealth {
    /// Changes made here waiting for any database.
    pub fn pending(&self) -> i64 {
        self.backlog.iter().map(|b| b.rows).sum()
    }

    /// Whether a replicator runs the sync now (`false` when its heartbeat
    /// is stale or it never wrote one).
    pub fn running(&self) -> bool {
        self.replicator.as_ref().is_some_and(Heartbeat::alive)
    }

    /// The sync's lag: the oldest change waiting for any database.
    pub(crate) fn settle_lag(&mut self) {
        let lags: Vec<Duration> = self.backlog.iter().filter_map(|b| b.lag).collect();
        if !lags.is_empty() {
            self.lag = lags.into_iter().max();
        }
    }
}

/// Seconds (from SQL) as a duration; negative (clock skew) as zero.
pub(crate) fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicator_is_alive_within_three_heartbeats() {
        let beat = |age: u64, interval: Option<u64>| Heartbeat {
            pid: 1,
            host: "h".into(),
            age: Duration::from_millis(age),
            interval: interval.map(Duration::from_millis),
            stopped: false,
        };
        assert!(beat(9_999, None).alive());
        assert!(!beat(10_001, None).alive());
        assert!(beat(1_300, Some(100)).alive());
        assert!(!beat(1_301, Some(100)).alive());
        assert!(!Heartbeat { stopped: true, ..beat(1, None) }.alive());
        let mut sync = SyncHealth { replicator: Some(beat(1, None)), ..SyncHealth::default() };
        sync.backlog = vec![
            Backlog { target: "db1".into(), rows: 3, lag: Some(Duration::from_secs(2)) },
            Backlog { target: "db2".into(), rows: 0, lag: Some(Duration::ZERO) },
        ];
        sync.settle_lag();
        assert_eq!((sync.pending(), sync.lag, sync.running()), (3, Some(Duration::from_secs(2)), true));
    }
}
