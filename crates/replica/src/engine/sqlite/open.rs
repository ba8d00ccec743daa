//! Opening a SQLite file for the replicator, with errors that name the file and
//! the problem: missing, a directory, not a SQLite database, read-only, or in a
//! directory where SQLite cannot create its WAL files.

use crate::error::ReplicaError;
use dugong_core::DbId;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another process's write lock (an application
/// server writing the same file) before giving up with "database is locked",
/// which the daemon retries at once.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` to replicate it: read-write, never created (a missing file is a
/// mistake in the configuration, not an empty database), in WAL mode so the
/// application's readers never wait for a run, with foreign keys off (apply
/// order between tables does not matter, cascades are not applied twice) and
/// full fsync (a run that committed stays committed, so the cursor may pass it).
pub fn open(db: DbId, path: &Path) -> Result<Connection, ReplicaError> {
    let conn = open_with(db, path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| unavailable(db, path, classify(&e)))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unavailable(
            db,
            path,
            format!("cannot switch to WAL mode (it stays in {mode} mode); the replicator needs WAL so applications keep reading during a run"),
        ));
    }
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA recursive_triggers = OFF; PRAGMA synchronous = FULL;")
        .map_err(|e| unavailable(db, path, classify(&e)))?;
    // A read-only file or directory shows only at the first write: find out now.
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").map_err(|e| unavailable(db, path, classify(&e)))?;
    Ok(conn)
}

/// Opens `path` only to read it (status, compare): nothing is changed.
pub fn open_read_only(db: DbId, path: &Path) -> Result<Connection, ReplicaError> {
    let conn = open_with(db, path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
        .map_err(|e| unavailable(db, path, classify(&e)))?;
    Ok(conn)
}

fn open_with(db: DbId, path: &Path, flags: OpenFlags) -> Result<Connection, ReplicaError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unavailable(
                db,
                path,
                "the file does not exist; the replicator never creates an empty database: create it first (e.g. start `dugong serve --db sqlite:PATH` once) or fix the path".into(),
            ))
        }
        Err(e) => return Err(unavailable(db, path, format!("cannot be read: {e}"))),
        Ok(m) if m.is_dir() => return Err(unavailable(db, path, "is a directory, not a SQLite file".into())),
        Ok(_) => {}
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| unavailable(db, path, classify(&e)))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| unavailable(db, path, classify(&e)))?;
    Ok(conn)
}

fn unavailable(db: DbId, path: &Path, reason: String) -> ReplicaError {
    ReplicaError::SqliteUnavailable { db, path: path.display().to_string(), reason }
}

/// What an error on opening means, in words an operator can act on.
fn classify(err: &rusqlite::Error) -> String {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "is not a SQLite database file".into(),
        Some(ErrorCode::ReadOnly) => {
            "is read-only (the file or its directory); the replicator writes change logs and applied rows into it".into()
        }
        Some(ErrorCode::CannotOpen) => format!(
            "cannot be opened ({err}); SQLite needs to create the -wal and -shm files next to it, so its directory must be writable"
        ),
        Some(ErrorCode::PermissionDenied) => format!("permission denied ({err})"),
        Some(ErrorCode::DatabaseCorrupt) => format!("is damaged ({err})"),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    /// Read-only files and directories cannot be provoked when the tests run as
    /// root (permission bits do not stop root): the messages are checked here.
    #[test]
    fn opening_errors_say_what_to_fix() {
        assert!(classify(&failure(rusqlite::ffi::SQLITE_READONLY)).contains("is read-only"));
        let cantopen = classify(&failure(rusqlite::ffi::SQLITE_CANTOPEN));
        assert!(cantopen.contains("-wal and -shm") && cantopen.contains("directory must be writable"), "{cantopen}");
        assert_eq!(classify(&failure(rusqlite::ffi::SQLITE_NOTADB)), "is not a SQLite database file");
    }

    /// SQLite's own refusal to write (a connection opened read-only refuses
    /// whoever runs the tests) is named with the file.
    #[test]
    fn a_refused_write_names_the_file_as_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let refused = conn.execute_batch("INSERT INTO t VALUES (1)").unwrap_err();
        let text = unavailable(DbId(0), &path, classify(&refused)).to_string();
        assert!(text.contains("site.db") && text.contains("is read-only"), "{text}");
    }
}
