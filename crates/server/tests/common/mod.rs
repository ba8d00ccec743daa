//! Servers in-process on port 0, over a fresh database on the test binary's
//! shared PostgreSQL cluster or a fresh SQLite file, and clients for them.

#![allow(dead_code)]

pub mod browser;
pub mod console;
pub mod raw;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use dugong_server::{Auth, Listeners, ServerConfig, ServerError, Token};
use dugong_store::DbUrl;
use dugong_testkit::{wait_for, Cluster};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The token test servers accept.
pub const TOKEN: &str = "test-token-0123456789abcdef";
/// How long a test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    pub db: DbUrl,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh database on the shared cluster.
pub async fn postgres_url(prefix: &str) -> DbUrl {
    let cluster = Cluster::shared();
    let db = cluster.create_database(prefix).await.expect("create database");
    cluster.url(&db).parse().expect("url")
}

/// The configuration tests use: one token, fast polling.
pub fn config(db: DbUrl) -> ServerConfig {
    let mut config = ServerConfig::new("s0", db, Auth::new(vec![Token::new(TOKEN).unwrap()], false));
    config.watch_poll = Duration::from_millis(20);
    config.health_interval = Duration::from_millis(100);
    config.drain_timeout = Duration::from_secs(10);
    config
}

impl TestServer {
    pub async fn postgres(prefix: &str) -> TestServer {
        TestServer::start(config(postgres_url(prefix).await)).await
    }

