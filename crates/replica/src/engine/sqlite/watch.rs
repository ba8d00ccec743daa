//! The health watch of a SQLite sync: the replicator's heartbeat and what
//! waits for each file, on connections of its own beside the runs.

use super::capture::NOW_US;
use super::node::blocking;
use super::{open, path_of, status};
use crate::record::{micros, Backlog, Replicator};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Each file's connection, when it is open.
type Connections = Vec<(DbId, Option<rusqlite::Connection>)>;

/// The watch's connections, one per file, opened again when one failed.
pub struct Watch {
    config: Arc<Config>,
    sync: Sync,
    conns: Arc<Mutex<Connections>>,
}

impl Watch {
    pub fn new(config: Arc<Config>, sync: Sync) -> Watch {
        let conns = sync.databases().into_iter().map(|id| (id, None)).collect();
        Watch { config, sync, conns: Arc::new(Mutex::new(conns)) }
    }

    /// Runs `f` over each file's connection (opened if needed) on the
    /// blocking pool; a failure closes that connection.
    async fn each<T: Send + 'static>(
        &self,
        f: impl Fn(DbId, &rusqlite::Connection, &Sync) -> Result<T, String> + Send + 'static,
    ) -> Vec<(DbId, Option<T>)> {
        let (config, sync, conns) = (self.config.clone(), self.sync.clone(), self.conns.clone());
        blocking(move || {
            let mut conns = conns.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::with_capacity(conns.len());
            for (id, slot) in conns.iter_mut() {
                if slot.is_none() {
                    *slot = path_of(&config, *id).and_then(|p| open::open(*id, p)).ok();
                }
                let result = slot.as_ref().and_then(|c| f(*id, c, &sync).ok());
                if result.is_none() {
                    *slot = None;
                }
                out.push((*id, result));
            }
            Ok(out)
        })
        .await
        .unwrap_or_default()
    }

    /// Writes the heartbeat on every file that can be written; returns which.
    pub async fn heartbeat(&mut self, who: &Replicator) -> Vec<(DbId, bool)> {
        let who = who.clone();
        let written = self
            .each(move |_, conn, sync| {
                conn.execute(
                    &format!(
                        "UPDATE dugong_sync_state SET heartbeat = {NOW_US}, replicator_pid = ?2, replicator_host = ?3,
                            heartbeat_interval_ms = ?4
                         WHERE sync = ?1"
                    ),
                    rusqlite::params![sync.name.as_str(), who.pid, who.host, who.heartbeat.as_millis() as i64],
                )
                .map_err(|e| e.to_string())
            })
            .await;
        written.into_iter().map(|(id, r)| (id, r.is_some())).collect()
    }

    /// What each source file has waiting for each of its targets.
    pub async fn backlog(&mut self) -> Vec<(DbId, Option<Backlog>)> {
        let counts = self
            .each(|id, conn, sync| {
                if !sync.sources.contains(&id) {
                    return Ok(None);
                }
                status::backlog(conn, id, sync, micros(SystemTime::now()))
            })
            .await;
        counts.into_iter().filter(|(id, _)| self.sync.sources.contains(id)).map(|(id, w)| (id, w.flatten())).collect()
    }
}
