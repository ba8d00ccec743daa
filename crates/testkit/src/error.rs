//! The one error type of the testkit.
//!
//! Tests mostly `unwrap()` these, so every message is written to be read in a failed test's
//! output: it names what was being done and, for a server that would not start, ends with the
//! tail of the server log.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a testkit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found under {searched}; \
         install them with `apt-get install -y postgresql`"
    )]
    NoPostgres {
        /// Where we looked.
        searched: PathBuf,
    },

    /// The tests run as root, which PostgreSQL refuses, and there is no `postgres` OS user to
    /// run the server as instead.
    #[error(
        "running as root, which PostgreSQL refuses, and there is no `postgres` OS user to run \
         the server as; `apt-get install -y postgresql` creates it"
    )]
    NoPostgresUser,

    /// A file system or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done, e.g. "creating /tmp/dugong-test-1-0".
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A helper command (initdb, pg_ctl, ...) exited unsuccessfully.
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        /// What was being done, with the command line.
        what: String,
        /// How the command exited.
        status: std::process::ExitStatus,
        /// Its standard output and standard error.
        output: String,
    },

    /// The server did not start (or restart).
    #[error("PostgreSQL did not start on port {port}: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    Start {
        /// The port it was asked to listen on.
        port: u16,
        /// What went wrong, usually pg_ctl's own output.
        reason: String,
        /// The server log file.
        log: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// The server is not running, so the operation makes no sense.
    #[error("PostgreSQL in {data_dir} is not running: {detail}")]
    NotRunning {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// What showed it.
        detail: String,
    },

    /// A condition did not come true in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },

    /// A network namespace or link could not be made or changed: tests that cut links need
    /// root and iproute2's `ip`, and fail (never skip) without them.
    #[error(
        "{what} failed: {output}\n(tests that cut network links create network namespaces with \
         iproute2's `ip` as root; scripts/test.sh installs iproute2)"
    )]
    Network {
        /// What was being done, e.g. the `ip` command line.
        what: String,
        /// What `ip` said, or why it could not run.
        output: String,
    },

    /// Asked for a combination the testkit does not offer.
    #[error("not supported by the testkit: {0}")]
    Unsupported(String),

    /// A query or connection to the test server failed.
    #[error("{what}")]
    Postgres {
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        TestkitError::Io { what: what.into(), source }
    }

    pub(crate) fn postgres(what: impl Into<String>, source: tokio_postgres::Error) -> Self {
        TestkitError::Postgres { what: what.into(), source }
    }
}
