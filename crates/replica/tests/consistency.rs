//! The background consistency check on two real sites: rows made to differ
//! behind the replicator's back are counted once they hold still, changes
//! still waiting in a change log are not, and the count falls back to zero
//! once the rows agree again.

mod common;

use common::{prepare, sync_all, Sites};
use dugong_replica::engine::postgres::consistency::Checker;
use std::sync::Arc;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text)";

async fn known(checker: &mut Checker, ticks: usize) -> usize {
    let mut last = 0;
    for _ in 0..ticks {
        let counts = checker.tick().await.expect("tick");
        last =
            counts.iter().find(|c| c.table.display_name() == "public.t").map(|c| c.known).expect("public.t is checked");
    }
    last
}

#[tokio::test]
async fn rows_known_to_differ_are_counted_and_changes_in_flight_are_not() {
    let sites = Sites::new("consistency", 2, SCHEMA).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites.client(0).batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 300) g").await.unwrap();
    sync_all(&mut p).await;
    let mut checker = Checker::new(Arc::new(config.clone()), config.syncs[0].clone(), 100);
    assert_eq!(known(&mut checker, 4).await, 0, "identical sites");

    // Behind the replicator's back: two rows changed on db1, one deleted there.
    sites
        .client(1)
        .batch_execute(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE t SET v = 'manual fix' WHERE id IN (5, 150); DELETE FROM t WHERE id = 250; COMMIT",
        )
        .await
        .unwrap();
    // And an ordinary write the replicator has not shipped yet.
    sites.client(0).batch_execute("UPDATE t SET v = 'in flight' WHERE id = 7").await.unwrap();
    // Three chunks to walk the table, and one more tick to see them hold still.
    assert_eq!(known(&mut checker, 5).await, 3, "the three rows changed behind the replicator's back");

    // Shipped and fixed: the count falls back.
    sync_all(&mut p).await;
    sites
        .client(1)
        .batch_execute(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE t SET v = 'v' || id WHERE id IN (5, 150); INSERT INTO t VALUES (250, 'v250'); COMMIT",
        )
        .await
        .unwrap();
    assert_eq!(known(&mut checker, 1).await, 0);
}
