//! What keeps data safe around the store: SQLite files private and synced on
//! every commit, a role without the grants it needs stopped at start with the
//! grants named, and a write whose answer was lost reported as of unknown
//! outcome rather than as a failure worth repeating.

mod common;

use std::os::unix::fs::PermissionsExt;

use dugong_store::{DbUrl, Expect, Input, SqliteSync, Store, StoreError, StoreOptions};
use dugong_testkit::{Cluster, FaultProxy};

#[tokio::test]
async fn sqlite_files_are_private_and_synced_on_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.sqlite");
    let url: DbUrl = format!("sqlite:{}", path.display()).parse().unwrap();
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store.put(&Input::setting("k", &serde_json::json!(1)).unwrap(), Expect::Any).await.unwrap();
    for file in ["site.sqlite", "site.sqlite-wal", "site.sqlite-shm"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
    // What the store's own connections run with (a pragma is per connection).
    assert_eq!(store.sqlite_sync().await.unwrap(), Some(SqliteSync::Full));
    let options = StoreOptions { sqlite_sync: SqliteSync::Normal, ..Default::default() };
    let normal = Store::open(&url, options).await.unwrap();
    assert_eq!(normal.sqlite_sync().await.unwrap(), Some(SqliteSync::Normal));
}

#[tokio::test]
async fn missing_grants_are_named_at_start() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("privileges").await.unwrap();
    let owner: DbUrl = cluster.url(&db).parse().unwrap();
    let store = Store::open(&owner, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store.check_privileges().await.unwrap();
    // An application role with the data grants, less two.
    cluster
        .psql(
            &db,
            "DROP ROLE IF EXISTS app_lean; CREATE ROLE app_lean LOGIN;
             GRANT USAGE ON SCHEMA dugong_app, dugong_local TO app_lean;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dugong_app, dugong_local TO app_lean;
             REVOKE INSERT ON dugong_app.audit_log FROM app_lean;
             REVOKE DELETE ON dugong_local.console_sessions FROM app_lean;",
        )
        .await
        .unwrap();
    let lean: DbUrl = format!("postgres://app_lean@127.0.0.1:{}/{db}", cluster.port()).parse().unwrap();
    let store = Store::open(&lean, StoreOptions::default()).await.unwrap();
    // A migrated schema needs no DDL: the lean role gets past migration.
    store.migrate().await.unwrap();
    let err = store.check_privileges().await.unwrap_err();
    let StoreError::MissingPrivileges { role, missing } = &err else { panic!("{err}") };
    assert_eq!(role, "app_lean");
    assert_eq!(
        missing,
        &[
            "GRANT INSERT ON dugong_app.audit_log TO app_lean".to_string(),
            "GRANT DELETE ON dugong_local.console_sessions TO app_lean".to_string()
        ]
    );
    cluster.psql(&db, "GRANT INSERT ON dugong_app.audit_log TO app_lean").await.unwrap();
    assert!(store.check_privileges().await.unwrap_err().to_string().contains("console_sessions"));
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_has_an_unknown_outcome() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("outcome").await.unwrap();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], cluster.port()));
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let url: DbUrl =
        format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable", proxy.addr().port()).parse().unwrap();
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    proxy.lose_answer_to(b"lost-answer-key");
    let input = Input::setting("lost-answer-key", &serde_json::json!(1)).unwrap();
    let err = store.put(&input, Expect::Absent).await.unwrap_err();
    assert!(matches!(err, StoreError::OutcomeUnknown(_)), "{err}");
    assert!(err.to_string().contains("may or may not have been committed"), "{err}");
    // It did commit: the client must read before it repeats.
    let record = store.get(dugong_store::Kind::Setting, "lost-answer-key").await.unwrap();
    assert_eq!(record.map(|r| r.version()), Some(1));
}
