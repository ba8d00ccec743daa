//! One doorbell per database for every sync of this process that reads it.
//!
//! Each sync used to open its own: with many syncs on one source, as many
//! wal senders and slots (the server's defaults allow ten), each decoding the
//! same WAL, and `dugong_replica_doorbell{db}` said whatever the last of them
//! set. Now the syncs subscribe: the bell rings every subscriber, rests only
//! while every one of them asks it to, and stops with the last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use dugong_config::{Config, Location};
use dugong_core::DbId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{BellState, Doorbell};

/// The bells of this process, by the database they listen to.
fn bells() -> MutexGuard<'static, HashMap<String, Weak<Shared>>> {
    static BELLS: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
    BELLS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// A bell and the syncs it rings for.
struct Shared {
    key: String,
    /// Taken by the last subscriber to leave, which stops it.
    bell: Mutex<Option<Doorbell>>,
    listeners: Arc<Mutex<Vec<Listener>>>,
}

/// A sync listening: its wake-up, and whether it asks the bell to rest.
struct Listener {
    id: u64,
    ring: Arc<Notify>,
    resting: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Rests the bell when every sync listening asks it to, wakes it otherwise.
    fn rest_if_all(&self) {
        let all = {
            let listeners = lock(&self.listeners);
            !listeners.is_empty() && listeners.iter().all(|l| l.resting)
        };
        if let Some(bell) = lock(&self.bell).as_ref() {
            bell.rest(all);
        }
    }
}

/// A sync's share of a database's doorbell: what the daemon holds as its
/// [`crate::engine::Bell`].
pub struct Subscription {
    shared: Option<Arc<Shared>>,
    db: DbId,
    id: u64,
}

/// Subscribes `ring` to the doorbell of database `db` of `config`, starting
/// the bell when no sync of this process listens to that database yet.
pub fn subscribe(config: &Arc<Config>, db: DbId, ring: &Arc<Notify>) -> Subscription {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The same server, database and role is the same bell, whichever config
    // and id name it.
    let key = match config.database(db).map(|d| &d.location) {
        Some(Location::Postgres(target)) => target.display.clone(),
        _ => format!("database id {} of {}", db.0, config.path.display()),
    };
    let shared = {
        let mut bells = bells();
        match bells.get(&key).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let listeners: Arc<Mutex<Vec<Listener>>> = Arc::default();
                let fan_out = listeners.clone();
                let ring = Arc::new(move || lock(&fan_out).iter().for_each(|l| l.ring.notify_one()));
                let bell = Doorbell::ringing_with(config.clone(), db, ring, CancellationToken::new(), super::SETTLE);
                let shared = Arc::new(Shared { key: key.clone(), bell: Mutex::new(Some(bell)), listeners });
                bells.insert(key, Arc::downgrade(&shared));
                shared
            }
        }
    };
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(&shared.listeners).push(Listener { id, ring: ring.clone(), resting: false });
    // Awake for the newcomer.
    shared.rest_if_all();
    Subscription { shared: Some(shared), db, id }
}

impl Subscription {
    /// Whether the bell rings now.
    pub fn state(&self) -> BellState {
        self.shared
            .as_ref()
            .and_then(|s| lock(&s.bell).as_ref().map(Doorbell::state))
            .unwrap_or_else(|| BellState::Off("stopped".into()))
    }

    /// Asks the bell to rest for this sync, or to ring again: it rests while
    /// every sync listening asks it to.
    pub fn rest(&self, resting: bool) {
        let Some(shared) = &self.shared else { return };
        if let Some(l) = lock(&shared.listeners).iter_mut().find(|l| l.id == self.id) {
            l.resting = resting;
        }
        shared.rest_if_all();
    }

    /// Lets the bell connect now, if it still settles ([`Doorbell::settled`]).
    pub fn settled(&self) {
        let Some(shared) = &self.shared else { return };
        if let Some(bell) = lock(&shared.bell).as_ref() {
            bell.settled();
        }
    }

    /// The database it listens to.
    pub fn db(&self) -> DbId {
        self.db
    }

    /// Stops listening; the last sync to leave stops the bell and waits until
    /// its connection has ended (and with it the temporary slot).
    pub async fn stop(mut self) {
        if let Some(bell) = self.leave() {
            bell.stop().await;
        }
    }

    /// Stops listening, and returns the bell when this was the last sync.
    fn leave(&mut self) -> Option<Doorbell> {
        let shared = self.shared.take()?;
        lock(&shared.listeners).retain(|l| l.id != self.id);
        let mut bells = bells();
        // Subscribing takes the same lock: nobody joins meanwhile.
        if Arc::strong_count(&shared) > 1 {
            drop(bells);
            shared.rest_if_all();
            return None;
        }
        if bells.get(&shared.key).is_some_and(|w| w.ptr_eq(&Arc::downgrade(&shared))) {
            bells.remove(&shared.key);
        }
        drop(bells);
        let bell = lock(&shared.bell).take();
        bell
    }
}

impl crate::engine::Bell for Subscription {
    fn ringing(&self) -> bool {
        self.state() == BellState::Ringing
    }

    fn rest(&self, resting: bool) {
        Subscription::rest(self, resting);
    }

    fn settled(&self) {
        Subscription::settled(self);
    }

    fn stop(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(Subscription::stop(*self))
    }
}

impl Drop for Subscription {
    /// Leaves without waiting: a bell left without listeners is cancelled.
    fn drop(&mut self) {
        drop(self.leave());
    }
}
