//! Replication keeps up while the applications on both sites keep writing to the same few
//! rows — the counters and settings every application has.

mod dc;

use dc::{with_logs, DataCenters};
use dugong_testkit::wait_for;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Each transaction inserts a row of its own and sets one of ten shared rows, until `stop`;
/// returns how many it committed.
async fn write(c: Client, site: i32, stop: Arc<AtomicBool>) -> i64 {
    let mut i = 0i64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (id, key, value) = (1_000_000 * i64::from(site + 1) + i, i % 10 + 1, format!("site{site}-{i}"));
        let tx = async {
            c.batch_execute("BEGIN").await?;
            c.execute("INSERT INTO items (id, site, v) VALUES ($1, $2, 'row')", &[&id, &site]).await?;
            let upsert =
                "INSERT INTO items (id, site, v) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = excluded.v";
            c.execute(upsert, &[&key, &site, &value]).await?;
            c.batch_execute("COMMIT").await
        };
        tx.await.expect("a site's own database answers its applications");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    i
}

/// The newest row site `from` wrote that `c` holds: how far replication got.
async fn newest_from(c: &Client, from: i32) -> i64 {
    let sql = "SELECT coalesce(max(id), 0) FROM items WHERE site = $1 AND v = 'row'";
    c.query_one(sql, &[&from]).await.unwrap().get(0)
}

#[tokio::test]
#[ignore = "replicator bug: with both sites writing the same few rows continuously, every run fails with SQLSTATE 40001 (could not serialize access due to concurrent update) applying them under its REPEATABLE READ snapshot; 50 retries exhaust in ~13 s, the sync goes Bad and nothing replicates until the writes stop; see daemon/mod.rs run_prepared and engine/postgres/apply.rs"]
async fn replication_keeps_up_while_both_sites_write_the_same_rows_continuously() {
    let dcs = DataCenters::new("hot", 2).await;
    let replicator = dcs.replicator(0, "dc0-replicator", &[]);
    with_logs(&[&replicator], async {
        dcs.wait_capture().await;
        let (c0, c1) = (dcs.client(0).await, dcs.client(1).await);
        let stop = Arc::new(AtomicBool::new(false));
        let writers = [
            tokio::spawn(write(dcs.client(0).await, 0, stop.clone())),
            tokio::spawn(write(dcs.client(1).await, 1, stop.clone())),
        ];
        // For thirty seconds, what either site wrote reaches the other within ten.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let (mark0, mark1) = (newest_from(&c0, 0).await, newest_from(&c1, 1).await);
            wait_for("each site's rows to reach the other while the writes go on", Duration::from_secs(10), || async {
                (newest_from(&c1, 0).await >= mark0 && newest_from(&c0, 1).await >= mark1).then_some(())
            })
            .await;
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            assert!(w.await.unwrap() > 100, "the writers did work");
        }
    })
    .await;
}
