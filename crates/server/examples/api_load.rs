//! API load test: requests/s and latency percentiles of `dugong serve` for
//! get app, list flows and post events, over gRPC and REST, at a few
//! concurrency levels — next to the bare frameworks (a tonic handler and an
//! axum handler that return a constant) measured in the same run as the
//! ceiling. Everything runs in this process on loopback; each cell runs for
//! a fixed time, so the whole test is bounded.
//!
//! ```sh
//! cargo run --release -p dugong-server --example api_load -- [--seconds 3] [--concurrency 1,8,32] [--engines sqlite,postgres]
//! ```
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
}

struct Args {
    seconds: f64,
    concurrency: Vec<usize>,
    engines: Vec<String>,
}

fn args() -> Args {
    let mut a = Args { seconds: 3.0, concurrency: vec![1, 8, 32], engines: vec!["sqlite".into(), "postgres".into()] };
    let argv: Vec<String> = std::env::args().skip(1).collect();
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
    let bare = start_bare(stop.clone()).await;
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        for api in ["grpc", "rest"] {
            rows.push(("bare".to_string(), api, Op::Constant, c, run(&bare, api, Op::Constant, c, args.seconds).await));
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
        let target = start_dugong(db.parse().unwrap(), stop.clone()).await;
        for op in [Op::GetApp, Op::ListFlows, Op::PostEvents] {
            for &c in &args.concurrency {
                for api in ["grpc", "rest"] {
                    rows.push((engine.clone(), api, op, c, run(&target, api, op, c, args.seconds).await));
                }
            }
        }
        drop(dir);
    }
    stop.cancel();
    println!("| server | api | operation | concurrency | requests/s | p50 ms | p99 ms | of bare |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (server, api, op, c, r) in &rows {
        let ceiling = rows.iter().find(|(s, a, _, cc, _)| s == "bare" && a == api && cc == c).map_or(0.0, |x| x.4.rps);
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
            while Instant::now() < deadline {
                let started = Instant::now();
                call(&target, &http, api, op).await;
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

fn ok(r: reqwest::Result<reqwest::Response>) -> bool {
    r.is_ok_and(|r| r.status().is_success())
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A Dugong server with one app and its flows.
async fn start_dugong(db: DbUrl, stop: CancellationToken) -> Target {
    let (grpc, http) = (bind().await, bind().await);
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let mut config = ServerConfig::new("load", db, Auth::new(vec![Token::new(TOKEN).unwrap()], false));
    config.pool_size = 32;
    let shutdown = stop.clone();
    tokio::spawn(dugong_server::run(Listeners { grpc, http, metrics: None }, config, async move {
        shutdown.cancelled().await
    }));
    let http_url = format!("http://{http_addr}");
    let client = reqwest::Client::new();
    dugong_testkit::wait_for("the server", Duration::from_secs(30), || async {
        client.get(format!("{http_url}/readyz")).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    let app = uuid::Uuid::new_v4().to_string();
    let put = |path: String, body: serde_json::Value| {
        client.put(format!("{http_url}{path}")).bearer_auth(TOKEN).json(&body).send()
    };
    assert!(ok(put(format!("/api/v1/apps/{app}"), serde_json::json!({"name": "Journal"})).await));
    for i in 0..FLOWS {
        let body =
            serde_json::json!({"app_id": app, "name": format!("flow {i}"), "script": "click('OK')\n".repeat(20)});
        assert!(ok(put(format!("/api/v1/flows/{}", uuid::Uuid::new_v4()), body).await));
    }
    Target { grpc: channel(grpc_addr).await, http: http_url, app }
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

async fn start_bare(stop: CancellationToken) -> Target {
    let app =
        pb::App { id: uuid::Uuid::new_v4().to_string(), name: "Journal".into(), version: 1, ..Default::default() };
    let (grpc, http) = (bind().await, bind().await);
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let s = stop.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::apps_server::AppsServer::new(Bare(Arc::new(app.clone()))))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                s.cancelled().await
            }),
    );
    let body = serde_json::json!({"id": app.id, "name": app.name, "description": "", "version": 1, "updated_at": "2024-05-01T12:00:00Z"});
    let router = axum::Router::new()
        .route("/constant", axum::routing::get(move || std::future::ready(axum::Json(body.clone()))));
    tokio::spawn(async move {
        axum::serve(http, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    Target { grpc: channel(grpc_addr).await, http: format!("http://{http_addr}"), app: app.id }
}
