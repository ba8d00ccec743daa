//! Database engines the replicator talks to: PostgreSQL and SQLite. A sync runs
//! on one engine — all its databases are PostgreSQL, or all are SQLite files;
//! conflict resolution, the daemon's loop, status and compare rendering are
//! shared.
pub mod postgres;
pub mod sqlite;
mod tls;

use crate::error::ReplicaError;
use dugong_config::{Config, Location, Sync};

/// Whether `sync`'s databases are SQLite files (judged by the first; see [`check_one_engine`]).
pub fn is_sqlite(config: &Config, sync: &Sync) -> bool {
    sync.databases()
        .first()
        .and_then(|id| config.database(*id))
        .is_some_and(|d| matches!(d.location, Location::Sqlite(_)))
}

/// Refuses a sync that mixes PostgreSQL and SQLite databases, naming them.
pub fn check_one_engine(config: &Config, sync: &Sync) -> Result<(), ReplicaError> {
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    for id in sync.databases() {
        match config.database(id).map(|d| &d.location) {
            Some(Location::Sqlite(_)) => sqlite.push(id.to_string()),
            Some(Location::Postgres(_)) => postgres.push(id.to_string()),
            None => {}
        }
    }
    if !sqlite.is_empty() && !postgres.is_empty() {
        return Err(ReplicaError::Config(format!(
            "syncs[{}] mixes SQLite ({}) and PostgreSQL ({}) databases; a sync replicates between databases of one kind",
            sync.index,
            sqlite.join(", "),
            postgres.join(", ")
        )));
    }
    Ok(())
}
