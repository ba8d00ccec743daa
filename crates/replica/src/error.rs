//! Errors of the replicator, and the one place that decides what each kind means
//! for the daemon: retry soon, retry after a backoff, or stop and ask an operator.

use dugong_core::{DbId, TableName};
use std::time::Duration;

/// An error of a sync run or of its preparation.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// A database could not be reached or its connection broke.
    #[error("{db} is unreachable ({target}): {}", describe_pg(source))]
    Unreachable {
        db: DbId,
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server answered and refused the connection: a wrong password, a
    /// database that does not exist, a pg_hba.conf rule. Configuration, not
    /// an outage.
    #[error("{db} refused the connection ({target}): {}", describe_pg(source))]
    Refused {
        db: DbId,
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed on a database that is otherwise reachable.
    #[error("{db}: {context}: {}", describe_pg(source))]
    Statement {
        db: DbId,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The synced tables differ between the databases; no data moves until fixed.
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),
    /// Another replicator runs this sync; this one stands by.
    #[error("{db}: the sync is being replicated by {holder}; standing by")]
    Standby { db: DbId, holder: String },
    /// A table of the sync changed shape (or appeared) while the sync ran: the
    /// sync prepares again, which picks the change up or reports a mismatch.
    #[error("the replicated tables changed: {0}; preparing the sync again")]
    SchemaChanged(String),
    /// The configuration names something the databases don't have, or asks for
    /// something the replicator refuses to do.
    #[error("{0}")]
    Config(String),
    /// A database the sync ran without can be reached again: the sync
    /// prepares again, with it.
    #[error("{db} is reachable again; preparing the sync again")]
    Returned { db: DbId },
    /// A conflict under the `abort` strategy.
    #[error("aborting sync because of {count} conflict(s) on {table} (conflict_strategy abort); the changes are kept")]
    ConflictAbort { table: TableName, count: usize },
    /// The database user lacks a privilege the replicator needs.
    #[error("{db}: {message}")]
    Privilege { db: DbId, message: String },
    /// An application wrote a key the run was applying, after the run's snapshot.
    #[error("{db}: {table} was written concurrently by an application; retrying the run")]
    ConcurrentWrite { db: DbId, table: TableName },
    /// Something we read from a database did not have the shape we expect.
    #[error("{db}: unexpected data: {message}")]
    Protocol { db: DbId, message: String },
    /// A SQLite file that cannot be used: missing, not a database, read-only,
    /// in a directory SQLite cannot write its WAL files to.
    #[error("{db}: sqlite:{path}: {reason}")]
    SqliteUnavailable { db: DbId, path: String, reason: String },
    /// A statement failed on a SQLite database.
    #[error("{db}: {context}: {source}")]
    Sqlite {
        db: DbId,
        context: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// What an error means to an operator's script (`dugong` maps each class to
/// an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The configuration is wrong, or names what the databases don't have.
    Configuration,
    /// A database cannot be reached.
    Unreachable,
    /// The sync is Bad for another reason (a schema mismatch, a conflict
    /// under `abort`, a failed statement).
    Bad,
}

/// What the daemon does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// A transient clash with concurrent application writes (serialization
    /// failure, deadlock, a concurrent insert of the same key): run again at once.
    RetrySoon,
    /// The sync is Bad; try again after a growing backoff (database down, a
    /// constraint violated on apply, a schema mismatch an operator may fix).
    Backoff,
}

impl ReplicaError {
    /// The one place that maps an error to what the daemon should do.
    pub fn policy(&self) -> ErrorPolicy {
        match self {
            ReplicaError::Statement { source, .. } => match source.code().map(|c| c.code()) {
                // serialization_failure, deadlock_detected; and
                // in_failed_sql_transaction: a statement queued behind a run
                // in flight that failed (the run's own error is the one
                // reported: see the engine's `flight`).
                Some("40001") | Some("40P01") | Some("25P02") => ErrorPolicy::RetrySoon,
                _ => ErrorPolicy::Backoff,
            },
            ReplicaError::ConcurrentWrite { .. } => ErrorPolicy::RetrySoon,
            // Another process held the file's write lock longer than the busy
            // timeout: a clash, not a Bad sync.
            ReplicaError::Sqlite { source, .. } if sqlite_busy(source) => ErrorPolicy::RetrySoon,
            _ => ErrorPolicy::Backoff,
        }
    }

    /// Errors that stop the replicator when they happen before a sync could
    /// start at all: configuration the databases contradict, a server that
    /// refuses the login, a missing privilege, a SQLite file that cannot be
    /// used. Later, the same errors only make the sync Bad while the replicator
    /// retries. An unreachable server is not among them: the sync starts
    /// without it and takes it in when it returns.
    pub fn is_fatal_at_start(&self) -> bool {
        matches!(
            self,
            ReplicaError::Config(_)
                | ReplicaError::Refused { .. }
                | ReplicaError::Privilege { .. }
                | ReplicaError::SqliteUnavailable { .. }
        )
    }

    /// The error's class, for exit codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReplicaError::Config(_) | ReplicaError::Refused { .. } => ErrorClass::Configuration,
            e if e.is_unreachable() => ErrorClass::Unreachable,
            _ => ErrorClass::Bad,
        }
    }

    /// True when the error means a database is down or its connection broke.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ReplicaError::Unreachable { .. } | ReplicaError::SqliteUnavailable { .. } => true,
            ReplicaError::Statement { source, .. } => source.is_closed() || source.as_db_error().is_none(),
            _ => false,
        }
    }

    /// The database the error happened on, when there is one.
    pub fn db(&self) -> Option<DbId> {
        match self {
            ReplicaError::Unreachable { db, .. }
            | ReplicaError::Refused { db, .. }
            | ReplicaError::Returned { db }
            | ReplicaError::Statement { db, .. }
            | ReplicaError::Privilege { db, .. }
            | ReplicaError::ConcurrentWrite { db, .. }
            | ReplicaError::Standby { db, .. }
            | ReplicaError::Protocol { db, .. }
            | ReplicaError::SqliteUnavailable { db, .. }
            | ReplicaError::Sqlite { db, .. } => Some(*db),
            _ => None,
        }
    }
}

