//! `dugong replicate` as operators run it: the real binary against real
//! PostgreSQL servers, including kill -9 of the replicator and of a database.

use dugong_testkit::{wait_for, Cluster, ClusterOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tokio_postgres::Client;

const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, site int NOT NULL, v text, n int NOT NULL DEFAULT 0)";

fn dugong() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.env("DUGONG_LOG", "info").stdin(Stdio::null());
    c
}

struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, json: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("dugong-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bucardo.json");
        std::fs::File::create(&path).unwrap().write_all(json.as_bytes()).unwrap();
        ConfigFile { dir, path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn db_json(id: usize, cluster: &Cluster, db: &str) -> String {
    format!(
        r#"{{"id": {id}, "dbname": "{db}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": "env"}}"#,
        cluster.port()
    )
}

fn master_master(dbs: &[String]) -> String {
    format!(
        r#"{{"databases": [{}], "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
        dbs.join(", ")
    )
}

/// Runs the binary to completion with `BUCARDO_DB<i>` set (empty passwords: trust).
fn run(args: &[&str], config: &Path) -> Output {
    let mut c = dugong();
    c.args(args).arg("--config").arg(config).env("BUCARDO_DB0", "").env("BUCARDO_DB1", "");
    c.output().expect("run dugong")
}

fn spawn(config: &Path, extra: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    dugong()
        .arg("replicate")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("BUCARDO_DB0", "")
        .env("BUCARDO_DB1", "")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn dugong replicate")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn two_sites(prefix: &str) -> (&'static Cluster, Vec<String>, Vec<Client>) {
    let cluster = Cluster::shared();
    let (names, clients) = sites_on(cluster, prefix).await;
    (cluster, names, clients)
}

/// Two databases with the schema on `cluster`, and a client of each.
async fn sites_on(cluster: &Cluster, prefix: &str) -> (Vec<String>, Vec<Client>) {
    let mut names = Vec::new();
    let mut clients = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("{prefix}{i}")).await.unwrap();
        let c = cluster.connect(&db).await.unwrap();
        c.batch_execute(SCHEMA).await.unwrap();
        names.push(db);
        clients.push(c);
    }
    (names, clients)
}

