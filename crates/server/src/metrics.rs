//! Metric names (all prefixed `dugong_`), the Prometheus recorder, and the
//! `/metrics` route served on its own address (6060 by default).
//!
//! - [`process`] — `dugong_build_info` and the `process_*` metrics, which
//!   `dugong replicate --metrics` exports too.
//! - [`certificate`] — when the served TLS certificate expires.
//!
//! Every metric is described in `docs/metrics.md` (a test holds the two
//! together).

pub mod certificate;
pub mod process;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Calls answered, by `api` (`grpc`, `http`), `method` (the HTTP method, or
/// the gRPC method's name), `route` (the route template, or the gRPC path) and
/// `status` (the HTTP status, or the gRPC code's name).
pub const REQUESTS: &str = "dugong_api_requests_total";
/// Call latency, same labels.
pub const REQUEST_SECONDS: &str = "dugong_api_request_duration_seconds";
/// Watch streams open now.
pub const WATCHES_OPEN: &str = "dugong_watches_open";
/// Changes sent to watchers.
pub const WATCH_CHANGES: &str = "dugong_watch_changes_sent_total";
/// The last change-feed position this server has seen.
pub const FEED_POSITION: &str = "dugong_feed_position";
/// 1 while the database answers, else 0.
pub const DB_UP: &str = "dugong_db_up";
/// Database connections, by `state` (`idle`, `in_use`).
pub const DB_POOL_CONNECTIONS: &str = "dugong_db_pool_connections";
/// Calls waiting for a database connection.
pub const DB_POOL_WAITING: &str = "dugong_db_pool_waiting";
/// The pool's size limit.
pub const DB_POOL_MAX: &str = "dugong_db_pool_max_connections";

/// Connections open now, by `listener` (`grpc`, `http`, `metrics`).
pub const CONNECTIONS_OPEN: &str = "dugong_connections_open";
/// Connections closed before they were served, by `listener` and `reason`
/// (`not_allowed`, `max_connections`, `max_connections_per_peer`,
/// `handshake_timeout`, `tls_failed`, `plain_on_tls`, `not_http2`,
/// `closed_early`).
pub const CONNECTIONS_REFUSED: &str = "dugong_connections_refused_total";
/// Certificate reloads, by `outcome` (`ok`, `failed`).
pub const TLS_RELOADS: &str = "dugong_tls_reloads_total";
/// When the served certificate (the leaf of `--tls-cert`, as last loaded)
/// expires, in seconds since the Unix epoch.
pub const TLS_CERT_EXPIRY: &str = "dugong_tls_certificate_expiry_timestamp_seconds";
/// Audit entries recorded, by `action`.
pub const AUDIT_ENTRIES: &str = "dugong_audit_entries_total";

/// Latency buckets, from half a millisecond to ten seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder, installed on first use. Several servers in one
/// process (tests) share it; if another recorder was installed first, the
/// handle renders nothing and a warning says why.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(REQUEST_SECONDS.into()),
                LATENCY_BUCKETS,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "latency buckets refused; histograms render as summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "API calls answered, by api, method, route and status");
    metrics::describe_histogram!(REQUEST_SECONDS, metrics::Unit::Seconds, "API call latency");
    metrics::describe_gauge!(WATCHES_OPEN, "Watch streams open");
    metrics::describe_counter!(WATCH_CHANGES, "Changes sent to watchers");
    metrics::describe_gauge!(FEED_POSITION, "Last change-feed position seen by this server");
    metrics::describe_gauge!(DB_UP, "1 while the site database answers");
    metrics::describe_gauge!(DB_POOL_CONNECTIONS, "Database connections by state");
    metrics::describe_gauge!(DB_POOL_WAITING, "Calls waiting for a database connection");
    metrics::describe_gauge!(DB_POOL_MAX, "Database pool size limit");
    metrics::describe_gauge!(CONNECTIONS_OPEN, "Connections open, by listener");
    metrics::describe_counter!(CONNECTIONS_REFUSED, "Connections closed before being served, by listener and reason");
    metrics::describe_counter!(TLS_RELOADS, "TLS certificate reloads, by outcome");
    metrics::describe_gauge!(TLS_CERT_EXPIRY, "When the served TLS certificate expires (Unix time)");
    metrics::describe_counter!(AUDIT_ENTRIES, "Audit entries recorded, by action");
}

/// Records one answered HTTP request: its method (`GET`) and the template of
/// the route it matched (`/api/v1/settings/{key}`, `unmatched`), so neither
/// keys nor stray paths make new series.
pub fn record_http_call(method: &str, route: &str, status: &str, elapsed: Duration) {
    record_call("http", method, route, status, elapsed);
}

/// Records one answered gRPC call, named `Service/Method` (`Settings/GetSetting`):
/// `method` is `GetSetting`, `route` the request's path, `/dugong.v1.Settings/GetSetting`.
pub fn record_grpc_call(call: &str, code: &str, elapsed: Duration) {
    let method = call.rsplit('/').next().unwrap_or(call);
    record_call("grpc", method, &format!("/{GRPC_PACKAGE}.{call}"), code, elapsed);
}

/// The protobuf package of the gRPC services.
const GRPC_PACKAGE: &str = "dugong.v1";

fn record_call(api: &'static str, method: &str, route: &str, status: &str, elapsed: Duration) {
    let labels = [
        ("api", api.to_string()),
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(REQUEST_SECONDS, &labels).record(elapsed.as_secs_f64());
}

/// One more connection open on `listener`, until the guard drops.
pub fn connection_opened(listener: &'static str) -> OpenConnection {
    metrics::gauge!(CONNECTIONS_OPEN, "listener" => listener).increment(1.0);
    OpenConnection(listener)
}

/// A connection counted in [`CONNECTIONS_OPEN`].
pub struct OpenConnection(&'static str);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN, "listener" => self.0).decrement(1.0);
    }
}

/// A connection on `listener` closed before it was served.
pub fn connection_refused(listener: &'static str, reason: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED, "listener" => listener, "reason" => reason).increment(1);
}

pub fn tls_reload(outcome: &'static str) {
    metrics::counter!(TLS_RELOADS, "outcome" => outcome).increment(1);
}

/// The certificate just loaded expires at `not_after` (Unix seconds); `None`
/// when its validity could not be read, which leaves the gauge as it was.
pub fn tls_certificate_loaded(not_after: Option<i64>) {
    if let Some(t) = not_after {
        metrics::gauge!(TLS_CERT_EXPIRY).set(t as f64);
    }
}

pub fn audit_entry(action: &'static str) {
    metrics::counter!(AUDIT_ENTRIES, "action" => action).increment(1);
}

/// The router of the metrics address: `/metrics` in Prometheus text format.
pub fn router(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { render(&handle) }
        }),
    )
}

/// The `/metrics` page: the recorder's metrics, then the process's.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut page = handle.render();
    if !page.is_empty() && !page.ends_with('\n') {
        page.push('\n');
    }
    page.push_str(&process::render());
    page
}