/// The server's message with the constraint, table and column it names, without
/// the row values that `DETAIL` may carry (they must not reach logs).
pub fn describe_pg(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(c) = db.constraint() {
                text.push_str(&format!(", constraint {c}"));
            }
            if let (Some(s), Some(t)) = (db.schema(), db.table()) {
                text.push_str(&format!(", table {s}.{t}"));
            }
            if let Some(col) = db.column() {
                text.push_str(&format!(", column {col}"));
            }
            text
        }
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// Exponential backoff with a cap, for retrying a Bad sync.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { next: min, min, max }
    }

    /// The delay to wait now; the following one doubles, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Adds the database and a description to a statement error.
pub trait StatementContext<T> {
    fn on_db(self, db: DbId, context: impl FnOnce() -> String) -> Result<T, ReplicaError>;
}

impl<T> StatementContext<T> for Result<T, tokio_postgres::Error> {
    fn on_db(self, db: DbId, context: impl FnOnce() -> String) -> Result<T, ReplicaError> {
        self.map_err(|source| ReplicaError::Statement { db, context: context(), source })
    }
}

impl<T> StatementContext<T> for Result<T, rusqlite::Error> {
    fn on_db(self, db: DbId, context: impl FnOnce() -> String) -> Result<T, ReplicaError> {
        self.map_err(|source| ReplicaError::Sqlite { db, context: context(), source })
    }
}

/// SQLite's "database is locked" (another connection holds the write lock past
/// the busy timeout) and "database table is locked".
pub fn sqlite_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
