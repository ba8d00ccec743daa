//! The application server of one site (`dugong serve`): stateless over the
//! site's database, so any number can run per site and any site can serve any
//! client.
//!
//! Modules, from the edge inwards:
//! - [`grpc`] — the gRPC API (tonic, 8001) and `grpc.health.v1`.
//! - [`http`] — the REST mirror under `/api/v1` with its OpenAPI document,
//!   `/healthz`, `/readyz` (axum, 8000).
//! - [`console`] — the admin console's pages at `/`, on the same HTTP port:
//!   logins, apps, flows, settings, contexts, status.
//! - [`metrics`] — `dugong_*` metrics and `/metrics` on its own address (6060).
//! - [`net`] — every listener: allowlist, connection limits, deadlines, TLS
//!   (reloaded without a restart), then hyper.
//! - `ops` — the operations both front ends share; `watch` — watch streams;
//!   `feed` — the change feed reader and broadcaster behind them.
//! - [`auth`] — named bearer tokens, compared in constant time; admin tokens;
//!   reads need a token beyond loopback. `audit` — callers as the audit log
//!   names them, and its log lines.
//! - `health` — the database health task and the replication sampler;
//!   `replication` — what the server saw of replication lately, kept in
//!   memory for the status page (through an outage too); `state` — what
//!   handlers share;
//!   `limits` — file descriptors against the connection limits.
//! - [`config`] — [`ServerConfig`]; `error` — [`ServerError`], [`ApiError`].
//!
//! [`run`] takes bound listeners and a shutdown future, so tests start servers
//! in-process on port 0:
//!
//! ```no_run
//! # async fn demo(config: dugong_server::ServerConfig) -> Result<(), dugong_server::ServerError> {
//! use tokio::net::TcpListener;
//! let listeners = dugong_server::Listeners {
//!     grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
//!     http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
//!     metrics: None,
//! };
//! dugong_server::run(listeners, config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod audit;
pub mod auth;
pub mod config;
pub mod console;
mod error;
mod feed;
pub mod grpc;
mod health;
pub mod http;
mod limits;
pub mod metrics;
pub mod net;
mod ops;
mod replication;
mod state;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dugong_store::{Store, StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{Auth, Token};
pub use config::{ConfigError, ConsoleConfig, NetConfig, ServerConfig, TlsConfig};
pub use error::{ApiError, ServerError};

use crate::feed::Feed;
use crate::state::{AppState, Shared};

/// How long background tasks get to stop after the servers did.
const TASK_STOP_WAIT: Duration = Duration::from_secs(5);

/// The sockets a server answers on, already bound.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    /// Prometheus `/metrics`; `None` to serve no metrics address.
    pub metrics: Option<TcpListener>,
}

