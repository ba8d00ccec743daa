//! PostgreSQL's native logical replication, one way (site 0 → site 1): a
//! publication of every table on site 0 and a subscription on site 1 with
//! `copy_data = false`. Stopping the replicator disables the subscription (its
//! slot keeps the WAL, so a backlog builds); finishing drops it, so its slot
//! does not hold WAL while the other systems are measured.
//!
//! The subscription reaches its publisher by the replicator's route: site 0's
//! own port, or a delay link in front of it (the subscriber runs at site 1 and
//! pulls across the link).

use crate::cluster::Route;
use crate::cluster::Sites;
use crate::system::System;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

const PUBLICATION: &str = "bench_pub";
const SUBSCRIPTION: &str = "bench_sub";

/// How long a disabled subscription's apply worker may take to exit.
const WORKER_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Added to `wal_retrieve_retry_interval` before a subscription is enabled again.
const LAUNCHER_MARGIN: Duration = Duration::from_millis(200);

/// The subscription's state.
pub struct Native {
    subscribed: bool,
    /// When the subscription was last created or enabled: PostgreSQL's
    /// launcher starts apply workers at most once per
    /// `wal_retrieve_retry_interval`, so a start sooner than that after the
    /// previous one waits in the launcher (up to 5 s by default) — time that
    /// is not replication. `stop` waits it out, outside any clock.
    last_start: Option<Instant>,
    /// The publisher's port as the subscriber on site 1 reaches it.
    publisher_port: u16,
}

impl Native {
    /// Creates the publication on site 0.
    pub async fn setup(sites: &Sites, route: Route) -> anyhow::Result<Native> {
        sites.exec(0, System::Native.db(), &format!("CREATE PUBLICATION {PUBLICATION} FOR ALL TABLES")).await?;
        Ok(Native { subscribed: false, last_start: None, publisher_port: route.ports[0] })
    }

    /// The route of the next subscription; the current one must be finished.
    pub fn reroute(&mut self, route: Route) -> anyhow::Result<()> {
        if self.subscribed {
            bail!("native LR: finish the subscription before changing its route");
        }
        self.publisher_port = route.ports[0];
        Ok(())
    }

    /// Creates the subscription (and its slot), or enables it again.
    pub async fn start(&mut self, sites: &Sites) -> anyhow::Result<()> {
        let db = System::Native.db();
        let sql = if self.subscribed {
            format!("ALTER SUBSCRIPTION {SUBSCRIPTION} ENABLE")
        } else {
            format!(
                "CREATE SUBSCRIPTION {SUBSCRIPTION} CONNECTION 'host=127.0.0.1 port={} dbname={db} user=postgres' \
                 PUBLICATION {PUBLICATION} WITH (copy_data = false)",
                self.publisher_port
            )
        };
        sites.exec(1, db, &sql).await.context("starting native logical replication")?;
        self.subscribed = true;
        self.last_start = Some(Instant::now());
        Ok(())
    }

    /// Disables the subscription and waits until its apply worker has exited;
    /// changes queue in the slot on site 0. Without the wait, a worker still
    /// streaming would deliver rows written "while stopped".
    pub async fn stop(&mut self, sites: &Sites) -> anyhow::Result<()> {
        if !self.subscribed {
            return Ok(());
        }
        let client = sites.connect(1, System::Native.db()).await?;
        client
            .batch_execute(&format!("ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE"))
            .await
            .context("disabling the subscription")?;
        let deadline = Instant::now() + WORKER_EXIT_TIMEOUT;
        loop {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL",
                    &[&SUBSCRIPTION],
                )
                .await
                .context("looking for the subscription's apply worker")?;
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the disabled subscription's apply worker did not exit within {WORKER_EXIT_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(last) = self.last_start {
            let row = client
                .query_one("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'", &[])
                .await
                .context("reading wal_retrieve_retry_interval")?;
            // Milliseconds; a margin for the launcher's own clock reading.
            let interval = Duration::from_millis(row.get::<_, i64>(0).max(0) as u64) + LAUNCHER_MARGIN;
            tokio::time::sleep_until((last + interval).into()).await;
        }
        Ok(())
    }

    /// Drops the subscription and its slot.
    pub async fn finish(&mut self, sites: &Sites) -> anyhow::Result<()> {
        if self.subscribed {
            sites.exec(1, System::Native.db(), &format!("DROP SUBSCRIPTION {SUBSCRIPTION}")).await?;
            self.subscribed = false;
        }
        Ok(())
    }
}
