//! `status::gather` on real PostgreSQL: state recorded by real runs, pending
//! changes and lag of unshipped writes, a database that cannot be reached, a
//! sync that never ran.

use dugong_config::Config;
use dugong_replica::engine::postgres;
use dugong_replica::run::{self, RunLimits};
use dugong_replica::status::{self, render};
use dugong_replica::ReplicaError;
use dugong_testkit::{free_port, Cluster};
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE loose (v text);";

/// Two databases with `SCHEMA`, and a master-master config for them; `dead`
/// points db1 at a port nothing listens on.
async fn sites(prefix: &str) -> (Vec<String>, Config) {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("{prefix}_{i}")).await.expect("create database");
        cluster.psql(&db, SCHEMA).await.expect("schema");
        dbs.push(db);
    }
    let config = config(&dbs, [cluster.port(), cluster.port()]);
    (dbs, config)
}

fn config(dbs: &[String], ports: [u16; 2]) -> Config {
    let json = format!(
        r#"{{"databases": [
            {{"id": 0, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}},
            {{"id": 1, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}],
           "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
        dbs[0], ports[0], dbs[1], ports[1]
    );
    Config::from_str(&json, Path::new("status-test.json")).expect("valid config")
}

/// Prepares the sync, writes `rows` rows on db0 and runs once (a run records
/// its state in its own transactions).
async fn run_and_record(config: &Config, dbs: &[String], rows: i32) {
    let mut p = postgres::prepare(config, &config.syncs[0]).await.expect("prepare");
    let client = Cluster::shared().connect(&dbs[0]).await.expect("connect");
    client.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, $1) g", &[&rows]).await.expect("insert");
    let outcome = run::run_once(&mut p, RunLimits::default()).await.expect("run");
    assert_eq!(outcome.inserts, rows as u64);
    // The daemon's next poll, which carries the run's position advance.
    assert!(run::run_once(&mut p, RunLimits::default()).await.expect("poll").empty);
}

#[tokio::test]
async fn a_good_run_shows_good_with_its_counts_and_replicator() {
    let (dbs, config) = sites("status_good").await;
    run_and_record(&config, &dbs, 3).await;
    let report = status::gather(&config, None).await.expect("gather");
    assert!(report.healthy && !report.unreachable(), "{report:#?}");
    assert_eq!(report.replicator_pid, Some(std::process::id() as i32));
    let s = &report.syncs[0];
    assert_eq!((s.name.as_str(), s.state.as_str()), ("sync0", "Good"));
    assert_eq!((s.last_deletes, s.last_inserts, s.tables), (0, 3, 1));
    assert_eq!(s.excluded, vec!["public.loose (no primary key)".to_string()]);
    assert!(s.last_good.as_ref().is_some_and(|g| g.seconds_ago < 60.0), "{s:#?}");
    assert!(s.last_bad.is_none());
    assert!(s.replicator.as_ref().is_some_and(|r| r.running));
    assert_eq!((s.pending, s.lag_seconds, s.commit_timestamps), (Some(0), Some(0.0), Some(true)));
    assert!(s.databases.iter().all(|d| d.reachable && d.installed && d.error.is_none()));

    let summary = render::summary_local(&report);
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines[0], format!("PID of Dugong replicator: {}", std::process::id()));
    assert_eq!(lines[1], " Name    State    Last good    Time    Last I/D    Last bad    Time  ");
    assert_eq!(lines[2], "=======+========+============+=======+===========+===========+=======");
    assert!(lines[3].starts_with(" sync0 | Good   | "), "{summary}");
    assert!(lines[3].ends_with(" | 0/3       | none      |       "), "{summary}");
    assert!(summary.contains("\nsync0: databases: db0 reachable, db1 reachable\n"), "{summary}");
    assert!(summary.contains("\nsync0: lag 0s, pending changes 0 (db0 0, db1 0), conflicts 0\n"), "{summary}");
    assert!(summary.contains("\nsync0: excluded tables: public.loose (no primary key)\n"), "{summary}");

    let detail = render::detail_local(&report);
    for line in [
        "Rows deleted/inserted    : 0 / 3",
        "Sync name                : sync0",
        "Current state            : Good",
        "Source relgroup/database : sync0 / db0",
        "Tables in sync           : 1",
        "Conflict strategy        : latest",
        "Pending changes          : 0 (db0 0, db1 0)",
        "Commit timestamps        : on",
        "Last error:              : ",
    ] {
        assert!(detail.lines().any(|l| l == line), "missing {line:?} in\n{detail}");
    }
}

