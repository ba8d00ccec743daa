//! Migrations: idempotent, recorded site-locally, and a newer database refused.

mod common;

use common::{postgres, sqlite};
use dugong_store::{migrate, StoreError};

#[tokio::test]
async fn migrating_again_changes_nothing_and_newer_databases_are_refused() {
    let pg = postgres("migrations").await;
    let lite = sqlite().await;
    for t in [&pg, &lite] {
        assert_eq!(t.store.migrate().await.unwrap(), migrate::latest());
        assert_eq!(t.store.schema_version().await.unwrap(), migrate::latest());
    }
    let cluster = dugong_testkit::Cluster::shared();
    let dugong_store::DbUrl::Postgres { config, .. } = &pg.url else { panic!() };
    let client = cluster.connect(config.get_dbname().unwrap()).await.unwrap();
    // Bookkeeping is site-local: the replicator's "tables": "all" never sees it.
    let schema: String = client
        .query_one(
            "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'schema_migrations'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, "dugong_local");
    client
        .batch_execute(
            "INSERT INTO dugong_local.schema_migrations (version, name, applied_by) VALUES (999, 'future', 'dugong 9')",
        )
        .await
        .unwrap();
    match pg.store.migrate().await {
        Err(e @ StoreError::TooNew { found: 999, .. }) => {
            assert!(e.to_string().contains("newer than this dugong knows"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    let dugong_store::DbUrl::Sqlite { path } = &lite.url else { panic!() };
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute("INSERT INTO dugong_local_schema_migrations VALUES (999, 'future', 0, 'dugong 9')", []).unwrap();
    assert!(matches!(lite.store.migrate().await, Err(StoreError::TooNew { found: 999, .. })));
}
