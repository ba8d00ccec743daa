//! `dugong status` and `dugong compare` as operators run them: the real binary
//! after `dugong replicate --once`, against the test binary's PostgreSQL.

use dugong_testkit::{free_port, Cluster};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text)";

/// A config file in its own directory, removed at the end of the test.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    /// Two sources; db1 listens on `port1`.
    fn new(name: &str, dbs: &[String], port1: u16) -> ConfigFile {
        let port0 = Cluster::shared().port();
        let json = format!(
            r#"{{"databases": [
                {{"id": 0, "dbname": "{}", "host": "127.0.0.1 port={port0}", "user": "postgres", "pass": ""}},
                {{"id": 1, "dbname": "{}", "host": "127.0.0.1 port={port1}", "user": "postgres", "pass": ""}}],
               "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
            dbs[0], dbs[1]
        );
        let dir = std::env::temp_dir().join(format!("dugong-status-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bucardo.json");
        std::fs::write(&path, json).expect("write config");
        ConfigFile { dir, path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dugong(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dugong"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("DUGONG_LOG", "warn")
        .env_remove("DUGONG_SYNC")
        .env_remove("DUGONG_JSON")
        .stdin(Stdio::null())
        .output()
        .expect("run dugong")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn show(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), String::from_utf8_lossy(&o.stderr))
}

/// Two databases with `t`, one row written on db0 and replicated by `--once`.
async fn replicated(name: &str) -> (Vec<String>, ConfigFile) {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("{name}{i}")).await.expect("create database");
        cluster.psql(&db, SCHEMA).await.expect("schema");
        dbs.push(db);
    }
    let config = ConfigFile::new(name, &dbs, cluster.port());
    // The first run installs capture; rows written before it are not replicated.
    for write in [None, Some("INSERT INTO t VALUES (1, 'one')")] {
        if let Some(sql) = write {
            cluster.psql(&dbs[0], sql).await.expect("insert");
        }
        let out = dugong(&["replicate", "--once"], &config.path);
        assert!(out.status.success(), "{}", show(&out));
    }
    (dbs, config)
}

#[tokio::test]
async fn status_after_a_run_is_good_in_bucardos_layout() {
    let (_dbs, config) = replicated("st_good").await;
    let out = dugong(&["status"], &config.path);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // `--once` stopped the replicator, so no pid: a blank first line, as Bucardo.
    assert_eq!(lines[0], "", "{text}");
    assert_eq!(lines[1], " Name    State    Last good    Time    Last I/D    Last bad    Time  ");
    assert_eq!(lines[2], "=======+========+============+=======+===========+===========+=======");
    let cells: Vec<&str> = lines[3].split('|').collect();
    assert_eq!(cells.len(), 7, "{text}");
    assert_eq!((cells[0], cells[1]), (" sync0 ", " Good   "));
    let good = cells[2].trim();
    assert!(good.len() == 8 && good.as_bytes()[2] == b':' && good.as_bytes()[5] == b':', "HH:MM:SS: {text}");
    assert!(cells[3].trim().ends_with('s'), "{text}");
    assert_eq!((cells[4], cells[5], cells[6]), (" 0/1       ", " none      ", "       "));
    assert!(text.contains("\nsync0: databases: db0 reachable, db1 reachable\n"), "{text}");
    assert!(text.contains("\nsync0: lag 0s, pending changes 0 (db0 0, db1 0), conflicts 0\n"), "{text}");
    assert!(text.contains("\nsync0: excluded tables: none\n"), "{text}");
    assert!(text.contains("\nsync0: replicator not running (stopped; last heartbeat "), "{text}");

    let out = dugong(&["status", "sync0"], &config.path);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let detail = stdout(&out);
    assert!(detail.starts_with(&format!("{}\nLast good                : ", "=".repeat(70))), "{detail}");
    for line in [
        "Rows deleted/inserted    : 0 / 1",
        "Sync name                : sync0",
        "Current state            : Good",
        "Source relgroup/database : sync0 / db0",
        "Tables in sync           : 1",
        "Onetimecopy              : No",
        "Databases                : db0 reachable, db1 reachable",
        "Pending changes          : 0 (db0 0, db1 0)",
        "Excluded tables          : none",
        "Commit timestamps        : on",
        "Last error:              : ",
    ] {
        assert!(detail.lines().any(|l| l == line), "missing {line:?} in\n{detail}");
    }
    assert!(detail.ends_with(&format!("{}\n", "=".repeat(70))), "{detail}");

    let out = dugong(&["status", "all"], &config.path);
    // The heartbeat's age may tick between the two commands.
    let steady = |t: &str| t.lines().filter(|l| !l.starts_with("Replicator ")).collect::<Vec<_>>().join("\n");
    assert_eq!(steady(&stdout(&out)), steady(&detail), "`all` shows every sync in detail");

    let out = dugong(&["status", "--json"], &config.path);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    assert_eq!(json["replicator_pid"], serde_json::Value::Null);
    assert_eq!(json["healthy"], true);
    let s = &json["syncs"][0];
    assert_eq!((s["name"].as_str(), s["state"].as_str()), (Some("sync0"), Some("Good")));
    assert_eq!((s["last_deletes"].as_i64(), s["last_inserts"].as_i64()), (Some(0), Some(1)));
    assert!(s["last_good"]["ended"].is_string(), "{s}");
    assert_eq!(s["last_bad"], serde_json::Value::Null);
    assert_eq!(s["databases"][1]["name"], "db1");
    assert_eq!(s["databases"][1]["reachable"], true);
    assert_eq!(s["databases"][0]["pending"], 0);
    assert_eq!(s["conflicts_total"], 0);
    assert_eq!(s["excluded"], serde_json::json!([]));
    assert_eq!(s["replicator"]["running"], false);
}

