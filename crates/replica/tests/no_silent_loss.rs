//! The edge cases where rows were once lost or brought back without a word:
//! an initial copy repeated on restart, a configuration that passes one
//! sync's changes on to another. Real PostgreSQL.

mod common;

use common::{initial_copy, prepare, sync_all, Sites};
use dugong_replica::daemon::{self, DaemonOptions};
use dugong_replica::engine::Engine;
use std::sync::Arc;

/// `onetimecopy: 2` left in the file (as the README once advised): a restart
/// must not copy again. Site 1 emptied the table while the replicator was
/// stopped; copying site 0's rows into it again would bring them back, and
/// site 1's deletes would then empty site 0 — the sites would differ, each
/// way wrong.
#[tokio::test]
async fn a_restart_with_onetimecopy_still_set_never_copies_again() {
    let sites = Sites::new("copy_once", 2, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    sites.client(0).batch_execute("INSERT INTO t SELECT g, 'seed' FROM generate_series(1, 20) g").await.unwrap();
    let config = sites.config(r#"{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 2}"#);
    let mut p = prepare(&config).await;
    initial_copy(&mut p).await.expect("copy");
    assert_eq!(sites.rows(1, "SELECT count(*) FROM t").await, vec!["20"], "the first start fills the empty site");
    drop(p);

    // The replicator is down; site 1 deletes every row (captured).
    sites.client(1).batch_execute("DELETE FROM t").await.unwrap();
    let mut p = prepare(&config).await;
    initial_copy(&mut p).await.expect("the copy looks at nothing twice");
    assert_eq!(sites.rows(1, "SELECT count(*) FROM t").await, vec!["0"], "nothing copied again");
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT * FROM t").await.len(), 0, "the deletes won everywhere");

    // Asked for explicitly, it copies again.
    sites.client(0).batch_execute("INSERT INTO t VALUES (100, 'only on site 0')").await.unwrap();
    sites.client(1).batch_execute("ALTER TABLE t DISABLE TRIGGER USER").await.unwrap();
    sync_all(&mut p).await;
    sites.client(1).batch_execute("DELETE FROM t; ALTER TABLE t ENABLE TRIGGER USER").await.unwrap();
    let recopy = ["public.t".to_string()];
    p.engine.initial_copy(&p.plan, false, &Default::default(), &recopy).await.expect("copy again");
    assert_eq!(sites.rows(1, "SELECT count(*) FROM t").await, vec!["1"], "--recopy copies the named table");
}

/// A database that receives one sync's changes and is a source of another
/// over the same tables would never pass the first sync's rows on: the
/// daemon refuses to start, naming the database and both syncs.
#[tokio::test]
async fn a_database_that_would_not_pass_changes_on_is_refused() {
    let sites = Sites::new("cascade", 3, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let config = sites.config(
        r#"{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0},
           {"sources": [1, 2], "targets": [], "tables": "all", "onetimecopy": 0}"#,
    );
    let reports = daemon::run(Arc::new(config), DaemonOptions::default(), Default::default()).await;
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert!(!r.good);
        let e = r.error.as_deref().unwrap_or_default();
        assert!(e.contains("db1 receives the changes of sync0 and is a source of sync1"), "{e}");
    }
    let installed: bool =
        sites.client(1).query_one("SELECT to_regclass('dugong.captured') IS NOT NULL", &[]).await.unwrap().get(0);
    assert!(!installed, "nothing was installed");
}
