//! Reading the pending changes of a run — the stage after capture: each
//! source's changes since its position, in one snapshot, bounded to a batch.
//! An engine counts each table's changes first ([`SourceRead`]); from those
//! counts alone the run decides which changed keys it must read
//! ([`key_requests`]), so a table only one source changed needs no conflict
//! resolution and often no keys at all. The engines do the reading.

use dugong_core::DbId;
use std::collections::HashSet;

/// Commit time of a change in microseconds since the Unix epoch, when known
/// (`track_commit_timestamp = on`). Unknown times sort before known ones.
pub type CommitTime = Option<i64>;

/// A changed key as text: the text form of each primary-key column. Conflict
/// records and logs carry keys in this form, whatever the engine.
pub type TextKey = Vec<String>;

/// A set of changed keys, hashed fast: a run can handle tens of thousands.
pub type KeySet<K> = HashSet<K, foldhash::fast::RandomState>;

/// How many change rows a run ships per source by default: PostgreSQL's
/// default (SQLite files use smaller batches, see `engine::sqlite`). Only a
/// backlog fills a batch; bigger batches spend less of a catch-up between
/// runs (50,000 beat 20,000 by about 4% in the catch-up benchmark).
pub const DEFAULT_BATCH_ROWS: usize = 50_000;

/// Run tuning.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// About how many change rows one run ships per source.
    pub batch_rows: usize,
    /// A run that ships at most this many change rows in all may apply them
    /// in one flight with its commits (the PostgreSQL engine does), where a
    /// bigger one streams them.
    pub one_flight_rows: u64,
}

/// How many change rows a run applies in one flight by default.
pub const DEFAULT_ONE_FLIGHT_ROWS: u64 = 1000;

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { batch_rows: DEFAULT_BATCH_ROWS, one_flight_rows: DEFAULT_ONE_FLIGHT_ROWS }
    }
}

/// One source's pending changes in this run's window, counted before any key
/// is read.
#[derive(Debug, Clone)]
pub struct SourceRead {
    pub db: DbId,
    /// A batch bound held changes back: more are waiting.
    pub more: bool,
    /// The targets' positions differ (one was away): the window is read from
    /// where the furthest behind is, and the others get some of it again.
    pub uneven: bool,
    /// Per table, in the order of the plan's tables.
    pub summaries: Vec<TableSummary>,
}

/// One table's pending changes on one source.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableSummary {
    /// Change rows in the window.
    pub changes: i64,
    /// Change rows that are not inserts (updates, deletes, key changes); all
    /// of them where the engine cannot tell.
    pub rewritten: i64,
    /// Commit time of the oldest change, when commit times are known.
    pub oldest: CommitTime,
    /// The source truncated the table: the latest truncate's commit time.
    pub truncated: Option<CommitTime>,
}

impl TableSummary {
    pub fn changed(&self) -> bool {
        self.changes > 0 || self.truncated.is_some()
    }
}

/// How much of a table's changed keys a run must read from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRead {
    /// Several sources changed the table, or one truncated it: every key with
    /// its commit time, for conflict resolution.
    Resolve,
    /// Only this source changed the table: no conflict is possible. An engine
    /// that selects rows by the change window reads only the keys the targets
    /// must delete first (those not only inserted, with `NewKeys::Trust`).
    Single,
}

/// Whether a run trusts that keys only ever inserted on their source are new
/// on the targets, and copies them without deleting them first.
///
/// Deleting 20,000 keys that are not there costs a target as much as a third
/// of inserting their rows. Trusting is safe: a key that does exist after all
/// makes the primary key refuse the row, and the run is repeated with
/// `Verify`, which deletes every changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKeys {
    Trust,
    Verify,
}

/// One table's changed keys to read from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// Index into the plan's tables.
    pub table: usize,
    /// Index into the run's source reads.
    pub source: usize,
    pub db: DbId,
    pub how: KeyRead,
    /// Only keys that were not only inserted are needed (a `Single` read
    /// that trusts new keys).
    pub only_rewritten: bool,
}

