//! Database engines the replicator talks to. PostgreSQL today; SQLite follows
//! behind the same run protocol.
pub mod postgres;
mod tls;
