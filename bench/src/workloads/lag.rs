//! Replication lag at a steady rate of single-row transactions.
//!
//! One writer on site 0 commits one row every 1/rate seconds (autocommit
//! `INSERT … RETURNING`); a row's commit time is when that statement returned.
//! A poller on site 1 starts a query every 1 ms for the rows of this workload
//! newer than the oldest one it has not seen yet (`client = tag AND at > …`, an
//! index range scan that normally returns zero or one row); a row's visible time
//! is when the poll that first returned it was sent. Lag = visible − commit, so
//! the figures carry up to ~1 ms of poll granularity.

use crate::cluster::Sites;
use crate::options::Scale;
use crate::stats::percentile;
use crate::system::System;
use crate::workloads::rows;
use anyhow::Context;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const POLL_EVERY: Duration = Duration::from_millis(1);

/// Lag figures of one run, in milliseconds.
#[derive(Debug, Clone)]
pub struct Lag {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub rows: usize,
    /// Rows that arrived before the deadline; the others are not in the figures.
    pub arrived: usize,
    /// Transactions per second the writer achieved.
    pub rate: f64,
    /// Every row that arrived, in commit order: when its INSERT returned
    /// (wall clock, to line up with a replicator's log) and its lag in ms.
    pub samples: Vec<(SystemTime, f64)>,
}

/// A committed row: its id, its `at` as text, and when its INSERT returned
/// (on the monotonic clock the lag is taken on, and on the wall clock).
struct Committed {
    id: String,
    at: String,
    when: Instant,
    wall: SystemTime,
}

#[derive(Default)]
struct Shared {
    committed: Vec<Committed>,
    writer_done: bool,
}

pub async fn run(sites: &Sites, system: System, scale: &Scale, rep: usize) -> anyhow::Result<Lag> {
    let db = system.db();
    let tag = rows::tag(system, rep, "lag", 0);
    let writer = sites.connect(0, db).await?;
    let insert = writer
        .prepare("INSERT INTO events (client, kind, payload) VALUES ($1, 'lag', $2::text::jsonb) RETURNING id::text, at::text")
        .await
        .context("preparing the lag insert")?;
    let poller = sites.connect(1, db).await?;
    let poll = poller
        .prepare("SELECT id::text FROM events WHERE client = $1 AND at > $2::text::timestamptz")
        .await
        .context("preparing the lag poll")?;
    let n = (u64::from(scale.lag_rate) * scale.lag_duration.as_secs()).max(1) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(scale.lag_rate.max(1)));
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(rep as u64);
    let payloads: Vec<String> = (0..n.min(1000)).map(|_| rows::payload(&mut rng)).collect();

    let write = {
        let shared = shared.clone();
        let tag = tag.clone();
        async move {
            let start = tokio::time::Instant::now();
            for i in 0..n {
                tokio::time::sleep_until(start + interval * i as u32).await;
                let payload = &payloads[i % payloads.len()];
                let row = writer.query_one(&insert, &[&tag, payload]).await.context("writing a lag row")?;
                let (when, wall) = (Instant::now(), SystemTime::now());
                lock(&shared).committed.push(Committed { id: row.get(0), at: row.get(1), when, wall });
            }
            lock(&shared).writer_done = true;
            Ok::<f64, anyhow::Error>(n as f64 / start.elapsed().as_secs_f64().max(1e-9))
        }
    };

    let watch = {
        let shared = shared.clone();
        async move {
            let mut seen: HashMap<String, Instant> = HashMap::with_capacity(n);
            let mut prefix = 0usize; // committed[..prefix] are all seen
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut deadline: Option<Instant> = None;
            loop {
                tick.tick().await;
                let (watermark, done) = {
                    let s = lock(&shared);
                    while prefix < s.committed.len() && seen.contains_key(&s.committed[prefix].id) {
                        prefix += 1;
                    }
                    let watermark = match prefix {
                        0 => "-infinity".to_string(),
                        p => s.committed[p - 1].at.clone(),
                    };
                    (watermark, s.writer_done && prefix == s.committed.len())
                };
                if done {
                    return Ok::<_, anyhow::Error>(seen);
                }
                if lock(&shared).writer_done {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + scale.deadline);
                    if Instant::now() >= d {
                        return Ok(seen);
                    }
                }
                let sent = Instant::now();
                for row in poller.query(&poll, &[&tag, &watermark]).await.context("polling site 1")? {
                    seen.entry(row.get(0)).or_insert(sent);
                }
            }
        }
    };

    // On an error the other side is dropped: the poller never waits for a
    // writer that failed.
    let (rate, seen) = tokio::try_join!(write, watch)?;
    let s = lock(&shared);
    let samples: Vec<(SystemTime, f64)> = s
        .committed
        .iter()
        .filter_map(|c| seen.get(&c.id).map(|v| (c.wall, v.saturating_duration_since(c.when).as_secs_f64() * 1000.0)))
        .collect();
    let mut lags: Vec<f64> = samples.iter().map(|(_, lag)| *lag).collect();
    lags.sort_by(f64::total_cmp);
    Ok(Lag {
        p50_ms: percentile(&lags, 50.0),
        p95_ms: percentile(&lags, 95.0),
        p99_ms: percentile(&lags, 99.0),
        max_ms: lags.last().copied().unwrap_or(f64::NAN),
        rows: s.committed.len(),
        arrived: lags.len(),
        rate,
        samples,
    })
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // Nothing can be left half-updated by a panic here: poisoning is ignored.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
