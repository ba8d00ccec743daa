//! A three-site mesh loses a site mid-run: the other two keep exchanging writes both ways
//! while it is gone, and when it returns it is caught up with everything, its own writes of
//! the outage included.

mod dc;

use dc::{database, insert, with_logs, DataCenters, Replicator};
use dugong_testkit::wait_for;
use std::time::Duration;
use tokio_postgres::Client;

async fn has(c: &Client, id: i64) -> bool {
    c.query_opt("SELECT 1 FROM items WHERE id = $1", &[&id]).await.ok().flatten().is_some()
}

#[tokio::test]
async fn a_site_lost_mid_run_in_a_three_site_mesh_stops_nobody_and_is_caught_up_when_it_returns() {
    let dcs = DataCenters::new("mesh", 3).await;
    let c: Vec<Client> = futures_util::future::join_all((0..3).map(|i| dcs.client(i))).await;
    let replicator = dcs.replicator(0, "dc0-replicator", &[]);
    with_logs(&[&replicator], mesh(&dcs, &c, &replicator)).await;
}

async fn mesh(dcs: &DataCenters, c: &[Client], replicator: &Replicator) {
    dcs.wait_capture().await;
    let mut want = Vec::new();
    for (site, client) in c.iter().enumerate() {
        let first = 1 + 1000 * site as i64;
        want.extend(insert(client, site as i32, first..=first + 99).await);
    }
    dcs.wait_converged(&want, 0, Duration::from_secs(30)).await;

    // Site 2 drops off the network, mid-run: writes keep coming on every site.
    dcs.sites[2].ns.cut().unwrap();
    for round in 0..5i64 {
        let base = 10_000 + 1_000 * round;
        let from0 = insert(&c[0], 0, base + 1..=base + 20).await;
        let from1 = insert(&c[1], 1, base + 501..=base + 520).await;
        want.extend(insert(&c[2], 2, base + 901..=base + 910).await);
        // The two that remain exchange them both ways.
        let (last0, last1) = (from0[from0.len() - 1], from1[from1.len() - 1]);
        wait_for(
            &format!("round {round}: sites 0 and 1 to exchange their writes while site 2 is away"),
            Duration::from_secs(30),
            || async { (has(&c[1], last0).await && has(&c[0], last1).await).then_some(()) },
        )
        .await;
        want.extend(from0);
        want.extend(from1);
    }
    for (i, client) in c.iter().enumerate().take(2) {
        for id in [10_901, 14_910] {
            assert!(!has(client, id).await, "site {i} cannot have site 2's writes of the outage yet");
        }
    }
    // Site 2 saw none of it.
    assert!(!has(&c[2], 10_001).await);
    // And the operators on the surviving sites see what waits for it: 5 rounds of 40 rows.
    let report = wait_for("status from site 0 to show 200 rows waiting for db2", Duration::from_secs(30), || async {
        let (code, report) = dcs.status_json(0);
        let db2 = database(&report, "db2");
        (code == Some(3) && db2["reachable"] == false && db2["pending"] == 200).then_some(report)
    })
    .await;
    assert!(database(&report, "db2")["lag_seconds"].as_f64().is_some_and(|l| l > 0.0), "{report}");
    for db in ["db0", "db1"] {
        assert_eq!(database(&report, db)["reachable"], true, "{db}: {report}");
    }

    dcs.sites[2].ns.heal().unwrap();
    dcs.wait_converged(&want, 2, Duration::from_secs(120)).await;
    let log = replicator.log();
    assert!(log.contains("running without an unreachable database"));
    assert!(log.contains("a missing database is reachable again"));
}
