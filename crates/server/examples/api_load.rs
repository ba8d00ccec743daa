//! API load test: requests/s and latency percentiles of `dugong serve` for
//! get app, list flows and post events, over gRPC and REST, at a few
//! concurrency levels — next to the bare frameworks (a tonic handler and an
//! axum handler that return a constant) measured in the same run as the
//! ceiling. Everything runs in this process on loopback; each cell runs for
//! a fixed time, so the whole test is bounded.
//!
//! ```sh
//! cargo run --release -p dugong-server --example api_load -- [--seconds 3] [--concurrency 1,8,32] [--engines sqlite,postgres] [--tls]
//! ```
//!
//! The ceiling is served the way the server serves: accepted sockets with
//! TCP_NODELAY (without it a response written in several frames waits for the
//! client's delayed ACK, about 40 ms, and the "ceiling" measured slower than
//! the server). With `--tls`, every server (the bare ones too) is measured
//! twice, plain and over TLS (rustls, P-256 certificates made at start), and
//! REST goes through one kept-alive HTTP/1.1 connection per worker on both,
//! so the two differ by TLS alone.
//!
//! PostgreSQL is a throw-away testkit cluster with durable settings (fsync on).
//! Figures are for comparing within one run on one machine: client and
//! server share its cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dugong_proto::v1 as pb;
use dugong_server::{Auth, Listeners, ServerConfig, Token};
use dugong_store::DbUrl;
use dugong_testkit::{Cluster, ClusterOptions};
use pb::apps_client::AppsClient;
use pb::events_client::EventsClient;
use pb::flows_client::FlowsClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "load-token-0123456789abcdef";
const FLOWS: usize = 20;
const EVENTS_PER_POST: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    GetApp,
    ListFlows,
    PostEvents,
    Constant,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GetApp => "get app",
            Op::ListFlows => "list flows (20)",
            Op::PostEvents => "post events (10)",
            Op::Constant => "constant",
        }
    }
}

/// Where requests go.
#[derive(Clone)]
struct Target {
    grpc: tonic::transport::Channel,
    http: String,
    app: String,
    /// REST over one kept-alive connection per worker (plain or TLS), instead
    /// of reqwest's pool: `--tls` runs.
    rest: Option<tls::Rest>,
}

