//! `dugong replicate --uninstall`: removes everything the replicator installed
//! (Dugong's schema or tables, capture triggers, change logs) from every
//! database of a configuration, whatever its engine, leaving the application's
//! tables and rows as they are.

use crate::capture::Uninstalled;
use crate::engine::{postgres, sqlite};
use crate::error::ReplicaError;
use dugong_config::{Config, Location};
use dugong_core::DbId;

/// Uninstalls from every database of `config`, each on its own: one that
/// fails does not keep the others from being cleaned.
pub async fn uninstall(config: &Config) -> Vec<(DbId, Result<Uninstalled, ReplicaError>)> {
    let mut out = Vec::with_capacity(config.databases.len());
    for db in &config.databases {
        let id = db.id;
        let result = match &db.location {
            Location::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = sqlite::open::open(id, &path)?;
                    sqlite::uninstall(&mut conn, id)
                })
                .await
                .unwrap_or_else(|e| Err(ReplicaError::Config(format!("a SQLite task failed: {e}"))))
            }
            Location::Postgres(_) => match postgres::connect_to(config, id).await {
                Ok(mut client) => postgres::uninstall(&mut client, id).await,
                Err(e) => Err(e),
            },
        };
        out.push((id, result));
    }
    out
}
