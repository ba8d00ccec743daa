//! Watch, server side: one feed task per server reads the site's change feed
//! and broadcasts each new batch (with the records' current state) to every
//! watcher; a watcher that starts behind, or falls behind, reads the feed from
//! the database itself until it catches up. See `dugong_store::feed` for how
//! changes — including those the replicator applies from other sites — get
//! their positions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dugong_store::{ChangeRow, Kind, Position, Record, Resume, Store, StoreError};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// Most changes read from the database at once.
const READ_CHUNK: u32 = 1_000;
/// Batches kept for slow watchers before they must read from the database.
const BROADCAST_CAPACITY: usize = 256;
/// How often old changes are purged, at most.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A change as watchers receive it.
#[derive(Debug, Clone)]
pub struct FeedChange {
    pub pos: i64,
    pub kind: Kind,
    /// `None`: the whole kind changed at once (TRUNCATE): re-read it.
    pub key: Option<String>,
    /// The record now; `None` when it is gone.
    pub record: Option<Record>,
}

/// Changes in `(after, upto]`, in position order.
#[derive(Debug)]
pub struct Batch {
    pub after: i64,
    pub upto: i64,
    pub changes: Vec<FeedChange>,
}

/// The broadcast side, shared by handlers.
#[derive(Clone)]
pub struct Feed {
    store: Store,
    tx: broadcast::Sender<Arc<Batch>>,
}

impl Feed {
    pub fn new(store: Store) -> Feed {
        Feed { store, tx: broadcast::channel(BROADCAST_CAPACITY).0 }
    }

    /// The feed task: numbers new changes, reads and broadcasts everything
    /// after position `from`, and purges changes older than `retention`,
    /// until `stop`. Database errors are retried at the next tick.
    ///
    /// `from` must be read before the server takes its first call: a watcher
    /// that starts later finds the head at or past it, so every change it
    /// waits for is either in the database when it starts or broadcast after.
    pub async fn run(self, from: i64, poll: Duration, retention: Duration, stop: CancellationToken) {
        let mut last = from;
        let mut last_purge = tokio::time::Instant::now();
        let mut failing = false;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match self.step(&mut last).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("change feed readable again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "change feed unreadable; watchers wait");
                }
                Err(_) => {}
            }
            if last_purge.elapsed() >= PURGE_EVERY.min(retention) {
                last_purge = tokio::time::Instant::now();
                match self.store.purge_changes(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "purged old changes"),
                    Err(e) => tracing::debug!(error = %e, "purging old changes failed"),
                }
            }
        }
    }

    /// Numbers what committed, then broadcasts everything after `last`.
    async fn step(&self, last: &mut i64) -> Result<(), StoreError> {
        self.store.sequence_changes().await?;
        let head = self.store.feed_head().await?;
        let mut from = *last;
        while from < head.last {
            let rows = self.store.changes_after(from, READ_CHUNK).await?;
            let Some(upto) = rows.last().map(|r| r.pos) else { break };
            let changes = hydrate(&self.store, rows).await?;
            // No receiver is fine: nobody is watching.
            let _ = self.tx.send(Arc::new(Batch { after: from, upto, changes }));
            from = upto;
            *last = upto;
        }
        metrics::gauge!(m::FEED_POSITION).set(from as f64);
        Ok(())
    }

    /// Starts a watch at `requested` (or at the head when `None`). Returns the
    /// watcher and, when the position can't resume here, why.
    pub async fn watch(
        &self,
        requested: Option<Position>,
        kinds: Vec<Kind>,
    ) -> Result<(Watcher, Position, Option<String>), StoreError> {
        // Subscribe before reading the head, so no batch falls between them.
        let rx = self.tx.subscribe();
        let head = self.store.feed_head().await?;
        let (pos, reset) = match requested.map(|p| head.resume(&p)) {
            None => (head.last, None),
            Some(Resume::From(p)) => (p, None),
            Some(Resume::Reset(why)) => (head.last, Some(why)),
        };
        let watcher = Watcher {
            store: self.store.clone(),
            feed_id: head.feed_id.clone(),
            rx,
            pos,
            known: head.last,
            stash: None,
            kinds,
        };
        Ok((watcher, Position { feed_id: head.feed_id, pos }, reset))
    }
}

