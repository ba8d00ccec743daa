//! The replicator through an incident, in-process against real PostgreSQL:
//! sites down when it starts (one of two, one of three), a site lost in the
//! middle of a three-site mesh, what waits for a missing site rising and
//! falling back to zero, a table missing on one site held while the others go
//! on. Each site that goes away is a cluster of its own, stopped and started
//! again; the others are databases of the shared cluster.

use dugong_config::Config;
use dugong_replica::daemon::{self, DaemonOptions, SyncReport};
use dugong_replica::status::{self, SyncStatus};
use dugong_testkit::{wait_for, Cluster, ClusterOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, site int NOT NULL, v text)";

/// A site: its cluster (shared, or its own when it is to go away) and database.
struct Site {
    cluster: &'static Cluster,
    db: String,
}

impl Site {
    /// A database of the shared cluster.
    async fn shared(prefix: &str, schema: &str) -> Site {
        Site::on(Cluster::shared(), prefix, schema).await
    }

    /// A database on a cluster of its own, which the test may stop.
    async fn own(prefix: &str, schema: &str) -> Site {
        Site::own_with(prefix, schema, ClusterOptions::default()).await
    }

    async fn own_with(prefix: &str, schema: &str, options: ClusterOptions) -> Site {
        let cluster: &'static Cluster = Box::leak(Box::new(Cluster::start(options).expect("cluster")));
        Site::on(cluster, prefix, schema).await
    }

    async fn on(cluster: &'static Cluster, prefix: &str, schema: &str) -> Site {
        let db = cluster.create_database(prefix).await.expect("create database");
        cluster.psql(&db, schema).await.expect("schema");
        Site { cluster, db }
    }

    async fn client(&self) -> Client {
        self.cluster.connect(&self.db).await.expect("connect")
    }

    async fn exec(&self, sql: &str) {
        self.client().await.batch_execute(sql).await.expect(sql);
    }

    async fn count(&self, sql: &str) -> Option<i64> {
        let client = self.cluster.connect(&self.db).await.ok()?;
        client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
    }

    fn json(&self, id: usize) -> String {
        format!(
            r#"{{"id": {id}, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}"#,
            self.db,
            self.cluster.port()
        )
    }
}

fn mesh(sites: &[&Site], extra: &str) -> Config {
    let dbs: Vec<String> = sites.iter().enumerate().map(|(i, s)| s.json(i)).collect();
    let ids: Vec<String> = (0..sites.len()).map(|i| i.to_string()).collect();
    let json = format!(
        r#"{{"databases": [{}], "syncs": [{{"sources": [{}], "targets": [], "tables": "all", "onetimecopy": 0{extra}}}]}}"#,
        dbs.join(", "),
        ids.join(", ")
    );
    Config::from_str(&json, Path::new("outage.json")).expect("config")
}

/// A daemon in-process, quick to notice and retry.
struct Daemon {
    shutdown: CancellationToken,
    task: JoinHandle<Vec<SyncReport>>,
}

impl Daemon {
    fn start(config: &Config) -> Daemon {
        Daemon::with_heartbeat(config, Duration::from_millis(500))
    }

    fn with_heartbeat(config: &Config, heartbeat: Duration) -> Daemon {
        let options = DaemonOptions {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            schema_check: Duration::from_millis(200),
            heartbeat,
            ..DaemonOptions::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::run(Arc::new(config.clone()), options, shutdown.clone()));
        Daemon { shutdown, task }
    }

    async fn stop(self) -> Vec<SyncReport> {
        self.shutdown.cancel();
        self.task.await.expect("daemon")
    }
}

/// The sync's status, as `dugong status` reads it.
async fn status(config: &Config) -> SyncStatus {
    status::gather(config, None).await.expect("status").syncs.remove(0)
}

