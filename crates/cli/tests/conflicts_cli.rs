//! `dugong conflicts` as operators run it, after real conflicts between two
//! PostgreSQL databases: the table and the JSON with both versions, filters,
//! a restore that replicates, a refused second restore (exit 6), and the
//! replicator's per-table conflict counter.

use dugong_testkit::{free_port, wait_for, Cluster};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'seed'), (2, 'seed')";

struct Sites {
    dbs: Vec<String>,
    dir: PathBuf,
    config: PathBuf,
}

impl Sites {
    async fn new(name: &str) -> Sites {
        let cluster = Cluster::shared();
        let mut dbs = Vec::new();
        for i in 0..2 {
            let db = cluster.create_database(&format!("{name}{i}")).await.unwrap();
            cluster.psql(&db, SCHEMA).await.unwrap();
            dbs.push(db);
        }
        let db = |i: usize| {
            format!(
                r#"{{"id": {i}, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}"#,
                dbs[i],
                cluster.port()
            )
        };
        let json = format!(
            r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "tables": "all", "onetimecopy": 0}}]}}"#,
            db(0),
            db(1)
        );
        let dir = std::env::temp_dir().join(format!("dugong-conflicts-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("bucardo.json");
        std::fs::File::create(&config).unwrap().write_all(json.as_bytes()).unwrap();
        Sites { dbs, dir, config }
    }

    async fn sql(&self, site: usize, sql: &str) {
        Cluster::shared().psql(&self.dbs[site], sql).await.unwrap();
    }

    async fn value(&self, site: usize, id: i32) -> String {
        let client = Cluster::shared().connect(&self.dbs[site]).await.unwrap();
        client.query_one("SELECT v FROM t WHERE id = $1", &[&id]).await.unwrap().get(0)
    }

    /// Writes key `id` on db0, then on db1, which commits last and wins.
    async fn conflict(&self, id: i32) {
        self.sql(0, &format!("UPDATE t SET v = 'from db0' WHERE id = {id}")).await;
        self.sql(1, &format!("UPDATE t SET v = 'from db1' WHERE id = {id}")).await;
    }
}

impl Drop for Sites {
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

/// `dugong conflicts` with its arguments after `--config`, where the subcommand goes.
fn conflicts(args: &[&str], config: &Path) -> Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_dugong"))
        .arg("conflicts")
        .args(all)
        .env("DUGONG_LOG", "warn")
        .env_remove("DUGONG_SYNC")
        .env_remove("DUGONG_JSON")
        .stdin(Stdio::null())
        .output()
        .expect("run dugong conflicts")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn conflicts_are_listed_with_both_versions_and_a_restore_replicates() {
    let sites = Sites::new("conflicts_cli").await;
    ok(dugong(&["replicate", "--once"], &sites.config));
    sites.conflict(1).await;
    ok(dugong(&["replicate", "--once"], &sites.config));
    assert_eq!(sites.value(0, 1).await, "from db1");

    let text = ok(conflicts(&[], &sites.config));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID                Logged               Sync   Table     Key  Kind "), "{text}");
    assert!(lines[1].contains("  sync0  public.t  1    update/update  db1  db0   later commit"), "{text}");
    assert!(
        lines[2].starts_with("  won  db1 committed ") && lines[2].ends_with(r#": {"v": "from db1", "id": 1}"#),
        "{text}"
    );
    assert!(
        lines[3].starts_with("  lost db0 committed ") && lines[3].ends_with(r#": {"v": "from db0", "id": 1}"#),
        "{text}"
    );
    let id = lines[1].split_whitespace().next().unwrap().to_string();
    assert_eq!(id.len(), 16, "{text}");

    let json: serde_json::Value = serde_json::from_str(&ok(conflicts(&["--json"], &sites.config))).unwrap();
    let c = &json["conflicts"][0];
    assert_eq!(
        (c["id"].as_str(), c["kind"].as_str(), c["table"].as_str()),
        (Some(id.as_str()), Some("update/update"), Some("public.t"))
    );
    assert_eq!(
        (c["winner"]["row"]["v"].as_str(), c["loser"]["row"]["v"].as_str()),
        (Some("from db1"), Some("from db0"))
    );
    assert_eq!((c["winner"]["database"].as_str(), c["loser"]["database"].as_str()), (Some("db1"), Some("db0")));
    assert!(c["winner"]["committed"].is_string() && c["at"].is_string(), "{c}");
    assert_eq!(json["more"], false);

    // Filters.
    assert!(ok(conflicts(&["--table", "t", "--since", "1h"], &sites.config)).contains(&id));
    assert_eq!(ok(conflicts(&["--table", "other"], &sites.config)), "no conflicts match\n");
    sites.conflict(2).await;
    ok(dugong(&["replicate", "--once"], &sites.config));
    let limited = ok(conflicts(&["--limit", "1"], &sites.config));
    assert!(limited.contains("(more conflicts match: these are the newest 1;"), "{limited}");

    // Restore: db0's losing version comes back on db0 and replicates to db1.
    let restored = ok(conflicts(&["restore", &id], &sites.config));
    assert!(restored.contains("replaced the row with the losing version of public.t (1) on db0"), "{restored}");
    ok(dugong(&["replicate", "--once"], &sites.config));
    assert_eq!((sites.value(0, 1).await, sites.value(1, 1).await), ("from db0".into(), "from db0".into()));
    assert!(ok(conflicts(&["--table", "public.t"], &sites.config)).contains("  restored "), "marked restored");

    // Once is enough: a second restore is refused, and says why.
    let again = conflicts(&["restore", &id], &sites.config);
    assert_eq!(again.status.code(), Some(6), "{}", show(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds the losing version"), "{}", show(&again));
    let unknown = conflicts(&["restore", "0123456789abcdef"], &sites.config);
    assert_eq!(unknown.status.code(), Some(2), "{}", show(&unknown));
}

#[tokio::test]
async fn the_replicator_counts_conflicts_per_table() {
    let sites = Sites::new("conflicts_metric").await;
    ok(dugong(&["replicate", "--once"], &sites.config));
    // Both writes wait in the change logs, so the daemon's first run meets them together.
    sites.conflict(1).await;
    sites.conflict(2).await;
    let port = free_port();
    let log = std::fs::File::create(sites.dir.join("replicate.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dugong"))
        .args(["replicate", "--metrics", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&sites.config)
        .env("DUGONG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let body = wait_for("the conflict counter", Duration::from_secs(20), || async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        buf.contains("dugong_replica_conflicts_total{").then_some(buf)
    })
    .await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for("the replicator to stop", Duration::from_secs(10), || {
        let s = child.try_wait().ok().flatten();
        async move { s }
    })
    .await;
    assert!(status.success());
    let line = body.lines().find(|l| l.starts_with("dugong_replica_conflicts_total{")).unwrap();
    assert!(line.contains(r#"sync="sync0""#) && line.contains(r#"table="public.t""#) && line.ends_with(" 2"), "{body}");
}
