//! What can go wrong in the store, sorted by what a caller does about it.

/// A store operation that failed.
///
/// Messages never carry row values: at most a record's kind, its key and
/// versions, which callers may show to the client that sent them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input breaks a rule; nothing was written.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// No such record.
    #[error("{kind} {key:?} not found")]
    NotFound { kind: &'static str, key: String },
    /// The record's version moved (or it exists, or it doesn't) against the
    /// version the write expected; nothing was written.
    #[error("version conflict on {kind} {key:?}: expected version {expected}, the current version is {current}")]
    Conflict { kind: &'static str, key: String, expected: i64, current: i64 },
    /// Another app (or flow of the same app) has the name; nothing was
    /// written. `scope` is "" or " in this app".
    #[error("{kind} name {name:?} is taken{scope} (by {holder}): names are unique, choose another")]
    Duplicate { kind: &'static str, name: String, holder: String, scope: &'static str },
    /// The database could not be reached or dropped the connection; another
    /// server (or a retry later) may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A write was sent and the connection failed before its result came
    /// back: it may or may not have committed. Not safe to repeat blindly:
    /// read the record first (a versioned write repeated gets a conflict).
    #[error("the write's outcome is unknown ({0}): it may or may not have been committed; read before retrying")]
    OutcomeUnknown(String),
    /// The database's schema was migrated by a newer dugong than this one.
    #[error(
        "the database's schema is at version {found}, newer than this dugong knows ({known}); \
         run a dugong at least as new as the one that migrated it"
    )]
    TooNew { found: i64, known: i64 },
    /// The role the server logs in as lacks privileges it needs.
    #[error("role {role} lacks privileges the server needs; as the schema's owner run: {}", missing.join("; "))]
    MissingPrivileges { role: String, missing: Vec<String> },
    /// The database URL (`--db`) is not understood.
    #[error("database URL: {0}")]
    Url(String),
    /// A statement failed for a reason other than the above.
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    /// A stored value that should be valid is not (edited by hand?).
    #[error("stored {kind} {key:?} is damaged: {reason}")]
    Corrupt { kind: &'static str, key: String, reason: String },
}

impl StoreError {
    /// An invalid-input error naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The database is down or unreachable: worth retrying, and the reason
    /// readiness fails.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A PostgreSQL error as a [`StoreError`]: connection problems are
/// [`StoreError::Unavailable`], the rest name `context`. Only the server's
/// primary message is kept — its DETAIL may quote row values.
pub(crate) fn from_pg(context: &str, err: &tokio_postgres::Error) -> StoreError {
    match err.as_db_error() {
        None => StoreError::Unavailable(format!("{context}: {}", with_causes(err))),
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 57P: operator intervention (shutdown);
            // 53: insufficient resources; 40001/40P01: try again.
            if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") || code.starts_with("40") {
                StoreError::Unavailable(format!("{context}: {}", db.message()))
            } else {
                StoreError::Database { context: context.to_string(), message: format!("{} ({code})", db.message()) }
            }
        }
    }
}

/// A PostgreSQL error of a write that was sent: a lost connection (or the
/// server ending the session) leaves its outcome unknown; the rest as
/// [`from_pg`].
pub(crate) fn from_pg_write(context: &str, err: &tokio_postgres::Error) -> StoreError {
    match err.as_db_error() {
        None => StoreError::OutcomeUnknown(format!("{context}: {}", with_causes(err))),
        Some(db) if db.code().code().starts_with("08") || db.code().code().starts_with("57P") => {
            StoreError::OutcomeUnknown(format!("{context}: {}", db.message()))
        }
        Some(_) => from_pg(context, err),
    }
}

/// A connection-level error with what caused it ("error performing TLS
/// handshake: invalid peer certificate: …"): the cause is what an operator
/// needs, and it never holds row values.
fn with_causes(err: &tokio_postgres::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An SQLite error as a [`StoreError`]; a busy database counts as unavailable.
pub(crate) fn from_sqlite(context: &str, err: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(format!("{context}: {err}"))
        }
        _ => StoreError::Database { context: context.to_string(), message: err.to_string() },
    }
}
