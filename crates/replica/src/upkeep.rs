//! Keeping the change logs small — when to purge the change rows every sync
//! has shipped, and when to vacuum the logs so polls stop scanning dead rows.
//! This is the policy; an engine carries it out (`engine::postgres::upkeep`).
//!
//! A purge after a run that shipped a few changes is cheap and goes with the
//! position's advance. After bigger runs, and above all after a backlog, it is
//! not: deleting 200,000 change rows and vacuuming them takes a quarter of a
//! second of the source's CPU, which the next burst of changes needs. Reads
//! find their window through the change log's transaction-id index, so shipped
//! rows cost little while they wait: that purge waits for a lull (or until it
//! is overdue), then runs beside the runs, on a connection of its own, while
//! runs skip their own purges. A replicator that starts and finds many shipped
//! rows still waiting (its predecessor stopped before the lull) leaves them
//! for a lull the same way.

use std::time::{Duration, Instant};

/// Change rows shipped since a source's change logs were last vacuumed, beyond
/// which they are vacuumed in a lull...
const VACUUM_AFTER_ROWS: u64 = 20_000;
/// ...or, during a long backlog, anyway.
const VACUUM_DURING_BACKLOG: u64 = 500_000;

/// The most change rows a run purges along with its position's advance.
pub const INLINE_PURGE_ROWS: u64 = 2_000;
/// How long a source must have shipped nothing before a waiting purge starts...
const QUIET_BEFORE_PURGE: Duration = Duration::from_secs(1);
/// ...unless it has waited this long...
const PURGE_WAITS_AT_MOST: Duration = Duration::from_secs(30);
/// ...or this many shipped change rows wait.
const PURGE_ANYWAY_ROWS: u64 = 1_000_000;

/// When the change rows a run shipped are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// In the transaction that advances the position: cheap, the log is small.
    Inline,
    /// Now, beside the runs, on a connection of its own: it is overdue.
    Background,
    /// In a lull: the run was big or bounded, or earlier rows already wait.
    Later,
}

/// What one source's change-log upkeep has waiting.
#[derive(Debug, Default)]
pub struct Upkeep {
    /// Since when shipped change rows wait for a purge.
    due_since: Option<Instant>,
    /// How many wait.
    unpurged: u64,
    /// When this source last shipped changes.
    last_shipped: Option<Instant>,
    /// A backlog was shipped since the last vacuum: give its pages back.
    backlog: bool,
    /// Change rows shipped since the change logs were last vacuumed.
    shipped_since_vacuum: u64,
}

impl Upkeep {
    /// How the rows shipped up to a run that shipped `shipped` change rows are
    /// purged, before its position advances. While background upkeep is
    /// `busy`, its purge holds the rows it deletes: a run must not purge
    /// meanwhile (it would wait for them).
    pub fn purge_after(&self, busy: bool, caught_up: bool, shipped: u64) -> Purge {
        if busy {
            Purge::Later
        } else if self.due_since.is_none() && caught_up && shipped <= INLINE_PURGE_ROWS {
            Purge::Inline
        } else if self.overdue(shipped) {
            Purge::Background
        } else {
            Purge::Later
        }
    }

    fn overdue(&self, more: u64) -> bool {
        self.unpurged + more >= PURGE_ANYWAY_ROWS || self.due_since.is_some_and(|t| t.elapsed() >= PURGE_WAITS_AT_MOST)
    }

    fn quiet(&self) -> bool {
        self.last_shipped.is_none_or(|t| t.elapsed() >= QUIET_BEFORE_PURGE)
    }

    /// Shipped change rows wait for a purge.
    pub fn due(&self) -> bool {
        self.due_since.is_some()
    }

    /// The upkeep of a source whose replicator starts while `waiting` change
    /// rows it had shipped are not purged yet (it stopped before the lull):
    /// more than a run purges inline wait for a lull again, instead of going
    /// with the first small run's advance and holding it up.
    pub fn resumed(waiting: u64) -> Upkeep {
        if waiting <= INLINE_PURGE_ROWS {
            return Upkeep::default();
        }
        Upkeep { due_since: Some(Instant::now()), unpurged: waiting, backlog: true, ..Default::default() }
    }

