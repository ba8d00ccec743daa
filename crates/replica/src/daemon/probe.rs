//! Watching for databases a sync runs without: a task tries each missing
//! database with a growing backoff and notes the first that answers, so the
//! sync prepares again with it — checking its capture and schema as at
//! start — while the others keep replicating meanwhile.

use crate::engine::Engine;
use crate::error::Backoff;
use dugong_config::Config;
use dugong_core::DbId;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The probe of a prepared sync's missing databases; stops when dropped.
pub(super) struct Probe {
    returned: Arc<Mutex<Option<DbId>>>,
    task: Option<JoinHandle<()>>,
}

impl Probe {
    /// Starts probing `missing` (nothing when it is empty).
    pub(super) fn start<E: Engine>(config: Arc<Config>, missing: Vec<DbId>, min: Duration, max: Duration) -> Probe {
        let returned = Arc::new(Mutex::new(None));
        if missing.is_empty() {
            return Probe { returned, task: None };
        }
        let found = returned.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Backoff::new(min, max);
            loop {
                tokio::time::sleep(backoff.next_delay()).await;
                for db in &missing {
                    if E::probe(&config, *db).await {
                        *found.lock().unwrap_or_else(|e| e.into_inner()) = Some(*db);
                        return;
                    }
                }
            }
        });
        Probe { returned, task: Some(task) }
    }

    /// A missing database that answers now, if one does.
    pub(super) fn returned(&self) -> Option<DbId> {
        *self.returned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
