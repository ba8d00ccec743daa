//! The SQLite engine: replication between SQLite files (`"url": "sqlite:PATH"`)
//! with the promises of the PostgreSQL engine — capture by triggers, no echo,
//! per-row conflicts decided by the shared [`crate::resolve`], cursors advanced
//! only after every file committed, status and compare through the shared
//! renderers.
//!
//! - `open`: opening a file, with errors that name it and the problem.
//! - `capture`: Dugong's `dugong_*` tables, row triggers, `--uninstall`.
//! - `catalog`: the file's tables as the shared catalog rows; the sync's tables
//!   chosen on its first file and checked on the others.
//! - `lease`: one replicator per sync.
//! - `run`: one run; `copy`: the initial copy; `state`: the run state status reads.
//! - `status`, `compare`: what `dugong status` and `dugong compare` read.
//! - `value`: keys that hash, values as text, the encoding compare hashes.
//!
//! rusqlite is blocking: the daemon drives a prepared sync through
//! [`SqliteSync`], which runs each step on the blocking thread pool.

mod capture;
pub mod catalog;
pub mod compare;
pub mod copy;
pub mod lease;
pub mod open;
pub mod run;
mod state;
pub mod status;
pub mod value;

pub use capture::{delta_name, install_schema, uninstall};

/// How many change rows a SQLite run ships per source by default: a run holds
/// every file's write lock, which the application's writes wait for (about
/// 140 ms for 20,000 rows here, 370 ms for 50,000), and bigger batches gain
/// SQLite nothing.
pub const DEFAULT_BATCH_ROWS: usize = 20_000;

use crate::catalog::{self as shared_catalog, Excluded, TableInfo};
use crate::error::{ReplicaError, StatementContext};
use crate::resolve::DbOrder;
use crate::run::{RunLimits, RunOutcome};
use crate::state::Replicator;
use dugong_config::{Config, Location, Sync};
use dugong_core::{DbId, SyncName, TableName};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One file of a prepared sync.
pub struct Node {
    pub id: DbId,
    pub path: PathBuf,
    pub conn: Connection,
    /// Sources capture changes; targets only receive.
    pub source: bool,
    /// The capture id (`dugong_delta_<id>`) of each of the sync's tables (sources only).
    pub captures: HashMap<TableName, i64>,
    /// The sequence number up to which this sync shipped this file's changes.
    pub cursor: i64,
}

/// A SQLite sync ready to run.
pub struct Prepared {
    pub sync: Sync,
    pub tables: Vec<TableInfo>,
    pub excluded: Vec<Excluded>,
    pub nodes: Vec<Node>,
    pub order: DbOrder,
    pub who: Replicator,
    /// This replicator's tag in the lease rows.
    pub owner: String,
}

/// The file of database `id`, when it is a SQLite database.
pub fn path_of(config: &Config, id: DbId) -> Result<&Path, ReplicaError> {
    match config.database(id).map(|d| &d.location) {
        Some(Location::Sqlite(path)) => Ok(path),
        Some(Location::Postgres(_)) => Err(ReplicaError::Config(format!("{id} is a PostgreSQL database, not SQLite"))),
        None => Err(ReplicaError::Config(format!("database id {} is not defined", id.0))),
    }
}

/// Opens, checks and installs everything a sync needs on its files. Blocking.
pub fn prepare(config: &Config, sync: &Sync, who: &Replicator) -> Result<Prepared, ReplicaError> {
    let ids = sync.databases();
    let owner = lease::owner_tag(who);
    let mut opened = Vec::with_capacity(ids.len());
    for id in &ids {
        let path = path_of(config, *id)?.to_path_buf();
        let mut conn = open::open(*id, &path)?;
        install_schema(&mut conn, *id)?;
        opened.push((*id, path, conn));
    }
    for (id, _, conn) in &opened {
        lease::claim(conn, *id, &sync.name, who, &owner)?;
    }
    let selection = catalog::select_and_check(opened.iter().map(|(id, _, conn)| (*id, conn)), sync)?;
    selection.require_same()?;
    let catalog::Selection { tables, excluded, .. } = selection;
    let configured: Vec<&str> = config.syncs.iter().map(|s| s.name.as_str()).collect();
    let mut nodes = Vec::with_capacity(opened.len());
    for (id, path, mut conn) in opened {
        let source = sync.sources.contains(&id);
        let (capture_tables, cursor_syncs) =
            if source { (&tables[..], vec![sync.name.clone()]) } else { (&[][..], vec![]) };
        let captures = capture::install(&mut conn, id, capture_tables, &cursor_syncs)?;
        let cursor = if source { read_cursor(&conn, id, &sync.name)? } else { 0 };
        state::ensure_row(&conn, id, &sync.name)?;
        if source {
            for stale in forget_stale_cursors(&conn, id, &configured)? {
                tracing::warn!(db = %id, removed_sync = %stale, "removed the cursor of a sync that is no longer configured, so it cannot block purging");
            }
        }
        nodes.push(Node { id, path, conn, source, captures, cursor });
    }
    let order = DbOrder::new(config.databases.iter().map(|d| d.id).collect());
    Ok(Prepared { sync: sync.clone(), tables, excluded, nodes, order, who: who.clone(), owner })
}

