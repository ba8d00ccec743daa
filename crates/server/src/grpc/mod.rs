//! The gRPC front end (tonic, port 8001): one service per resource from
//! `dugong-proto`, plus `grpc.health.v1`.
//!
//! - `convert` — store records and protobuf messages, both ways.
//! - `records` — Apps, Flows, Settings, Contexts.
//! - `events` — PostEvents, ListEvents; `info` — ServerInfo.
//! - `watch` — the Watch stream.
//!
//! Every call goes through [`Api::call`]: authorization, then the work, then
//! the metrics by method and status.

mod convert;
mod events;
mod info;
mod records;
mod watch;

use std::future::Future;
use std::time::Instant;

use dugong_proto::v1::apps_server::AppsServer;
use dugong_proto::v1::contexts_server::ContextsServer;
use dugong_proto::v1::events_server::EventsServer;
use dugong_proto::v1::flows_server::FlowsServer;
use dugong_proto::v1::info_server::InfoServer;
use dugong_proto::v1::settings_server::SettingsServer;
use dugong_proto::v1::watch_server::WatchServer;
use tonic::metadata::MetadataMap;
use tonic::{Response, Status};

use crate::auth::Access;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// The implementation of every service.
#[derive(Clone)]
pub struct Api {
    state: AppState,
}

impl Api {
    /// Authorizes, runs `work`, records the call.
    async fn call<T, F>(
        &self,
        method: &'static str,
        access: Access,
        meta: &MetadataMap,
        work: F,
    ) -> Result<Response<T>, Status>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        let started = Instant::now();
        let header = meta.get("authorization").map(|v| v.as_bytes());
        let result = match self.state.authorize(access, header) {
            Ok(()) => work.await,
            Err(e) => Err(e.into()),
        };
        let (status, out) = match result {
            Ok(v) => ("Ok".to_string(), Ok(Response::new(v))),
            Err(e) => {
                let s = e.grpc_status();
                (format!("{:?}", s.code()), Err(s))
            }
        };
        metrics::record_call("grpc", method, &status, started.elapsed());
        out
    }
}

/// Accepted connections with TCP_NODELAY: without it, a response written in
/// several frames waits for the client's delayed ACK (about 40 ms).
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The gRPC server on `listener` until `stop`: in-flight calls finish first
/// (watch streams end on the drain signal before that).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let limit = state.config.body_limit;
    let timeout = state.config.request_timeout;
    let api = Api { state };
    tonic::transport::Server::builder()
        .timeout(timeout)
        // The keepalive agreement with clients (they may ping every 500 ms while calls are open).
        .http2_keepalive_interval(Some(dugong_proto::keepalive::SERVER_PING_INTERVAL))
        .http2_keepalive_timeout(Some(dugong_proto::keepalive::SERVER_PING_TIMEOUT))
        .add_service(health)
        .add_service(AppsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(FlowsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(SettingsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(ContextsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(EventsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(WatchServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(InfoServer::new(api).max_decoding_message_size(limit))
        .serve_with_incoming_shutdown(incoming(listener), stop)
        .await
}
