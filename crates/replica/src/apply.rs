//! Applying a run's decisions — what every database does for each changed
//! table, decided from the keys read and their resolution. Pure: the engines
//! carry the plans out (`engine::postgres::apply` streams rows with COPY,
//! `engine::sqlite::apply` upserts them), each database in its run
//! transaction, so nothing echoes back as a change.

use crate::error::ReplicaError;
use crate::plan::SyncPlan;
use crate::read::{ChangedKeys, KeyRead, KeyRequest, KeySet, NewKeys, SourceRead};
use crate::resolve::{self, ConflictRecord, Resolution, SourceChanges};
use dugong_core::DbId;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// What every database does for one table in this run.
#[derive(Debug)]
pub struct TablePlan<K> {
    /// Index into the plan's tables.
    pub table: usize,
    pub truncate: Option<DbId>,
    /// Every changed key read with its winner. In a `single` plan the source
    /// wins every key of its change window, read or not: engines that select
    /// rows by the window read only the keys to delete first.
    pub winners: Vec<(K, DbId)>,
    /// Per source, the keys it changed but lost: left out of its row fetch.
    pub lost: HashMap<DbId, Vec<K>>,
    /// Sources that won at least one key.
    pub winning_sources: Vec<DbId>,
    /// Keys no other database should have (only inserted, by one source):
    /// copied without deleting them first.
    pub fresh: KeySet<K>,
}

impl<K: Clone + Eq + Hash> TablePlan<K> {
    /// The plan of a table only `source` changed: it wins every key. `keys` are
    /// those read (with `NewKeys::Trust`, only those to delete first).
    pub fn single(table: usize, source: DbId, keys: Vec<K>) -> TablePlan<K> {
        TablePlan {
            table,
            truncate: None,
            winners: keys.into_iter().map(|k| (k, source)).collect(),
            lost: HashMap::new(),
            winning_sources: vec![source],
            fresh: KeySet::default(),
        }
    }

    pub fn new(table: usize, sources: &[SourceChanges<K>], resolution: Resolution<K>) -> TablePlan<K> {
        let winner_of: HashMap<&K, DbId, foldhash::fast::RandomState> =
            resolution.winners.iter().map(|(k, d)| (k, *d)).collect();
        let mut lost: HashMap<DbId, Vec<K>> = HashMap::new();
        let mut winning_sources = Vec::new();
        for s in sources {
            let mut won_any = false;
            for (key, _) in &s.keys {
                if winner_of.get(key) == Some(&s.db) {
                    won_any = true;
                } else {
                    lost.entry(s.db).or_default().push(key.clone());
                }
            }
            if won_any {
                winning_sources.push(s.db);
            }
        }
        TablePlan {
            table,
            truncate: resolution.truncate,
            winners: resolution.winners,
            lost,
            winning_sources,
            fresh: KeySet::default(),
        }
    }
}

/// A conflict decided in a run, with what the conflict log needs beyond the
/// decision: its table, and whether both sides only inserted the key.
#[derive(Debug, Clone)]
pub struct TableConflict<K> {
    /// Index into the plan's tables.
    pub table: usize,
    pub record: ConflictRecord<K>,
    /// The winner and the loser both only inserted the key in this run (an
    /// insert/insert conflict, when both rows exist). Engines whose change
    /// logs do not mark inserts (SQLite) never say so.
    pub both_inserted: bool,
}

