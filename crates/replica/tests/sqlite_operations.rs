//! Operating SQLite syncs: errors that name the problem, schema checks, one
//! replicator per sync, a busy database, the daemon end to end.

mod sqlite_sites;

use dugong_config::Config;
use dugong_core::DbId;
use dugong_replica::daemon::{self, DaemonOptions};
use dugong_replica::engine::Engine;
use dugong_replica::record::Replicator;
use dugong_replica::run::RunLimits;
use dugong_replica::{ErrorPolicy, ReplicaError};
use dugong_testkit::wait_for;
use sqlite_sites::{block_on, prepare, prepare_as, run_once, Sites};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);";

fn prepare_err(config: &Config) -> ReplicaError {
    match prepare_as(config, &Replicator::this_process()) {
        Ok(_) => panic!("prepare should fail"),
        Err(e) => e,
    }
}

#[test]
fn files_that_cannot_be_used_are_named_with_the_reason() {
    let sites = Sites::new(2, SCHEMA);
    let config = sites.config("");
    let missing = sites.dir.path().join("missing.db");
    std::fs::rename(&sites.paths[1], &missing).unwrap();
    let err = prepare_err(&config);
    let text = err.to_string();
    assert!(err.is_fatal_at_start(), "{text}");
    assert!(text.contains("db1") && text.contains("site1.db") && text.contains("does not exist"), "{text}");
    assert!(!sites.paths[1].exists(), "a missing file is never created");

    std::fs::write(&sites.paths[1], b"this is not a database, just some text that is long enough").unwrap();
    let text = prepare_err(&config).to_string();
    assert!(text.contains("site1.db") && text.contains("not a SQLite database"), "{text}");

    std::fs::remove_file(&sites.paths[1]).unwrap();
    std::fs::create_dir(&sites.paths[1]).unwrap();
    let text = prepare_err(&config).to_string();
    assert!(text.contains("is a directory"), "{text}");
}

/// Tables shaped differently in the files are held, naming table and column,
/// while the others replicate.
#[test]
fn schema_mismatches_name_table_and_column() {
    let sites = Sites::new(2, SCHEMA);
    sites.exec(1, "ALTER TABLE t ADD COLUMN extra INTEGER; CREATE TABLE only_here (id INTEGER PRIMARY KEY);");
    let p = prepare(&sites.config(""));
    let text = p.plan.held_reason().expect("held tables");
    assert!(text.contains("table main.t held: column \"extra\" exists on db1 but not on db0"), "{text}");
    assert!(text.contains("table main.only_here held: missing on db0"), "{text}");
    drop(p);

    let sites = Sites::new(2, SCHEMA);
    sites.exec(1, "DROP TABLE t; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);");
    let p = prepare(&sites.config(""));
    let text = p.plan.held_reason().expect("a held table");
    assert!(text.contains("column \"v\" is TEXT on db0 but BLOB on db1"), "{text}");
    drop(p);

    // A listed table without a primary key is a configuration error.
    let sites = Sites::new(2, "CREATE TABLE nk (v TEXT);");
    let text = prepare_err(&sites.config_with_tables("nk", "")).to_string();
    assert!(text.contains("syncs[0].tables: table main.nk: no primary key"), "{text}");
}