struct Args {
    seconds: f64,
    concurrency: Vec<usize>,
    engines: Vec<String>,
    tls: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 3.0,
        concurrency: vec![1, 8, 32],
        engines: vec!["sqlite".into(), "postgres".into()],
        tls: false,
    };
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|a| a == "--tls") {
        argv.remove(i);
        a.tls = true;
    }
    for pair in argv.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--seconds", Some(v)) => a.seconds = v.parse().expect("--seconds N"),
            ("--concurrency", Some(v)) => {
                a.concurrency = v.split(',').map(|c| c.parse().expect("--concurrency 1,8")).collect()
            }
            ("--engines", Some(v)) => a.engines = v.split(',').map(String::from).collect(),
            (flag, _) => panic!("unknown or incomplete flag {flag}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let args = args();
    let stop = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let modes: Vec<Option<tls::Certs>> =
        if args.tls { vec![Some(tls::Certs::plain_marker()), Some(tls::Certs::make(dir.path()))] } else { vec![None] };
    let mut rows = Vec::new();
    for mode in &modes {
        let label = |server: &str| match mode {
            Some(c) if c.on => format!("{server} TLS"),
            Some(_) => format!("{server} plain"),
            None => server.to_string(),
        };
        let bare = start_bare(mode.as_ref(), stop.clone()).await;
        for &c in &args.concurrency {
            for api in ["grpc", "rest"] {
                rows.push((label("bare"), api, Op::Constant, c, run(&bare, api, Op::Constant, c, args.seconds).await));
            }
        }
        let mut cluster = None;
        for engine in &args.engines {
            let (db, dir) = match engine.as_str() {
                "sqlite" => {
                    let dir = tempfile::tempdir().unwrap();
                    (format!("sqlite:{}", dir.path().join("load.sqlite").display()), Some(dir))
                }
                "postgres" => {
                    let durable = ClusterOptions {
                        extra_settings: vec![("fsync".into(), "on".into()), ("synchronous_commit".into(), "on".into())],
                        ..Default::default()
                    };
                    let c = cluster.get_or_insert_with(|| Cluster::start(durable).expect("PostgreSQL"));
                    let name = c.create_database("api_load").await.unwrap();
                    (c.url(&name), None)
                }
                other => panic!("unknown engine {other}"),
            };
            let target = start_dugong(db.parse().unwrap(), mode.as_ref(), stop.clone()).await;
            for op in [Op::GetApp, Op::ListFlows, Op::PostEvents] {
                for &c in &args.concurrency {
                    for api in ["grpc", "rest"] {
                        rows.push((label(engine), api, op, c, run(&target, api, op, c, args.seconds).await));
                    }
                }
            }
            drop(dir);
        }
    }
    stop.cancel();
    println!("| server | api | operation | concurrency | requests/s | p50 ms | p99 ms | of bare |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (server, api, op, c, r) in &rows {
        // Each server against the bare framework of its own mode (plain or TLS).
        let mode = server.rsplit(' ').next().filter(|m| *m == "TLS" || *m == "plain");
        let bare = mode.map_or("bare".to_string(), |m| format!("bare {m}"));
        let ceiling = rows.iter().find(|(s, a, _, cc, _)| *s == bare && a == api && cc == c).map_or(0.0, |x| x.4.rps);
        let share = if ceiling > 0.0 { format!("{:.0}%", 100.0 * r.rps / ceiling) } else { "-".into() };
        println!(
            "| {server} | {api} | {} | {c} | {:.0} | {:.2} | {:.2} | {share} |",
            op.name(),
            r.rps,
            r.p50_ms,
            r.p99_ms
        );
    }
}

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `concurrency` workers send `op` for `seconds`; every call must succeed.
async fn run(target: &Target, api: &'static str, op: Op, concurrency: usize, seconds: f64) -> Measured {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (target, http) = (target.clone(), http.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // `--tls` runs: this worker's own kept-alive REST connection.
            let mut conn = match (&target.rest, api) {
                (Some(rest), "rest") => Some(rest.connect().await),
                _ => None,
            };
            while Instant::now() < deadline {
                let started = Instant::now();
                match conn.as_mut() {
                    Some(conn) => rest_call(&target, conn, op).await,
                    None => call(&target, &http, api, op).await,
                }
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Measured { rps: all.len() as f64 / elapsed, p50_ms: pct(0.50), p99_ms: pct(0.99) }
}

async fn call(t: &Target, http: &reqwest::Client, api: &str, op: Op) {
    let ok = match (api, op) {
        ("grpc", Op::GetApp) | ("grpc", Op::Constant) => {
            AppsClient::new(t.grpc.clone()).get_app(pb::GetAppRequest { id: t.app.clone() }).await.is_ok()
        }
        ("grpc", Op::ListFlows) => {
            let r = pb::ListFlowsRequest { app_id: t.app.clone(), ..Default::default() };
            FlowsClient::new(t.grpc.clone()).list_flows(r).await.is_ok_and(|r| r.into_inner().flows.len() == FLOWS)
        }
        ("grpc", Op::PostEvents) => {
            let events = (0..EVENTS_PER_POST)
                .map(|_| pb::Event { id: uuid::Uuid::new_v4().to_string(), kind: "load".into(), ..Default::default() })
                .collect();
            let mut request = tonic::Request::new(pb::PostEventsRequest { events });
            request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            EventsClient::new(t.grpc.clone()).post_events(request).await.is_ok()
        }
        (_, Op::GetApp) => ok(http.get(format!("{}/api/v1/apps/{}", t.http, t.app)).send().await),
        (_, Op::Constant) => ok(http.get(format!("{}/constant", t.http)).send().await),
        (_, Op::ListFlows) => ok(http.get(format!("{}/api/v1/flows?app_id={}", t.http, t.app)).send().await),
        (_, Op::PostEvents) => {
            let events: Vec<_> = (0..EVENTS_PER_POST)
                .map(|_| serde_json::json!({"id": uuid::Uuid::new_v4().to_string(), "kind": "load"}))
                .collect();
            ok(http
                .post(format!("{}/api/v1/events", t.http))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"events": events}))
                .send()
                .await)
        }
    };
    assert!(ok, "{api} {} failed", op.name());
}

/// A REST call on a worker's own connection.
async fn rest_call(t: &Target, conn: &mut tls::Conn, op: Op) {
    let (method, path, body) = match op {
        Op::GetApp => ("GET", format!("/api/v1/apps/{}", t.app), None),
        Op::Constant => ("GET", "/constant".to_string(), None),
        Op::ListFlows => ("GET", format!("/api/v1/flows?app_id={}", t.app), None),
        Op::PostEvents => {
            let events: Vec<_> = (0..EVENTS_PER_POST)
                .map(|_| serde_json::json!({"id": uuid::Uuid::new_v4().to_string(), "kind": "load"}))
                .collect();
            ("POST", "/api/v1/events".to_string(), Some(serde_json::json!({"events": events}).to_string()))
        }
    };
    let status = conn.send(method, &path, body, TOKEN).await;
    assert!((200..300).contains(&status), "rest {} failed: {status}", op.name());
}