/// Runs a server until `shutdown` completes, then drains: readiness and gRPC
/// health turn NOT_SERVING, watchers are told to reconnect and their streams
/// end, calls in flight finish (up to `drain_timeout`), and only then do the
/// background tasks stop.
///
/// Fails at start on a bad configuration, a database that stays unreachable
/// for `startup_wait`, or a schema newer than this build.
pub async fn run(
    listeners: Listeners,
    mut config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    if config.auth.tokens().is_empty() {
        tracing::warn!("--insecure-no-auth: ANYONE who can reach this server may write; configure API tokens");
    }
    let loopback = |l: &TcpListener| l.local_addr().is_ok_and(|a| a.ip().is_loopback());
    config.auth.set_loopback_only(loopback(&listeners.grpc) && loopback(&listeners.http));
    if config.auth.reads == auth::ReadAccess::Open && !config.auth.tokens().is_empty() {
        tracing::warn!("--open-reads: anyone who can reach this server may read every app, flow and setting");
    }
    // The recorder first: loading the certificates records their expiry.
    let handle = metrics::handle();
    let tls = config.tls.clone().map(net::tls::Tls::load).transpose()?;
    if tls.is_none() {
        tracing::warn!("no --tls-cert: API tokens, console passwords and data cross the network in the clear");
    }
    limits::check_file_descriptors(&config);
    let options = StoreOptions {
        site: config.site.clone(),
        pool_size: config.pool_size,
        sqlite_sync: config.sqlite_sync,
        ..StoreOptions::default()
    };
    let db = config.db.display();
    let store_error = |source| ServerError::Store { db: db.clone(), source };
    let store = Store::open(&config.db, options).await.map_err(store_error)?;
    let schema_version = migrate(&store, config.startup_wait).await.map_err(store_error)?;
    store.check_privileges().await.map_err(store_error)?;
    let feed_start = store.feed_head().await.map_err(store_error)?.last;
    tracing::info!(site = %config.site, db = %db, schema_version, "database ready");

    let login_limiter = console::LoginLimiter::new(config.console.login_attempts, config.console.login_window);
    let replication = replication::Monitor::new(config.console.sample_every);
    let state: AppState = Arc::new(Shared {
        login_limiter,
        replication,
        feed: Feed::new(store.clone()),
        store,
        config,
        schema_version,
        drain: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let background = TaskTracker::new();
    let stop_background = CancellationToken::new();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::set_all(&reporter, true).await;
    background.spawn(health::run(state.clone(), reporter.clone(), stop_background.clone()));
    background.spawn(health::sample_replication(state.clone(), stop_background.clone()));
    background.spawn(state.feed.clone().run(
        feed_start,
        state.config.watch_poll,
        state.config.watch_retention,
        stop_background.clone(),
    ));

    if let Some(tls) = &tls {
        background.spawn(tls.clone().watch(stop_background.clone()));
    }
    let net = Arc::new(net::Net {
        gate: net::gate::Gate::new(state.config.net.clone()),
        tls,
        config: state.config.net.clone(),
    });

    let stop_servers = CancellationToken::new();
    let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let scheme = if net.tls.is_some() { "TLS" } else { "plain" };
    tracing::info!(grpc = %addr(&listeners.grpc), http = %addr(&listeners.http), scheme, "serving");
    let grpc_service = grpc::service(state.clone(), health_service);
    let mut grpc = tokio::spawn(net::serve(
        "grpc",
        listeners.grpc,
        net::Proto::Grpc,
        grpc_service,
        net.clone(),
        stopped(&stop_servers),
    ));
    let mut http = tokio::spawn(net::serve(
        "http",
        listeners.http,
        net::Proto::Http1,
        http::router(state.clone()),
        net.clone(),
        stopped(&stop_servers),
    ));
    let metrics_server = listeners.metrics.map(|listener| {
        tracing::info!(addr = %addr(&listener), scheme, "serving metrics at /metrics");
        let router = metrics::router(handle);
        tokio::spawn(net::serve("metrics", listener, net::Proto::Http1, router, net.clone(), stopped(&stop_servers)))
    });

    // Until shutdown, or until a server fails by itself.
    let (mut grpc_ended, mut http_ended) = (None, None);
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutting down: draining"),
        r = &mut grpc => grpc_ended = Some(r),
        r = &mut http => http_ended = Some(r),
    }
    // Not ready any more, watchers told to go, no new connections; calls in
    // flight finish.
    state.drain.cancel();
    health::set_all(&reporter, false).await;
    stop_servers.cancel();
    let deadline = Instant::now() + state.config.drain_timeout;
    let grpc_result = match grpc_ended {
        Some(r) => joined("gRPC", r),
        None => finish("gRPC", grpc, deadline).await,
    };
    let http_result = match http_ended {
        Some(r) => joined("HTTP", r),
        None => finish("HTTP", http, deadline).await,
    };
    if let Some(m) = metrics_server {
        if let Err(e) = finish("metrics", m, deadline).await {
            tracing::warn!(error = %e, "metrics server failed");
        }
    }
    state.tasks.close();
    if tokio::time::timeout_at(deadline.into(), state.tasks.wait()).await.is_err() {
        tracing::warn!(open = state.tasks.len(), "watch streams still open at the drain deadline");
    }
    stop_background.cancel();
    background.close();
    if tokio::time::timeout(TASK_STOP_WAIT, background.wait()).await.is_err() {
        tracing::warn!("health or feed task did not stop in time");
    }
    tracing::info!("stopped");
    grpc_result.and(http_result)
}

/// Migrates, retrying an unreachable database until `wait` has passed.
pub async fn migrate(store: &Store, wait: Duration) -> Result<i64, StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        match store.migrate().await {
            Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "database unreachable at start; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// A future that completes when `token` is cancelled.
fn stopped(token: &CancellationToken) -> impl Future<Output = ()> + Send + 'static {
    let token = token.clone();
    async move { token.cancelled().await }
}

/// Waits for a server task until `deadline`, then aborts it.
async fn finish<E>(
    name: &str,
    task: tokio::task::JoinHandle<Result<(), E>>,
    deadline: Instant,
) -> Result<(), ServerError>
where
    E: Into<ServerError>,
{
    let abort = task.abort_handle();
    match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(r) => joined(name, r),
        Err(_) => {
            tracing::warn!(server = name, "calls still in flight at the drain deadline: cut");
            abort.abort();
            Ok(())
        }
    }
}

/// A finished server task's outcome.
fn joined<E>(name: &str, r: Result<Result<(), E>, tokio::task::JoinError>) -> Result<(), ServerError>
where
    E: Into<ServerError>,
{
    match r {
        Ok(r) => r.map_err(Into::into),
        Err(join) => {
            tracing::error!(server = name, error = %join, "server task failed");
            Ok(())
        }
    }
}

impl From<std::io::Error> for ServerError {
    fn from(source: std::io::Error) -> ServerError {
        ServerError::Io { what: "HTTP server".into(), source }
    }
}
