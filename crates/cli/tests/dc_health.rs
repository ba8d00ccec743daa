//! Honest health through an outage: what waits for a missing site (pending rows, lag) rises
//! in `dugong status` and the replicator's metrics while it is away and is 0 again once it is
//! caught up; a replicator running through the outage is reported running all along; and a
//! replicator killed with SIGKILL is reported not running within 10 s.

mod dc;

use dc::{database, insert, sample, text, with_logs, DataCenters, Replicator};
use dugong_testkit::{free_port, wait_for};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PENDING: &str = "dugong_replica_pending_rows";
const LAG: &str = "dugong_replica_lag_seconds";

/// Two sites, the replicator on dc1 serving metrics on dc1's loopback, ten rows replicated
/// and nothing pending; then dc0 is cut off and 100 rows are written on dc1.
async fn outage(name: &str) -> (DataCenters, Replicator, SocketAddr, Vec<i64>) {
    let dcs = DataCenters::new(name, 2).await;
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let replicator = dcs.replicator(1, "dc1-replicator", &["--metrics", &addr.to_string()]);
    let want = with_logs(&[&replicator], async {
        let (c0, c1) = (dcs.client(0).await, dcs.client(1).await);
        dcs.wait_capture().await;
        let mut want = insert(&c0, 0, 1..=10).await;
        dcs.wait_converged(&want, 1, Duration::from_secs(30)).await;
        wait_for("nothing pending before the outage", Duration::from_secs(30), || async {
            dcs.scrape(1, addr).await.filter(|p| caught_up(p))
        })
        .await;
        dcs.sites[0].ns.cut().unwrap();
        want.extend(insert(&c1, 1, 101..=200).await);
        want
    })
    .await;
    (dcs, replicator, addr, want)
}

/// Nothing pending for either database, and no lag.
fn caught_up(page: &str) -> bool {
    ["db0", "db1"].iter().all(|db| sample(page, PENDING, db) == Some(0.0) && sample(page, LAG, db) == Some(0.0))
}