/// Waits until `sql` counts `n` on `site`.
async fn until_count(site: &Site, sql: &str, n: i64, what: &str) {
    wait_for(what, Duration::from_secs(30), || async { (site.count(sql).await == Some(n)).then_some(()) }).await;
}

/// Writes `n` rows of `site_no` on `site`, ids from `from`.
async fn write(site: &Site, site_no: usize, from: i64, n: i64) {
    site.exec(&format!(
        "INSERT INTO t SELECT g, {site_no}, 'from site {site_no}' FROM generate_series({from}, {}) g",
        from + n - 1
    ))
    .await;
}

#[tokio::test]
async fn started_with_one_of_two_sites_down_it_replicates_when_the_site_returns() {
    let s0 = Site::shared("one_of_two_0", SCHEMA).await;
    let s1 = Site::own("one_of_two_1", SCHEMA).await;
    let config = mesh(&[&s0, &s1], r#", "backlog_alert": "256kB""#);
    s1.cluster.stop().unwrap();
    let daemon = Daemon::start(&config);
    // Capture is installed where it can be: rows written from then on wait.
    wait_for("capture on the reachable site", Duration::from_secs(30), || async {
        let n = s0.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'").await;
        (n == Some(1)).then_some(())
    })
    .await;
    write(&s0, 0, 1, 50).await;
    let s = wait_for("status to say what waits for db1", Duration::from_secs(30), || async {
        let s = status(&config).await;
        (s.databases[1].pending == Some(50)).then_some(s)
    })
    .await;
    assert_eq!(s.state, "Bad", "{s:#?}");
    assert!(!s.databases[1].reachable, "{s:#?}");
    let first_lag = s.databases[1].lag_seconds.expect("commit times are on");
    assert!(first_lag > 0.0, "something waits, so the lag is not 0: {s:#?}");
    assert!(s.replicator.as_ref().is_some_and(|r| r.running), "{s:#?}");
    // The lag rises while the site is away.
    wait_for("the lag to rise", Duration::from_secs(30), || async {
        let lag = status(&config).await.databases[1].lag_seconds?;
        (lag >= first_lag + 1.0).then_some(())
    })
    .await;
    // The backlog grows past the sync's alert: unhealthy, saying what to do;
    // nothing is dropped.
    let s = status(&config).await;
    assert_eq!(s.databases[0].change_log_rows, Some(50), "{s:#?}");
    assert!(s.advice.iter().all(|a| !a.contains("backlog_alert")), "under the alert: {:?}", s.advice);
    write(&s0, 0, 5001, 5000).await;
    let s = wait_for("the backlog past its alert", Duration::from_secs(30), || async {
        let s = status(&config).await;
        (s.databases[0].change_log_rows == Some(5050)).then_some(s)
    })
    .await;
    let bytes = s.databases[0].change_log_bytes.expect("bytes known");
    assert!(bytes > 256 * 1024, "{bytes}");
    assert!(!s.healthy);
    assert!(
        s.advice.iter().any(|a| a.starts_with("db0's change logs hold")
            && a.contains("(5050 rows) for db1, over backlog_alert (256.0 KiB)")),
        "{:?}",
        s.advice
    );
    assert_eq!(s.databases[1].change_log_rows, None, "db1 cannot say: {s:#?}");

    s1.cluster.restart().unwrap();
    until_count(&s1, "SELECT count(*) FROM t", 5050, "site 1 caught up").await;
    write(&s1, 1, 1001, 5).await;
    until_count(&s0, "SELECT count(*) FROM t", 5055, "site 1's writes replicated back").await;
    let s = wait_for("the sync Good with nothing waiting", Duration::from_secs(30), || async {
        let s = status(&config).await;
        (s.state == "Good" && s.pending == Some(0)).then_some(s)
    })
    .await;
    assert!(s.databases.iter().all(|d| d.lag_seconds == Some(0.0)), "{s:#?}");
    assert!(s.databases.iter().all(|d| d.change_log_rows == Some(0)), "{s:#?}");
    assert!(s.advice.iter().all(|a| !a.contains("backlog_alert")), "nothing kept for anyone: {:?}", s.advice);
    let reports = daemon.stop().await;
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
}

#[tokio::test]
async fn in_a_three_site_mesh_a_lost_site_never_stops_the_other_two() {
    let s0 = Site::shared("mesh_0", SCHEMA).await;
    let s1 = Site::shared("mesh_1", SCHEMA).await;
    let s2 = Site::own("mesh_2", SCHEMA).await;
    let config = mesh(&[&s0, &s1, &s2], "");
    // Started with the third site down: the other two exchange writes both ways.
    s2.cluster.stop().unwrap();
    let daemon = Daemon::start(&config);
    wait_for("capture on both reachable sites", Duration::from_secs(30), || async {
        let a = s0.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'").await;
        let b = s1.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'").await;
        (a == Some(1) && b == Some(1)).then_some(())
    })
    .await;
    write(&s0, 0, 1, 20).await;
    write(&s1, 1, 1001, 20).await;
    until_count(&s0, "SELECT count(*) FROM t", 40, "db1's writes on db0").await;
    until_count(&s1, "SELECT count(*) FROM t", 40, "db0's writes on db1").await;
    // It returns, gets everything, and its own writes go to both others.
    s2.cluster.restart().unwrap();
    until_count(&s2, "SELECT count(*) FROM t", 40, "db2 caught up").await;
    write(&s2, 2, 2001, 10).await;
    until_count(&s0, "SELECT count(*) FROM t", 50, "db2's writes on db0").await;
    until_count(&s1, "SELECT count(*) FROM t", 50, "db2's writes on db1").await;

    // Lost in the middle of running: the other two go on, both ways, and
    // what waits for it is counted.
    s2.cluster.kill9().unwrap();
    write(&s0, 0, 101, 10).await;
    write(&s1, 1, 1101, 10).await;
    s0.exec("UPDATE t SET v = 'changed on db0 while db2 was away' WHERE id = 1").await;
    until_count(&s1, "SELECT count(*) FROM t", 70, "db0's writes on db1 with db2 away").await;
    until_count(&s0, "SELECT count(*) FROM t", 70, "db1's writes on db0 with db2 away").await;
    let s = wait_for("what waits for db2", Duration::from_secs(30), || async {
        let s = status(&config).await;
        (s.databases[2].pending == Some(21)).then_some(s)
    })
    .await;
    assert_eq!(s.state, "Bad", "{s:#?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("db2") && e.contains("db0, db1")), "{s:#?}");
    s2.cluster.restart().unwrap();
    until_count(&s2, "SELECT count(*) FROM t", 70, "db2 caught up again").await;
    let v = s2.client().await.query_one("SELECT v FROM t WHERE id = 1", &[]).await.unwrap().get::<_, String>(0);
    assert_eq!(v, "changed on db0 while db2 was away");
    let report = dugong_replica::compare::compare(&config, None, 10).await.expect("compare");
    assert!(report.identical, "{report:#?}");
    let reports = daemon.stop().await;
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
}

#[tokio::test]
async fn a_table_missing_on_one_site_is_held_and_joins_without_a_restart() {
    let s0 = Site::shared("late_0", &format!("{SCHEMA}; CREATE TABLE late (id int PRIMARY KEY, v text)")).await;
    let s1 = Site::shared("late_1", SCHEMA).await;
    let config = mesh(&[&s0, &s1], "");
    let daemon = Daemon::start(&config);
    wait_for("capture of the held table", Duration::from_secs(30), || async {
        let n = s0.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'").await;
        (n == Some(2)).then_some(())
    })
    .await;
    s0.exec("INSERT INTO late VALUES (1, 'written while held'); INSERT INTO t VALUES (1, 0, 'goes on')").await;
    until_count(&s1, "SELECT count(*) FROM t", 1, "the other table replicated").await;
    let s = wait_for("the hold reported", Duration::from_secs(30), || async {
        let s = status(&config).await;
        s.last_error.as_deref().is_some_and(|e| e.contains("public.late held: missing on db1")).then_some(s)
    })
    .await;
    assert_eq!(s.state, "Bad", "{s:#?}");
    // Created on the other site: it joins, and what was written meanwhile ships.
    s1.exec("CREATE TABLE late (id int PRIMARY KEY, v text)").await;
    until_count(&s1, "SELECT count(*) FROM late", 1, "the held table's rows shipped").await;
    s1.exec("INSERT INTO late VALUES (2, 'from site 1')").await;
    until_count(&s0, "SELECT count(*) FROM late", 2, "and it replicates both ways").await;
    wait_for("the sync Good again", Duration::from_secs(30), || async {
        (status(&config).await.state == "Good").then_some(())
    })
    .await;
    let reports = daemon.stop().await;
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
}

/// A small run commits on a target nearby without waiting for the WAL flush,
/// as native logical replication does. A crash of that target's server before
/// the flush loses the last rows there; the sources' positions must not have
/// moved past them, so the next replicator delivers them again. Here the
/// target's WAL writer flushes only every 10 s, and changes keep coming, so
/// the replicator has no lull in which to flush them itself: the crash comes
/// first (almost always: the attempt is repeated until rows are seen lost,
/// and every lost row must come back).
#[tokio::test]
async fn rows_a_target_lost_in_a_crash_before_their_flush_are_delivered_again() {
    let s0 = Site::shared("unflushed_0", SCHEMA).await;
    let slow_flush =
        ClusterOptions { extra_settings: vec![("wal_writer_delay".into(), "10s".into())], ..ClusterOptions::default() };
    let s1 = Site::own_with("unflushed_1", SCHEMA, slow_flush).await;
    let config = mesh(&[&s0, &s1], "");
    let mut lost = 0;
    for attempt in 0..3i64 {
        // No heartbeat meanwhile: its synchronous commit would flush the rows.
        let daemon = Daemon::with_heartbeat(&config, Duration::from_secs(600));
        wait_for("capture on both sites", Duration::from_secs(30), || async {
            let a = s0.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'").await;
            let b = s1.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'").await;
            (a == Some(1) && b == Some(1)).then_some(())
        })
        .await;
        // A row every millisecond on site 0 until the crash.
        let stop = CancellationToken::new();
        let writer = {
            let (client, stop) = (s0.client().await, stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                for id in attempt * 100_000.. {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    client.execute("INSERT INTO t VALUES ($1::int8::int, 0, 'stream')", &[&id]).await.expect("insert");
                }
            })
        };
        let watcher = s1.client().await;
        let first = format!("SELECT count(*) FROM t WHERE id >= {}", attempt * 100_000);
        wait_for("rows streaming to db1", Duration::from_secs(30), || async {
            let n: i64 = watcher.query_one(first.as_str(), &[]).await.ok()?.get(0);
            (n >= 200).then_some(())
        })
        .await;
        s1.cluster.kill9().unwrap();
        stop.cancel();
        writer.await.unwrap();
        drop(watcher);
        daemon.stop().await;
        s1.cluster.restart().unwrap();
        let all = "SELECT count(*) FROM t";
        let written = s0.count(all).await.expect("site 0 counts");
        if s1.count(all).await.expect("site 1 counts") < written {
            lost += 1;
        }
        let daemon = Daemon::start(&config);
        until_count(&s1, all, written, "every row there again").await;
        daemon.stop().await;
        if lost > 0 {
            break;
        }
    }
    assert!(lost > 0, "the crash never lost a row: the test shows nothing");
    let report = dugong_replica::compare::compare(&config, None, 10).await.expect("compare");
    assert!(report.identical, "{report:#?}");
}