/// The replicator's `/metrics` page, when it answers.
async fn scrape(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    Some(buf)
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn once_replicates_both_ways_and_exits_zero() {
    let (cluster, dbs, clients) = two_sites("once").await;
    let cfg = ConfigFile::new("once", &master_master(&[db_json(0, cluster, &dbs[0]), db_json(1, cluster, &dbs[1])]));
    // The first run installs capture; rows written from then on replicate.
    let out = run(&["replicate", "--once"], &cfg.path);
    assert!(out.status.success(), "{}", text(&out));
    clients[0].batch_execute("INSERT INTO items SELECT g, 0, 'a' FROM generate_series(1, 100) g").await.unwrap();
    clients[1].batch_execute("INSERT INTO items SELECT g, 1, 'b' FROM generate_series(1001, 1050) g").await.unwrap();
    let out = run(&["replicate", "--once"], &cfg.path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("sync0: Good"), "{}", text(&out));
    for c in &clients {
        assert_eq!(count(c, "SELECT count(*) FROM items").await, 150);
    }
}

#[tokio::test]
async fn bad_configuration_fails_at_start_naming_file_field_and_reason() {
    let (cluster, dbs, _clients) = two_sites("badcfg").await;
    let good0 = db_json(0, cluster, &dbs[0]);
    let good1 = db_json(1, cluster, &dbs[1]);
    let cases = [
        (
            format!(r#"{{"databases": [{good0}, {good1}], "syncs": [{{"sources": [0, 7], "tables": "all"}}]}}"#),
            "syncs[0].sources[1]",
        ),
        (
            format!(
                r#"{{"databases": [{good0}, {good1}], "syncs": [{{"sources": [], "targets": [1], "tables": "all"}}]}}"#
            ),
            "syncs[0].sources",
        ),
        (
            format!(r#"{{"databases": [{good0}, {good1}], "syncs": [{{"sources": [0, 1], "tables": "items,nope"}}]}}"#),
            "syncs[0].tables: table nope: does not exist on db0",
        ),
        (
            format!(
                r#"{{"databases": [{good0}, {good1}], "syncs": [{{"sources": [0, 1], "tables": "all", "colour": 1}}]}}"#
            ),
            "colour",
        ),
    ];
    for (i, (json, expect)) in cases.iter().enumerate() {
        let cfg = ConfigFile::new(&format!("bad{i}"), json);
        let out = run(&["replicate", "--once"], &cfg.path);
        let t = text(&out);
        assert!(!out.status.success(), "case {i} must fail: {t}");
        assert!(t.contains(expect), "case {i}: expected {expect:?} in: {t}");
        assert!(t.contains(&cfg.path.display().to_string()), "case {i} names the file: {t}");
        // Not only with --once: the daemon fails at start too.
        let mut c = dugong();
        c.args(["replicate", "--config"]).arg(&cfg.path).env("BUCARDO_DB0", "").env("BUCARDO_DB1", "");
        let out = c.output().unwrap();
        assert!(!out.status.success() && text(&out).contains(expect), "daemon, case {i}: {}", text(&out));
    }
    // An unreachable database: which one, and the error.
    let port = dugong_testkit::free_port();
    let dead =
        format!(r#"{{"id": 1, "dbname": "x", "host": "127.0.0.1 port={port}", "user": "postgres", "pass": "env"}}"#);
    let cfg = ConfigFile::new("dead", &master_master(&[good0, dead]));
    let out = run(&["replicate", "--once"], &cfg.path);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("db1 is unreachable") && t.contains(&port.to_string()), "{t}");
    assert!(!t.contains("pass"), "no password material in output: {t}");
    // The daemon starts all the same and runs without it (an outage is not
    // bad configuration), saying which database and why.
    let log = cfg.dir.join("daemon.log");
    let mut c = dugong();
    c.args(["replicate", "--config"]).arg(&cfg.path).env("BUCARDO_DB0", "").env("BUCARDO_DB1", "");
    c.stdout(std::fs::File::create(&log).unwrap()).stderr(std::fs::File::create(cfg.dir.join("daemon.err")).unwrap());
    let mut child = c.spawn().unwrap();
    let said = wait_for("the daemon to name the unreachable database", Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(cfg.dir.join("daemon.err")).unwrap_or_default();
        text.contains("running without an unreachable database").then_some(text)
    })
    .await;
    assert!(said.contains("db1") && said.contains(&port.to_string()), "{said}");
    assert!(child.try_wait().unwrap().is_none(), "the daemon keeps running: {said}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends it cleanly");
}

#[tokio::test]
async fn uninstall_leaves_the_application_tables() {
    let (cluster, dbs, clients) = two_sites("uninst").await;
    let cfg = ConfigFile::new("uninst", &master_master(&[db_json(0, cluster, &dbs[0]), db_json(1, cluster, &dbs[1])]));
    assert!(run(&["replicate", "--once"], &cfg.path).status.success());
    clients[0].batch_execute("INSERT INTO items VALUES (1, 0, 'x', 0)").await.unwrap();
    assert!(run(&["replicate", "--once"], &cfg.path).status.success());
    let out = run(&["replicate", "--uninstall"], &cfg.path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("db0: removed the dugong schema and the capture triggers of 1 table(s)"),
        "{}",
        text(&out)
    );
    for c in &clients {
        assert_eq!(count(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'dugong'").await, 0);
        assert_eq!(count(c, "SELECT count(*) FROM items").await, 1);
    }
}

async fn wait_count(c: &Client, sql: &str, want: i64, what: &str, timeout: Duration) {
    wait_for(what, timeout, || async {
        let n: i64 = c.query_one(sql, &[]).await.ok()?.get(0);
        (n == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_daemon_replicates_within_moments_serves_metrics_and_stops_on_sigterm() {
    let (cluster, dbs, clients) = two_sites("daemon").await;
    let cfg = ConfigFile::new("daemon", &master_master(&[db_json(0, cluster, &dbs[0]), db_json(1, cluster, &dbs[1])]));
    let metrics_port = dugong_testkit::free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let log = cfg.dir.join("replicate.log");
    let mut child = spawn(&cfg.path, &["--metrics", &metrics], &log);
    // Capture installed: wait for the triggers on both sides, then write on
    // both. The sites are set up at the same time, so one site's trigger says
    // nothing about the other's, and a row written before its site's trigger
    // exists is not captured.
    for c in &clients {
        wait_count(
            c,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'",
            1,
            "capture on both sites",
            Duration::from_secs(20),
        )
        .await;
    }
    clients[0].batch_execute("INSERT INTO items SELECT g, 0, 'x' FROM generate_series(1, 10) g").await.unwrap();
    clients[1].batch_execute("INSERT INTO items SELECT g, 1, 'y' FROM generate_series(11, 20) g").await.unwrap();
    for c in &clients {
        wait_count(c, "SELECT count(*) FROM items", 20, "rows from both sites", Duration::from_secs(10)).await;
    }
    // Run metrics come with the first run, health metrics with the first
    // count of what waits: both within moments.
    let names = [
        "dugong_replica_rows_applied_total",
        "dugong_replica_runs_total",
        "dugong_replica_lag_seconds",
        "dugong_replica_pending_rows",
        "dugong_replica_database_up",
        "dugong_replica_heartbeat_timestamp_seconds",
        "dugong_replica_run_duration_seconds_bucket",
        "dugong_replica_last_good_timestamp_seconds",
        "dugong_replica_change_log_rows",
        "dugong_replica_change_log_bytes",
        "dugong_replica_backlog_alert_bytes{sync=\"sync0\"} 10737418240",
    ];
    let body = wait_for("metrics", Duration::from_secs(10), || async {
        scrape(metrics_port).await.filter(|buf| names.iter().all(|n| buf.contains(n)))
    })
    .await;
    for name in names {
        assert!(body.contains(name), "metric {name} missing:\n{body}");
    }
    // Both sites caught up: nothing waits for either.
    for db in ["db0", "db1"] {
        let lines = [
            format!("dugong_replica_pending_rows{{sync=\"sync0\",db=\"{db}\"}} 0"),
            format!("dugong_replica_change_log_rows{{sync=\"sync0\",db=\"{db}\"}} 0"),
        ];
        wait_for("nothing pending", Duration::from_secs(10), || async {
            scrape(metrics_port).await.filter(|buf| lines.iter().all(|l| buf.contains(l))).map(|_| ())
        })
        .await;
    }
    // The shared cluster runs with wal_level = replica: no doorbell, and the
    // metric and the log say so (once per database) while the daemon polls.
    let off = ["dugong_replica_doorbell{db=\"db0\"} 0", "dugong_replica_doorbell{db=\"db1\"} 0"];
    wait_for("the doorbells reported off", Duration::from_secs(10), || async {
        scrape(metrics_port).await.filter(|buf| off.iter().all(|l| buf.contains(l))).map(|_| ())
    })
    .await;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("doorbell off") && said.contains("wal_level"), "the log says why the bell is off:\n{said}");
    stop(&mut child, &log);
}

/// Sends SIGTERM and waits for a clean exit.
fn stop(child: &mut Child, log: &Path) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for_blocking("replicator exit", Duration::from_secs(10), || child.try_wait().ok().flatten());
    assert!(status.success(), "SIGTERM must exit 0: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Polls `f` every 10 ms until it returns something, or panics after `timeout`.
fn wait_for_blocking<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// With wal_level = logical the daemon keeps a doorbell per source: the
/// metric says it rings, its temporary slots exist while the replicator
/// runs and go with it, the bells rest while a backlog keeps the replicator
/// busy, and changes from both sites arrive.
#[tokio::test]
async fn with_wal_level_logical_the_daemon_rings_instead_of_polling_and_leaves_no_slot_behind() {
    let cluster = Cluster::start(ClusterOptions {
        extra_settings: vec![("wal_level".into(), "logical".into())],
        ..Default::default()
    })
    .unwrap();
    let (dbs, clients) = sites_on(&cluster, "bell").await;
    let cfg = ConfigFile::new("bell", &master_master(&[db_json(0, &cluster, &dbs[0]), db_json(1, &cluster, &dbs[1])]));
    let metrics_port = dugong_testkit::free_port();
    let log = cfg.dir.join("replicate.log");
    let mut child = spawn(&cfg.path, &["--metrics", &format!("127.0.0.1:{metrics_port}")], &log);
    let ringing = ["dugong_replica_doorbell{db=\"db0\"} 1", "dugong_replica_doorbell{db=\"db1\"} 1"];
    wait_for("both doorbells ringing", Duration::from_secs(30), || async {
        scrape(metrics_port).await.filter(|buf| ringing.iter().all(|l| buf.contains(l))).map(|_| ())
    })
    .await;
    let slots = "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'dugong_bell_%' AND temporary";
    assert_eq!(count(&clients[0], slots).await, 2, "one temporary slot per source");
    // A backlog keeps the replicator busy, runs back to back: the bells rest
    // (no walsender decodes the writes meanwhile), and ring again once it
    // caught up and waits.
    // 300 transactions: runs are bounded by whole transactions.
    let backlog: String = (0..300)
        .map(|i| {
            let first = 1001 + i * 1000;
            format!("INSERT INTO items SELECT g, 0, 'backlog' FROM generate_series({first}, {}) g;\n", first + 999)
        })
        .collect();
    clients[0].batch_execute(&backlog).await.unwrap();
    let resting = ["dugong_replica_doorbell{db=\"db0\"} 2", "dugong_replica_doorbell{db=\"db1\"} 2"];
    wait_for("both doorbells resting while the backlog ships", Duration::from_secs(60), || async {
        scrape(metrics_port).await.filter(|buf| resting.iter().all(|l| buf.contains(l))).map(|_| ())
    })
    .await;
    wait_count(&clients[1], "SELECT count(*) FROM items", 300_000, "the backlog", Duration::from_secs(120)).await;
    wait_for("both doorbells ringing again", Duration::from_secs(30), || async {
        scrape(metrics_port).await.filter(|buf| ringing.iter().all(|l| buf.contains(l))).map(|_| ())
    })
    .await;
    clients[0].batch_execute("INSERT INTO items SELECT g, 0, 'x' FROM generate_series(1, 10) g").await.unwrap();
    clients[1].batch_execute("INSERT INTO items SELECT g, 1, 'y' FROM generate_series(11, 20) g").await.unwrap();
    for c in &clients {
        wait_count(c, "SELECT count(*) FROM items", 300_020, "rows from both sites", Duration::from_secs(10)).await;
    }
    stop(&mut child, &log);
    wait_count(&clients[0], slots, 0, "the bells' slots to go with the replicator", Duration::from_secs(10)).await;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("doorbell ringing"), "the log says the bells ring:\n{said}");
    assert!(!said.contains("doorbell off"), "no bell was off:\n{said}");
}

/// Writers on both sites insert rows and update a shared hot set while the
/// replicator is killed with SIGKILL again and again. Afterwards both sites hold
/// every committed row exactly once and agree on every value.
#[tokio::test]
async fn kill_9_during_writes_on_both_sites_loses_and_duplicates_nothing() {
    let (cluster, dbs, clients) = two_sites("kill9").await;
    let cfg = ConfigFile::new("kill9", &master_master(&[db_json(0, cluster, &dbs[0]), db_json(1, cluster, &dbs[1])]));
    // Install capture, then seed the hot rows through replication.
    assert!(run(&["replicate", "--once"], &cfg.path).status.success());
    clients[0].batch_execute("INSERT INTO items SELECT g, 0, 'hot', 0 FROM generate_series(1, 20) g").await.unwrap();
    assert!(run(&["replicate", "--once"], &cfg.path).status.success());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for site in 0..2i64 {
        let db = dbs[site as usize].clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let c = Cluster::shared().connect(&db).await.unwrap();
            let mut committed = 0i64;
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = 1_000_000 * (site + 1) + i;
                let hot = i % 20 + 1;
                let sql = format!(
                    "BEGIN; INSERT INTO items VALUES ({id}, {site}, 'w', 0), ({}, {site}, 'w2', 0); UPDATE items SET n = n + 1, v = 'site{site}' WHERE id = {hot}; COMMIT",
                    id + 500_000
                );
                if c.batch_execute(&sql).await.is_ok() {
                    committed += 2;
                } else {
                    let _ = c.batch_execute("ROLLBACK").await;
                }
            }
            committed
        }));
    }
    let log = cfg.dir.join("kill9.log");
    for round in 0..6u64 {
        let mut child = spawn(&cfg.path, &["--poll-interval", "2ms"], &log);
        // Let it work for a varying moment, then kill it without warning.
        tokio::time::sleep(Duration::from_millis(150 + round * 97)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut committed = 0;
    for w in writers {
        committed += w.await.unwrap();
    }
    assert!(committed > 100, "the writers did work: {committed}");
    let out = run(&["replicate", "--once"], &cfg.path);
    assert!(out.status.success(), "{}", text(&out));
    let want = committed + 20;
    for c in &clients {
        assert_eq!(count(c, "SELECT count(*) FROM items").await, want, "every committed row, once");
    }
    let cmp = dugong()
        .arg("compare")
        .arg("--config")
        .arg(&cfg.path)
        .env("BUCARDO_DB0", "")
        .env("BUCARDO_DB1", "")
        .output()
        .unwrap();
    assert!(cmp.status.success(), "compare must report identical: {}", text(&cmp));
}

/// A database server dies and comes back while the other site keeps taking
/// writes: the running replicator catches up by itself, no restart.
#[tokio::test]
async fn a_database_server_killed_and_restarted_is_caught_up_without_restarting_the_replicator() {
    let site0 = Cluster::shared();
    let site1 = Cluster::start(ClusterOptions::default()).unwrap();
    let db0 = site0.create_database("outage0").await.unwrap();
    let db1 = site1.create_database("outage1").await.unwrap();
    site0.psql(&db0, SCHEMA).await.unwrap();
    site1.psql(&db1, SCHEMA).await.unwrap();
    let cfg = ConfigFile::new("outage", &master_master(&[db_json(0, site0, &db0), db_json(1, &site1, &db1)]));
    let log = cfg.dir.join("outage.log");
    let mut child = spawn(&cfg.path, &["--max-backoff", "1s"], &log);
    let c0 = site0.connect(&db0).await.unwrap();
    wait_count(
        &c0,
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'",
        1,
        "capture installed",
        Duration::from_secs(20),
    )
    .await;
    c0.batch_execute("INSERT INTO items SELECT g, 0, 'before' FROM generate_series(1, 100) g").await.unwrap();
    let c1 = site1.connect(&db1).await.unwrap();
    wait_count(&c1, "SELECT count(*) FROM items", 100, "rows before the outage", Duration::from_secs(10)).await;
    drop(c1);

    site1.kill9().unwrap();
    c0.batch_execute("INSERT INTO items SELECT g, 0, 'during' FROM generate_series(101, 1100) g").await.unwrap();
    // The replicator notices and records the sync as Bad on the database it still reaches.
    wait_for("sync recorded Bad", Duration::from_secs(15), || async {
        let state: String = c0.query_one("SELECT state FROM dugong.sync_state", &[]).await.ok()?.get(0);
        (state == "Bad").then_some(())
    })
    .await;
    site1.restart().unwrap();
    let c1 = site1.connect(&db1).await.unwrap();
    wait_count(&c1, "SELECT count(*) FROM items", 1100, "catch-up after the restart", Duration::from_secs(30)).await;
    c1.batch_execute("UPDATE items SET v = 'back' WHERE id = 1").await.unwrap();
    wait_count(
        &c0,
        "SELECT count(*) FROM items WHERE v = 'back'",
        1,
        "writes from the returned site",
        Duration::from_secs(10),
    )
    .await;
    assert!(child.try_wait().unwrap().is_none(), "the replicator kept running");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A sync that was removed from the configuration leaves a cursor behind; it
/// must not keep the change log from being purged.
#[tokio::test]
async fn a_removed_sync_never_blocks_purging() {
    let (cluster, dbs, clients) = two_sites("purge").await;
    let cfg = ConfigFile::new("purge", &master_master(&[db_json(0, cluster, &dbs[0]), db_json(1, cluster, &dbs[1])]));
    assert!(run(&["replicate", "--once"], &cfg.path).status.success());
    // A sync of an older configuration, whose cursor stopped long ago.
    clients[0].batch_execute("INSERT INTO dugong.cursor (sync, snapshot) VALUES ('old_sync', '1:1:')").await.unwrap();
    clients[0].batch_execute("INSERT INTO items SELECT g, 0, 'x' FROM generate_series(1, 500) g").await.unwrap();
    let out = run(&["replicate", "--once"], &cfg.path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("old_sync"), "the removal is logged: {}", text(&out));
    assert_eq!(count(&clients[0], "SELECT count(*) FROM dugong.delta_1").await, 0, "shipped changes purged");
    assert_eq!(count(&clients[0], "SELECT count(*) FROM dugong.cursor").await, 1);
    assert_eq!(count(&clients[1], "SELECT count(*) FROM items").await, 500);
}