#[tokio::test]
async fn status_shows_pending_writes_and_unreachable_databases() {
    let (dbs, config) = replicated("st_pending").await;
    Cluster::shared().psql(&dbs[0], "INSERT INTO t VALUES (2, 'two'), (3, 'three')").await.unwrap();
    let out = dugong(&["status", "--json"], &config.path);
    assert_eq!(out.status.code(), Some(0), "pending changes alone leave the sync Good: {}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let s = &json["syncs"][0];
    // Per database: what waits to be applied there (db0's two rows wait for db1).
    assert_eq!((s["pending"].as_i64(), s["databases"][1]["pending"].as_i64()), (Some(2), Some(2)));
    assert_eq!(s["databases"][0]["pending"].as_i64(), Some(0));
    assert!(s["lag_seconds"].as_f64().is_some_and(|l| (0.0..60.0).contains(&l)), "{s}");
    let out = dugong(&["status"], &config.path);
    assert!(stdout(&out).contains("pending changes 2 (db0 0, db1 2)"), "{}", show(&out));

    let dead = free_port();
    let broken = ConfigFile::new("st_pending_dead", &dbs, dead);
    let out = dugong(&["status"], &broken.path);
    assert_eq!(out.status.code(), Some(3), "a database unreachable: {}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("\n sync0 | Bad    | "), "{text}");
    assert!(text.contains(&format!("sync0: databases: db0 reachable, db1 unreachable (127.0.0.1:{dead}/")), "{text}");
    // What waits for db1 is known from db0; what waits for db0 is db1's to say.
    assert!(text.contains(" (db0: db1 unreachable), pending changes 2 (db0 unknown, db1 2)"), "{text}");
    let out = dugong(&["status", "--json", "sync0"], &broken.path);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["syncs"][0]["state"], "Bad");
    assert_eq!(json["syncs"][0]["databases"][1]["reachable"], false);
    assert!(json["syncs"][0]["databases"][1]["error"].as_str().is_some_and(|e| e.contains(&dead.to_string())));

    let out = dugong(&["status", "nope"], &config.path);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sync named \"nope\""), "{}", show(&out));
}

#[tokio::test]
async fn compare_proves_identical_tables_and_names_differing_keys() {
    let (dbs, config) = replicated("cmp_cli").await;
    let out = dugong(&["compare"], &config.path);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(stdout(&out), "public.t: identical (1 row)\n");

    let cluster = Cluster::shared();
    cluster
        .psql(&dbs[1], "INSERT INTO t VALUES (5, 'five'), (6, 'six'); UPDATE t SET v = 'uno' WHERE id = 1")
        .await
        .unwrap();
    let out = dugong(&["compare", "--sync", "sync0", "--limit", "2"], &config.path);
    assert_eq!(out.status.code(), Some(5), "sites differ: {}", show(&out));
    assert_eq!(
        stdout(&out).lines().next(),
        Some("public.t: DIFFERENT — db0 1 row, db1 3 rows; 2 keys missing on db0, 1 key differs"),
        "{}",
        show(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 4, "two keys and the rest counted: {}", show(&out));
    assert!(stdout(&out).ends_with("  … and 1 more key\n"), "{}", show(&out));

    let out = dugong(&["compare", "--json"], &config.path);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let t = &json["syncs"][0]["tables"][0];
    assert_eq!((json["identical"].as_bool(), t["table"].as_str()), (Some(false), Some("public.t")));
    assert_eq!((t["different_keys"].as_u64(), t["differing"].as_u64()), (Some(3), Some(1)));
    assert_eq!(t["missing"], serde_json::json!([{"database": "db0", "keys": 2}]));
    assert_eq!(t["keys"].as_array().map(Vec::len), Some(3));

    let broken = ConfigFile::new("cmp_cli_dead", &dbs, free_port());
    let out = dugong(&["compare"], &broken.path);
    assert_eq!(out.status.code(), Some(3), "a database unreachable: {}", show(&out));
    assert!(stdout(&out).starts_with("sync0: cannot compare: db1 is unreachable"), "{}", show(&out));
}

#[tokio::test]
async fn last_i_d_reads_0_0_after_an_empty_run() {
    let (_dbs, config) = replicated("st_empty").await;
    let cells = |text: &str| text.lines().nth(3).map(|l| l.split('|').nth(4).unwrap_or("").trim().to_string());
    let out = dugong(&["status"], &config.path);
    assert_eq!(cells(&stdout(&out)).as_deref(), Some("0/1"), "the run that moved a row: {}", show(&out));
    // A run with nothing to do, as Bucardo counts it: Last I/D is that run's.
    let run = dugong(&["replicate", "--once"], &config.path);
    assert!(run.status.success(), "{}", show(&run));
    let out = dugong(&["status"], &config.path);
    assert_eq!(cells(&stdout(&out)).as_deref(), Some("0/0"), "{}", show(&out));
    let detail = stdout(&dugong(&["status", "sync0"], &config.path));
    assert!(detail.lines().any(|l| l == "Rows deleted/inserted    : 0 / 0"), "{detail}");
    let json: serde_json::Value = serde_json::from_slice(&dugong(&["status", "--json"], &config.path).stdout).unwrap();
    assert_eq!(
        (json["syncs"][0]["last_inserts"].as_i64(), json["syncs"][0]["rows_total"].as_i64()),
        (Some(0), Some(1))
    );
}