/// Resolves each table the run reads and plans what every database does for
/// it. `keys` answer `requests` in order. Fails only under the `abort`
/// strategy, naming the table.
#[allow(clippy::type_complexity)]
pub fn plan_tables<K: Clone + Eq + Hash>(
    plan: &SyncPlan,
    reads: &[SourceRead],
    how: &[Option<KeyRead>],
    requests: &[KeyRequest],
    keys: Vec<ChangedKeys<K>>,
    new_keys: NewKeys,
) -> Result<(Vec<TablePlan<K>>, Vec<TableConflict<K>>), ReplicaError> {
    let mut keys: HashMap<(usize, usize), ChangedKeys<K>> =
        requests.iter().map(|r| (r.table, r.source)).zip(keys).collect();
    let mut plans = Vec::with_capacity(plan.tables.len());
    let mut conflicts = Vec::new();
    for (ti, table) in plan.tables.iter().enumerate() {
        match how[ti] {
            None => continue,
            Some(KeyRead::Single) => {
                let si = (0..reads.len()).find(|si| reads[*si].summaries[ti].changed()).expect("one source changed it");
                let read = keys.remove(&(ti, si)).unwrap_or_default();
                plans.push(TablePlan::single(ti, reads[si].db, read.keys.into_iter().map(|(k, _)| k).collect()));
                continue;
            }
            Some(KeyRead::Resolve) => {}
        }
        let mut inserted = Vec::with_capacity(reads.len());
        let sources: Vec<SourceChanges<K>> = reads
            .iter()
            .enumerate()
            .map(|(si, r)| {
                let read = keys.remove(&(ti, si)).unwrap_or_default();
                inserted.push(read.inserted);
                SourceChanges { db: r.db, keys: read.keys, truncated: r.summaries[ti].truncated }
            })
            .collect();
        let resolution = resolve::resolve(&plan.sync.conflict_strategy, &plan.order, &sources)
            .map_err(|aborted| resolve::abort_error(&table.name, &aborted))?;
        let only_inserted =
            |db: DbId, key: &K| reads.iter().position(|r| r.db == db).is_some_and(|si| inserted[si].contains(key));
        conflicts.extend(resolution.conflicts.iter().map(|c| TableConflict {
            table: ti,
            record: c.clone(),
            both_inserted: only_inserted(c.winner, &c.key) && only_inserted(c.loser, &c.key),
        }));
        let mut table_plan = TablePlan::new(ti, &sources, resolution);
        if new_keys == NewKeys::Trust && table_plan.truncate.is_none() {
            table_plan.fresh = fresh_keys(&sources, inserted);
        }
        plans.push(table_plan);
    }
    Ok((plans, conflicts))
}

/// The keys changed by exactly one source, and only by inserts there: no other
/// database can have them unless a run is repeated or the same key was
/// inserted elsewhere (which the primary key will catch).
fn fresh_keys<K: Clone + Eq + Hash>(sources: &[SourceChanges<K>], inserted: Vec<KeySet<K>>) -> KeySet<K> {
    let mut changers: HashMap<&K, usize, foldhash::fast::RandomState> = Default::default();
    for s in sources {
        for (key, _) in &s.keys {
            *changers.entry(key).or_default() += 1;
        }
    }
    inserted.into_iter().flatten().filter(|key| changers.get(key) == Some(&1)).collect()
}

/// Counts of a run, in Bucardo's terms.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Rows deleted, summed over all databases written.
    pub deletes: u64,
    /// Rows read from sources (not multiplied by the databases written).
    pub inserts: u64,
    pub truncates: u64,
    /// Wall time of the deletes, and of moving the rows.
    pub delete_time: Duration,
    pub copy_time: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Vec<String> {
        vec![k.to_string()]
    }

    #[test]
    fn fresh_keys_are_inserted_by_exactly_one_source() {
        let changes = |db: u32, keys: &[&str]| SourceChanges {
            db: DbId(db),
            keys: keys.iter().map(|k| (key(k), None)).collect(),
            truncated: None,
        };
        let sources = [changes(0, &["a", "b", "c"]), changes(1, &["c", "d"])];
        let inserted0: KeySet<Vec<String>> = [key("a"), key("c")].into_iter().collect();
        let inserted1: KeySet<Vec<String>> = [key("c")].into_iter().collect();
        let fresh = fresh_keys(&sources, vec![inserted0, inserted1]);
        // b was updated or deleted; c was inserted on both sites (a conflict);
        // d was not inserted.
        assert_eq!(fresh, [key("a")].into_iter().collect());
    }
}
