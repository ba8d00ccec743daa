//! The Dugong replicator: asynchronous master-master replication of PostgreSQL
//! tables or SQLite files, Bucardo-compatible in configuration and status.
//!
//! The data flow of a sync, module by module:
//! - [`capture`]: Dugong's schema on each database; statement-level triggers
//!   log changed keys per table; `--uninstall` removes it all.
//! - [`catalog`]: which tables a sync replicates, and the check that every
//!   database has them with the same columns and keys.
//! - [`prepare`]: connect, check, install, load cursors.
//! - [`snapshot`]: `pg_snapshot` cursors into the change logs, batch bounds.
//! - [`run`]: one run — read pending changes, resolve, apply, commit, advance.
//! - [`upkeep`]: purging and vacuuming the change logs, beside the runs after a backlog.
//! - [`resolve`]: per-row conflict resolution, pure functions.
//! - [`apply`]: fetch winning rows with COPY and write them to the others.
//! - [`copy`]: the initial copy (`onetimecopy`).
//! - [`state`]: the run state status reads, kept in the databases.
//! - [`daemon`]: a task per sync, polling, backoff, self-healing, shutdown.
//! - [`status`], [`compare`]: the operator views.
//! - [`engine`]: connections per engine; [`engine::sqlite`] is the whole
//!   SQLite engine (capture, run, lease, status and compare reads), sharing
//!   `catalog`'s table choice and checks, `resolve`, the daemon's loop and the
//!   status and compare reports with PostgreSQL.
//! - `error`: error kinds and the policy the daemon applies to each.

pub mod apply;
pub mod capture;
pub mod catalog;
pub mod compare;
pub mod copy;
pub mod daemon;
pub mod engine;
mod error;
pub mod metrics;
pub mod prepare;
pub mod resolve;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod upkeep;

pub use error::{describe_pg, Backoff, ErrorPolicy, ReplicaError, StatementContext};
