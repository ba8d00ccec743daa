//! The health watch of a sync, for as long as the replicator runs it or tries
//! to. Two loops, each on connections of its own beside the runs, so a long
//! run or a backoff never silences them and neither holds up the other:
//!
//! - every heartbeat interval the beat writes the replicator's heartbeat to
//!   every database that answers;
//! - the count, as often as its cost allows, counts what waits for each
//!   database — the `dugong_replica_pending_rows` and
//!   `dugong_replica_lag_seconds` gauges, which rise through an outage (the
//!   lag every interval, between counts too) and are 0 only when nothing
//!   waits — and what each source's change logs keep for them
//!   (`dugong_replica_change_log_rows` and `_bytes`, beside the sync's
//!   `backlog_alert`).

use crate::engine::Engine;
use crate::metrics as m;
use crate::record::{epoch_seconds, Replicator, Waiting};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Counting what waits costs a scan of each change log's pending part: after
/// a count that took `t`, the next waits at least this many times `t`, so a
/// huge backlog is counted less often instead of loading its source.
const COUNT_SPACING: u32 = 20;

/// How long [`Health::stop`] lets a heartbeat write in progress finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long after the sync becomes active the loops start (at most a
/// heartbeat interval): their connections and first statements then go beside
/// the runs, not in the way of the first one, which ships what waited while
/// no replicator ran — across a WAN, every round trip before it counts.
const SETTLE: Duration = Duration::from_millis(500);