fn read_cursor(conn: &Connection, id: DbId, sync: &SyncName) -> Result<i64, ReplicaError> {
    conn.query_row("SELECT seq FROM dugong_cursor WHERE sync = ?1", [sync.as_str()], |r| r.get(0))
        .on_db(id, || format!("reading the cursor of {sync}"))
}

/// Removes cursors of syncs that are no longer configured, so they never keep
/// change rows from being purged.
fn forget_stale_cursors(conn: &Connection, id: DbId, configured: &[&str]) -> Result<Vec<String>, ReplicaError> {
    let ctx = || "removing cursors of removed syncs".to_string();
    let all: Vec<String> = {
        let mut stmt = conn.prepare("SELECT sync FROM dugong_cursor").on_db(id, ctx)?;
        let rows = stmt.query_map([], |r| r.get(0)).on_db(id, ctx)?;
        rows.collect::<Result<_, _>>().on_db(id, ctx)?
    };
    let stale: Vec<String> = all.into_iter().filter(|s| !configured.contains(&s.as_str())).collect();
    for s in &stale {
        conn.execute("DELETE FROM dugong_cursor WHERE sync = ?1", [s]).on_db(id, ctx)?;
    }
    Ok(stale)
}

/// Checks that the sync's tables still look as they did when it was prepared.
pub fn check_unchanged(p: &Prepared) -> Result<(), ReplicaError> {
    let now = catalog::select_and_check(p.nodes.iter().map(|n| (n.id, &n.conn)), &p.sync)?;
    if now.tables != p.tables || now.excluded != p.excluded {
        return Err(shared_catalog::schema_changed(&p.tables, &now.tables, p.nodes[0].id));
    }
    now.require_same()
}

/// Records a failed preparation on every file of the sync that can be opened
/// and has Dugong's tables. Blocking; never fails.
pub fn record_bad_unprepared(config: &Config, sync: &Sync, who: &Replicator, started: SystemTime, error: &str) {
    let mut conns = Vec::new();
    for id in sync.databases() {
        let Ok(path) = path_of(config, id) else { continue };
        let Ok(conn) = open::open(id, path) else { continue };
        let installed = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'dugong_sync_state')", [], |r| {
                r.get::<_, bool>(0)
            })
            .unwrap_or(false);
        if installed {
            conns.push((id, conn));
        }
    }
    let refs: Vec<(DbId, &Connection)> = conns.iter().map(|(id, c)| (*id, c)).collect();
    state::record_bad(&refs, &sync.name, who, started, error);
}

/// A prepared SQLite sync as the async daemon drives it: every step runs on the
/// blocking thread pool, one at a time.
#[derive(Clone)]
pub struct SqliteSync {
    inner: Arc<Mutex<Prepared>>,
    /// Copied out for the daemon's logs and metrics.
    pub name: SyncName,
    pub excluded: Vec<Excluded>,
    pub tables: usize,
    pub db_ids: Vec<DbId>,
}

impl SqliteSync {
    /// Prepares `sync` on the blocking pool.
    pub async fn prepare(config: Arc<Config>, sync: Sync, who: Replicator) -> Result<SqliteSync, ReplicaError> {
        let p = blocking(move || prepare(&config, &sync, &who)).await?;
        Ok(SqliteSync {
            name: p.sync.name.clone(),
            excluded: p.excluded.clone(),
            tables: p.tables.len(),
            db_ids: p.nodes.iter().map(|n| n.id).collect(),
            inner: Arc::new(Mutex::new(p)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Prepared) -> Result<T, ReplicaError> + Send + 'static,
    ) -> Result<T, ReplicaError> {
        let inner = self.inner.clone();
        blocking(move || {
            // A panic in an earlier step leaves the connections usable.
            let mut p = inner.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut p)
        })
        .await
    }

    pub async fn run_once(&self, limits: RunLimits) -> Result<RunOutcome, ReplicaError> {
        self.with(move |p| run::run_once(p, limits)).await
    }

    /// The initial copy (`onetimecopy`), when configured.
    pub async fn initial_copy(&self) -> Result<(), ReplicaError> {
        self.with(|p| copy::initial_copy(p)).await
    }

    pub async fn check_unchanged(&self) -> Result<(), ReplicaError> {
        self.with(|p| check_unchanged(p)).await
    }

    pub async fn record_idle(&self) -> Result<(), ReplicaError> {
        self.with(|p| state::record_idle(p)).await
    }

    pub async fn record_bad(&self, started: SystemTime, error: String) {
        let _ = self
            .with(move |p| {
                run::rollback_all(p);
                let conns: Vec<(DbId, &Connection)> = p.nodes.iter().map(|n| (n.id, &n.conn)).collect();
                state::record_bad(&conns, &p.sync.name, &p.who, started, &error);
                Ok(())
            })
            .await;
    }

    pub async fn record_stopped(&self) {
        let _ = self
            .with(|p| {
                state::record_stopped(p);
                Ok(())
            })
            .await;
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
