//! The walk-through a new user follows, with real processes: `dugong serve`
//! on a live site 0 (PostgreSQL), `dugong setup` to an empty database, the
//! server of site 1, `dugong replicate`, and `dugong verify` passing all six
//! checks (the failover one killing the HA client's site). Then verify
//! failing, naming the check: with the replicator stopped, and with one
//! application server down. It leaves no test data behind.

mod operator;

use dugong_testkit::{free_port, wait_for, Cluster};
use operator::{dugong, show, ConfigFile, TOKEN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_postgres::Client;
const DEADLINE: Duration = Duration::from_secs(60);

/// A `dugong` child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A site's application server on its PostgreSQL database.
struct Server {
    process: Option<Process>,
    grpc: String,
    db_url: String,
    site: usize,
    dir: PathBuf,
}

impl Server {
    async fn start(dir: &Path, site: usize, db_url: &str, grpc: Option<String>) -> Server {
        let grpc = grpc.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let log = std::fs::File::options().create(true).append(true).open(dir.join(format!("site{site}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dugong"))
            .args(["serve", "--site", &site.to_string(), "--grpc", &grpc, "--db", db_url])
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics", &format!("127.0.0.1:{}", free_port())])
            .env("DUGONG_API_TOKENS", TOKEN)
            .env("DUGONG_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(dir.join(format!("site{site}.pid")), child.id().to_string()).unwrap();
        let server = Server { process: Some(Process(child)), grpc, db_url: db_url.into(), site, dir: dir.into() };
        let url = format!("http://{}", server.grpc);
        wait_for("dugong serve to answer", DEADLINE, || async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone()).ok()?.connect().await.ok()?;
            dugong_proto::v1::info_client::InfoClient::new(channel)
                .server_info(dugong_proto::v1::ServerInfoRequest {})
                .await
                .ok()
                .map(drop)
        })
        .await;
        server
    }

    /// After a kill by the test's `--kill-cmd`: the same server again.
    async fn restart(&mut self) {
        self.process = None;
        let again = Server::start(&self.dir, self.site, &self.db_url, Some(self.grpc.clone())).await;
        *self = again;
    }

    /// The process ended (the failover check's kill).
    fn exited(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.0.try_wait().ok().flatten().is_some())
    }

    fn stop(&mut self) {
        self.process = None;
    }
}

fn replicator(config: &Path, dir: &Path) -> Process {
    let log = std::fs::File::create(dir.join("replicate.log")).unwrap();
    Process(
        Command::new(env!("CARGO_BIN_EXE_dugong"))
            .args(["replicate", "--config"])
            .arg(config)
            .env("DUGONG_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn verify_keys(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM dugong_app.settings WHERE key LIKE 'dugong-verify:%'", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_replicate_verify_then_verify_names_what_fails() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let dbs =
        [cluster.create_database("verify_s0").await.unwrap(), cluster.create_database("verify_s1").await.unwrap()];
    let file = ConfigFile::new("verify", cluster, &dbs, "postgres");
    let config = file.path.clone();
    let config_arg = config.to_str().unwrap();

    // Site 0 is live: its server made its schema, and it holds data.
    let mut site0 = Server::start(dir.path(), 0, &cluster.url(&dbs[0]), None).await;
    let out = dugong(&["client", "--server", &site0.grpc, "settings", "put", "greeting", "\"hello\""], dir.path());
    assert!(out.status.success(), "{}", show(&out));
    // Site 1 is an empty database: setup, its server, the replicator.
    let out = dugong(&["setup", "--config", config_arg, "--yes"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let mut site1 = Server::start(dir.path(), 1, &cluster.url(&dbs[1]), None).await;
    let replicating = replicator(&config, dir.path());

    let kill = format!("kill -9 $(cat {}/site{{site}}.pid)", dir.path().display());
    let out = dugong(
        &[
            "verify",
            "--config",
            config_arg,
            "--server",
            &site0.grpc,
            "--server",
            &site1.grpc,
            "--kill-cmd",
            &kill,
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    for c in checks {
        assert_eq!(c["outcome"], "pass", "{c}");
        assert!(c["seconds"].as_f64().is_some(), "every check is measured: {c}");
    }
    assert!(checks[5]["detail"].as_str().unwrap().contains("killed; site"), "{}", checks[5]);
    let c0 = cluster.connect(&dbs[0]).await.unwrap();
    let c1 = cluster.connect(&dbs[1]).await.unwrap();
    assert_eq!((verify_keys(&c0).await, verify_keys(&c1).await), (0, 0), "verify left no test data");
    let greeting: String =
        c1.query_one("SELECT value::text FROM dugong_app.settings WHERE key = 'greeting'", &[]).await.unwrap().get(0);
    assert_eq!(greeting, "\"hello\"", "setup copied site 0's data");
    // The failover check killed one server: bring it back.
    let mut restarted = 0;
    for server in [&mut site0, &mut site1] {
        if server.exited() {
            server.restart().await;
            restarted += 1;
        }
    }
    assert_eq!(restarted, 1, "the failover check killed the HA client's site");

    // The replicator stopped: changes do not cross, and verify says which check.
    drop(replicating);
    let out = dugong(
        &["verify", "--config", config_arg, "--server", &site0.grpc, "--server", &site1.grpc, "--deadline", "2s"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  1  a change made through site 0 shows on site 1: not on site 1 within 2s"), "{text}");
    // Status may not call a replicator killed a moment ago stopped yet, but
    // the hint shows how long ago it was last heard of.
    assert!(text.contains("hint: sync0 is Good, ") && text.contains("replicator running (last heartbeat "), "{text}");
    assert!(text.contains("PASS  3  a client configured for site 0 only reaches site 0"), "{text}");
    assert!(text.contains("SKIP  6"), "{text}");
    assert!(text.contains("2 of 6 checks failed"), "{text}");

    // One application server down.
    let replicating = replicator(&config, dir.path());
    site1.stop();
    let out = dugong(
        &["verify", "--config", config_arg, "--server", &site0.grpc, "--server", &site1.grpc, "--deadline", "5s"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  4  a client configured for site 1 only reaches site 1"), "{text}");
    assert!(text.contains(&format!("hint: is the server at {} running?", site1.grpc)), "{text}");
    assert!(text.contains("PASS  5  a client configured for HA reaches one of the sites: site 0 answered"), "{text}");
    assert!(text.contains("3 of 6 checks failed"), "{text}");
    drop(replicating);
    // The failed runs' writes on site 0 were deleted there too.
    assert_eq!(verify_keys(&c0).await, 0);
}
