//! The SQLite engine's state: an open file and what the replicator knows per
//! database of a sync, and the window each source is read in during a run.
//!
//! rusqlite is blocking: the engine keeps its files behind a mutex and runs
//! every step on the blocking thread pool, one at a time.

use crate::error::ReplicaError;
use dugong_core::{DbId, TableName};
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// A sync's SQLite files, ready to run.
pub struct Sqlite {
    files: Arc<Mutex<Files>>,
    ids: Vec<DbId>,
}

impl Sqlite {
    pub(crate) fn new(files: Files) -> Sqlite {
        let ids = files.nodes.iter().map(|n| n.id).collect();
        Sqlite { files: Arc::new(Mutex::new(files)), ids }
    }

    /// The files, for a caller on a blocking thread (tests set busy handlers
    /// on them). A panic in an earlier step leaves the connections usable.
    pub fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn ids(&self) -> &[DbId] {
        &self.ids
    }

    /// Runs `f` on the files, on the blocking thread pool.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Files) -> Result<T, ReplicaError> + Send + 'static,
    ) -> Result<T, ReplicaError> {
        let files = self.files.clone();
        blocking(move || {
            let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut files)
        })
        .await
    }
}

/// The files of a sync and the run in progress.
pub struct Files {
    pub nodes: Vec<Node>,
    /// This replicator's tag in the lease rows.
    pub owner: String,
    /// The sources' windows of the run in progress (empty between runs).
    pub(crate) windows: Vec<Window>,
}

impl Files {
    pub(crate) fn node(&self, id: DbId) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("every database of a run is a node")
    }

    pub(crate) fn window(&self, id: DbId) -> &Window {
        self.windows.iter().find(|w| w.db == id).expect("every source was read")
    }
}

/// One file of a prepared sync.
pub struct Node {
    pub id: DbId,
    pub path: PathBuf,
    pub conn: Connection,
    /// Sources capture changes; targets only receive.
    pub source: bool,
    /// The capture id (`dugong_delta_<id>`) of each of the sync's tables (sources only).
    pub captures: HashMap<TableName, i64>,
    /// Capture ids of its held tables: not shipped while held, never purged.
    pub held: HashMap<TableName, i64>,
    /// Replicated tables whose hold was lifted: the next run ships their
    /// change logs whole, then lifts it.
    pub sweep: Vec<TableName>,
    /// The sequence number up to which this sync delivered this file's
    /// changes to each other file of the sync (sources only).
    pub positions: BTreeMap<DbId, i64>,
    /// Where a run starts reading: what every target has (sources only).
    pub cursor: i64,
    /// The file's `PRAGMA schema_version` once prepared: every run checks it
    /// under the file's write lock, so a column added since never ships with
    /// the old column list.
    pub schema_version: i64,
}

impl Node {
    /// Where a run starts reading: the position of the target furthest behind.
    pub(crate) fn window_start(&self) -> i64 {
        self.positions.values().copied().min().unwrap_or(0)
    }

    /// The targets' positions differ.
    pub(crate) fn uneven(&self) -> bool {
        let mut values = self.positions.values();
        values.next().is_some_and(|first| values.any(|p| p != first))
    }
}

/// The changes a source ships in a run: sequence numbers after `from`, up to
/// and including `to`; the tables in `sweep` whole (from 0).
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub db: DbId,
    pub from: i64,
    pub to: i64,
    pub sweep: Vec<TableName>,
}

impl Window {
    /// The sequence numbers `table` is read between.
    pub fn range(&self, table: &TableName) -> (i64, i64) {
        if self.sweep.contains(table) {
            (0, self.to)
        } else {
            (self.from, self.to)
        }
    }
}

/// Runs blocking SQLite work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReplicaError> + Send + 'static,
) -> Result<T, ReplicaError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ReplicaError::Config(format!("a SQLite task failed: {e}"))))
}
