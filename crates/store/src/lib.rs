//! The application server's data, on PostgreSQL (production) or an embedded
//! SQLite file (single site, demos, tests), behind one [`Store`].
//!
//! Modules, from the words to the engines:
//! - [`model`]: the records (apps, flows, settings, contexts), their keys and
//!   versions, and how each maps to a table.
//! - [`validate`]: the rules every write passes, naming the field that breaks
//!   one; shared by gRPC and REST.
//! - [`event`]: append-only events with client-made ids.
//! - [`console`]: the console's users (replicated) and login sessions
//!   (site-local).
//! - [`feed`]: the change feed behind Watch — positions, resuming, resets.
//! - [`migrate`]: numbered schema steps applied at start; a newer database is
//!   refused.
//! - [`url`]: `--db` (`postgres://…` or `sqlite:PATH`).
//! - `postgres`, `sqlite`: the two engines, each with records, events, feed
//!   and migrations.
//! - `error`: [`StoreError`].
//!
//! Every table of the application (schema `dugong_app` on PostgreSQL) has a
//! primary key and can be replicated by `dugong replicate` with
//! `"tables": "all"`; the site's own state (feed, migrations) lives in
//! `dugong_local`, which the replicator never touches.

pub mod console;
mod error;
pub mod event;
pub mod feed;
pub mod migrate;
pub mod model;
mod postgres;
mod sqlite;
pub mod url;
pub mod validate;

use std::time::Duration;

pub use console::{ConsoleUser, NewSession, RecentEvent, Session};
pub use error::StoreError;
pub use event::{Event, EventInput, Posted};
pub use feed::{ChangeRow, FeedHead, Position, Resume};
pub use model::{App, Context, Expect, Flow, Input, Kind, ListQuery, Micros, Page, Record, Setting};
pub use url::DbUrl;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The site id stamped on the events this server receives.
    pub site: String,
    /// Most connections at once (PostgreSQL); SQLite uses a few of its own.
    pub pool_size: usize,
    /// How long to wait for a connection, or for PostgreSQL to answer a
    /// connection attempt, before the database counts as unavailable.
    pub connect_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { site: "0".into(), pool_size: 16, connect_timeout: Duration::from_secs(3) }
    }
}

/// Connections in use and idle, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Connections open.
    pub size: usize,
    /// Open and not in use.
    pub idle: usize,
    /// Callers waiting for one.
    pub waiting: usize,
    pub max: usize,
}

/// One replicated sync as this database records it (written by
/// `dugong replicate`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncHealth {
    pub sync: String,
    pub state: String,
    /// Age of the oldest change made here and not yet shipped, when commit
    /// times are tracked.
    pub lag: Option<Duration>,
    /// Time since the last good run ended.
    pub last_good_age: Option<Duration>,
}

/// A site's database, cheap to clone (connections are shared).
#[derive(Clone)]
pub enum Store {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

/// Calls the same method on whichever engine the store is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

impl Store {
    /// Opens the database (PostgreSQL: a pool that connects on demand; SQLite:
    /// the file, created if missing). Call [`Store::migrate`] before anything
    /// else.
    pub async fn open(url: &DbUrl, options: StoreOptions) -> Result<Store, StoreError> {
        match url {
            DbUrl::Postgres { config, display } => {
                Ok(Store::Postgres(postgres::PgStore::new((**config).clone(), display.clone(), &options)?))
            }
            DbUrl::Sqlite { path } => Ok(Store::Sqlite(sqlite::SqliteStore::open(path.clone(), &options).await?)),
        }
    }

    /// `postgres` or `sqlite`.
    pub fn engine(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Applies the missing schema steps; returns the schema version. Fails
    /// with [`StoreError::TooNew`] on a database a newer dugong migrated.
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.schema_version().await)
    }

    /// Answers when the database does (a round trip).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    pub async fn get(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
        dispatch!(self, s => s.get(kind, key).await)
    }

    /// The records of `keys` that exist, in no particular order.
    pub async fn get_many(&self, kind: Kind, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.get_many(kind, keys).await)
    }

    pub async fn list(&self, kind: Kind, query: &ListQuery) -> Result<Page<Record>, StoreError> {
        dispatch!(self, s => s.list(kind, query).await)
    }

    /// Creates or replaces a record, bumping its version, if its current
    /// version is what `expect` says; otherwise [`StoreError::Conflict`].
    pub async fn put(&self, input: &Input, expect: Expect) -> Result<Record, StoreError> {
        dispatch!(self, s => s.put(input, expect).await)
    }

    /// Deletes a record if its version is what `expect` says; returns the
    /// version it had.
    pub async fn delete(&self, kind: Kind, key: &str, expect: Expect) -> Result<i64, StoreError> {
        if expect == Expect::Absent {
            return Err(StoreError::invalid("expected_version", "0 means \"must not exist\": nothing to delete"));
        }
        dispatch!(self, s => s.delete(kind, key, expect).await)
    }

    /// Stores the events whose ids are new; the others count as duplicates.
    pub async fn post_events(&self, events: &[EventInput]) -> Result<Posted, StoreError> {
        if events.is_empty() {
            return Ok(Posted::default());
        }
        dispatch!(self, s => s.post_events(events).await)
    }

    /// Events in id order, after `after`.
    pub async fn list_events(&self, after: Option<&str>, limit: u32) -> Result<Page<Event>, StoreError> {
        dispatch!(self, s => s.list_events(after, limit).await)
    }

    /// Gives positions to the changes committed since the last call (a no-op
    /// on SQLite, whose triggers do it); returns how many.
    pub async fn sequence_changes(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.sequence_changes().await)
    }

    pub async fn feed_head(&self) -> Result<FeedHead, StoreError> {
        dispatch!(self, s => s.feed_head().await)
    }

    /// Changes with a position after `after`, in position order.
    pub async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeRow>, StoreError> {
        dispatch!(self, s => s.changes_after(after, limit).await)
    }

    /// Removes changes logged more than `keep` ago; watchers older than
    /// what is left get a reset. Returns how many were removed.
    pub async fn purge_changes(&self, keep: Duration) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge_changes(keep).await)
    }

    /// The syncs `dugong replicate` records in this database.
    pub async fn replication(&self) -> Result<Vec<SyncHealth>, StoreError> {
        dispatch!(self, s => s.replication().await)
    }

    /// Creates a console user, or replaces its password hash.
    pub async fn put_console_user(&self, name: &str, password_hash: &str) -> Result<ConsoleUser, StoreError> {
        console::user_name(name)?;
        dispatch!(self, s => s.put_console_user(name, password_hash).await)
    }

    pub async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        dispatch!(self, s => s.console_user(name).await)
    }

    /// Records a login (and forgets expired ones).
    pub async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_session(session).await)
    }

    /// The live session whose token hashes to `token_hash`: not expired, and
    /// its user not deleted.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        dispatch!(self, s => s.session(token_hash).await)
    }

    /// Ends a session (logout); a no-op for an unknown one.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_session(token_hash).await)
    }

    /// The latest events received, newest first.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<RecentEvent>, StoreError> {
        dispatch!(self, s => s.recent_events(limit).await)
    }

    pub fn pool_status(&self) -> PoolStatus {
        dispatch!(self, s => s.pool_status())
    }
}