#[tokio::test]
async fn unshipped_writes_show_as_pending_with_their_lag() {
    let (dbs, config) = sites("status_pending").await;
    run_and_record(&config, &dbs, 1).await;
    let cluster = Cluster::shared();
    cluster
        .psql(&dbs[0], "INSERT INTO t VALUES (10, 'a'), (11, 'b'); UPDATE t SET v = 'c' WHERE id = 1")
        .await
        .unwrap();
    cluster.psql(&dbs[1], "TRUNCATE t").await.unwrap();
    let report = status::gather(&config, Some("sync0")).await.expect("gather");
    let s = &report.syncs[0];
    assert_eq!(s.state, "Good", "pending changes alone do not make a sync Bad");
    // Per database: what waits to be applied there, from the other site.
    assert_eq!(s.databases[1].pending, Some(3), "db0's three changes wait for db1: {s:#?}");
    assert_eq!(s.databases[0].pending, Some(1), "db1's truncate waits for db0: {s:#?}");
    assert_eq!(s.pending, Some(4));
    let lag = s.lag_seconds.expect("commit timestamps are on, so the lag is known");
    assert!((0.0..60.0).contains(&lag), "{lag}");
    assert!(s.databases.iter().all(|d| d.lag_seconds.is_some_and(|l| l > 0.0)), "{s:#?}");
    assert!(render::summary_local(&report).contains("pending changes 4 (db0 1, db1 3)"));
}

#[tokio::test]
async fn an_unreachable_database_makes_the_sync_bad() {
    let (dbs, config) = sites("status_down").await;
    run_and_record(&config, &dbs, 1).await;
    let dead = free_port();
    let broken = self::config(&dbs, [Cluster::shared().port(), dead]);
    let report = status::gather(&broken, None).await.expect("gather");
    assert!(!report.healthy && report.unreachable());
    let s = &report.syncs[0];
    assert_eq!(s.state, "Bad");
    assert_eq!(s.stored_state.as_deref(), Some("Good"));
    assert!(s.last_good.is_some(), "the state still comes from the reachable database");
    assert!(s.databases[0].reachable);
    let db1 = &s.databases[1];
    assert!(!db1.reachable);
    let why = db1.error.as_deref().unwrap_or_default();
    assert!(why.contains(&format!("127.0.0.1:{dead}")), "{why}");
    let summary = render::summary_local(&report);
    assert!(summary.contains(" sync0 | Bad    | "), "{summary}");
    assert!(summary.contains(&format!("db1 unreachable (127.0.0.1:{dead}")), "{summary}");
    assert!(!summary.contains("pass"), "{summary}");
}

#[tokio::test]
async fn a_sync_that_never_ran_has_no_records() {
    let (_dbs, config) = sites("status_never").await;
    let report = status::gather(&config, None).await.expect("gather");
    assert!(!report.healthy && !report.unreachable());
    assert_eq!(report.replicator_pid, None);
    let s = &report.syncs[0];
    assert_eq!(s.state, "No records found");
    assert!(s.databases.iter().all(|d| d.reachable && !d.installed));
    let summary = render::summary_local(&report);
    assert!(summary.starts_with("\n Name    State              Last good "), "{summary}");
    assert!(
        summary.contains("\n sync0 | No records found | none       |       |           | none      |       \n"),
        "{summary}"
    );
    assert!(summary.contains("sync0: replicator never ran\n"), "{summary}");
}

#[tokio::test]
async fn an_unknown_sync_is_a_configuration_error() {
    let (_dbs, config) = sites("status_unknown").await;
    let err = status::gather(&config, Some("nope")).await.unwrap_err();
    assert!(matches!(err, ReplicaError::Config(_)), "{err}");
    assert!(err.to_string().contains("the syncs are: sync0"), "{err}");
}
