//! Stores to test against: a fresh database on the test binary's shared
//! PostgreSQL cluster, and a fresh SQLite file.

#![allow(dead_code)]

use dugong_store::{DbUrl, Store, StoreOptions};
use dugong_testkit::Cluster;

/// A migrated store and what keeps it alive.
pub struct TestStore {
    pub store: Store,
    pub url: DbUrl,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

pub async fn postgres(prefix: &str) -> TestStore {
    let cluster = Cluster::shared();
    let db = cluster.create_database(prefix).await.expect("create database");
    let url: DbUrl = cluster.url(&db).parse().expect("url");
    open(url, None).await
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url: DbUrl = format!("sqlite:{}", dir.path().join("site.sqlite").display()).parse().expect("url");
    open(url, Some(dir)).await
}

async fn open(url: DbUrl, dir: Option<tempfile::TempDir>) -> TestStore {
    let store = Store::open(&url, StoreOptions { site: "s0".into(), ..Default::default() }).await.expect("open");
    store.migrate().await.expect("migrate");
    TestStore { store, url, _dir: dir }
}

/// Both engines, for tests that must behave alike on each.
pub async fn both(prefix: &str) -> Vec<TestStore> {
    vec![postgres(prefix).await, sqlite().await]
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
