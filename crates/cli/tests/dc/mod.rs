//! Data centers for the outage tests: each site is a network namespace of a private test
//! network, holding the site's PostgreSQL, where `dugong` commands run as on that site's hosts.
//! Cutting a site's link takes its hosts and its database off the network together; the test
//! itself plays each site's applications, writing over the database's Unix socket, which no
//! cut touches.

#![allow(dead_code)]

use dugong_testkit::{wait_for, Cluster, ClusterOptions, Namespace, TestNetwork};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tokio_postgres::Client;

/// The replicated table: `site` says who inserted a row, `v` what it holds now.
pub const SCHEMA: &str =
    "CREATE TABLE items (id bigint PRIMARY KEY, site int NOT NULL, v text, n int NOT NULL DEFAULT 0)";

/// The sites of one test, and the configuration every replicator and tool shares.
pub struct DataCenters {
    pub sites: Vec<Site>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub net: TestNetwork,
}

/// One data center: its namespace, its PostgreSQL and the replicated database in it.
pub struct Site {
    pub ns: Namespace,
    pub cluster: Cluster,
    pub db: String,
}

impl DataCenters {
    /// `n` sites `dc0`… on one network, each with its own PostgreSQL and database holding
    /// [`SCHEMA`], replicated master-master by one sync over all of them.
    pub async fn new(name: &str, n: usize) -> DataCenters {
        let net = TestNetwork::new().expect("these tests cut network links: they need network namespaces");
        let mut sites = Vec::new();
        for i in 0..n {
            let ns = net.add(&format!("dc{i}")).unwrap();
            let cluster = Cluster::start_in(&ns, ClusterOptions::default()).unwrap();
            let db = cluster.create_database(&format!("{name}{i}")).await.unwrap();
            cluster.psql(&db, SCHEMA).await.unwrap();
            sites.push(Site { ns, cluster, db });
        }
        let dir = std::env::temp_dir().join(format!("dugong-dc-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let databases: Vec<String> = sites
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    r#"{{"id": {i}, "dbname": "{}", "host": "{} port={}", "user": "postgres", "pass": "env"}}"#,
                    s.db,
                    s.cluster.host(),
                    s.cluster.port()
                )
            })
            .collect();
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let json = format!(
            r#"{{"databases": [{}], "syncs": [{{"sources": [{}], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
            databases.join(", "),
            ids.join(", ")
        );
        let config = dir.join("bucardo.json");
        std::fs::write(&config, json).unwrap();
        DataCenters { sites, dir, config, net }
    }

    /// A connection to site `i`'s database, as its applications have.
    pub async fn client(&self, i: usize) -> Client {
        self.sites[i].cluster.connect(&self.sites[i].db).await.unwrap()
    }

    /// `dugong ARGS --config FILE` on a host of site `i`.
    pub fn dugong(&self, i: usize, args: &[&str]) -> Command {
        let mut c = self.sites[i].ns.command(env!("CARGO_BIN_EXE_dugong"));
        c.args(args).arg("--config").arg(&self.config).env("DUGONG_LOG", "info").stdin(Stdio::null());
        for id in 0..self.sites.len() {
            c.env(format!("BUCARDO_DB{id}"), "");
        }
        c
    }

    /// Runs a `dugong` command to completion on a host of site `i`.
    pub fn run(&self, i: usize, args: &[&str]) -> Output {
        self.dugong(i, args).output().expect("run dugong")
    }

    /// `dugong status --json` from site `i`: its exit code and report.
    pub fn status_json(&self, i: usize) -> (Option<i32>, Value) {
        let out = self.run(i, &["status", "--json"]);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}): {}", text(&out)));
        (out.status.code(), report)
    }

    /// Starts `dugong replicate` on a host of site `i`, logging to `<label>.log`.
    pub fn replicator(&self, i: usize, label: &str, extra: &[&str]) -> Replicator {
        let log = self.dir.join(format!("{label}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = self.dugong(i, &["replicate"]);
        c.args(extra).stdout(file.try_clone().unwrap()).stderr(file);
        let child = c.spawn().expect("spawn dugong replicate");
        Replicator { pid: child.id() as i32, child: Some(child), log, label: label.to_owned() }
    }

    /// Waits until capture is installed on every site: rows written from then on replicate.
    pub async fn wait_capture(&self) {
        for i in 0..self.sites.len() {
            let c = self.client(i).await;
            wait_for(&format!("capture on site {i}"), Duration::from_secs(60), || async {
                let n: i64 = c
                    .query_one("SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'", &[])
                    .await
                    .ok()?
                    .get(0);
                (n == 1).then_some(())
            })
            .await;
        }
    }

    /// Waits until every site holds exactly the ids in `want`, then checks with `dugong
    /// compare`, run from site `from`, that they are identical.
    pub async fn wait_converged(&self, want: &[i64], from: usize, timeout: Duration) {
        let mut sorted = want.to_vec();
        sorted.sort_unstable();
        for i in 0..self.sites.len() {
            let c = self.client(i).await;
            let want = &sorted;
            wait_for(&format!("site {i} to hold all {} rows", want.len()), timeout, || async {
                (ids(&c).await == *want).then_some(())
            })
            .await;
        }
        let out = self.run(from, &["compare"]);
        assert_eq!(out.status.code(), Some(0), "compare must find the sites identical: {}", text(&out));
    }

    /// The replicators' `/metrics` page on `addr`, fetched from inside site `i`.
    pub async fn scrape(&self, i: usize, addr: SocketAddr) -> Option<String> {
        let ns = self.sites[i].ns.clone();
        tokio::task::spawn_blocking(move || ns.http_get(addr, "/metrics", Duration::from_secs(5)).ok()).await.unwrap()
    }
}

impl Drop for DataCenters {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `dugong replicate` process; killed when dropped.
pub struct Replicator {
    pub pid: i32,
    child: Option<Child>,
    pub log: PathBuf,
    pub label: String,
}

impl Replicator {
    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A command's stdout and stderr, for messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every id in `items`, in order.
pub async fn ids(c: &Client) -> Vec<i64> {
    match c.query("SELECT id FROM items ORDER BY id", &[]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Inserts rows `ids` as site `site` wrote them, in one transaction.
pub async fn insert(c: &Client, site: i32, ids: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    let (first, last) = (*ids.start(), *ids.end());
    c.execute(
        "INSERT INTO items (id, site, v) SELECT g, $1, 'written' FROM generate_series($2::int8, $3::int8) g",
        &[&site, &first, &last],
    )
    .await
    .unwrap();
    ids.collect()
}

/// The pid and role of each replicator heartbeat the database holds for `sync0`.
pub async fn heartbeats(c: &Client) -> Vec<(String, i32)> {
    match c.query("SELECT role, pid FROM dugong.heartbeat WHERE sync = 'sync0' ORDER BY role", &[]).await {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(_) => Vec::new(),
    }
}

/// The database's sessions that hold the claim on `sync0` (its advisory lock), by the address
/// they connected from.
pub async fn claim_holders(c: &Client) -> Vec<String> {
    let sql = "SELECT coalesce(host(a.client_addr), 'local') FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE l.locktype = 'advisory' AND l.granted
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.objid = (hashtext('dugong sync sync0')::int8 & 4294967295)::oid";
    c.query(sql, &[]).await.map(|rows| rows.iter().map(|r| r.get(0)).collect()).unwrap_or_default()
}

/// A JSON report's database entry named `name` (`db0`, …) of the first sync.
pub fn database<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["syncs"][0]["databases"]
        .as_array()
        .and_then(|dbs| dbs.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no database {name} in {report}"))
}

/// The value of the Prometheus sample `name{sync="sync0",db="<db>"}` in a scraped page.
pub fn sample(page: &str, name: &str, db: &str) -> Option<f64> {
    let prefix = format!("{name}{{sync=\"sync0\",db=\"{db}\"}} ");
    page.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// The replicators' logs, for failure messages.
pub fn show_logs(replicators: &[&Replicator]) -> String {
    replicators.iter().map(|r| format!("--- {} ({}) ---\n{}", r.label, r.pid, r.log())).collect()
}

/// Awaits `fut`; should it panic (a wait that timed out, an assertion), prints the
/// replicators' logs first, so the failure comes with what they did.
pub async fn with_logs<T>(replicators: &[&Replicator], fut: impl std::future::Future<Output = T>) -> T {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(value) => value,
        Err(panic) => {
            eprintln!("{}", show_logs(replicators));
            std::panic::resume_unwind(panic)
        }
    }
}