fn ok(r: reqwest::Result<reqwest::Response>) -> bool {
    r.is_ok_and(|r| r.status().is_success())
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A gRPC channel to `addr`, over TLS in a TLS mode.
async fn grpc_channel(addr: std::net::SocketAddr, mode: Option<&tls::Certs>) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    match mode.filter(|c| c.on) {
        None => endpoint.connect().await.unwrap(),
        Some(certs) => {
            let config = certs.client(b"h2");
            endpoint
                .connect_with_connector(tower::service_fn(move |_| {
                    let config = config.clone();
                    async move { tls::connect(addr, config).await.map(hyper_util::rt::TokioIo::new) }
                }))
                .await
                .unwrap()
        }
    }
}

/// A Dugong server with one app and its flows.
async fn start_dugong(db: DbUrl, mode: Option<&tls::Certs>, stop: CancellationToken) -> Target {
    let (grpc, http) = (bind().await, bind().await);
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let mut config = ServerConfig::new("load", db, Auth::new(vec![Token::new(TOKEN).unwrap()], false));
    config.pool_size = 32;
    if let Some(certs) = mode.filter(|c| c.on) {
        config.tls = Some(dugong_server::TlsConfig::new(&certs.files.cert, &certs.files.key));
    }
    let shutdown = stop.clone();
    tokio::spawn(dugong_server::run(Listeners { grpc, http, metrics: None }, config, async move {
        shutdown.cancelled().await
    }));
    let http_url = format!("http://{http_addr}");
    let rest = mode.map(|c| tls::Rest::new(http_addr, c));
    let ready = rest.clone().unwrap_or_else(|| tls::Rest::new(http_addr, &tls::Certs::plain_marker()));
    dugong_testkit::wait_for("the server", Duration::from_secs(30), || async {
        let mut conn = ready.try_connect().await?;
        (conn.send("GET", "/readyz", None, TOKEN).await == 200).then_some(())
    })
    .await;
    let app = uuid::Uuid::new_v4().to_string();
    let mut conn = ready.connect().await;
    let body = serde_json::json!({"name": "Journal"}).to_string();
    assert_eq!(conn.send("PUT", &format!("/api/v1/apps/{app}"), Some(body), TOKEN).await, 201);
    for i in 0..FLOWS {
        let body =
            serde_json::json!({"app_id": app, "name": format!("flow {i}"), "script": "click('OK')\n".repeat(20)});
        let path = format!("/api/v1/flows/{}", uuid::Uuid::new_v4());
        assert_eq!(conn.send("PUT", &path, Some(body.to_string()), TOKEN).await, 201);
    }
    Target { grpc: grpc_channel(grpc_addr, mode).await, http: http_url, app, rest }
}

/// The ceiling: tonic and axum handlers that return a constant.
#[derive(Clone)]
struct Bare(Arc<pb::App>);

#[tonic::async_trait]
impl pb::apps_server::Apps for Bare {
    async fn get_app(&self, _: tonic::Request<pb::GetAppRequest>) -> Result<tonic::Response<pb::App>, tonic::Status> {
        Ok(tonic::Response::new((*self.0).clone()))
    }
    async fn list_apps(
        &self,
        _: tonic::Request<pb::ListAppsRequest>,
    ) -> Result<tonic::Response<pb::ListAppsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn put_app(&self, _: tonic::Request<pb::PutAppRequest>) -> Result<tonic::Response<pb::App>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn delete_app(
        &self,
        _: tonic::Request<pb::DeleteAppRequest>,
    ) -> Result<tonic::Response<pb::DeleteResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
}

async fn start_bare(mode: Option<&tls::Certs>, stop: CancellationToken) -> Target {
    let app =
        pb::App { id: uuid::Uuid::new_v4().to_string(), name: "Journal".into(), version: 1, ..Default::default() };
    let (grpc, http) = (bind().await, bind().await);
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let body = serde_json::json!({"id": app.id, "name": app.name, "description": "", "version": 1, "updated_at": "2024-05-01T12:00:00Z"});
    let router = axum::Router::new()
        .route("/constant", axum::routing::get(move || std::future::ready(axum::Json(body.clone()))));
    let routes = tonic::service::Routes::new(pb::apps_server::AppsServer::new(Bare(Arc::new(app.clone())))).prepare();
    match mode.filter(|c| c.on) {
        None => {
            // TCP_NODELAY on both, as the server has: the ceiling must not
            // wait on delayed ACKs the server never waits on.
            let s = stop.clone();
            let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, async move { s.cancelled().await }),
            );
            tokio::spawn(async move {
                use axum::serve::ListenerExt;
                let http = http.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(http, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
            });
        }
        Some(certs) => {
            tokio::spawn(tls::serve_bare(grpc, certs.server(b"h2"), tls::Bare::Grpc(routes), stop.clone()));
            tokio::spawn(tls::serve_bare(http, certs.server(b"http/1.1"), tls::Bare::Http(router), stop));
        }
    }
    let rest = mode.map(|c| tls::Rest::new(http_addr, c));
    Target { grpc: grpc_channel(grpc_addr, mode).await, http: format!("http://{http_addr}"), app: app.id, rest }
}

