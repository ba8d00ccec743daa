//! What `dugong repair` does with one key that differs: which version wins
//! and which databases take it. Pure; the engine reads the versions and
//! writes the outcome.
//!
//! Without a source, the version whose transaction committed last wins (ties,
//! and unknown commit times, go to the database listed first), and a row
//! missing somewhere is copied there — repair never deletes a row that some
//! database still holds. With `--source N`, database N's version wins
//! everywhere, and where N has no row, the row is deleted everywhere.

use crate::plan::DbOrder;
use crate::read::CommitTime;
use crate::record::conflict::why_won;
use crate::resolve::ConflictRecord;
use dugong_core::{ConflictStrategy, DbId};

/// One database's version of the row: its commit time and JSON, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub db: DbId,
    pub version: Option<(CommitTime, String)>,
}

/// A database that takes the winning version, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loser {
    pub db: DbId,
    /// Its version, which the repair overwrites (none: it had no row).
    pub version: Option<(CommitTime, String)>,
    pub reason: String,
}

/// The outcome for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every database holds the same (it was settled meanwhile).
    Same,
    Settle {
        winner: DbId,
        /// The winning version; none: the row is deleted everywhere.
        version: Option<(CommitTime, String)>,
        losers: Vec<Loser>,
    },
}

/// Decides one key from every database's version (`held`, one per database).
pub fn decide(held: &[Held], source: Option<DbId>, order: &DbOrder) -> Decision {
    let rows = |h: &Held| h.version.as_ref().map(|(_, json)| json.clone());
    let winner = match source {
        Some(src) => match held.iter().find(|h| h.db == src) {
            Some(h) => h,
            None => return Decision::Same,
        },
        None => {
            let best = held.iter().filter(|h| h.version.is_some()).min_by(|a, b| {
                let time = |h: &Held| h.version.as_ref().and_then(|(t, _)| *t);
                // Later commit first; unknown times last; then the configuration's order.
                time(b).cmp(&time(a)).then(order.rank(a.db).cmp(&order.rank(b.db)))
            });
            match best {
                Some(h) => h,
                None => return Decision::Same,
            }
        }
    };
    let won = rows(winner);
    let losers: Vec<Loser> = held
        .iter()
        .filter(|h| h.db != winner.db && rows(h) != won)
        .map(|h| Loser { db: h.db, version: h.version.clone(), reason: reason(winner, h, source, order) })
        .collect();
    if losers.is_empty() {
        return Decision::Same;
    }
    Decision::Settle { winner: winner.db, version: winner.version.clone(), losers }
}

/// Why `loser` takes `winner`'s version, as the conflict log says it.
fn reason(winner: &Held, loser: &Held, source: Option<DbId>, order: &DbOrder) -> String {
    let why = match (source, &loser.version) {
        (Some(src), _) => format!("{src} is the repair's --source"),
        (None, None) => format!("missing on {}; copied from {}", loser.db, winner.db),
        (None, Some((loser_time, _))) => {
            let record = ConflictRecord {
                key: (),
                winner: winner.db,
                winner_time: winner.version.as_ref().and_then(|(t, _)| *t),
                loser: loser.db,
                loser_time: *loser_time,
                by_truncate: false,
            };
            why_won(&ConflictStrategy::Latest, order, &record)
        }
    };
    format!("dugong repair: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(db: u32, v: Option<(i64, &str)>) -> Held {
        Held { db: DbId(db), version: v.map(|(t, j)| (Some(t), j.to_string())) }
    }

    fn order() -> DbOrder {
        DbOrder::new(vec![DbId(0), DbId(1), DbId(2)])
    }

    #[test]
    fn the_later_commit_wins_and_missing_rows_are_copied() {
        let d = decide(&[held(0, Some((10, "a"))), held(1, Some((20, "b"))), held(2, None)], None, &order());
        let Decision::Settle { winner, version, losers } = d else { panic!("{d:?}") };
        assert_eq!((winner, version.unwrap().1.as_str()), (DbId(1), "b"));
        assert_eq!(losers.len(), 2);
        assert_eq!(losers[0].reason, "dugong repair: later commit");
        assert_eq!(losers[1].reason, "dugong repair: missing on db2; copied from db1");
    }

    #[test]
    fn ties_and_unknown_times_go_to_the_first_database() {
        let d = decide(&[held(0, Some((10, "a"))), held(1, Some((10, "b")))], None, &order());
        let Decision::Settle { winner, losers, .. } = d else { panic!() };
        assert_eq!(winner, DbId(0));
        assert_eq!(losers[0].reason, "dugong repair: same commit time; db0 comes first in the configuration");
        let unknown = [Held { db: DbId(1), version: Some((None, "b".into())) }, held(0, Some((5, "a")))];
        let Decision::Settle { winner, .. } = decide(&unknown, None, &order()) else { panic!() };
        assert_eq!(winner, DbId(0), "a known commit time beats an unknown one");
    }

    #[test]
    fn a_source_wins_everywhere_and_its_absence_deletes() {
        let d = decide(&[held(0, None), held(1, Some((20, "b")))], Some(DbId(0)), &order());
        let Decision::Settle { winner, version, losers } = d else { panic!() };
        assert_eq!((winner, version), (DbId(0), None));
        assert_eq!(losers[0].db, DbId(1));
        assert_eq!(losers[0].reason, "dugong repair: db0 is the repair's --source");
        assert_eq!(decide(&[held(0, Some((1, "a"))), held(1, Some((9, "a")))], None, &order()), Decision::Same);
        assert_eq!(decide(&[held(0, None), held(1, None)], None, &order()), Decision::Same);
    }
}
