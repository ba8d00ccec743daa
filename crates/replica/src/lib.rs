//! The Dugong replicator: asynchronous master-master replication of PostgreSQL
//! tables, Bucardo-compatible in configuration and status.
//!
//! - [`snapshot`]: `pg_snapshot` cursors into the change logs, batch bounds.
//! - [`resolve`]: per-row conflict resolution, pure functions.
//! - [`error`]: error kinds and the policy the daemon applies to each.
mod error;
pub mod resolve;
pub mod snapshot;

pub use error::{describe_pg, Backoff, ErrorPolicy, ReplicaError, StatementContext};
