//! Conflicts on real PostgreSQL: per row, by commit time (not transaction
//! start), priority lists, abort, the conflict log, a unique clash on a non-key
//! column, and what happens without commit timestamps.

mod common;

use common::{prepare, sync_all, Sites};
use dugong_replica::engine::Engine;
use dugong_replica::run::{self, RunLimits};
use dugong_replica::ReplicaError;
use dugong_testkit::{Cluster, ClusterOptions};

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)";

async fn seeded(prefix: &str) -> Sites {
    let sites = Sites::new(prefix, 2, SCHEMA).await;
    for i in 0..2 {
        sites.client(i).batch_execute("INSERT INTO t SELECT g, 'seed', 0 FROM generate_series(1, 10) g").await.unwrap();
    }
    sites
}

#[tokio::test]
async fn the_transaction_that_commits_last_wins_even_if_it_began_first() {
    let sites = seeded("commit_order").await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    // A second session on site 0 begins first...
    let early = sites.cluster.connect(&sites.dbs[0]).await.unwrap();
    early.batch_execute("BEGIN; SELECT now()").await.unwrap();
    // ...site 1 updates and commits...
    sites.client(1).batch_execute("UPDATE t SET v = 'site1' WHERE id = 1").await.unwrap();
    // ...and site 0's transaction updates and commits last.
    early.batch_execute("UPDATE t SET v = 'site0 committed last' WHERE id = 1; COMMIT").await.unwrap();
    let outcomes = sync_all(&mut p).await;
    assert_eq!(outcomes.iter().map(|o| o.conflicts.len()).sum::<usize>(), 1);
    assert_eq!(sites.assert_same("SELECT v FROM t WHERE id = 1").await, vec!["site0 committed last"]);
    // The conflict log names table, key, kind, winner, loser, both commit
    // times and both versions of the row, on both sites, under one id.
    let mut ids = Vec::new();
    for i in 0..2 {
        let rows = sites
            .rows(i, "SELECT table_schema, table_name, key::text, kind, winner, loser, winner_committed > loser_committed, reason,
                             winner_row->>'v', loser_row->>'v' FROM dugong.conflict_log")
            .await;
        assert_eq!(rows, vec!["public|t|{1}|update/update|db0|db1|t|later commit|site0 committed last|site1"]);
        ids.extend(sites.rows(i, "SELECT conflict_id FROM dugong.conflict_log").await);
    }
    assert!(ids[0].len() == 16 && ids[0] == ids[1], "the same id on every database: {ids:?}");
}

#[tokio::test]
async fn two_rows_of_one_table_are_won_by_different_sites_in_one_run() {
    let sites = seeded("per_row").await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites.client(0).batch_execute("UPDATE t SET v = 'old0' WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'new1' WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'old1' WHERE id = 2").await.unwrap();
    sites.client(0).batch_execute("UPDATE t SET v = 'new0' WHERE id = 2").await.unwrap();
    let outcomes = sync_all(&mut p).await;
    assert_eq!(outcomes.len(), 1, "one run decides both rows");
    assert_eq!(outcomes[0].conflicts.len(), 2);
    assert_eq!(sites.assert_same("SELECT id, v FROM t WHERE id <= 2").await, vec!["1|new1", "2|new0"]);
}

#[tokio::test]
async fn insert_insert_and_update_delete_resolve_by_commit_time() {
    let sites = seeded("ins_del").await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    // insert/insert of one key: the later insert wins.
    sites.client(0).batch_execute("INSERT INTO t VALUES (100, 'first', 0)").await.unwrap();
    sites.client(1).batch_execute("INSERT INTO t VALUES (100, 'second', 0)").await.unwrap();
    // update then delete: the delete is later and wins.
    sites.client(0).batch_execute("UPDATE t SET v = 'updated' WHERE id = 3").await.unwrap();
    sites.client(1).batch_execute("DELETE FROM t WHERE id = 3").await.unwrap();
    // delete then update: the update is later and wins (the row comes back).
    sites.client(0).batch_execute("DELETE FROM t WHERE id = 4").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'resurrected by a later update' WHERE id = 4").await.unwrap();
    sync_all(&mut p).await;
    assert_eq!(
        sites.assert_same("SELECT id, v FROM t WHERE id IN (3, 4, 100)").await,
        vec!["100|second", "4|resurrected by a later update"]
    );
    let logged: Vec<String> = sites.rows(0, "SELECT key::text || ':' || winner FROM dugong.conflict_log").await;
    assert_eq!(logged, vec!["{100}:db1", "{3}:db1", "{4}:db1"]);
}

#[tokio::test]
async fn a_priority_list_wins_regardless_of_time() {
    let sites = seeded("priority").await;
    let config = sites.config(r#"{"sources": [0, 1], "tables": "all", "conflict_strategy": [1, 0]}"#);
    let mut p = prepare(&config).await;
    // update/update, insert/insert, update/delete and delete/update: db1 wins each,
    // although db0 committed last every time.
    sites.client(1).batch_execute("UPDATE t SET v = 'site1 earlier' WHERE id = 1").await.unwrap();
    sites.client(0).batch_execute("UPDATE t SET v = 'site0 later' WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("INSERT INTO t VALUES (100, 'site1 insert', 0)").await.unwrap();
    sites.client(0).batch_execute("INSERT INTO t VALUES (100, 'site0 insert', 0)").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'site1 kept' WHERE id = 3").await.unwrap();
    sites.client(0).batch_execute("DELETE FROM t WHERE id = 3").await.unwrap();
    sites.client(1).batch_execute("DELETE FROM t WHERE id = 4").await.unwrap();
    sites.client(0).batch_execute("UPDATE t SET v = 'site0 lost' WHERE id = 4").await.unwrap();
    let outcomes = sync_all(&mut p).await;
    assert_eq!(outcomes.iter().map(|o| o.conflicts.len()).sum::<usize>(), 4);
    assert_eq!(
        sites.assert_same("SELECT id, v FROM t WHERE id IN (1, 3, 4, 100)").await,
        vec!["100|site1 insert", "1|site1 earlier", "3|site1 kept"]
    );
}

#[tokio::test]
async fn abort_applies_nothing_keeps_the_changes_and_recovers_under_another_strategy() {
    let sites = seeded("abort").await;
    let config = sites.config(r#"{"sources": [0, 1], "tables": "all", "conflict_strategy": "abort"}"#);
    let mut p = prepare(&config).await;
    sites
        .client(0)
        .batch_execute("UPDATE t SET v = 'a0' WHERE id = 1; UPDATE t SET v = 'only on 0' WHERE id = 5")
        .await
        .unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'a1' WHERE id = 1").await.unwrap();
    // insert/insert and update/delete conflicts abort just the same.
    sites
        .client(0)
        .batch_execute("INSERT INTO t VALUES (100, 'i0', 0); UPDATE t SET v = 'u0' WHERE id = 3")
        .await
        .unwrap();
    sites.client(1).batch_execute("INSERT INTO t VALUES (100, 'i1', 0); DELETE FROM t WHERE id = 3").await.unwrap();
    for _ in 0..2 {
        let err = run::run_once(&mut p, RunLimits::default()).await.unwrap_err();
        assert!(matches!(err, ReplicaError::ConflictAbort { .. }), "{err}");
        assert!(err.to_string().contains("public.t"), "{err}");
    }
    // Nothing applied, not even the row without conflict.
    assert_eq!(sites.rows(1, "SELECT v FROM t WHERE id = 5").await, vec!["seed"]);
    assert!(run::pending(&mut p).await.unwrap(), "the changes are kept");
    drop(p);
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sync_all(&mut p).await;
    assert_eq!(
        sites.assert_same("SELECT id, v FROM t WHERE id IN (1, 3, 5, 100)").await,
        vec!["100|i1", "1|a1", "5|only on 0"]
    );
}

#[tokio::test]
async fn a_unique_clash_on_another_column_is_bad_loses_nothing_and_heals_when_fixed() {
    let schema = "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL CONSTRAINT users_email_key UNIQUE)";
    let sites = Sites::new("unique", 2, schema).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites
        .client(0)
        .batch_execute("INSERT INTO users VALUES (1, 'ann@example.org'), (2, 'bob@example.org')")
        .await
        .unwrap();
    sites.client(1).batch_execute("INSERT INTO users VALUES (3, 'ann@example.org')").await.unwrap();
    let err = run::run_once(&mut p, RunLimits::default()).await.unwrap_err().to_string();
    assert!(err.contains("users_email_key") && err.contains("public.users"), "{err}");
    assert!(!err.contains("ann@example.org"), "row values must not appear in errors: {err}");
    // Nothing half-applied: site 1 did not get bob either.
    assert_eq!(sites.rows(1, "SELECT id FROM users").await, vec!["3"]);
    // An operator fixes one side; the sync converges with every other row.
    sites.client(1).batch_execute("UPDATE users SET email = 'ann.other@example.org' WHERE id = 3").await.unwrap();
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT id, email FROM users").await.len(), 3);
}

#[tokio::test]
async fn without_commit_timestamps_the_sync_says_so_and_ties_go_to_the_first_database() {
    let cluster = Cluster::start(ClusterOptions { track_commit_timestamp: false, ..Default::default() }).unwrap();
    let mut dbs = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("notct{i}")).await.unwrap();
        cluster.psql(&db, SCHEMA).await.unwrap();
        cluster.psql(&db, "INSERT INTO t VALUES (1, 'seed', 0)").await.unwrap();
        dbs.push(db);
    }
    let json = format!(
        r#"{{"databases": [{{"id": 0, "dbname": "{}", "host": "127.0.0.1 port={p}", "user": "postgres", "pass": ""}},
                          {{"id": 1, "dbname": "{}", "host": "127.0.0.1 port={p}", "user": "postgres", "pass": ""}}],
            "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#,
        dbs[0],
        dbs[1],
        p = cluster.port()
    );
    let config = dugong_config::Config::from_str(&json, std::path::Path::new("notct.json")).unwrap();
    let mut p = prepare(&config).await;
    assert_eq!(p.engine.without_commit_timestamps().len(), 2);
    let c1 = cluster.connect(&dbs[1]).await.unwrap();
    let c0 = cluster.connect(&dbs[0]).await.unwrap();
    c1.batch_execute("UPDATE t SET v = 'one'").await.unwrap();
    c0.batch_execute("UPDATE t SET v = 'zero'").await.unwrap();
    c1.batch_execute("UPDATE t SET v = 'one again'").await.unwrap();
    let outcomes = sync_all(&mut p).await;
    assert_eq!(outcomes[0].conflicts.len(), 1);
    for c in [&c0, &c1] {
        let v: String = c.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
        assert_eq!(v, "zero", "without commit times, db0 (listed first) wins");
    }
}

/// A backlog with one bad transaction in the middle: everything before it
/// ships (batches shrink to isolate it), the sync is Bad naming the
/// constraint, and once an operator fixes the clash the rest follows.
#[tokio::test]
async fn a_failing_transaction_in_a_backlog_does_not_hold_back_the_ones_before_it() {
    use dugong_replica::daemon::{self, DaemonOptions};
    use std::time::Duration;
    let schema = "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL CONSTRAINT users_email_key UNIQUE)";
    let sites = Sites::new("isolate", 2, schema).await;
    // Site 1 has a row from before replication that clashes with a later insert on site 0.
    sites.client(1).batch_execute("INSERT INTO users VALUES (-1, 'clash@example.org')").await.unwrap();
    let config = sites.master_master();
    drop(prepare(&config).await); // install capture
    for tx in 0..10 {
        let email =
            if tx == 6 { "'clash@example.org'".to_string() } else { format!("'u{tx}_' || g || '@example.org'") };
        let sql = format!(
            "INSERT INTO users SELECT g, {email} FROM generate_series({}, {}) g",
            tx * 100,
            tx * 100 + if tx == 6 { 0 } else { 99 }
        );
        sites.client(0).batch_execute(&sql).await.unwrap();
    }
    let options = DaemonOptions {
        batch_rows: Some(1000),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..Default::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn(daemon::run(std::sync::Arc::new(config), options, shutdown.clone()));
    let c1 = sites.client(1);
    dugong_testkit::wait_for("the transactions before the bad one", Duration::from_secs(20), || async {
        let n: i64 = c1.query_one("SELECT count(*) FROM users WHERE id >= 0", &[]).await.ok()?.get(0);
        (n == 600).then_some(())
    })
    .await;
    let error: String = c1.query_one("SELECT last_error FROM dugong.sync_state", &[]).await.unwrap().get(0);
    assert!(error.contains("users_email_key"), "{error}");
    c1.batch_execute("DELETE FROM users WHERE id = -1").await.unwrap();
    dugong_testkit::wait_for("the rest after the fix", Duration::from_secs(20), || async {
        let n: i64 = c1.query_one("SELECT count(*) FROM users", &[]).await.ok()?.get(0);
        (n == 901).then_some(())
    })
    .await;
    shutdown.cancel();
    daemon.await.unwrap();
    sites.assert_same("SELECT * FROM users").await;
}
