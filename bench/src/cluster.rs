//! The benchmark's PostgreSQL servers: site 0, site 1 and, when Bucardo is
//! measured, its control database — three clusters on one host, as in the
//! baseline, each on a free loopback port with the baseline's durable settings.
//!
//! The testkit starts them (as `postgres` when we are root) and guarantees they
//! are stopped and removed however this process ends: on drop, and through a
//! watchdog when the process is killed.

use anyhow::Context;
use dugong_testkit::{Cluster, ClusterOptions};
use tokio_postgres::Client;

/// The PostgreSQL binaries the baseline was measured with.
pub const PG15_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The baseline's settings (reference bucardo-baseline.md): durable commits,
/// `wal_level=logical` on every cluster so every system pays the same WAL cost,
/// commit timestamps for Dugong's conflict resolution.
const SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("wal_level", "logical"),
    ("shared_buffers", "512MB"),
    ("max_wal_size", "4GB"),
    ("checkpoint_timeout", "15min"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("max_logical_replication_workers", "8"),
    ("max_worker_processes", "16"),
    ("max_connections", "200"),
];

/// The two sites and Bucardo's control cluster. Dropping it stops and removes
/// all of them.
pub struct Sites {
    sites: [Cluster; 2],
    ctl: Option<Cluster>,
}

impl Sites {
    /// Starts site 0 and site 1, and the control cluster when `with_ctl`, with
    /// the baseline's settings followed by `extra` (which may override them).
    pub async fn start(with_ctl: bool, extra: &[(String, String)]) -> anyhow::Result<Sites> {
        let site0 = start_one("site 0", extra).await?;
        let site1 = start_one("site 1", extra).await?;
        let ctl = if with_ctl { Some(start_one("Bucardo's control database", extra).await?) } else { None };
        Ok(Sites { sites: [site0, site1], ctl })
    }

    /// The port of site `site` (0 or 1).
    pub fn port(&self, site: usize) -> u16 {
        self.sites[site].port()
    }

    /// Bucardo's control cluster, when started.
    pub fn ctl(&self) -> Option<&Cluster> {
        self.ctl.as_ref()
    }

    /// Connects to `db` on `site` as the superuser.
    pub async fn connect(&self, site: usize, db: &str) -> anyhow::Result<Client> {
        self.sites[site].connect(db).await.with_context(|| format!("connecting to {db} on site {site}"))
    }

    /// Runs `sql` (statements without parameters) in `db` on `site`.
    pub async fn exec(&self, site: usize, db: &str, sql: &str) -> anyhow::Result<()> {
        let client = self.connect(site, db).await?;
        client.batch_execute(sql).await.with_context(|| format!("running SQL in {db} on site {site}: {sql}"))
    }

    /// The server version of site 0, e.g. "15.20".
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let client = self.connect(0, "postgres").await?;
        let row = client.query_one("SHOW server_version", &[]).await.context("reading the server version")?;
        Ok(row.get::<_, String>(0).split_whitespace().next().unwrap_or_default().to_string())
    }
}

async fn start_one(what: &str, extra: &[(String, String)]) -> anyhow::Result<Cluster> {
    let options = ClusterOptions {
        track_commit_timestamp: true,
        extra_settings: SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(extra.iter().cloned())
            .collect(),
        ..ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
        .await
        .context("the cluster start task failed")?
        .with_context(|| format!("starting PostgreSQL for {what}"))?;
    eprintln!("[bench] {what}: PostgreSQL on 127.0.0.1:{} (fsync on, wal_level logical)", cluster.port());
    Ok(cluster)
}

/// The ports through which a replicator reaches site 0 and site 1. Bucardo
/// runs "at site 0" and reaches site 1 by `ports[1]`; Dugong the same, or the
/// other way round in the WAN profile's `--dugong-at 1`; native logical
/// replication's subscriber runs at site 1 and reaches its publisher by `ports[0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub ports: [u16; 2],
}

impl Route {
    /// Both sites by their own ports: no link in between.
    pub fn direct(sites: &Sites) -> Route {
        Route { ports: [sites.port(0), sites.port(1)] }
    }
}