/// The current records of `rows`, one change per key (its latest position).
async fn hydrate(store: &Store, rows: Vec<ChangeRow>) -> Result<Vec<FeedChange>, StoreError> {
    let mut latest: BTreeMap<(Kind, Option<String>), i64> = BTreeMap::new();
    for row in rows {
        latest.insert((row.kind, row.key), row.pos);
    }
    let mut records: BTreeMap<(Kind, String), Record> = BTreeMap::new();
    for kind in Kind::ALL {
        let keys: Vec<String> =
            latest.keys().filter(|(k, key)| *k == kind && key.is_some()).filter_map(|(_, key)| key.clone()).collect();
        for record in store.get_many(kind, &keys).await? {
            records.insert((kind, record.key().to_string()), record);
        }
    }
    let mut changes: Vec<FeedChange> = latest
        .into_iter()
        .map(|((kind, key), pos)| {
            let record = key.as_ref().and_then(|k| records.remove(&(kind, k.clone())));
            FeedChange { pos, kind, key, record }
        })
        .collect();
    changes.sort_by_key(|c| c.pos);
    Ok(changes)
}

/// What a watcher learns next.
#[derive(Debug)]
pub enum Step {
    Changes(Vec<FeedChange>),
    /// The watcher can't follow on from where it was: re-read, then follow
    /// from `pos`.
    Reset {
        reason: String,
        pos: i64,
    },
}

/// One watch stream's view of the feed.
pub struct Watcher {
    store: Store,
    feed_id: String,
    rx: broadcast::Receiver<Arc<Batch>>,
    /// Everything up to here was delivered.
    pos: i64,
    /// Changes up to here are known to exist: read them from the database.
    known: i64,
    /// A batch that arrived while catching up, applied after.
    stash: Option<Arc<Batch>>,
    /// Only these kinds (all when empty).
    kinds: Vec<Kind>,
}

impl Watcher {
    /// This watcher's position, as clients write it.
    pub fn position(&self, pos: i64) -> Position {
        Position { feed_id: self.feed_id.clone(), pos }
    }

    /// Waits for what comes after the current position: changes (never an
    /// empty list), or a reset when changes the watcher still needed were
    /// purged meanwhile. `Err` when the database fails while catching up, or
    /// the feed stopped.
    pub async fn next(&mut self) -> Result<Step, StoreError> {
        loop {
            if self.pos < self.known {
                let rows = self.store.changes_after(self.pos, READ_CHUNK).await?;
                // Positions have no holes, so one missing at the start was purged.
                if rows.first().is_none_or(|r| r.pos > self.pos + 1) {
                    let head = self.store.feed_head().await?;
                    if head.purged_upto > self.pos {
                        self.pos = head.last;
                        self.known = head.last;
                        let reason = "changes this watch still needed were purged: re-read everything".into();
                        return Ok(Step::Reset { reason, pos: head.last });
                    }
                }
                let rows: Vec<ChangeRow> = rows.into_iter().filter(|r| r.pos <= self.known).collect();
                let Some(upto) = rows.last().map(|r| r.pos) else {
                    self.pos = self.known;
                    continue;
                };
                let changes = hydrate(&self.store, rows).await?;
                self.pos = upto;
                if let Some(out) = self.keep(changes) {
                    return Ok(Step::Changes(out));
                }
                continue;
            }
            let batch = match self.stash.take() {
                Some(b) => b,
                None => match self.rx.recv().await {
                    Ok(b) => b,
                    // Batches were dropped: the next one shows the gap, and the
                    // database fills it.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(StoreError::Unavailable("the change feed stopped".into()))
                    }
                },
            };
            if batch.upto <= self.pos {
                continue;
            }
            if batch.after > self.pos {
                self.known = batch.after;
                self.stash = Some(batch);
                continue;
            }
            let pos = self.pos;
            let changes: Vec<FeedChange> = batch.changes.iter().filter(|c| c.pos > pos).cloned().collect();
            self.pos = batch.upto;
            self.known = self.known.max(batch.upto);
            if let Some(out) = self.keep(changes) {
                return Ok(Step::Changes(out));
            }
        }
    }

    /// The changes of the watched kinds, or `None` when none are left.
    fn keep(&self, mut changes: Vec<FeedChange>) -> Option<Vec<FeedChange>> {
        if !self.kinds.is_empty() {
            changes.retain(|c| self.kinds.contains(&c.kind));
        }
        (!changes.is_empty()).then_some(changes)
    }
}
