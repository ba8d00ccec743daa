//! Connections to PostgreSQL databases of a sync.

use crate::error::ReplicaError;
use dugong_config::{Database, Location, SslMode};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// Session settings every replicator connection uses, so values written as text
/// by one server read back identically on another.
const SESSION_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

/// Opens a connection to `db`, driving it on a task of the current runtime.
pub async fn connect(db: &Database, application_name: &str) -> Result<Client, ReplicaError> {
    let target = match &db.location {
        Location::Postgres(t) => t,
        Location::Sqlite(path) => {
            return Err(ReplicaError::Config(format!(
                "{}: SQLite databases ({}) are not supported by the replicator yet",
                db.id,
                path.display()
            )))
        }
    };
    if target.sslmode == SslMode::Require {
        return Err(ReplicaError::Config(format!(
            "{}: sslmode=require is not supported yet; use an SSH tunnel or a TLS-terminating proxy on loopback",
            db.id
        )));
    }
    let mut config = target.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name(application_name);
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    config.options(&options);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await.map_err(|source| ReplicaError::Unreachable {
        db: db.id,
        target: target.display.clone(),
        source,
    })?;
    let db_id = db.id;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(db = %db_id, error = %err, "connection closed");
        }
    });
    Ok(client)
}
