//! Conflict resolution: which source's state of each changed key every database
//! takes. Pure functions, no I/O — the decision is tested here, by unit tests and
//! by a seeded simulation of sites that must always converge.
//!
//! A conflict is the same key changed on two or more sources since the last run.
//! Decisions are per row: two keys of one table may be won by different sites in
//! the same run. A `TRUNCATE` is a change of every row of the table at its commit
//! time: changes that lose to it end deleted, changes that beat it survive.

use crate::plan::DbOrder;
pub use crate::read::CommitTime;
use dugong_core::{ConflictStrategy, DbId, TableName};
use std::collections::HashMap;
use std::hash::Hash;

/// The changes one source has pending for one table.
#[derive(Debug, Clone)]
pub struct SourceChanges<K> {
    pub db: DbId,
    /// Each changed key once, with the commit time of its latest change.
    pub keys: Vec<(K, CommitTime)>,
    /// Set when the source truncated the table: the latest truncate's commit time.
    pub truncated: Option<CommitTime>,
}

/// One decided conflict: `winner`'s state of `key` replaced `loser`'s change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRecord<K> {
    pub key: K,
    pub winner: DbId,
    pub winner_time: CommitTime,
    pub loser: DbId,
    pub loser_time: CommitTime,
    /// True when the loser's change lost to a `TRUNCATE` of the winner.
    pub by_truncate: bool,
}

impl<K> ConflictRecord<K> {
    /// The same record with its key in another form (as text, for the logs).
    pub fn map_key<T>(&self, f: impl FnOnce(&K) -> T) -> ConflictRecord<T> {
        ConflictRecord {
            key: f(&self.key),
            winner: self.winner,
            winner_time: self.winner_time,
            loser: self.loser,
            loser_time: self.loser_time,
            by_truncate: self.by_truncate,
        }
    }
}

/// What every database must do for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<K> {
    /// Every surviving changed key with the database whose state all others take.
    pub winners: Vec<(K, DbId)>,
    pub conflicts: Vec<ConflictRecord<K>>,
    /// The database whose truncate wins: every other database empties the table
    /// and then takes the state of every winning key.
    pub truncate: Option<DbId>,
}

/// The `abort` strategy met a conflict: nothing may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted {
    pub conflicts: usize,
}

/// Whether change `a` beats change `b` under `strategy`.
fn beats(strategy: &ConflictStrategy, order: &DbOrder, a: (DbId, CommitTime), b: (DbId, CommitTime)) -> bool {
    if let ConflictStrategy::Priority(list) = strategy {
        let pa = list.iter().position(|d| *d == a.0);
        let pb = list.iter().position(|d| *d == b.0);
        match (pa, pb) {
            (Some(x), Some(y)) if x != y => return x < y,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            _ => {}
        }
    }
    // Latest commit wins; equal (or unknown) times go to the database listed first.
    match a.1.cmp(&b.1) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => order.rank(a.0) < order.rank(b.0),
    }
}

/// Decides one table's pending changes across its sources.
pub fn resolve<K: Clone + Eq + Hash>(
    strategy: &ConflictStrategy,
    order: &DbOrder,
    sources: &[SourceChanges<K>],
) -> Result<Resolution<K>, Aborted> {
    // The winning truncate, if any source truncated.
    let mut truncate: Option<(DbId, CommitTime)> = None;
    for s in sources {
        if let Some(t) = s.truncated {
            let candidate = (s.db, t);
            truncate = match truncate {
                Some(cur) if !beats(strategy, order, candidate, cur) => Some(cur),
                _ => Some(candidate),
            };
        }
    }

    let mut conflicts = Vec::new();
    // Each changed key once, in the order first seen, with the changes that
    // survive the truncate: (db, time).
    let mut index: HashMap<&K, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut changed: Vec<(&K, Vec<(DbId, CommitTime)>)> = Vec::new();
    for s in sources {
        for (key, time) in &s.keys {
            if let Some((tdb, ttime)) = truncate {
                let survives = if s.db == tdb {
                    // The truncating site's own later changes (or those of the same
                    // transaction) are its current state.
                    *time >= ttime
                } else {
                    beats(strategy, order, (s.db, *time), (tdb, ttime))
                };
                if !survives {
                    if s.db != tdb {
                        conflicts.push(ConflictRecord {
                            key: key.clone(),
                            winner: tdb,
                            winner_time: ttime,
                            loser: s.db,
                            loser_time: *time,
                            by_truncate: true,
                        });
                    }
                    continue;
                }
            }
            let at = *index.entry(key).or_insert_with(|| {
                changed.push((key, Vec::with_capacity(1)));
                changed.len() - 1
            });
            changed[at].1.push((s.db, *time));
        }
    }

    let mut winners = Vec::with_capacity(changed.len());
    let mut contested = 0usize;
    for (key, changes) in changed {
        let mut best = changes[0];
        for &c in &changes[1..] {
            if beats(strategy, order, c, best) {
                best = c;
            }
        }
        if changes.len() > 1 {
            contested += 1;
            for &(db, time) in &changes {
                if db != best.0 {
                    conflicts.push(ConflictRecord {
                        key: key.clone(),
                        winner: best.0,
                        winner_time: best.1,
                        loser: db,
                        loser_time: time,
                        by_truncate: false,
                    });
                }
            }
        }
        winners.push((key.clone(), best.0));
    }

    if *strategy == ConflictStrategy::Abort && (contested > 0 || conflicts.iter().any(|c| c.by_truncate)) {
        return Err(Aborted { conflicts: conflicts.len() });
    }
    Ok(Resolution { winners, conflicts, truncate: truncate.map(|t| t.0) })
}

/// Names the table in an abort error.
pub fn abort_error(table: &TableName, aborted: &Aborted) -> crate::ReplicaError {
    crate::ReplicaError::ConflictAbort { table: table.clone(), count: aborted.conflicts }
}

#[cfg(test)]
mod tests;