/// A table's changed keys read from one source: each once, with the commit
/// time of its latest change (`Resolve` reads), and those of them that were
/// only inserted.
#[derive(Debug, Clone)]
pub struct ChangedKeys<K> {
    pub keys: Vec<(K, CommitTime)>,
    pub inserted: KeySet<K>,
}

impl<K> Default for ChangedKeys<K> {
    fn default() -> Self {
        ChangedKeys { keys: Vec::new(), inserted: KeySet::default() }
    }
}

/// Decides, from the counts alone, how each of `tables` tables is read: not
/// at all (nobody changed it), `Single` (one source changed it, without a
/// truncate) or `Resolve`; and which key reads that takes.
pub fn key_requests(reads: &[SourceRead], tables: usize, new_keys: NewKeys) -> (Vec<Option<KeyRead>>, Vec<KeyRequest>) {
    let how: Vec<Option<KeyRead>> = (0..tables)
        .map(|ti| {
            let changers = reads.iter().filter(|r| r.summaries[ti].changed()).count();
            let truncated = reads.iter().any(|r| r.summaries[ti].truncated.is_some());
            match changers {
                0 => None,
                1 if !truncated => Some(KeyRead::Single),
                _ => Some(KeyRead::Resolve),
            }
        })
        .collect();
    let mut requests = Vec::new();
    for (ti, how) in how.iter().enumerate() {
        let Some(how) = *how else { continue };
        for (si, r) in reads.iter().enumerate() {
            let s = r.summaries[ti];
            if s.changes > 0 && (how == KeyRead::Resolve || new_keys == NewKeys::Verify || s.rewritten > 0) {
                let only_rewritten = how == KeyRead::Single && new_keys == NewKeys::Trust;
                requests.push(KeyRequest { table: ti, source: si, db: r.db, how, only_rewritten });
            }
        }
    }
    (how, requests)
}

/// The commit time of the oldest change the run ships, when known.
pub fn oldest(reads: &[SourceRead]) -> CommitTime {
    reads.iter().flat_map(|r| r.summaries.iter().filter_map(|s| s.oldest)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(db: u32, summaries: Vec<TableSummary>) -> SourceRead {
        SourceRead { db: DbId(db), more: false, uneven: false, summaries }
    }

    fn changed(changes: i64, rewritten: i64) -> TableSummary {
        TableSummary { changes, rewritten, ..Default::default() }
    }

    #[test]
    fn a_table_one_source_changed_reads_only_keys_to_delete_first() {
        let reads = [
            read(0, vec![changed(10, 0), changed(5, 2), TableSummary::default()]),
            read(1, vec![TableSummary::default(), changed(3, 3), TableSummary::default()]),
        ];
        let (how, requests) = key_requests(&reads, 3, NewKeys::Trust);
        assert_eq!(how, vec![Some(KeyRead::Single), Some(KeyRead::Resolve), None]);
        // Table 0: only inserts on one source, nothing to read; table 1: both sources, all keys.
        let wanted: Vec<(usize, usize, bool)> =
            requests.iter().map(|r| (r.table, r.source, r.only_rewritten)).collect();
        assert_eq!(wanted, vec![(1, 0, false), (1, 1, false)]);
        let (_, requests) = key_requests(&reads, 3, NewKeys::Verify);
        assert!(requests.iter().any(|r| r.table == 0 && !r.only_rewritten), "verifying reads every key");
    }

    #[test]
    fn a_truncate_is_resolved_even_from_one_source() {
        let truncated = TableSummary { truncated: Some(Some(5)), ..Default::default() };
        let (how, requests) = key_requests(&[read(0, vec![truncated])], 1, NewKeys::Trust);
        assert_eq!(how, vec![Some(KeyRead::Resolve)]);
        assert!(requests.is_empty(), "no changed keys to read, the truncate alone decides");
    }
}
