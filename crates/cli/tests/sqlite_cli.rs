//! `dugong replicate`, `status` and `compare` on SQLite files, as operators run
//! them: the real binary, kill -9 during writes, errors naming the file.

use dugong_testkit::wait_for;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SCHEMA: &str =
    "CREATE TABLE items (id INTEGER PRIMARY KEY, site INTEGER NOT NULL, v TEXT, n INTEGER NOT NULL DEFAULT 0);";

struct Sites {
    dir: tempfile::TempDir,
    paths: [PathBuf; 2],
    config: PathBuf,
}

impl Sites {
    fn new() -> Sites {
        let dir = tempfile::tempdir().unwrap();
        let paths = [dir.path().join("site0.db"), dir.path().join("site1.db")];
        for p in &paths {
            Connection::open(p).unwrap().execute_batch(SCHEMA).unwrap();
        }
        let config = dir.path().join("bucardo.json");
        let sites = Sites { dir, paths, config };
        sites.write_config(&sites.paths[0].display().to_string(), &sites.paths[1].display().to_string());
        sites
    }

    fn write_config(&self, p0: &str, p1: &str) {
        let json = format!(
            r#"{{"databases": [{{"id": 0, "url": "sqlite:{p0}"}}, {{"id": 1, "url": "sqlite:{p1}"}}],
 "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#
        );
        std::fs::write(&self.config, json).unwrap();
    }

