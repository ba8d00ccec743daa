//! Two replicators on one configuration: exactly one runs the sync, the other
//! stands by and takes over within moments when the first one stops.

mod common;

use common::Sites;
use dugong_replica::daemon::{self, DaemonOptions};
use dugong_testkit::wait_for;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn wait_rows(sites: &Sites, site: usize, n: i64, what: &str) {
    let c = sites.client(site);
    wait_for(what, Duration::from_secs(20), || async {
        let got: i64 = c.query_one("SELECT count(*) FROM t", &[]).await.ok()?.get(0);
        (got == n).then_some(())
    })
    .await;
}

/// Sessions holding the sync's claim on a database.
async fn holders(sites: &Sites, site: usize) -> i64 {
    sites
        .client(site)
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND objid = (hashtext('dugong sync sync0')::int8 & 4294967295)::oid",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_standby_replicator_takes_over_when_the_active_one_stops() {
    let sites = Sites::new("standby", 2, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let config = Arc::new(sites.master_master());
    let options = DaemonOptions { standby_retry: Duration::from_millis(100), ..Default::default() };
    let first = CancellationToken::new();
    let active = tokio::spawn(daemon::run(config.clone(), options.clone(), first.clone()));
    let c0 = sites.client(0);
    wait_for("capture installed", Duration::from_secs(20), || async {
        let n: i64 = c0
            .query_one("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'", &[])
            .await
            .ok()?
            .get(0);
        (n == 1).then_some(())
    })
    .await;
    let second = CancellationToken::new();
    let standby = tokio::spawn(daemon::run(config.clone(), options, second.clone()));
    sites.client(0).batch_execute("INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g").await.unwrap();
    wait_rows(&sites, 1, 100, "rows shipped by the active replicator").await;
    for site in 0..2 {
        assert_eq!(holders(&sites, site).await, 1, "exactly one replicator holds the sync on site {site}");
    }
    assert!(!standby.is_finished());

    first.cancel();
    active.await.unwrap();
    sites.client(1).batch_execute("INSERT INTO t SELECT g, 'b' FROM generate_series(101, 150) g").await.unwrap();
    wait_rows(&sites, 0, 150, "rows shipped by the replicator that took over").await;
    second.cancel();
    let reports = standby.await.unwrap();
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
    sites.assert_same("SELECT * FROM t").await;
}