#[tokio::test]
async fn status_shows_lag_and_pending_rising_through_an_outage_and_back_to_zero_after_it() {
    let (dcs, replicator, _addr, mut want) = outage("lag").await;
    with_logs(&[&replicator], async {
        let c1 = dcs.client(1).await;
        let first = wait_for("status from dc1 to show 100 rows waiting for db0", Duration::from_secs(30), || async {
            let (code, report) = dcs.status_json(1);
            let db0 = database(&report, "db0");
            (code == Some(3) && db0["reachable"] == false && db0["pending"] == 100)
                .then(|| db0["lag_seconds"].as_f64())?
        })
        .await;
        assert!(first > 0.0, "lag is the age of the oldest change waiting: {first}");
        wait_for("the lag in status to rise with the outage", Duration::from_secs(30), || async {
            let (_, report) = dcs.status_json(1);
            (database(&report, "db0")["lag_seconds"].as_f64()? >= first + 2.0).then_some(())
        })
        .await;
        want.extend(insert(&c1, 1, 201..=250).await);
        let (_, report) = dcs.status_json(1);
        assert_eq!(database(&report, "db0")["pending"], 150, "more writes, more pending: {report}");
        let out = dcs.run(1, &["status"]);
        let summary = text(&out);
        assert!(summary.contains("db0 unreachable ("), "{summary}");
        assert!(summary.contains("pending changes 150 (db0 150, db1 unknown)"), "{summary}");

        dcs.sites[0].ns.heal().unwrap();
        dcs.wait_converged(&want, 0, Duration::from_secs(120)).await;
        // The positions trail the rows by the flush of the last commits
        // (`wal_writer_delay`, 200 ms): wait for them, not only for Good.
        let report = wait_for("status to show nothing pending", Duration::from_secs(30), || async {
            let (code, report) = dcs.status_json(0);
            let nothing = ["db0", "db1"].iter().all(|db| database(&report, db)["pending"] == 0);
            (code == Some(0) && nothing).then_some(report)
        })
        .await;
        for db in ["db0", "db1"] {
            let d = database(&report, db);
            assert_eq!((&d["pending"], d["lag_seconds"].as_f64()), (&0.into(), Some(0.0)), "{db}: {report}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_metrics_show_lag_and_pending_rising_through_an_outage() {
    let (dcs, replicator, addr, mut want) = outage("lagmetrics").await;
    with_logs(&[&replicator], async {
        let first = wait_for("100 rows pending for db0 in the metrics", Duration::from_secs(30), || async {
            let page = dcs.scrape(1, addr).await?;
            (sample(&page, PENDING, "db0") == Some(100.0)).then(|| sample(&page, LAG, "db0")).flatten()
        })
        .await;
        assert!(first > 0.0, "lag is the age of the oldest change waiting: {first}");
        // Rising with every heartbeat (3 s) of the outage, as status does.
        wait_for("the lag gauge to rise while db0 is away", Duration::from_secs(20), || async {
            let page = dcs.scrape(1, addr).await?;
            (sample(&page, LAG, "db0")? >= first + 5.0).then_some(())
        })
        .await;
        let c1 = dcs.client(1).await;
        want.extend(insert(&c1, 1, 201..=250).await);
        wait_for("150 rows pending for db0 in the metrics", Duration::from_secs(20), || async {
            let page = dcs.scrape(1, addr).await?;
            (sample(&page, PENDING, "db0") == Some(150.0)).then_some(())
        })
        .await;
        dcs.sites[0].ns.heal().unwrap();
        dcs.wait_converged(&want, 0, Duration::from_secs(120)).await;
        wait_for("pending and lag back to 0 in the metrics", Duration::from_secs(20), || async {
            dcs.scrape(1, addr).await.filter(|p| caught_up(p))
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_replicator_running_through_an_outage_is_reported_running_all_along() {
    let (dcs, replicator, _addr, _want) = outage("alive").await;
    with_logs(&[&replicator], async {
        // Looks from the surviving side for longer than the 10 s after which a replicator
        // without a heartbeat counts as stopped.
        let started = Instant::now();
        let mut look = 0;
        while started.elapsed() < Duration::from_secs(12) {
            look += 1;
            let (_, report) = dcs.status_json(1);
            let r = &report["syncs"][0]["replicator"];
            assert_eq!(
                (&r["pid"], &r["running"]),
                (&replicator.pid.into(), &true.into()),
                "look {look}: the replicator runs all along: {report}"
            );
        }
        assert!(look >= 3, "status answered {look} times in 12 s");
    })
    .await;
}

#[tokio::test]
async fn a_replicator_killed_with_sigkill_is_reported_not_running_within_ten_seconds() {
    let dcs = DataCenters::new("killed", 2).await;
    let c0 = dcs.client(0).await;
    let mut replicator = dcs.replicator(0, "dc0-replicator", &[]);
    dcs.wait_capture().await;
    wait_for("status to show the replicator running", Duration::from_secs(30), || async {
        let (_, report) = dcs.status_json(1);
        let r = &report["syncs"][0]["replicator"];
        (r["running"] == true && r["pid"] == replicator.pid).then_some(())
    })
    .await;
    // Killed right after a heartbeat, the worst moment: the next would have come 3 s later.
    let heartbeat = || async {
        let sql = "SELECT at::text FROM dugong.heartbeat WHERE sync = 'sync0' AND role = 'active'";
        c0.query_opt(sql, &[]).await.ok().flatten().map(|r| r.get::<_, String>(0))
    };
    let seen = heartbeat().await;
    wait_for("a fresh heartbeat", Duration::from_secs(10), || async {
        let now = heartbeat().await;
        (now.is_some() && now != seen).then_some(())
    })
    .await;
    replicator.kill9();
    let killed = Instant::now();
    // Not running once three heartbeat intervals and a second (10 s) passed without one; a
    // status takes a moment to run, hence the allowance beyond the 10 s.
    let report = wait_for("status to report the killed replicator not running", Duration::from_secs(11), || async {
        let (_, report) = dcs.status_json(1);
        (report["syncs"][0]["replicator"]["running"] == false).then_some(report)
    })
    .await;
    let after = killed.elapsed();
    println!("killed replicator reported not running {:.1} s after SIGKILL", after.as_secs_f64());
    assert_eq!(report["syncs"][0]["replicator"]["pid"], replicator.pid, "names the one that stopped: {report}");
    assert!(report["replicator_pid"].is_null(), "no running replicator: {report}");
    let out = dcs.run(1, &["status"]);
    let summary = text(&out);
    assert!(summary.contains(&format!("sync0: replicator {}@", replicator.pid)), "{summary}");
    assert!(summary.contains(" not running (last heartbeat "), "{summary}");
}