/// TLS for the load test: certificates made at start, clients and the bare
/// servers over rustls.
mod tls {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    /// The certificates of a mode; `on: false` is the plain half of a `--tls` run.
    pub struct Certs {
        pub on: bool,
        pub files: dugong_testkit::CertFiles,
        ca: std::path::PathBuf,
    }

    impl Certs {
        pub fn plain_marker() -> Certs {
            Certs { on: false, files: dugong_testkit::CertFiles { cert: "".into(), key: "".into() }, ca: "".into() }
        }

        pub fn make(dir: &Path) -> Certs {
            let ca = dugong_testkit::TestCa::new(dir, "load").unwrap();
            let files = ca.server("server", &["localhost", "127.0.0.1"]).unwrap();
            Certs { on: true, files, ca: ca.cert_path() }
        }

        pub fn client(&self, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&self.ca).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        }

        pub fn server(&self, alpn: &[u8]) -> Arc<rustls::ServerConfig> {
            let chain = CertificateDer::pem_file_iter(&self.files.cert).unwrap().map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_file(&self.files.key).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        }
    }

    /// A TLS connection to `addr` (name `localhost`).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await
    }

    /// Where REST connections go, plain or TLS.
    #[derive(Clone)]
    pub struct Rest {
        addr: SocketAddr,
        config: Option<Arc<rustls::ClientConfig>>,
    }

    impl Rest {
        pub fn new(addr: SocketAddr, certs: &Certs) -> Rest {
            Rest { addr, config: certs.on.then(|| certs.client(b"http/1.1")) }
        }

        pub async fn try_connect(&self) -> Option<Conn> {
            let sender = match &self.config {
                Some(config) => handshake(connect(self.addr, config.clone()).await.ok()?).await?,
                None => {
                    let tcp = TcpStream::connect(self.addr).await.ok()?;
                    tcp.set_nodelay(true).ok()?;
                    handshake(tcp).await?
                }
            };
            Some(Conn { sender, host: format!("localhost:{}", self.addr.port()) })
        }

        pub async fn connect(&self) -> Conn {
            self.try_connect().await.expect("a REST connection")
        }
    }

    async fn handshake<IO>(
        io: IO,
    ) -> Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.ok()?;
        tokio::spawn(conn);
        Some(sender)
    }

    /// One kept-alive HTTP/1.1 connection.
    pub struct Conn {
        sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
        host: String,
    }

    impl Conn {
        /// Sends a request and reads the whole answer; its status.
        pub async fn send(&mut self, method: &str, path: &str, body: Option<String>, token: &str) -> u16 {
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.host)
                .header("authorization", format!("Bearer {token}"));
            if body.is_some() {
                request = request.header("content-type", "application/json");
            }
            let body = http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or_default()));
            // The connection takes the next request once it has finished the last.
            self.sender.ready().await.unwrap();
            let response = self.sender.send_request(request.body(body).unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await.unwrap();
            status
        }
    }

    /// A bare framework behind TLS.
    pub enum Bare {
        Grpc(tonic::service::Routes),
        Http(axum::Router),
    }

    /// Serves `bare` over TLS until `stop`: the same hyper connections as the
    /// server, without its checks.
    pub async fn serve_bare(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        bare: Bare,
        stop: CancellationToken,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let tcp = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted { Ok((tcp, _)) => tcp, Err(_) => continue },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let bare = match &bare {
                Bare::Grpc(r) => Bare::Grpc(r.clone()),
                Bare::Http(r) => Bare::Http(r.clone()),
            };
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let io = TokioIo::new(tls);
                match bare {
                    Bare::Grpc(routes) => {
                        let svc = hyper_util::service::TowerToHyperService::new(routes);
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    }
                    Bare::Http(router) => {
                        let svc = hyper_util::service::TowerToHyperService::new(router);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                    }
                }
            });
        }
    }
}
