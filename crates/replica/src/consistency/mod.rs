//! The background consistency check: while the replicator runs, it walks
//! every table of each sync a chunk of keys at a time (incremental
//! checksums, so divergence is noticed without anyone running `compare`) and
//! exports how many rows are known to differ
//! ([`ROWS_DIFFERING`](crate::metrics::ROWS_DIFFERING), per sync and table).
//!
//! Each tick compares one chunk (by primary-key order, `chunk_rows` keys) on
//! every database: a count and an order-independent checksum first, the
//! keys only when those differ. A differing key is only a suspect: it may
//! be a change the replicator has not shipped yet. It is known to differ
//! once, a tick later, it still differs with the same row on every
//! database, and no change log holds a change of it that some database
//! still waits for ([`Suspects`]). Known keys are checked again every tick
//! and leave the count as soon as they agree (after `dugong repair`, say).
//! PostgreSQL syncs only; the engine's part is
//! `engine::postgres::consistency`.

use crate::engine::{self, postgres, EngineKind};
use crate::metrics as m;
use crate::read::TextKey;
use dugong_config::{Config, Sync};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistencyOptions {
    /// Time between two chunks.
    pub interval: Duration,
    /// Keys per chunk.
    pub chunk_rows: usize,
}

impl Default for ConsistencyOptions {
    fn default() -> Self {
        ConsistencyOptions { interval: Duration::from_secs(10), chunk_rows: 10_000 }
    }
}

/// How many known differing keys a table keeps (and counts) at most.
pub const KNOWN_CAP: usize = 100_000;

/// The row hashes each database holds for one key (`None`: no row), in the
/// sync's order.
pub type Hashes = Vec<Option<String>>;

/// Differing keys of one table: suspects seen once, and keys known to differ.
#[derive(Debug, Default)]
pub struct Suspects {
    suspects: HashMap<TextKey, Hashes>,
    known: HashSet<TextKey>,
}

impl Suspects {
    /// Keys to read again this tick: the suspects and the known ones.
    pub fn to_recheck(&self) -> Vec<TextKey> {
        self.suspects.keys().chain(self.known.iter()).cloned().collect()
    }

    /// Takes this tick's reading of the rechecked keys (`now`: their hashes,
    /// `moving`: those with changes in flight) and the chunk's new suspects.
    pub fn update(&mut self, now: &HashMap<TextKey, Hashes>, moving: &HashSet<TextKey>, found: Vec<(TextKey, Hashes)>) {
        let differs = |h: &Hashes| h.iter().any(|x| x != &h[0]);
        self.known.retain(|k| now.get(k).is_some_and(differs));
        let suspects = std::mem::take(&mut self.suspects);
        for (key, before) in suspects {
            let Some(after) = now.get(&key) else { continue };
            if !differs(after) {
                continue;
            }
            if *after == before && !moving.contains(&key) {
                if self.known.len() < KNOWN_CAP {
                    self.known.insert(key);
                }
            } else {
                self.suspects.insert(key, after.clone());
            }
        }
        for (key, hashes) in found {
            if !self.known.contains(&key) && !moving.contains(&key) {
                self.suspects.insert(key, hashes);
            }
        }
    }

    /// Rows known to differ.
    pub fn known(&self) -> usize {
        self.known.len()
    }
}

/// Runs the check of `sync` until `shutdown`: a tick every `options.interval`.
/// Failures (a database down) are logged at debug level and the next tick
/// tries again: the replicator reports those itself.
pub async fn run(config: Arc<Config>, sync: Sync, options: ConsistencyOptions, shutdown: CancellationToken) {
    match engine::kind_of(&config, &sync) {
        Ok(EngineKind::Postgres) => {}
        _ => {
            tracing::info!(sync = %sync.name, "the background consistency check runs on PostgreSQL syncs only; run dugong compare for this one");
            return;
        }
    }
    let mut checker = postgres::consistency::Checker::new(config, sync.clone(), options.chunk_rows.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(options.interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let tick = tokio::select! {
            t = checker.tick() => t,
            _ = shutdown.cancelled() => return,
        };
        match tick {
            Ok(counts) => {
                for (table, known) in counts {
                    metrics::gauge!(m::ROWS_DIFFERING, "sync" => sync.name.to_string(), "table" => table)
                        .set(known as f64);
                }
            }
            Err(e) => {
                tracing::debug!(sync = %sync.name, error = %e, "consistency check skipped a tick");
                checker.disconnect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(values: &[Option<&str>]) -> Hashes {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn key(k: &str) -> TextKey {
        vec![k.to_string()]
    }

    #[test]
    fn a_difference_is_known_only_when_it_holds_still_a_tick_later() {
        let mut s = Suspects::default();
        let none = HashSet::new();
        s.update(
            &HashMap::new(),
            &none,
            vec![(key("1"), h(&[Some("a"), Some("b")])), (key("2"), h(&[Some("a"), None]))],
        );
        assert_eq!(s.known(), 0, "first seen: only suspects");
        let mut now = HashMap::new();
        now.insert(key("1"), h(&[Some("a"), Some("b")]));
        now.insert(key("2"), h(&[Some("a"), Some("a")]));
        s.update(&now, &none, vec![]);
        assert_eq!(s.known(), 1, "key 1 still differs alike; key 2 was shipped meanwhile");
        now.insert(key("1"), h(&[Some("a"), Some("a")]));
        s.update(&now, &none, vec![]);
        assert_eq!(s.known(), 0, "repaired: it leaves the count");
    }

    #[test]
    fn keys_that_keep_changing_or_wait_in_a_change_log_stay_suspects() {
        let mut s = Suspects::default();
        s.update(&HashMap::new(), &HashSet::new(), vec![(key("1"), h(&[Some("a"), Some("b")]))]);
        let mut now = HashMap::new();
        now.insert(key("1"), h(&[Some("c"), Some("b")]));
        s.update(&now, &HashSet::new(), vec![]);
        assert_eq!(s.known(), 0, "it changed meanwhile");
        let moving: HashSet<TextKey> = [key("1")].into_iter().collect();
        s.update(&now, &moving, vec![]);
        assert_eq!(s.known(), 0, "a change of it waits to be shipped");
        s.update(&now, &HashSet::new(), vec![]);
        assert_eq!(s.known(), 1);
    }
}
