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
//! - [`audit`]: who changed what and from where, and every login, recorded
//!   with the change itself.
//! - [`browse`]: lists for people — search, order by name or last change,
//!   keyset pages with a total.
//! - [`history`]: every version of apps, flows and settings, written with
//!   the change, restorable as a new change.
//! - [`conflict`]: the replicator's conflict log as this database holds it.
//! - [`replication`]: the replicator's state, heartbeats and this database's
//!   backlog per target, for server info and the status page.
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

pub mod audit;
pub mod browse;
pub mod conflict;
pub mod console;
mod error;
pub mod event;
pub mod feed;
pub mod history;
pub mod migrate;
pub mod model;
mod postgres;
pub mod replication;
mod sqlite;
pub mod url;
pub mod validate;

use std::time::Duration;

pub use audit::{Action, Actor, ActorKind, AuditCursor, AuditEntry, AuditQuery, NewAudit};
pub use browse::{Browse, BrowsePage, Cursor, Sort};
pub use conflict::{ConflictCursor, ConflictQuery, ConflictSide, LoggedConflict};
pub use console::{ConsoleUser, NewSession, RecentEvent, Session, SessionInfo, UserUpdate};
pub use error::StoreError;
pub use event::{Event, EventInput, Posted};
pub use feed::{ChangeRow, FeedHead, Position, Resume};
pub use history::{HistoryEntry, HistoryQuery};
pub use model::{App, Context, Expect, Flow, Input, Kind, ListQuery, Micros, Page, Record, Setting};
pub use replication::{Backlog, Heartbeat, SyncHealth};
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
    /// SQLite only: how hard a commit waits for the disk.
    pub sqlite_sync: SqliteSync,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            site: "0".into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
            sqlite_sync: SqliteSync::Full,
        }
    }
}

/// SQLite's `synchronous` setting (in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// Every commit is on disk before it is acknowledged: an acknowledged
    /// write survives a power loss.
    #[default]
    Full,
    /// Commits are synced at checkpoints only: faster, but the last
    /// acknowledged writes can be lost on power loss (not on a crash of the
    /// process).
    Normal,
}

impl SqliteSync {
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSync::Full => "full",
            SqliteSync::Normal => "normal",
        }
    }
}

impl std::str::FromStr for SqliteSync {
    type Err = String;

