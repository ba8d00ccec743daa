//! PostgreSQL snapshots (`pg_snapshot`, text form `xmin:xmax:xip,xip`) as the
//! replicator's cursor into a change log.
//!
//! A cursor is the set of transactions whose changes a sync has consumed: those
//! visible in the snapshot. A run reads the changes of transactions visible in
//! its own snapshot and not in the cursor — never "ids above the highest seen",
//! which loses changes because transactions commit out of id order. To bound a
//! batch, the run may consume only the transactions below an id `bound`; the new
//! cursor is then "visible in the run's snapshot and below `bound`", which is a
//! snapshot again (see [`Snapshot::truncated_at`]).

use std::fmt;
use std::str::FromStr;

/// A `pg_snapshot`: every transaction id below `xmin` is finished, none at or
/// above `xmax` had started, and `xip` lists those in progress in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl Snapshot {
    /// Whether the changes of transaction `txid` are visible (committed before
    /// the snapshot was taken), as `pg_visible_in_snapshot` decides.
    pub fn is_visible(&self, txid: u64) -> bool {
        txid < self.xmin || (txid < self.xmax && !self.xip.contains(&txid))
    }

    /// The transactions visible in both `self` and `other`: where a run starts
    /// reading for several targets whose positions differ (each target then
    /// gets everything it lacks, and some of it again).
    pub fn intersection(&self, other: &Snapshot) -> Snapshot {
        let xmax = self.xmax.min(other.xmax);
        let mut xip: Vec<u64> = self.xip.iter().chain(&other.xip).copied().filter(|x| *x < xmax).collect();
        xip.sort_unstable();
        xip.dedup();
        let xmin = xip.first().copied().unwrap_or(xmax);
        Snapshot { xmin, xmax, xip }
    }

    /// The transactions visible in `self` or in `other`: a target's position
    /// after a run that started reading below it never moves back.
    pub fn union(&self, other: &Snapshot) -> Snapshot {
        let xmax = self.xmax.max(other.xmax);
        let mut xip: Vec<u64> = self
            .xip
            .iter()
            .chain(&other.xip)
            .copied()
            .filter(|x| !self.is_visible(*x) && !other.is_visible(*x))
            .collect();
        xip.sort_unstable();
        xip.dedup();
        let xmin = xip.first().copied().unwrap_or(xmax);
        Snapshot { xmin, xmax, xip }
    }

    /// The cursor after consuming, from a run with snapshot `self`, exactly the
    /// transactions below `bound`. `bound` must not be below the previous
    /// cursor's `xmax` (then the result also covers all it covered).
    pub fn truncated_at(&self, bound: u64) -> Snapshot {
        if bound >= self.xmax {
            return self.clone();
        }
        let xmin = self.xmin.min(bound);
        Snapshot { xmin, xmax: bound, xip: self.xip.iter().copied().filter(|&x| x >= xmin && x < bound).collect() }
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

/// A text that is not a `pg_snapshot`.
#[derive(Debug, thiserror::Error)]
#[error("not a pg_snapshot: {0:?}")]
pub struct SnapshotParseError(String);

impl FromStr for Snapshot {
    type Err = SnapshotParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SnapshotParseError(s.to_string());
        let mut parts = s.splitn(3, ':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let rest = parts.next().ok_or_else(bad)?;
        let xip = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(',').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?
        };
        if xmin > xmax {
            return Err(bad());
        }
        Ok(Snapshot { xmin, xmax, xip })
    }
}

/// Chooses the id below which a run consumes changes, so that a batch holds about
/// `batch_rows` change rows and never splits a source transaction.
///
/// `nth_pending` is the transaction id of the `batch_rows`-th pending change row
/// in id order, or `None` when fewer are pending (then everything visible is
/// consumed). The bound never falls below the previous cursor's `xmax` (the
/// transactions below it that were still running then must be consumed first),
/// nor above the run snapshot's `xmax`.
pub fn choose_bound(nth_pending: Option<u64>, last: &Snapshot, current: &Snapshot) -> u64 {
    match nth_pending {
        None => current.xmax,
        Some(nth) => nth.saturating_add(1).max(last.xmax).min(current.xmax),
    }
}

/// The bounds of a backlog's next batches, counted once when the backlog was
/// first seen: while they last, a run needs no counting query.
#[derive(Debug, Clone, Default)]
pub struct BatchBounds {
    /// The batch size they were counted for.
    rows: usize,
    /// Transaction ids, ascending: each is the last of a batch.
    bounds: Vec<u64>,
}

impl BatchBounds {
    /// Bounds counted for batches of `rows`, ascending.
    pub fn counted(rows: usize, bounds: Vec<u64>) -> BatchBounds {
        BatchBounds { rows, bounds }
    }

