//! The store on PostgreSQL: a pool of connections (deadpool) over
//! tokio-postgres, the application's tables in schema `dugong_app`, the site's
//! own state in `dugong_local`.
//!
//! - `records` — get, list, put, delete of the four mutable kinds, generic
//!   over their table descriptors.
//! - `events` — batch inserts that skip known ids.
//! - `feed` — sequencing, reading and purging the change feed.
//! - `migrate` — the schema steps and their bookkeeping.
//! - `replication` — what `dugong replicate` records here, for server info.
//! - `privileges` — the grants a server needs, checked at start.
//! - `audit`, `console` — the audit log; console users and sessions.

mod audit;
mod browse;
mod conflicts;
mod console;
mod events;
mod feed;
mod history;
mod migrate;
mod privileges;
mod records;
mod replication;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{from_pg, StoreError};
use crate::{PoolStatus, StoreOptions};

/// Session settings: times come back in UTC, and no statement runs forever.
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c statement_timeout=30s -c idle_in_transaction_session_timeout=60s";

/// `updated_at`-style columns as microseconds since the epoch.
fn micros(column: &str) -> String {
    format!("(extract(epoch from {column}) * 1000000)::int8")
}

/// `dugong_app.<table>`: the records' tables, as every module names them.
fn qualified(table: &crate::model::Table) -> String {
    format!("dugong_app.{}", table.name)
}

/// The store on one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    site: String,
    /// `host:port/dbname`, for messages.
    display: String,
}

impl PgStore {
    /// A pool that connects on demand: opening never fails for a database
    /// that is down, the first query does.
    /// `tls`: the connector `sslmode` asks for, `None` for plain connections.
    pub(crate) fn new(
        mut config: tokio_postgres::Config,
        display: String,
        tls: Option<MakeRustlsConnect>,
        options: &StoreOptions,
    ) -> Result<PgStore, StoreError> {
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("dugong serve");
        }
        let session = match config.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {SESSION_OPTIONS}"),
            _ => SESSION_OPTIONS.to_string(),
        };
        config.options(&session);
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, recycling),
            None => Manager::from_config(config, NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Database {
                context: format!("creating the pool for {display}"),
                message: e.to_string(),
            })?;
        Ok(PgStore { pool, site: options.site.clone(), display })
    }

    /// A connection from the pool; a database that can't be reached in time
    /// is [`StoreError::Unavailable`].
    async fn conn(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(err) => from_pg(&format!("connecting to {}", self.display), &err),
            PoolError::Timeout(_) => StoreError::Unavailable(format!("no connection to {} in time", self.display)),
            other => StoreError::Unavailable(format!("connecting to {}: {other}", self.display)),
        })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.simple_query("SELECT 1").await.map_err(|e| from_pg("ping", &e))?;
        Ok(())
    }

    pub(crate) fn pool_status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus { size: s.size, idle: s.available, waiting: s.waiting, max: s.max_size }
    }
}