#[test]
fn a_second_replicator_stands_by_until_the_first_stops() {
    let sites = Sites::new(2, SCHEMA);
    let config = sites.config("");
    let first = prepare(&config);
    let other = Replicator { pid: 1, host: "elsewhere".into(), ..Replicator::this_process() };
    let err = match prepare_as(&config, &other) {
        Ok(_) => panic!("two replicators on one sync"),
        Err(e) => e,
    };
    assert!(matches!(err, ReplicaError::Standby { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{} on", std::process::id())), "names the holder: {err}");
    drop(first);
    // The first one's process (this one) is alive, so its lease holds until it
    // is given up.
    let first = prepare(&config);
    let sync = prepare_as(&config, &Replicator::this_process());
    assert!(sync.is_ok(), "the same replicator may prepare again");
    let mut sync = sync.unwrap();
    block_on(sync.engine.record_stopped(&sync.plan, &Replicator::this_process()));
    drop(first);
    assert!(prepare_as(&config, &other).is_ok(), "a released lease is taken at once");
}

#[test]
fn a_run_waits_for_a_busy_database() {
    let sites = Sites::new(2, SCHEMA);
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(1, "INSERT INTO t VALUES (1, 'x')");
    // Another process's writer holds site 0's write lock.
    let holder = sites.conn(0);
    holder.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2, 'held');").unwrap();
    // The run's connection to site 0 reports each time it finds the lock taken
    // (a busy handler standing in for its busy timeout, and as patient), so the
    // writer commits only once the run is seen waiting.
    let (waiting, seen_waiting) = std::sync::mpsc::channel();
    let gives_up = std::time::Instant::now() + Duration::from_secs(30);
    p.engine.files().nodes[0]
        .conn
        .busy_handler(Some(move |_attempt| {
            let _ = waiting.send(());
            std::thread::sleep(Duration::from_millis(1));
            std::time::Instant::now() < gives_up
        }))
        .unwrap();
    let releaser = std::thread::spawn(move || {
        seen_waiting.recv_timeout(Duration::from_secs(30)).expect("the run waits for site 0's write lock");
        holder.execute_batch("COMMIT").unwrap();
    });
    let outcome = run_once(&mut p, RunLimits::default()).expect("the run waits for the lock");
    releaser.join().unwrap();
    assert_eq!(outcome.inserts, 2, "the run took the lock after the writer committed, and shipped its row too");
    assert_eq!(sites.assert_same("SELECT * FROM t ORDER BY id").len(), 2);

    // Held longer than the busy timeout, "database is locked" means: retry at once.
    let c = rusqlite::Connection::open(&sites.paths[0]).unwrap();
    let blocker = sites.conn(0);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    c.busy_timeout(Duration::from_millis(1)).unwrap();
    let busy = c.execute_batch("BEGIN IMMEDIATE").unwrap_err();
    let err = ReplicaError::Sqlite { db: DbId(0), context: "applying".into(), source: busy };
    assert_eq!(err.policy(), ErrorPolicy::RetrySoon, "{err}");
    blocker.execute_batch("ROLLBACK").unwrap();
}

/// A writer holds one site's write lock for seconds while the daemon runs: the
/// sync retries without holding the other site's lock meanwhile, never turns
/// Bad, and ships everything once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_busy_for_seconds_fails_nothing() {
    let sites = Sites::new(2, SCHEMA);
    let config = Arc::new(sites.config(""));
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run(config.clone(), DaemonOptions::default(), shutdown.clone()));
    wait_for("capture installed", Duration::from_secs(20), || async {
        (sites.count(1, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'") == 3).then_some(())
    })
    .await;
    let holder = sites.conn(1);
    holder.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2, 'held');").unwrap();
    sites.exec(0, "INSERT INTO t VALUES (1, 'from 0')");
    // Site 0's own application keeps writing meanwhile: the replicator must not
    // sit on site 0's lock while it waits for site 1's.
    let writes = sites.conn(0);
    writes.busy_timeout(Duration::from_secs(1)).unwrap();
    let start = std::time::Instant::now();
    let mut n = 10;
    while start.elapsed() < Duration::from_millis(2500) {
        n += 1;
        writes
            .execute_batch(&format!("INSERT INTO t VALUES ({n}, 'site 0 busy meanwhile')"))
            .expect("site 0 stays writable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.execute_batch("COMMIT").unwrap();
    let want = sites.count(0, "SELECT count(*) FROM t") + 1;
    wait_for("every row on both sites", Duration::from_secs(30), || async {
        (sites.count(0, "SELECT count(*) FROM t") == want && sites.count(1, "SELECT count(*) FROM t") == want)
            .then_some(())
    })
    .await;
    for i in 0..2 {
        assert_eq!(
            sites.count(i, "SELECT count(*) FROM dugong_sync_state WHERE last_bad_ended IS NOT NULL"),
            0,
            "never Bad"
        );
    }
    shutdown.cancel();
    assert!(daemon.await.unwrap()[0].good);
}

/// The daemon replicates SQLite syncs within moments, keeps writing "Good"
/// into the state status reads, and stops cleanly, releasing the sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_replicates_sqlite_syncs_and_stops_cleanly() {
    let sites = Sites::new(2, SCHEMA);
    let config = Arc::new(sites.config(""));
    let shutdown = CancellationToken::new();
    let options = DaemonOptions { heartbeat: Duration::from_millis(200), ..DaemonOptions::default() };
    let daemon = tokio::spawn(daemon::run(config.clone(), options, shutdown.clone()));
    // Capture is installed by the daemon: wait for it on both sites (a row
    // written on a site before its triggers exist is never captured), then
    // write.
    wait_for("capture installed", Duration::from_secs(20), || async {
        assert!(!daemon.is_finished(), "the daemon stopped early");
        let triggers = |site| sites.count(site, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'");
        (triggers(0) == 3 && triggers(1) == 3).then_some(())
    })
    .await;
    sites.exec(0, "INSERT INTO t VALUES (1, 'from 0')");
    sites.exec(1, "INSERT INTO t VALUES (2, 'from 1')");
    wait_for("both rows on both sites", Duration::from_secs(20), || async {
        (sites.count(0, "SELECT count(*) FROM t") == 2 && sites.count(1, "SELECT count(*) FROM t") == 2).then_some(())
    })
    .await;
    let report = dugong_replica::status::gather(&config, None).await.unwrap();
    assert_eq!(report.syncs[0].state, "Good");
    assert_eq!(report.replicator_pid, Some(std::process::id() as i32));
    // The change logs' size, from SQLite's page statistics.
    for db in &report.syncs[0].databases {
        assert!(db.change_log_bytes.is_some_and(|b| b > 0), "{db:?}");
    }
    shutdown.cancel();
    let reports = daemon.await.unwrap();
    assert!(reports[0].good, "{:?}", reports[0].error);
    assert_eq!(sites.count(0, "SELECT count(*) FROM dugong_lease"), 0, "the lease is given up on a clean stop");
}