    fn conn(&self, i: usize) -> Connection {
        let c = Connection::open(&self.paths[i]).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    fn count(&self, i: usize, sql: &str) -> i64 {
        self.conn(i).query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

fn dugong() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.env("DUGONG_LOG", "info").stdin(Stdio::null());
    c
}

fn run(args: &[&str], config: &Path) -> Output {
    dugong().args(args).arg("--config").arg(config).output().expect("run dugong")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn once_status_and_compare_work_on_sqlite_syncs() {
    let sites = Sites::new();
    let out = run(&["replicate", "--once"], &sites.config);
    assert!(out.status.success(), "{}", text(&out));
    sites.conn(0).execute_batch("INSERT INTO items VALUES (1, 0, 'a', 0), (2, 0, 'b', 0)").unwrap();
    sites.conn(1).execute_batch("INSERT INTO items VALUES (3, 1, 'c', 0)").unwrap();
    let out = run(&["replicate", "--once"], &sites.config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync0: Good"), "{}", text(&out));
    for i in 0..2 {
        assert_eq!(sites.count(i, "SELECT count(*) FROM items"), 3);
    }

    // Status: Bucardo's table, the detail block, and JSON; exit 0 when Good.
    let out = run(&["status"], &sites.config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(summary.contains(" Name ") && summary.contains("sync0 | Good"), "{summary}");
    assert!(summary.contains("0/3"), "the last run inserted 3 rows: {summary}");
    let out = run(&["status", "sync0"], &sites.config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["status", "--json"], &sites.config);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sync = &json["syncs"][0];
    assert_eq!(sync["state"], "Good", "{json}");
    assert_eq!(sync["pending"], 0, "{json}");
    assert_eq!(sync["rows_total"], 3, "{json}");
    assert_eq!(sync["databases"][1]["reachable"], true, "{json}");
    assert_eq!(json["healthy"], true, "{json}");

    // Compare: identical, exit 0.
    let out = run(&["compare"], &sites.config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("main.items: identical (3 rows)"), "{}", text(&out));

    // A difference made behind the replicator's back (its own no-capture flag):
    // compare names the key and exits 5 (sites differ).
    sites
        .conn(1)
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO dugong_applying VALUES (1); UPDATE items SET v = 'drifted' WHERE id = 2;
             DELETE FROM items WHERE id = 3; DELETE FROM dugong_applying; COMMIT;",
        )
        .unwrap();
    let out = run(&["compare"], &sites.config);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains("main.items: DIFFERENT") && report.contains("1 key missing on db1"), "{report}");
    assert!(report.contains("(id)=(2)") && report.contains("(id)=(3)"), "{report}");
    assert!(!report.contains("drifted"), "compare never prints column values: {report}");
    let out = run(&["compare", "--json"], &sites.config);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["syncs"][0]["tables"][0]["different_keys"], 2, "{json}");

    // A missing file: status says Bad and which file, and both exit 3 (a
    // database unreachable).
    let moved = sites.dir.path().join("moved.db");
    std::fs::rename(&sites.paths[1], &moved).unwrap();
    let out = run(&["status"], &sites.config);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync0 | Bad"), "{}", text(&out));
    let out = run(&["status", "--json"], &sites.config);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let db1 = &json["syncs"][0]["databases"][1];
    assert_eq!(db1["reachable"], false, "{json}");
    assert!(db1["error"].as_str().unwrap().contains("site1.db"), "{json}");
    let out = run(&["compare"], &sites.config);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("site1.db") && text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!sites.paths[1].exists(), "status and compare never create a file");
    std::fs::rename(&moved, &sites.paths[1]).unwrap();

    // Uninstall removes Dugong's tables and triggers from both files.
    let out = run(&["replicate", "--uninstall"], &sites.config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("db1: removed Dugong's dugong_* tables and the capture triggers of 1 table(s)"),
        "{}",
        text(&out)
    );
    for i in 0..2 {
        assert_eq!(sites.count(i, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'dugong%'"), 0);
    }
}

#[test]
fn bad_configuration_and_unusable_files_fail_at_start_naming_them() {
    let sites = Sites::new();
    let missing = sites.dir.path().join("nowhere").join("site9.db");
    sites.write_config(&sites.paths[0].display().to_string(), &missing.display().to_string());
    let out = run(&["replicate", "--once"], &sites.config);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("db1") && t.contains("site9.db") && t.contains("does not exist"), "{t}");
    assert!(t.contains("bucardo.json"), "names the config file: {t}");
    assert!(!missing.exists());

    std::fs::write(&sites.paths[1], "not a database at all, only text, but long enough to look like one").unwrap();
    sites.write_config(&sites.paths[0].display().to_string(), &sites.paths[1].display().to_string());
    let t = text(&run(&["replicate", "--once"], &sites.config));
    assert!(t.contains("site1.db") && t.contains("not a SQLite database"), "{t}");

    // Mixed engines are refused with both named.
    let json = format!(
        r#"{{"databases": [{{"id": 0, "url": "sqlite:{}"}}, {{"id": 1, "url": "postgres://u@127.0.0.1:1/x"}}],
 "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#,
        sites.paths[0].display()
    );
    std::fs::write(&sites.config, json).unwrap();
    let out = run(&["replicate", "--once"], &sites.config);
    assert!(!out.status.success());
    assert!(text(&out).contains("mixes SQLite (db0) and PostgreSQL (db1)"), "{}", text(&out));
}

fn spawn(config: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    dugong()
        .args(["replicate", "--poll-interval", "2ms", "--config"])
        .arg(config)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn dugong replicate")
}

/// Writers on both sites insert rows and update a shared hot set while the
/// replicator is killed with SIGKILL again and again. Afterwards both files hold
/// every committed row exactly once and `compare` finds them identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_on_both_sqlite_sites_loses_and_duplicates_nothing() {
    let sites = Sites::new();
    assert!(run(&["replicate", "--once"], &sites.config).status.success());
    sites
        .conn(0)
        .execute_batch(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20) INSERT INTO items SELECT n, 0, 'hot', 0 FROM g",
        )
        .unwrap();
    assert!(run(&["replicate", "--once"], &sites.config).status.success());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for site in 0..2i64 {
        let path = sites.paths[site as usize].clone();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let c = Connection::open(path).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut committed = 0i64;
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = 1_000_000 * (site + 1) + i;
                let hot = i % 20 + 1;
                let sql = format!(
                    "BEGIN IMMEDIATE; INSERT INTO items VALUES ({id}, {site}, 'w', 0), ({}, {site}, 'w2', 0); UPDATE items SET n = n + 1, v = 'site{site}' WHERE id = {hot}; COMMIT",
                    id + 500_000
                );
                if c.execute_batch(&sql).is_ok() {
                    committed += 2;
                } else {
                    let _ = c.execute_batch("ROLLBACK");
                }
                // Leave the replicator room between writes, as an application does.
                std::thread::sleep(Duration::from_millis(1));
            }
            committed
        }));
    }
    let log = sites.dir.path().join("kill9.log");
    for round in 0..6u64 {
        let mut child = spawn(&sites.config, &log);
        // Let it work a varying while, then kill it without warning: wait
        // until it has shipped something in this round.
        let before = sites.count(1, "SELECT count(*) FROM items WHERE site = 0");
        wait_for("the replicator to ship rows", Duration::from_secs(30), || {
            let now = sites.count(1, "SELECT count(*) FROM items WHERE site = 0");
            async move { (now > before).then_some(()) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20 + round * 37)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let committed: i64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(committed > 100, "the writers did work: {committed}");
    let out = run(&["replicate", "--once"], &sites.config);
    assert!(out.status.success(), "{}\n{}", text(&out), std::fs::read_to_string(&log).unwrap_or_default());
    let want = committed + 20;
    for i in 0..2 {
        assert_eq!(sites.count(i, "SELECT count(*) FROM items"), want, "every committed row, once, on site {i}");
    }
    let cmp = run(&["compare"], &sites.config);
    assert!(cmp.status.success(), "compare must report identical: {}", text(&cmp));
    for i in 0..2 {
        let left: i64 = sites.count(i, "SELECT count(*) FROM dugong_delta_1");
        assert_eq!(left, 0, "change log purged on site {i}");
    }
}