    /// Records a run's advance. Returns the background work it calls for:
    /// `Some(true)` to purge and vacuum, `Some(false)` to vacuum only.
    pub fn after_run(&mut self, purge: Purge, caught_up: bool, shipped: u64) -> Option<bool> {
        self.shipped_since_vacuum += shipped;
        self.backlog |= !caught_up;
        if shipped > 0 {
            self.last_shipped = Some(Instant::now());
        }
        match purge {
            Purge::Inline => None,
            Purge::Background => {
                self.unpurged += shipped;
                Some(true)
            }
            Purge::Later => {
                self.unpurged += shipped;
                self.due_since.get_or_insert_with(Instant::now);
                (self.shipped_since_vacuum >= VACUUM_DURING_BACKLOG).then_some(false)
            }
        }
    }

    /// With nothing pending: the background work to start now, in a lull
    /// (`Some(true)`: purge and vacuum; `Some(false)`: vacuum only).
    pub fn when_idle(&self) -> Option<bool> {
        let due = self.due();
        if due && (self.quiet() || self.overdue(0)) {
            Some(true)
        } else if !due && self.shipped_since_vacuum >= VACUUM_AFTER_ROWS && self.quiet() {
            Some(false)
        } else {
            None
        }
    }

    /// Background work starts now (purging too, when `purge`). Returns whether
    /// its vacuum should give emptied pages back to the system: that needs a
    /// moment's exclusive lock on the change logs, which the application's
    /// writes also take, and VACUUM retries it for seconds while they write;
    /// only a backlog leaves enough behind to be worth it.
    pub fn start(&mut self, purge: bool) -> bool {
        let give_back = self.backlog;
        self.shipped_since_vacuum = 0;
        self.backlog = false;
        if purge {
            self.due_since = None;
            self.unpurged = 0;
        }
        give_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_purge_inline_and_the_rest_waits_for_a_lull_unless_overdue() {
        let upkeep = Upkeep::default();
        assert_eq!(upkeep.purge_after(false, true, 10), Purge::Inline);
        assert_eq!(upkeep.purge_after(false, true, INLINE_PURGE_ROWS + 1), Purge::Later);
        assert_eq!(upkeep.purge_after(false, false, 10), Purge::Later, "a backlog is purged once shipped");
        assert_eq!(upkeep.purge_after(false, false, PURGE_ANYWAY_ROWS), Purge::Background, "too many rows wait");
        assert_eq!(upkeep.purge_after(true, true, 10), Purge::Later, "never beside a running purge");
        let waiting = Upkeep { due_since: Some(Instant::now()), unpurged: 200_000, ..Default::default() };
        assert_eq!(
            waiting.purge_after(false, true, 10),
            Purge::Later,
            "rows already wait: no inline purge of them all"
        );
        assert!(!waiting.overdue(0));
        let long_waiting =
            Upkeep { due_since: Instant::now().checked_sub(PURGE_WAITS_AT_MOST), unpurged: 10, ..Default::default() };
        assert_eq!(long_waiting.purge_after(false, true, 10), Purge::Background, "waited too long for a lull");
    }

    #[test]
    fn a_restart_with_many_shipped_rows_waiting_leaves_them_for_a_lull() {
        assert_eq!(Upkeep::resumed(0).purge_after(false, true, 10), Purge::Inline);
        assert_eq!(Upkeep::resumed(INLINE_PURGE_ROWS).purge_after(false, true, 10), Purge::Inline);
        let resumed = Upkeep::resumed(200_000);
        assert_eq!(resumed.purge_after(false, true, 10), Purge::Later, "not with the first small run");
        assert!(resumed.backlog, "their pages are given back after the purge");
    }

    #[test]
    fn a_lull_is_a_second_without_shipping() {
        assert!(Upkeep::default().quiet());
        let busy = Upkeep { last_shipped: Some(Instant::now()), ..Default::default() };
        assert!(!busy.quiet());
        let quiet = Upkeep { last_shipped: Instant::now().checked_sub(QUIET_BEFORE_PURGE), ..Default::default() };
        assert!(quiet.quiet());
    }

    #[test]
    fn a_backlog_purges_in_the_next_lull_and_gives_its_pages_back() {
        let mut upkeep = Upkeep::default();
        assert_eq!(upkeep.after_run(Purge::Later, false, 50_000), None, "nothing starts during the backlog");
        assert!(upkeep.due());
        upkeep.last_shipped = Instant::now().checked_sub(QUIET_BEFORE_PURGE);
        assert_eq!(upkeep.when_idle(), Some(true), "the lull purges");
        assert!(upkeep.start(true), "after a backlog the vacuum gives pages back");
        assert!(!upkeep.due());
        assert_eq!(upkeep.when_idle(), None, "nothing left to do");
    }
}
