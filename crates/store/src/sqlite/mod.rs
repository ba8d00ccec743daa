//! The store in an embedded SQLite file (rusqlite, SQLite compiled in).
//!
//! A few connections in WAL mode, each used by one blocking task at a time;
//! SQLite lets one writer in at a time and readers alongside. Same tables as
//! on PostgreSQL, with site-local state in tables named `dugong_local_*`.
//!
//! - `records`, `events`, `feed`, `migrate`, `replication`: as for PostgreSQL.

mod audit;
mod browse;
mod conflicts;
mod console;
mod events;
mod feed;
mod history;
mod migrate;
mod records;
mod replication;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{from_sqlite, StoreError};
use crate::{PoolStatus, SqliteSync, StoreOptions};

/// Connections kept open.
const CONNECTIONS: usize = 4;

/// The store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    in_use: AtomicUsize,
    site: String,
}

impl SqliteStore {
    /// Opens (creating if missing) the file at `path`.
    pub(crate) async fn open(path: PathBuf, options: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let busy = options.connect_timeout.max(Duration::from_secs(1));
        let site = options.site.clone();
        let sync = options.sqlite_sync;
        let conns = tokio::task::spawn_blocking(move || {
            create_private(&path)?;
            (0..CONNECTIONS).map(|_| open_one(&path, busy, sync).map(Mutex::new)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("opening SQLite: {e}")))??;
        Ok(SqliteStore {
            inner: Arc::new(Inner { conns, next: AtomicUsize::new(0), in_use: AtomicUsize::new(0), site }),
        })
    }

    /// Runs `f` on a free connection (waiting for one if all are busy) on the
    /// blocking thread pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.take();
            inner.in_use.fetch_add(1, Ordering::Relaxed);
            let result = f(&mut conn, &inner.site);
            inner.in_use.fetch_sub(1, Ordering::Relaxed);
            result
        })
        .await
        .map_err(|e| StoreError::Database { context: "SQLite task".into(), message: e.to_string() })?
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c, _| c.query_row("SELECT 1", [], |_| Ok(())).map_err(|e| from_sqlite("ping", &e))).await
    }

    /// `PRAGMA synchronous` of a connection: 2 is FULL, 1 NORMAL.
    pub(crate) async fn sync(&self) -> Result<SqliteSync, StoreError> {
        let level: i64 = self
            .run(|c, _| c.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(|e| from_sqlite("PRAGMA", &e)))
            .await?;
        Ok(if level >= 2 { SqliteSync::Full } else { SqliteSync::Normal })
    }

    pub(crate) fn pool_status(&self) -> PoolStatus {
        let in_use = self.inner.in_use.load(Ordering::Relaxed).min(CONNECTIONS);
        PoolStatus { size: CONNECTIONS, idle: CONNECTIONS - in_use, waiting: 0, max: CONNECTIONS }
    }
}

impl Inner {
    /// A free connection if there is one, else the next in turn once it frees.
    fn take(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if let Ok(guard) = self.conns[(start + i) % self.conns.len()].try_lock() {
                return guard;
            }
        }
        // A panic in another user poisons the lock but leaves the connection usable.
        self.conns[start % self.conns.len()].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Creates the file readable and writable by its owner only (SQLite gives
/// its `-wal` and `-shm` files the same mode), so the data, session hashes and
/// audit log are not world-readable. A file that exists is left as it is,
/// with a warning when others may read it.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{mode:o}"),
                        "the SQLite file may be read by other users; chmod 600 it"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Unavailable(format!("creating {}: {e}", path.display()))),
    }
}

fn open_one(path: &Path, busy: Duration, sync: SqliteSync) -> Result<Connection, StoreError> {
    let ctx = format!("opening {}", path.display());
    let conn = Connection::open(path).map_err(|e| StoreError::Unavailable(format!("{ctx}: {e}")))?;
    conn.busy_timeout(busy).map_err(|e| from_sqlite(&ctx, &e))?;
    let pragmas =
        format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;", sync.as_str());
    conn.execute_batch(&pragmas).map_err(|e| from_sqlite(&ctx, &e))?;
    Ok(conn)
}
