//! The health watch of a PostgreSQL sync: connections of its own beside the
//! runs (whose connections sit in run transactions), to write the
//! replicator's heartbeat and to count what waits for each database.

use super::connect::connect_as;
use super::record;
use super::status;
use crate::record::{Backlog, Replicator};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// How long the watch waits for one database before counting it down.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The watch's connections, one per database of the sync, opened again
/// whenever one broke.
pub struct Watch {
    config: Arc<Config>,
    sync: Sync,
    clients: Vec<(DbId, Option<Client>)>,
}

impl Watch {
    pub fn new(config: Arc<Config>, sync: Sync) -> Watch {
        let clients = sync.databases().into_iter().map(|id| (id, None)).collect();
        Watch { config, sync, clients }
    }

    /// Connects where there is no connection, all at once.
    async fn connect(&mut self) {
        let config = &self.config;
        let attempts = self.clients.iter_mut().filter(|(_, c)| c.as_ref().is_none_or(|c| c.is_closed())).map(
            |(id, slot)| async move {
                let connect = connect_as(config, *id, "dugong replicate (watch)");
                *slot = tokio::time::timeout(ANSWER_WITHIN, connect).await.ok().and_then(Result::ok);
            },
        );
        futures_util::future::join_all(attempts).await;
    }

    /// Writes the heartbeat on every database that answers; returns which did.
    pub async fn heartbeat(&mut self, who: &Replicator) -> Vec<(DbId, bool)> {
        self.connect().await;
        let sync = &self.sync.name;
        let writes = self.clients.iter_mut().map(|(id, slot)| async move {
            let Some(client) = slot.as_ref() else { return (*id, false) };
            let write = record::heartbeat(client, sync, "active", who);
            match tokio::time::timeout(ANSWER_WITHIN, write).await {
                Ok(Ok(_)) => (*id, true),
                // An old schema (before the replicator's own install) answers
                // with an error: the database is up all the same.
                Ok(Err(e)) if e.as_db_error().is_some() => (*id, true),
                _ => {
                    *slot = None;
                    (*id, false)
                }
            }
        });
        futures_util::future::join_all(writes).await
    }

    /// What each source that answers has waiting for each of its targets.
    pub async fn backlog(&mut self) -> Vec<(DbId, Option<Backlog>)> {
        self.connect().await;
        let sync = &self.sync;
        let counts = self.clients.iter().filter(|(id, _)| sync.sources.contains(id)).map(|(id, slot)| async move {
            let Some(client) = slot.as_ref() else { return (*id, None) };
            let count = async {
                let commit_timestamps: bool =
                    client.query_one("SELECT current_setting('track_commit_timestamp')::bool", &[]).await.ok()?.get(0);
                status::backlog(client, *id, sync, commit_timestamps).await.ok().flatten()
            };
            (*id, count.await)
        });
        futures_util::future::join_all(counts).await
    }
}