    fn from_str(text: &str) -> Result<SqliteSync, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSync::Full),
            "normal" => Ok(SqliteSync::Normal),
            _ => Err(format!("`{text}` is not a SQLite synchronous mode; use full or normal")),
        }
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
            DbUrl::Postgres { config, display, sslmode, sslrootcert } => {
                let tls = dugong_config::pgtls::connector_for(*sslmode, sslrootcert.as_deref(), config)
                    .map_err(|e| StoreError::Url(e.to_string()))?;
                Ok(Store::Postgres(postgres::PgStore::new((**config).clone(), display.clone(), tls, &options)?))
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

    /// SQLite: the `synchronous` setting its connections run with; `None` on
    /// PostgreSQL.
    pub async fn sqlite_sync(&self) -> Result<Option<SqliteSync>, StoreError> {
        match self {
            Store::Postgres(_) => Ok(None),
            Store::Sqlite(s) => s.sync().await.map(Some),
        }
    }

    /// Checks that the role connected with may do everything a server does
    /// (PostgreSQL; an SQLite file opened read-write allows everything).
    pub async fn check_privileges(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.check_privileges().await,
            Store::Sqlite(_) => Ok(()),
        }
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

    /// A page of a list for people: searched, by name or last change, with
    /// the total that matches.
    pub async fn browse(&self, kind: Kind, browse: &Browse) -> Result<BrowsePage, StoreError> {
        dispatch!(self, s => s.browse(kind, browse).await)
    }

    /// Creates or replaces a record, bumping its version, if its current
    /// version is what `expect` says; otherwise [`StoreError::Conflict`].
    /// Records no audit entry: for tools and tests; servers use
    /// [`Store::put_as`].
    pub async fn put(&self, input: &Input, expect: Expect) -> Result<Record, StoreError> {
        dispatch!(self, s => s.put(input, expect, None, "").await)
    }

    /// [`Store::put`], with its audit entry (`create` or `update`, by `who`)
    /// committed together with the change.
    pub async fn put_as(&self, who: &Actor, input: &Input, expect: Expect) -> Result<Record, StoreError> {
        dispatch!(self, s => s.put(input, expect, Some(who), "").await)
    }

    /// [`Store::put_as`] with a note in its audit entry and history row
    /// ("restored version 3"; never a value).
    pub async fn put_noted(
        &self,
        who: &Actor,
        input: &Input,
        expect: Expect,
        detail: &str,
    ) -> Result<Record, StoreError> {
        dispatch!(self, s => s.put(input, expect, Some(who), detail).await)
    }

    /// Deletes a record if its version is what `expect` says; returns the
    /// version it had. No audit entry; servers use [`Store::delete_as`].
    pub async fn delete(&self, kind: Kind, key: &str, expect: Expect) -> Result<i64, StoreError> {
        if expect == Expect::Absent {
            return Err(StoreError::invalid("expected_version", "0 means \"must not exist\": nothing to delete"));
        }
        dispatch!(self, s => s.delete(kind, key, expect, None, "").await)
    }

    /// [`Store::delete`], with its audit entry committed together with it.
    pub async fn delete_as(&self, who: &Actor, kind: Kind, key: &str, expect: Expect) -> Result<i64, StoreError> {
        if expect == Expect::Absent {
            return Err(StoreError::invalid("expected_version", "0 means \"must not exist\": nothing to delete"));
        }
        dispatch!(self, s => s.delete(kind, key, expect, Some(who), "").await)
    }

    /// [`Store::delete_as`] with a note in its audit entry and history row.
    pub async fn delete_noted(
        &self,
        who: &Actor,
        kind: Kind,
        key: &str,
        expect: Expect,
        detail: &str,
    ) -> Result<i64, StoreError> {
        if expect == Expect::Absent {
            return Err(StoreError::invalid("expected_version", "0 means \"must not exist\": nothing to delete"));
        }
        dispatch!(self, s => s.delete(kind, key, expect, Some(who), detail).await)
    }

    /// A page of one record's history, newest first.
    pub async fn history(&self, query: &HistoryQuery) -> Result<Page<HistoryEntry>, StoreError> {
        dispatch!(self, s => s.history(query).await)
    }

    /// One version from the history, by its id.
    pub async fn history_entry(&self, id: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let id = validate::uuid("version", id)?;
        dispatch!(self, s => s.history_entry(&id).await)
    }

    /// A page of the replicator's conflict log here, newest first (empty
    /// when this database was never replicated).
    pub async fn conflicts(&self, query: &ConflictQuery) -> Result<Page<LoggedConflict>, StoreError> {
        dispatch!(self, s => s.conflicts(query).await)
    }

    /// The conflict logged under `id`.
    pub async fn conflict(&self, id: &str) -> Result<Option<LoggedConflict>, StoreError> {
        dispatch!(self, s => s.logged_conflict(id).await)
    }

    /// The losing version of `conflict` as a record of the server's, when
    /// the conflict's table is one of its kinds and the loser had a row.
    pub fn losing_record(&self, conflict: &LoggedConflict) -> Result<Option<Record>, StoreError> {
        self.logged_record(conflict, &conflict.loser)
    }

    /// `side`'s version of `conflict` as a record of the server's.
    pub fn logged_record(&self, conflict: &LoggedConflict, side: &ConflictSide) -> Result<Option<Record>, StoreError> {
        match (conflict.kind, &side.row) {
            (Some(kind), Some(row)) => LoggedConflict::record_of(kind, row, matches!(self, Store::Sqlite(_))).map(Some),
            _ => Ok(None),
        }
    }

    /// Marks conflict `id` restored in this database's log; `false` when it
    /// was marked already (or is not there).
    pub async fn mark_conflict_restored(&self, id: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.mark_conflict_restored(id).await)
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

    /// Creates a console user, or replaces its password hash (which ends its
    /// sessions on every site). No audit entry: see
    /// [`Store::create_console_user`] and [`Store::update_console_user`].
    pub async fn put_console_user(&self, name: &str, password_hash: &str) -> Result<ConsoleUser, StoreError> {
        console::user_name(name)?;
        dispatch!(self, s => s.put_console_user(name, password_hash).await)
    }

    pub async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        dispatch!(self, s => s.console_user(name).await)
    }

    /// Every console user, by name.
    pub async fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        dispatch!(self, s => s.console_users().await)
    }

    /// Creates a console user; [`StoreError::Conflict`] when the name is taken.
    pub async fn create_console_user(
        &self,
        name: &str,
        password_hash: &str,
        who: &Actor,
    ) -> Result<ConsoleUser, StoreError> {
        console::user_name(name)?;
        dispatch!(self, s => s.create_console_user(name, password_hash, who).await)
    }

    /// Changes a console user (password, disabled, sessions), recording who
    /// did; [`StoreError::NotFound`] for a user that does not exist. Every
    /// change but enabling ends the user's sessions on every site.
    pub async fn update_console_user(
        &self,
        name: &str,
        update: &UserUpdate,
        who: &Actor,
    ) -> Result<ConsoleUser, StoreError> {
        dispatch!(self, s => s.update_console_user(name, update, who).await)
    }

    /// Deletes a console user (and this site's sessions of it), recording who
    /// did; returns the user as it was.
    pub async fn delete_console_user(&self, name: &str, who: &Actor) -> Result<ConsoleUser, StoreError> {
        dispatch!(self, s => s.delete_console_user(name, who).await)
    }

    /// This site's live sessions, newest first.
    pub async fn console_sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        dispatch!(self, s => s.console_sessions().await)
    }

    /// Ends one session of this site for an administrator, and records it;
    /// `false` when there was no such session.
    pub async fn revoke_session(&self, token_hash: &str, user: &str, who: &Actor) -> Result<bool, StoreError> {
        let found = dispatch!(self, s => s.delete_session(token_hash).await)?;
        if found {
            let entry = NewAudit {
                actor: who.clone(),
                action: Action::RevokeSession,
                resource: audit::SESSIONS.to_string(),
                key: user.to_string(),
                version: None,
                detail: String::new(),
            };
            self.append_audit(&entry).await?;
        }
        Ok(found)
    }

    /// Records an entry that goes with no change of data (a login, a failed
    /// login, a lockout).
    pub async fn append_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        dispatch!(self, s => s.append_audit(entry).await)
    }

    /// A page of the audit log, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        dispatch!(self, s => s.audit(query).await)
    }

    /// Records a login (and forgets expired ones).
    pub async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_session(session).await)
    }

    /// The live session whose token hashes to `token_hash`: not expired, its
    /// user not deleted or disabled, and made at the user's session epoch.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        dispatch!(self, s => s.session(token_hash).await)
    }

    /// Ends a session (logout); `false` for an unknown one.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
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
