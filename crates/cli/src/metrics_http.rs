//! Serves Prometheus metrics at `/metrics` on an address of its own: the
//! replicator's, `dugong_build_info` and the `process_*` metrics.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// Installs the global recorder and serves it until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    buckets: &[f64],
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let handle: PrometheusHandle = PrometheusBuilder::new().set_buckets(buckets)?.install_recorder()?;
    crate::version::record_build_info();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics {addr}: cannot listen: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { dugong_server::metrics::render(&handle) }
        }),
    );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    }))
}
