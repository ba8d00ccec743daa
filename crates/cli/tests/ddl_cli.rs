//! `dugong ddl` as operators run it: the real binary, with the replicator
//! daemon running and applications writing on both PostgreSQL sites — a
//! column added and a table created mid-traffic ship everything written into
//! them; a statement one site refuses changes no site; a change that
//! reached only some sites is finished with `--database`.

use dugong_testkit::{free_port, wait_for, Cluster};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, site int NOT NULL, v text)";

struct Sites {
    dbs: Vec<String>,
    dir: PathBuf,
    config: PathBuf,
    replicator: Option<Child>,
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
        let dir = std::env::temp_dir().join(format!("dugong-ddl-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("bucardo.json");
        let sites = Sites { dbs, dir, config, replicator: None };
        sites.write_config(cluster.port());
        sites
    }

    fn write_config(&self, port: u16) {
        let db = |i: usize| {
            format!(
                r#"{{"id": {i}, "dbname": "{}", "host": "127.0.0.1 port={port}", "user": "postgres", "pass": ""}}"#,
                self.dbs[i]
            )
        };
        let json = format!(
            r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "tables": "all", "onetimecopy": 0}}]}}"#,
            db(0),
            db(1)
        );
        std::fs::File::create(&self.config).unwrap().write_all(json.as_bytes()).unwrap();
    }

    async fn client(&self, site: usize) -> Client {
        Cluster::shared().connect(&self.dbs[site]).await.unwrap()
    }

    /// Starts the replicator daemon and waits until it captures on both sites.
    async fn start_replicator(&mut self) {
        let log = std::fs::File::create(self.dir.join("replicate.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dugong"))
            .args(["replicate", "--config"])
            .arg(&self.config)
            .env("DUGONG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.replicator = Some(child);
        for site in 0..2 {
            let c = self.client(site).await;
            wait_for("capture installed", Duration::from_secs(30), || async {
                let n: i64 = c
                    .query_one("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'dugong_capture%'", &[])
                    .await
                    .ok()?
                    .get(0);
                (n > 0).then_some(())
            })
            .await;
        }
    }

    fn replicator_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("replicate.log")).unwrap_or_default()
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        if let Some(mut child) = self.replicator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

fn ddl(sql: &str, extra: &[&str], config: &Path) -> Output {
    let mut args = vec!["ddl", "--sql", sql];
    args.extend_from_slice(extra);
    dugong(&args, config)
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// An application writing rows on one site until told to stop: ids from
/// `first`, one transaction each; once `changed` is set (the statement
/// returned), every row also fills the new column. Returns the last id.
fn writer(
    client: Client,
    site: i32,
    first: i64,
    changed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut id = first;
        while !stop.load(Ordering::Relaxed) {
            let write = if changed.load(Ordering::Relaxed) {
                let note = format!("note {id}");
                client
                    .execute("INSERT INTO items (id, site, v, note) VALUES ($1, $2, 'after', $3)", &[&id, &site, &note])
                    .await
            } else {
                client.execute("INSERT INTO items (id, site, v) VALUES ($1, $2, 'before')", &[&id, &site]).await
            };
            write.expect("the application's write");
            id += 1;
        }
        id - 1
    })
}

