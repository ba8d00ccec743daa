//! The health watch of a PostgreSQL sync: connections of its own beside the
//! runs (whose connections sit in run transactions), to write the
//! replicator's heartbeat and to count what waits for each database.
//!
//! A database that is away never holds up the others: connections are
//! opened in the background (a link that drops packets takes the whole
//! connect timeout to fail), and every write or count has a deadline, after
//! which its connection is dropped and opened again later. So the heartbeat
//! goes on every interval through an outage, and the counts go on rising.

use super::connect::connect_as;
use super::record;
use super::status;
use crate::record::{Backlog, Replicator};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::Client;

/// How long the watch waits for one database's answer before counting it
/// down (and at most one heartbeat interval for a heartbeat).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How long a count of what waits may take: a huge backlog takes a while to
/// count, and the heartbeat does not wait for it (daemon/health.rs).
const COUNT_WITHIN: Duration = Duration::from_secs(30);

/// How long a heartbeat or a count waits for connections being opened: a
/// database that answers opens one well within this; one that takes longer
/// goes on connecting in the background and is used from a later tick.
const CONNECT_GRACE: Duration = Duration::from_millis(500);

/// One database's connection, or the attempt to open one.
struct Slot {
    id: DbId,
    client: Option<Client>,
    connecting: Option<JoinHandle<Option<Client>>>,
}

/// The watch's connections, one per database of the sync, opened again
/// whenever one broke.
pub struct Watch {
    config: Arc<Config>,
    sync: Sync,
    slots: Vec<Slot>,
}

impl Watch {
    pub fn new(config: Arc<Config>, sync: Sync) -> Watch {
        let slots = sync.databases().into_iter().map(|id| Slot { id, client: None, connecting: None }).collect();
        Watch { config, sync, slots }
    }

    /// Starts a connection attempt wherever there is no open connection,
    /// and takes in those that finished within [`CONNECT_GRACE`].
    async fn connect(&mut self) {
        let deadline = Instant::now() + CONNECT_GRACE;
        let config = &self.config;
        let attempts = self.slots.iter_mut().filter(|s| s.client.as_ref().is_none_or(Client::is_closed)).map(|slot| {
            if slot.connecting.is_none() {
                let (config, id) = (config.clone(), slot.id);
                slot.connecting = Some(tokio::spawn(async move {
                    let connect = connect_as(&config, id, "dugong replicate (watch)");
                    tokio::time::timeout(ANSWER_WITHIN, connect).await.ok().and_then(Result::ok)
                }));
            }
            async move {
                let Some(handle) = slot.connecting.as_mut() else { return };
                if let Ok(done) = tokio::time::timeout_at(deadline, handle).await {
                    slot.client = done.ok().flatten();
                    slot.connecting = None;
                }
            }
        });
        futures_util::future::join_all(attempts).await;
    }

    /// Writes the heartbeat on every database that answers; returns which did.
    pub async fn heartbeat(&mut self, who: &Replicator) -> Vec<(DbId, bool)> {
        self.connect().await;
        let sync = &self.sync.name;
        let within = ANSWER_WITHIN.min(who.heartbeat);
        let writes = self.slots.iter_mut().map(|slot| async move {
            let Some(client) = slot.client.as_ref() else { return (slot.id, false) };
            let write = record::heartbeat(client, sync, "active", who);
            match tokio::time::timeout(within, write).await {
                Ok(Ok(_)) => (slot.id, true),
                // An old schema (before the replicator's own install) answers
                // with an error: the database is up all the same.
                Ok(Err(e)) if e.as_db_error().is_some() => (slot.id, true),
                _ => {
                    slot.client = None;
                    (slot.id, false)
                }
            }
        });
        futures_util::future::join_all(writes).await
    }

    /// What each source that answers has waiting for each of its targets.
    pub async fn backlog(&mut self) -> Vec<(DbId, Option<Backlog>)> {
        self.connect().await;
        let sync = &self.sync;
        let counts = self.slots.iter_mut().filter(|s| sync.sources.contains(&s.id)).map(|slot| async move {
            let Some(client) = slot.client.as_ref() else { return (slot.id, None) };
            let count = async { status::backlog(client, slot.id, sync, None).await.ok().flatten() };
            match tokio::time::timeout(COUNT_WITHIN, count).await {
                Ok(backlog) => (slot.id, backlog),
                Err(_) => {
                    // No answer: the connection may hang on a cut link for
                    // minutes; a new one is opened in the background.
                    slot.client = None;
                    (slot.id, None)
                }
            }
        });
        futures_util::future::join_all(counts).await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(attempt) = &slot.connecting {
                attempt.abort();
            }
        }
    }
}
