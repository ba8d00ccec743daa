//! The change feed: every write gets a position, in commit order, on both
//! engines; and on PostgreSQL rows applied as the replicator applies them
//! (session_replication_role = replica) are logged too.

mod common;

use std::time::Duration;

use common::{both, postgres, uuid};
use dugong_store::{Expect, Input, Kind, Position, Resume};
use serde_json::json;

#[tokio::test]
async fn writes_are_logged_with_growing_positions() {
    for t in both("feed_positions").await {
        let s = &t.store;
        let start = s.feed_head().await.unwrap();
        assert_eq!(start.last, 0);
        let app = uuid();
        s.put(&Input::app(&app, "a", "").unwrap(), Expect::Any).await.unwrap();
        s.put(&Input::setting("k", &json!(true)).unwrap(), Expect::Any).await.unwrap();
        s.delete(Kind::Setting, "k", Expect::Any).await.unwrap();
        s.sequence_changes().await.unwrap();
        let head = s.feed_head().await.unwrap();
        assert_eq!(head.last, 3, "{}", s.engine());
        let changes = s.changes_after(0, 100).await.unwrap();
        let seen: Vec<(i64, Kind, Option<&str>)> = changes.iter().map(|c| (c.pos, c.kind, c.key.as_deref())).collect();
        assert_eq!(
            seen,
            [(1, Kind::App, Some(app.as_str())), (2, Kind::Setting, Some("k")), (3, Kind::Setting, Some("k"))]
        );
        assert_eq!(s.changes_after(2, 100).await.unwrap().len(), 1);
        assert_eq!(head.resume(&head.position()), Resume::From(3));
        let foreign = Position { feed_id: "elsewhere".into(), pos: 1 };
        assert!(matches!(head.resume(&foreign), Resume::Reset(_)));
    }
}

#[tokio::test]
async fn purged_positions_can_no_longer_resume() {
    for t in both("feed_purge").await {
        let s = &t.store;
        for i in 0..4 {
            s.put(&Input::setting(&format!("k{i}"), &json!(i)).unwrap(), Expect::Any).await.unwrap();
        }
        s.sequence_changes().await.unwrap();
        assert_eq!(s.purge_changes(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(s.purge_changes(Duration::ZERO).await.unwrap(), 4, "{}", s.engine());
        let head = s.feed_head().await.unwrap();
        assert_eq!((head.last, head.purged_upto), (4, 4));
        assert!(matches!(head.resume(&Position { feed_id: head.feed_id.clone(), pos: 2 }), Resume::Reset(_)));
        assert_eq!(head.resume(&head.position()), Resume::From(4));
    }
}

#[tokio::test]
async fn rows_applied_with_replica_role_are_logged_on_postgres() {
    let t = postgres("feed_replica_role").await;
    let cluster = dugong_testkit::Cluster::shared();
    let dugong_store::DbUrl::Postgres { config, .. } = &t.url else { panic!() };
    let db = config.get_dbname().unwrap().to_string();
    let client = cluster.connect(&db).await.unwrap();
    // What the replicator does on a target: delete the keys, copy the rows in.
    client
        .batch_execute(
            "BEGIN; SET LOCAL session_replication_role = replica;
             DELETE FROM dugong_app.settings WHERE key = 'remote';
             INSERT INTO dugong_app.settings (key, value, version) VALUES ('remote', '\"from site 1\"', 7);
             COMMIT;",
        )
        .await
        .unwrap();
    assert_eq!(t.store.sequence_changes().await.unwrap(), 1);
    let changes = t.store.changes_after(0, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].kind, changes[0].key.as_deref()), (Kind::Setting, Some("remote")));
    // A TRUNCATE is logged as a change of the whole table.
    client.batch_execute("TRUNCATE dugong_app.contexts").await.unwrap();
    t.store.sequence_changes().await.unwrap();
    let changes = t.store.changes_after(1, 10).await.unwrap();
    assert_eq!((changes[0].kind, changes[0].key.as_deref()), (Kind::Context, None));
}

#[tokio::test]
async fn concurrent_sequencers_hand_out_each_position_once() {
    let t = postgres("feed_sequencers").await;
    let s = &t.store;
    let writers = (0..4).map(|w| {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                s.put(&Input::setting(&format!("w{w}-{i}"), &json!(i)).unwrap(), Expect::Any).await.unwrap();
            }
        })
    });
    let sequencers = (0..3).map(|_| {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                s.sequence_changes().await.unwrap();
            }
        })
    });
    let all: Vec<_> = writers.chain(sequencers).collect();
    for h in all {
        h.await.unwrap();
    }
    s.sequence_changes().await.unwrap();
    let changes = s.changes_after(0, 1000).await.unwrap();
    let positions: Vec<i64> = changes.iter().map(|c| c.pos).collect();
    assert_eq!(positions, (1..=200).collect::<Vec<i64>>());
    assert_eq!(s.feed_head().await.unwrap().last, 200);
}