    pub async fn sqlite() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db: DbUrl = format!("sqlite:{}", dir.path().join("site.sqlite").display()).parse().unwrap();
        let mut server = TestServer::start(config(db)).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server and waits until it answers `/healthz`.
    pub async fn start(config: ServerConfig) -> TestServer {
        let server = TestServer::spawn(config).await;
        let client = reqwest::Client::new();
        let url = server.url("/healthz");
        wait_for("the server to answer /healthz", DEADLINE, || async {
            assert!(!server.task.is_finished(), "the server stopped while starting");
            let r = client.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        server
    }

    /// Starts a server on fresh loopback ports without waiting for it.
    pub async fn spawn(config: ServerConfig) -> TestServer {
        let (grpc, http, metrics) = (bind().await, bind().await, bind().await);
        let (grpc_addr, http_addr, metrics_addr) =
            (grpc.local_addr().unwrap(), http.local_addr().unwrap(), metrics.local_addr().unwrap());
        let db = config.db.clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let listeners = Listeners { grpc, http, metrics: Some(metrics) };
        let task = tokio::spawn(dugong_server::run(listeners, config, async move { stop.cancelled().await }));
        TestServer { grpc: grpc_addr, http: http_addr, metrics: metrics_addr, db, shutdown, task, _dir: None }
    }

    /// Whether `run` has returned (it fails at start on a bad configuration).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.grpc_url()).unwrap().connect().await.expect("gRPC connect")
    }

    /// Starts the shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down and returns how `run` ended.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task).await.expect("the server stops in time").expect("server task")
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// A request with the test token.
pub fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An HTTP client; `.bearer_auth(TOKEN)` for writes.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// `text` percent-encoded for a URL's path or query (unreserved bytes kept).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends `method path` with the test token (and `body` as JSON): the status
/// and the answer as JSON, or as a JSON string when it is not JSON.
pub async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = http().request(method, server.url(path)).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Two sites, each a database with its own server, and the real replicator
/// (`dugong replicate`'s daemon) between them, already past its first good
/// run on both databases.
pub struct TwoSites {
    pub sites: [TestServer; 2],
    pub dbs: [DbUrl; 2],
    config: std::sync::Arc<dugong_config::Config>,
    options: dugong_replica::daemon::DaemonOptions,
    /// The running replicator and what stops it (a test stops and starts it
    /// while it holds the sites).
    replicator: std::sync::Mutex<Option<Replicator>>,
}

type Replicator = (CancellationToken, tokio::task::JoinHandle<Vec<dugong_replica::daemon::SyncReport>>);

/// A test database's name.
pub fn dbname(url: &DbUrl) -> String {
    let DbUrl::Postgres { config, .. } = url else { panic!("PostgreSQL sites") };
    config.get_dbname().expect("dbname").to_string()
}

impl TwoSites {
    /// Sites named `0` and `1` on the shared cluster, with `tweak` applied to
    /// both configurations.
    pub async fn start(prefix: &str, tweak: impl Fn(&mut ServerConfig)) -> TwoSites {
        let shared = Cluster::shared();
        TwoSites::start_on(prefix, [shared, shared], Default::default(), tweak).await
    }

    /// Sites on the given clusters (one that a test stops, say), the
    /// replicator run with `options`.
    pub async fn start_on(
        prefix: &str,
        clusters: [&Cluster; 2],
        options: dugong_replica::daemon::DaemonOptions,
        tweak: impl Fn(&mut ServerConfig),
    ) -> TwoSites {
        let mut dbs = Vec::new();
        for (i, cluster) in clusters.iter().enumerate() {
            let db = cluster.create_database(&format!("{prefix}_s{i}")).await.expect("create database");
            dbs.push(cluster.url(&db).parse::<DbUrl>().expect("url"));
        }
        let dbs: [DbUrl; 2] = dbs.try_into().expect("two databases");
        let mut servers = Vec::new();
        for (i, db) in dbs.iter().enumerate() {
            let mut cfg = config(db.clone());
            cfg.site = i.to_string();
            tweak(&mut cfg);
            servers.push(TestServer::start(cfg).await);
        }
        let json = format!(
            r#"{{"databases": [
                {{"id": 0, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}},
                {{"id": 1, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}],
               "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
            dbname(&dbs[0]),
            clusters[0].port(),
            dbname(&dbs[1]),
            clusters[1].port(),
        );
        let config =
            std::sync::Arc::new(dugong_config::Config::from_str(&json, std::path::Path::new("test.json")).unwrap());
        let [s0, s1]: [TestServer; 2] = servers.try_into().ok().expect("two servers");
        let sites = TwoSites { sites: [s0, s1], dbs, config, options, replicator: std::sync::Mutex::new(None) };
        sites.start_replicator();
        for (db, cluster) in sites.dbs.iter().zip(clusters) {
            let client = cluster.connect(&dbname(db)).await.unwrap();
            wait_for("the replicator's first good run", DEADLINE, || async {
                let row =
                    client.query_opt("SELECT state FROM dugong.sync_state WHERE state = 'Good'", &[]).await.ok()?;
                row.map(|_| ())
            })
            .await;
        }
        sites
    }

    /// Starts the replicator (again).
    pub fn start_replicator(&self) {
        let mut running = self.replicator.lock().unwrap();
        assert!(running.is_none(), "the replicator runs already");
        let stop = CancellationToken::new();
        let task = tokio::spawn(dugong_replica::daemon::run(self.config.clone(), self.options.clone(), stop.clone()));
        *running = Some((stop, task));
    }

    /// Stops the replicator (cleanly, as an operator's Ctrl-C would); its reports.
    pub async fn stop_replicator(&self) -> Vec<dugong_replica::daemon::SyncReport> {
        let (stop, task) = self.replicator.lock().unwrap().take().expect("the replicator runs");
        stop.cancel();
        task.await.expect("replicator task")
    }

    /// Stops the replicator (checking its runs went well) and both servers.
    pub async fn stop(self) {
        let running = self.replicator.lock().unwrap().is_some();
        if running {
            let reports = self.stop_replicator().await;
            assert!(reports.iter().all(|r| r.good), "{reports:?}");
        }
        let [s0, s1] = self.sites;
        s0.stop().await.unwrap();
        s1.stop().await.unwrap();
    }
}
