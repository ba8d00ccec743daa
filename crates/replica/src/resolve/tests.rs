use super::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn db(i: u32) -> DbId {
    DbId(i)
}

fn order() -> DbOrder {
    DbOrder::new(vec![db(0), db(1), db(2)])
}

fn src(d: u32, keys: &[(&'static str, i64)]) -> SourceChanges<&'static str> {
    SourceChanges { db: db(d), keys: keys.iter().map(|(k, t)| (*k, Some(*t))).collect(), truncated: None }
}

#[test]
fn no_conflict_each_key_goes_to_its_only_source() {
    let r = resolve(&ConflictStrategy::Latest, &order(), &[src(0, &[("a", 5)]), src(1, &[("b", 3)])]).unwrap();
    assert_eq!(r.winners, vec![("a", db(0)), ("b", db(1))]);
    assert!(r.conflicts.is_empty());
}

#[test]
fn latest_commit_wins_per_row_not_per_table() {
    // Row a: db1 committed last. Row b: db0 committed last. Same table, same run.
    let r = resolve(
        &ConflictStrategy::Latest,
        &order(),
        &[src(0, &[("a", 10), ("b", 40)]), src(1, &[("a", 20), ("b", 30)])],
    )
    .unwrap();
    assert_eq!(r.winners, vec![("a", db(1)), ("b", db(0))]);
    assert_eq!(r.conflicts.len(), 2);
    let a = r.conflicts.iter().find(|c| c.key == "a").unwrap();
    assert_eq!((a.winner, a.winner_time, a.loser, a.loser_time), (db(1), Some(20), db(0), Some(10)));
}

#[test]
fn ties_and_unknown_times_go_to_the_first_database() {
    let r = resolve(&ConflictStrategy::Latest, &order(), &[src(1, &[("a", 7)]), src(0, &[("a", 7)])]).unwrap();
    assert_eq!(r.winners, vec![("a", db(0))]);
    let unknown = |d| SourceChanges { db: db(d), keys: vec![("a", None)], truncated: None };
    let r = resolve(&ConflictStrategy::Latest, &order(), &[unknown(2), unknown(1)]).unwrap();
    assert_eq!(r.winners, vec![("a", db(1))]);
    // A known time beats an unknown one.
    let r = resolve(&ConflictStrategy::Latest, &order(), &[unknown(0), src(1, &[("a", 1)])]).unwrap();
    assert_eq!(r.winners, vec![("a", db(1))]);
}

#[test]
fn priority_list_beats_time_and_falls_back_to_latest() {
    let strategy = ConflictStrategy::Priority(vec![db(1)]);
    let r =
        resolve(&strategy, &order(), &[src(0, &[("a", 50), ("b", 50)]), src(1, &[("a", 10)]), src(2, &[("b", 60)])])
            .unwrap();
    assert_eq!(r.winners, vec![("a", db(1)), ("b", db(2))]);
}

#[test]
fn abort_refuses_any_conflict_but_not_disjoint_changes() {
    let ok = resolve(&ConflictStrategy::Abort, &order(), &[src(0, &[("a", 1)]), src(1, &[("b", 2)])]);
    assert!(ok.is_ok());
    let err = resolve(&ConflictStrategy::Abort, &order(), &[src(0, &[("a", 1)]), src(1, &[("a", 2)])]).unwrap_err();
    assert_eq!(err, Aborted { conflicts: 1 });
}

#[test]
fn truncate_kills_older_changes_elsewhere_and_keeps_newer_ones() {
    let mut s0 = src(0, &[("x", 5), ("y", 30)]);
    s0.truncated = Some(Some(20));
    let s1 = src(1, &[("a", 10), ("b", 25)]);
    let r = resolve(&ConflictStrategy::Latest, &order(), &[s0, s1]).unwrap();
    assert_eq!(r.truncate, Some(db(0)));
    // x was changed on db0 before its own truncate: gone, no conflict with itself.
    assert_eq!(r.winners, vec![("y", db(0)), ("b", db(1))]);
    assert_eq!(r.conflicts.len(), 1);
    assert!(r.conflicts[0].by_truncate && r.conflicts[0].key == "a" && r.conflicts[0].loser == db(1));
}

/// A site in the simulation: table contents, and the changes not yet shipped.
#[derive(Default, Clone)]
struct Site {
    rows: BTreeMap<u8, u64>,
    pending: BTreeMap<u8, i64>,
    truncated: Option<i64>,
}

/// One run of the protocol over the model: read every site's pending changes,
/// resolve, apply the winners' states to the others, consume.
fn run(sites: &mut [Site], strategy: &ConflictStrategy) {
    let order = DbOrder::new((0..sites.len() as u32).map(DbId).collect());
    let changes: Vec<SourceChanges<u8>> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| SourceChanges {
            db: DbId(i as u32),
            keys: s.pending.iter().map(|(k, t)| (*k, Some(*t))).collect(),
            truncated: s.truncated.map(Some),
        })
        .collect();
    let r = resolve(strategy, &order, &changes).unwrap();
    let before: Vec<Site> = sites.to_vec();
    for (i, site) in sites.iter_mut().enumerate() {
        let me = DbId(i as u32);
        let emptied = r.truncate.is_some_and(|t| t != me);
        if emptied {
            site.rows.clear();
        }
        for (key, winner) in &r.winners {
            if *winner == me && !emptied {
                continue;
            }
            match before[winner.0 as usize].rows.get(key) {
                Some(v) => site.rows.insert(*key, *v),
                None => site.rows.remove(key),
            };
        }
        site.pending.clear();
        site.truncated = None;
    }
}

/// Seeded random writes, deletes and truncates on 2–3 sites with runs at random
/// moments: the sites always converge, and under `latest` every key ends with the
/// last committed write (or absent when a delete or truncate came last).
#[test]
fn seeded_simulation_always_converges_to_the_last_write() {
    for seed in 0..400u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = rng.random_range(2..=3usize);
        let strategy = match seed % 3 {
            0 | 1 => ConflictStrategy::Latest,
            _ => ConflictStrategy::Priority(vec![DbId(rng.random_range(0..n as u32))]),
        };
        let mut sites = vec![Site::default(); n];
        // key -> (time, value or None) of the last event, for the LWW check.
        let mut last: BTreeMap<u8, (i64, Option<u64>)> = BTreeMap::new();
        let mut last_truncate: i64 = i64::MIN;
        let mut now = 0i64;
        for _ in 0..rng.random_range(1..60) {
            now += 1;
            let s = rng.random_range(0..n);
            let key = rng.random_range(0..8u8);
            match rng.random_range(0..20) {
                0 => {
                    sites[s].rows.clear();
                    sites[s].truncated = Some(now);
                    last_truncate = now;
                }
                1..=5 => {
                    sites[s].rows.remove(&key);
                    sites[s].pending.insert(key, now);
                    last.insert(key, (now, None));
                }
                _ => {
                    let value = rng.random();
                    sites[s].rows.insert(key, value);
                    sites[s].pending.insert(key, now);
                    last.insert(key, (now, Some(value)));
                }
            }
            if rng.random_bool(0.3) {
                run(&mut sites, &strategy);
            }
        }
        run(&mut sites, &strategy);
        for s in &sites[1..] {
            assert_eq!(s.rows, sites[0].rows, "seed {seed}: sites diverged");
        }
        if strategy == ConflictStrategy::Latest {
            let expected: BTreeMap<u8, u64> = last
                .iter()
                .filter(|(_, (t, _))| *t > last_truncate)
                .filter_map(|(k, (_, v))| v.map(|v| (*k, v)))
                .collect();
            assert_eq!(sites[0].rows, expected, "seed {seed}: not the last write");
        }
    }
}