#[tokio::test]
async fn a_column_added_under_writes_on_both_sites_ships_every_value_written_into_it() {
    let mut sites = Sites::new("ddl_column").await;
    sites.start_replicator().await;
    let (changed, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let writers = [
        writer(sites.client(0).await, 0, 1, changed.clone(), stop.clone()),
        writer(sites.client(1).await, 1, 1_000_000, changed.clone(), stop.clone()),
    ];
    let c0 = sites.client(0).await;
    wait_for("writes before the change", Duration::from_secs(30), || async {
        (count(&c0, "SELECT count(*) FROM items").await > 50).then_some(())
    })
    .await;

    let out = ddl("ALTER TABLE items ADD COLUMN note text", &[], &sites.config);
    assert_eq!(out.status.code(), Some(0), "{}\nreplicator:\n{}", show(&out), sites.replicator_log());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db0: applied") && text.contains("db1: applied"), "{text}");
    // The applications use the column the moment the statement returns.
    changed.store(true, Ordering::Relaxed);
    wait_for("writes into the new column on both sites", Duration::from_secs(30), || async {
        (count(&c0, "SELECT count(*) FROM items WHERE note IS NOT NULL").await > 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut expected = 0;
    for (w, first) in writers.into_iter().zip([1, 1_000_000]) {
        expected += w.await.unwrap() - first + 1;
    }
    let notes_written: i64 = {
        let c1 = sites.client(1).await;
        count(&c0, "SELECT count(*) FROM items WHERE note IS NOT NULL AND site = 0").await
            + count(&c1, "SELECT count(*) FROM items WHERE note IS NOT NULL AND site = 1").await
    };
    assert!(notes_written > 0);
    for site in 0..2 {
        let c = sites.client(site).await;
        wait_for("every row on both sites", Duration::from_secs(60), || async {
            (count(&c, "SELECT count(*) FROM items").await == expected).then_some(())
        })
        .await;
        let notes = count(&c, "SELECT count(*) FROM items WHERE note IS NOT NULL").await;
        assert_eq!(notes, notes_written, "site {site}: every value written into the new column arrived");
        let wrong = count(&c, "SELECT count(*) FROM items WHERE note IS NOT NULL AND note <> 'note ' || id").await;
        assert_eq!(wrong, 0);
    }
    let compare = dugong(&["compare"], &sites.config);
    assert_eq!(compare.status.code(), Some(0), "{}", show(&compare));
}

#[tokio::test]
async fn a_table_created_through_ddl_replicates_from_its_first_row() {
    let mut sites = Sites::new("ddl_table").await;
    sites.start_replicator().await;
    let out = ddl("CREATE TABLE extra (id int PRIMARY KEY, v text)", &["--wait", "0s"], &sites.config);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("public.extra: new table, captured on db0, db1 from its first row"), "{text}");
    // Written the moment the table exists, before the replicator noticed it.
    sites
        .client(0)
        .await
        .batch_execute("INSERT INTO extra SELECT g, 'db0' FROM generate_series(1, 50) g")
        .await
        .unwrap();
    sites
        .client(1)
        .await
        .batch_execute("INSERT INTO extra SELECT g, 'db1' FROM generate_series(101, 150) g")
        .await
        .unwrap();
    for site in 0..2 {
        let c = sites.client(site).await;
        wait_for("the new table's rows on both sites", Duration::from_secs(60), || async {
            (count(&c, "SELECT count(*) FROM extra").await == 100).then_some(())
        })
        .await;
    }
    let status = dugong(&["status"], &sites.config);
    assert_eq!(status.status.code(), Some(0), "{}", show(&status));
}

#[tokio::test]
async fn a_statement_one_site_refuses_changes_no_site() {
    let sites = Sites::new("ddl_refused").await;
    sites.client(1).await.batch_execute("ALTER TABLE items ADD COLUMN note text").await.unwrap();
    let out = ddl("ALTER TABLE items ADD COLUMN note text", &[], &sites.config);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("db1 refused the statement") && err.contains("Nothing was changed on any site"), "{err}");
    let c0 = sites.client(0).await;
    let has: i64 = count(
        &c0,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'",
    )
    .await;
    assert_eq!(has, 0, "db0 was rolled back");

    // A site that cannot be reached: nothing is tried anywhere.
    sites.write_config(free_port());
    let out = ddl("ALTER TABLE items ADD COLUMN other text", &[], &sites.config);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"), "{}", show(&out));
}

#[tokio::test]
async fn a_change_made_on_one_site_only_is_finished_with_database_and_everything_ships() {
    let mut sites = Sites::new("ddl_finish").await;
    sites.start_replicator().await;
    // Someone changed db0 by hand and writes into the new column: the
    // replicator holds the table, the rows wait.
    let c0 = sites.client(0).await;
    c0.batch_execute("ALTER TABLE items ADD COLUMN note text").await.unwrap();
    c0.batch_execute("INSERT INTO items SELECT g, 0, 'x', 'n' || g FROM generate_series(1, 20) g").await.unwrap();
    let out = ddl("ALTER TABLE items ADD COLUMN note text", &["--database", "1"], &sites.config);
    assert_eq!(out.status.code(), Some(0), "{}\nreplicator:\n{}", show(&out), sites.replicator_log());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db1: applied") && !text.contains("db0: applied"), "{text}");
    assert!(text.contains("Good, nothing waiting"), "{text}");
    let c1 = sites.client(1).await;
    assert_eq!(count(&c1, "SELECT count(*) FROM items WHERE note = 'n' || id").await, 20);
}

#[test]
fn ddl_lists_its_exit_codes_in_its_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_dugong")).args(["ddl", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for line in ["Exit codes:", "0    done", "3    a database could not be reached", "6    refused"] {
        assert!(help.contains(line), "{line:?} missing:\n{help}");
    }
}