/// The running watch; stops when dropped.
pub(super) struct Health {
    /// Whether this replicator runs the sync; the loops wake when it changes.
    active: watch::Sender<bool>,
    /// The same, for whoever else must know (the consistency check).
    shared: Arc<AtomicBool>,
    /// Ends the loops between two heartbeats (or counts).
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Health {
    /// Starts the watch; `shared` is kept up to date for whoever must know
    /// whether this replicator runs the sync (the consistency check).
    pub(super) fn start<E: Engine>(
        config: Arc<Config>,
        sync: Sync,
        who: Replicator,
        shared: Arc<AtomicBool>,
    ) -> Health {
        let (active, seen) = watch::channel(shared.load(Ordering::Relaxed));
        let stop = CancellationToken::new();
        let loops = Loop { sync: sync.clone(), stop: stop.clone() };
        let task = tokio::spawn(async move {
            let beat = beat::<E>(E::watch(&config, &sync), &loops, &who, seen.clone());
            let count = count::<E>(E::watch(&config, &sync), &loops, &who, seen);
            tokio::join!(beat, count);
        });
        Health { active, shared, stop, task }
    }

    /// Stops the watch and waits until it has: nothing it writes can follow.
    /// A heartbeat being written is let finish rather than dropped halfway:
    /// a statement already sent would still commit on the server, after the
    /// state that says the replicator stopped.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }

    /// Whether this replicator runs the sync (and so writes its heartbeat) or
    /// stands by for another.
    pub(super) fn set_active(&self, active: bool) {
        self.shared.store(active, Ordering::Relaxed);
        self.active.send_if_modified(|now| std::mem::replace(now, active) != active);
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What both loops share: the sync, and the token that ends them.
struct Loop {
    sync: Sync,
    stop: CancellationToken,
}

/// What woke a loop.
enum Wake {
    Tick,
    /// This replicator became active, or stood by.
    Changed {
        active: bool,
    },
    Stop,
}

/// Waits for the next tick, a change of role, or the end. On becoming
/// active, waits [`SETTLE`] (or a heartbeat interval, if shorter) more.
async fn next(
    tick: &mut tokio::time::Interval,
    active: &mut watch::Receiver<bool>,
    stop: &CancellationToken,
    every: Duration,
) -> Wake {
    let wake = tokio::select! {
        _ = tick.tick() => Wake::Tick,
        Ok(()) = active.changed() => Wake::Changed { active: *active.borrow_and_update() },
        _ = stop.cancelled() => Wake::Stop,
    };
    if let Wake::Changed { active: true } = wake {
        tokio::select! {
            _ = tokio::time::sleep(SETTLE.min(every)) => {}
            _ = stop.cancelled() => return Wake::Stop,
        }
    }
    wake
}

fn interval(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Writes the heartbeat every interval while active.
async fn beat<E: Engine>(mut watch: E::Watch, l: &Loop, who: &Replicator, mut active: watch::Receiver<bool>) {
    let name = l.sync.name.to_string();
    let mut tick = interval(who.heartbeat);
    loop {
        if let Wake::Stop = next(&mut tick, &mut active, &l.stop, who.heartbeat).await {
            return;
        }
        let is_active = *active.borrow();
        metrics::gauge!(m::ACTIVE, "sync" => name.clone()).set(if is_active { 1.0 } else { 0.0 });
        if !is_active {
            continue;
        }
        for (db, up) in E::heartbeat(&mut watch, who).await {
            let up = if up { 1.0 } else { 0.0 };
            metrics::gauge!(m::DATABASE_UP, "sync" => name.clone(), "db" => db.to_string()).set(up);
        }
        metrics::gauge!(m::HEARTBEAT_SECONDS, "sync" => name.clone()).set(epoch_seconds(SystemTime::now()));
    }
}

/// What a count found waiting for one database.
struct Counted {
    rows: i64,
    /// The age of the oldest change waiting, at the count.
    lag: Duration,
    at: Instant,
}

/// Counts what waits while active, spaced by what counting costs; between
/// counts the lag of what still waits goes on rising with the clock.
async fn count<E: Engine>(mut watch: E::Watch, l: &Loop, who: &Replicator, mut active: watch::Receiver<bool>) {
    let sync = &l.sync;
    let name = sync.name.to_string();
    let mut tick = interval(who.heartbeat);
    let mut next_count = Instant::now();
    let mut waiting_since: HashMap<DbId, Instant> = HashMap::new();
    let mut counted: HashMap<DbId, Counted> = HashMap::new();
    loop {
        match next(&mut tick, &mut active, &l.stop, who.heartbeat).await {
            Wake::Stop => return,
            Wake::Changed { active: true } => next_count = Instant::now(),
            Wake::Changed { active: false } | Wake::Tick => {}
        }
        if !*active.borrow() {
            continue;
        }
        if Instant::now() < next_count {
            for (db, c) in counted.iter().filter(|(_, c)| c.rows > 0) {
                let labels = [("sync", name.clone()), ("db", db.to_string())];
                metrics::gauge!(m::LAG_SECONDS, &labels).set((c.lag + c.at.elapsed()).as_secs_f64());
            }
            continue;
        }
        let clock = Instant::now();
        let backlog = E::backlog(&mut watch).await;
        // A count where a source did not answer measured the wait for it,
        // not what counting costs: the next one comes at the next tick.
        let all_answered = backlog.iter().all(|(_, b)| b.is_some());
        next_count = if all_answered { Instant::now() + clock.elapsed() * COUNT_SPACING } else { Instant::now() };
        metrics::gauge!(m::BACKLOG_ALERT_BYTES, "sync" => name.clone()).set(sync.backlog_alert as f64);
        for (db, b) in &backlog {
            let labels = [("sync", name.clone()), ("db", db.to_string())];
            let (rows, bytes) = b.as_ref().map_or((f64::NAN, f64::NAN), |b| (b.rows() as f64, b.bytes as f64));
            metrics::gauge!(m::CHANGE_LOG_ROWS, &labels).set(rows);
            metrics::gauge!(m::CHANGE_LOG_BYTES, &labels).set(bytes);
        }
        let waiting: Vec<(DbId, Option<Vec<Waiting>>)> =
            backlog.into_iter().map(|(db, b)| (db, b.map(|b| b.waiting))).collect();
        for (db, w) in per_target(sync, &waiting) {
            let labels = [("sync", name.clone()), ("db", db.to_string())];
            let Some(w) = w else {
                // What waits for it is unknown (a source that feeds it does
                // not answer): no number rather than a stale one.
                metrics::gauge!(m::PENDING_ROWS, &labels).set(f64::NAN);
                metrics::gauge!(m::LAG_SECONDS, &labels).set(f64::NAN);
                counted.remove(&db);
                continue;
            };
            metrics::gauge!(m::PENDING_ROWS, &labels).set(w.rows as f64);
            let since = if w.rows > 0 { *waiting_since.entry(db).or_insert(clock) } else { clock };
            if w.rows == 0 {
                waiting_since.remove(&db);
            }
            // Without commit timestamps, the time since changes were first
            // seen waiting: a lower bound that rises every second all the same.
            let lag = match w.oldest_age_us {
                Some(us) => Duration::from_micros(us.max(0) as u64),
                None => since.elapsed(),
            };
            metrics::gauge!(m::LAG_SECONDS, &labels).set(lag.as_secs_f64());
            counted.insert(db, Counted { rows: w.rows, lag, at: Instant::now() });
        }
    }
}

/// What waits for each database of the sync, summed over the sources that
/// feed it; `None` when one of them could not say.
fn per_target(sync: &Sync, waiting: &[(DbId, Option<Vec<Waiting>>)]) -> Vec<(DbId, Option<Waiting>)> {
    sync.databases()
        .into_iter()
        .map(|target| {
            let mut total = Waiting { target, rows: 0, oldest_age_us: Some(0) };
            for (source, w) in waiting.iter().filter(|(s, _)| *s != target) {
                let Some(w) = w.as_ref().and_then(|w| w.iter().find(|w| w.target == target)) else {
                    // A source with no position for it: not one of its targets.
                    if w.is_none() && sync.sources.contains(source) {
                        return (target, None);
                    }
                    continue;
                };
                total.rows += w.rows;
                total.oldest_age_us = match (total.oldest_age_us, w.oldest_age_us) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            (target, Some(total))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sync() -> Sync {
        let json = r#"{"databases": [{"id": 0, "url": "sqlite:/a"}, {"id": 1, "url": "sqlite:/b"}, {"id": 2, "url": "sqlite:/c"}],
                       "syncs": [{"sources": [0, 1, 2], "targets": [], "tables": "all", "onetimecopy": 0}]}"#;
        Config::from_str(json, Path::new("t.json")).unwrap().syncs[0].clone()
    }

    fn w(target: u32, rows: i64, age: Option<i64>) -> Waiting {
        Waiting { target: DbId(target), rows, oldest_age_us: age }
    }

    #[test]
    fn what_waits_for_a_database_sums_its_sources_and_is_unknown_when_one_cannot_say() {
        let waiting = vec![
            (DbId(0), Some(vec![w(1, 5, Some(10)), w(2, 7, Some(30))])),
            (DbId(1), Some(vec![w(0, 0, Some(0)), w(2, 1, Some(50))])),
            (DbId(2), None),
        ];
        let t = per_target(&sync(), &waiting);
        assert_eq!(t[0].1, None, "db2 feeds db0 and cannot say");
        assert_eq!(t[1].1, None, "db2 feeds db1 too");
        assert_eq!(t[2].1, Some(w(2, 8, Some(50))), "db2, down, has 8 rows waiting, the oldest 50 µs old");
    }
}
