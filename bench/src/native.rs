//! PostgreSQL's native logical replication, one way (site 0 → site 1): a
//! publication of every table on site 0 and a subscription on site 1 with
//! `copy_data = false`. Stopping the replicator disables the subscription (its
//! slot keeps the WAL, so a backlog builds); finishing drops it, so its slot
//! does not hold WAL while the other systems are measured.

use crate::cluster::Sites;
use crate::system::System;
use anyhow::Context;

const PUBLICATION: &str = "bench_pub";
const SUBSCRIPTION: &str = "bench_sub";

/// The subscription's state.
#[derive(Default)]
pub struct Native {
    subscribed: bool,
}

impl Native {
    /// Creates the publication on site 0.
    pub async fn setup(sites: &Sites) -> anyhow::Result<Native> {
        sites.exec(0, System::Native.db(), &format!("CREATE PUBLICATION {PUBLICATION} FOR ALL TABLES")).await?;
        Ok(Native::default())
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
                sites.port(0)
            )
        };
        sites.exec(1, db, &sql).await.context("starting native logical replication")?;
        self.subscribed = true;
        Ok(())
    }

    /// Disables the subscription; changes queue in the slot on site 0.
    pub async fn stop(&mut self, sites: &Sites) -> anyhow::Result<()> {
        if self.subscribed {
            sites.exec(1, System::Native.db(), &format!("ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE")).await?;
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
