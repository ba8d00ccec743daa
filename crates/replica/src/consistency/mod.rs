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

pub mod suspects;

pub use suspects::{Hashes, Suspects, KNOWN_CAP};

pub use crate::record::Divergence;

use crate::engine::{self, postgres, EngineKind};
use crate::metrics as m;
use dugong_config::{Config, Sync};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Runs the check of `sync` until `shutdown`: a tick every `options.interval`
/// while `active` (this replicator runs the sync; a standby leaves the reads
/// to the active one, as it does the runs). Failures (a database down) are
/// logged at debug level and the next tick tries again: the replicator
/// reports those itself.
pub async fn run(
    config: Arc<Config>,
    sync: Sync,
    options: ConsistencyOptions,
    active: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
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
        if !active.load(Ordering::Relaxed) {
            // No connections held while standing by.
            checker.disconnect();
            continue;
        }
        let tick = tokio::select! {
            t = checker.tick() => t,
            _ = shutdown.cancelled() => return,
        };
        match tick {
            Ok(checks) => {
                for c in &checks {
                    let table = c.table.display_name();
                    metrics::gauge!(m::ROWS_DIFFERING, "sync" => sync.name.to_string(), "table" => table)
                        .set(c.known as f64);
                }
                if let Err(e) = checker.record(&checks).await {
                    tracing::warn!(sync = %sync.name, error = %e, "could not record the rows found different");
                    checker.disconnect();
                }
            }
            Err(e) => {
                tracing::debug!(sync = %sync.name, error = %e, "consistency check skipped a tick");
                checker.disconnect();
            }
        }
    }
}