    /// The next batch's bound and the rest, for a cursor at `cursor` and
    /// batches of `rows`; `None` when none is left (or the size changed).
    /// Bounds the cursor has passed are dropped, so every run progresses.
    pub fn next_after(&self, cursor: &Snapshot, rows: usize) -> Option<(Option<u64>, BatchBounds)> {
        if self.rows != rows {
            return None;
        }
        let mut left = self.bounds.iter().copied().filter(|b| *b >= cursor.xmax);
        let next = left.next()?;
        Some((Some(next), BatchBounds { rows, bounds: left.collect() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn parses_and_prints_pg_snapshot_text() {
        for text in ["10:20:", "10:20:12,15", "5:5:"] {
            let s: Snapshot = text.parse().unwrap();
            assert_eq!(s.to_string(), text);
        }
        assert!("20:10:".parse::<Snapshot>().is_err());
        assert!("x:1:".parse::<Snapshot>().is_err());
        assert!("1:2".parse::<Snapshot>().is_err());
    }

    #[test]
    fn visibility_matches_postgres_rules() {
        let s: Snapshot = "10:20:12,15".parse().unwrap();
        assert!(s.is_visible(9));
        assert!(s.is_visible(10));
        assert!(!s.is_visible(12));
        assert!(s.is_visible(13));
        assert!(!s.is_visible(20));
    }

    /// Whatever the bound, consuming below it and then everything else consumes
    /// each committed transaction exactly once.
    #[test]
    fn truncated_cursors_consume_every_transaction_exactly_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let xmin_last = rng.random_range(1..50u64);
            let xmax_last = xmin_last + rng.random_range(0..10);
            let last_xip: Vec<u64> = (xmin_last..xmax_last).filter(|_| rng.random_bool(0.3)).collect();
            let last = Snapshot { xmin: xmin_last, xmax: xmax_last, xip: last_xip.clone() };
            // The current snapshot sees more: some of the old in-progress ones finished.
            let xmax = xmax_last + rng.random_range(0..30);
            let mut xip: Vec<u64> = last_xip.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
            xip.extend((xmax_last..xmax).filter(|_| rng.random_bool(0.2)));
            let xmin = xip.iter().copied().min().unwrap_or(xmax);
            let current = Snapshot { xmin, xmax, xip };
            let bound = rng.random_range(xmax_last..=xmax + 1);
            let cursor = current.truncated_at(bound);
            for t in 0..xmax + 5 {
                let consumed_before = last.is_visible(t);
                let consumed_now = !consumed_before && current.is_visible(t) && t < bound;
                assert_eq!(
                    cursor.is_visible(t),
                    consumed_before || consumed_now,
                    "t={t} last={last} cur={current} bound={bound}"
                );
            }
        }
    }

    /// Intersections and unions see exactly the transactions both, or either,
    /// of their snapshots see.
    #[test]
    fn intersections_and_unions_match_visibility() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let random = |rng: &mut rand::rngs::StdRng| {
            let xmin = rng.random_range(1..40u64);
            let xmax = xmin + rng.random_range(0..20);
            let xip: Vec<u64> = (xmin..xmax).filter(|_| rng.random_bool(0.3)).collect();
            let xmin = xip.first().copied().unwrap_or(xmax);
            Snapshot { xmin, xmax, xip }
        };
        for _ in 0..2000 {
            let (a, b) = (random(&mut rng), random(&mut rng));
            let (i, u) = (a.intersection(&b), a.union(&b));
            for t in 0..80 {
                assert_eq!(i.is_visible(t), a.is_visible(t) && b.is_visible(t), "t={t} a={a} b={b} i={i}");
                assert_eq!(u.is_visible(t), a.is_visible(t) || b.is_visible(t), "t={t} a={a} b={b} u={u}");
            }
            assert!(i.to_string().parse::<Snapshot>().is_ok() && u.to_string().parse::<Snapshot>().is_ok());
        }
    }

    #[test]
    fn bound_keeps_batches_near_the_target_size() {
        let last: Snapshot = "100:110:105".parse().unwrap();
        let current: Snapshot = "200:300:".parse().unwrap();
        assert_eq!(choose_bound(None, &last, &current), 300);
        assert_eq!(choose_bound(Some(154), &last, &current), 155);
        // Never below the last xmax, never above the current one.
        assert_eq!(choose_bound(Some(105), &last, &current), 110);
        assert_eq!(choose_bound(Some(400), &last, &current), 300);
    }

    #[test]
    fn batch_bounds_skip_what_the_cursor_passed_and_always_progress() {
        let bounds = BatchBounds { rows: 100, bounds: vec![110, 150, 190] };
        let cursor: Snapshot = "105:110:107".parse().unwrap();
        let (next, rest) = bounds.next_after(&cursor, 100).unwrap();
        assert_eq!(next, Some(110));
        assert!(choose_bound(next, &cursor, &"300:300:".parse().unwrap()) > cursor.xmax);
        assert_eq!(rest.bounds, vec![150, 190]);
        let cursor: Snapshot = "151:151:".parse().unwrap();
        let (next, rest) = bounds.next_after(&cursor, 100).unwrap();
        assert_eq!((next, rest.bounds), (Some(190), vec![]));
        assert!(bounds.next_after(&"191:191:".parse().unwrap(), 100).is_none(), "all passed: count again");
        assert!(bounds.next_after(&cursor, 50).is_none(), "another batch size: count again");
    }
}
