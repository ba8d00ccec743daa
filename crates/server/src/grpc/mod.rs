//! The gRPC front end (tonic, port 8001): one service per resource from
//! `dugong-proto`, plus `grpc.health.v1`.
//!
//! - `convert` — store records and protobuf messages, both ways.
//! - `records` — Apps, Flows, Settings, Contexts.
//! - `events` — PostEvents, ListEvents; `info` — ServerInfo.
//! - `watch` — the Watch stream.
//!
//! - `deadline` — the request deadline (`grpc-timeout`, capped by the
//!   server's); `decode` — malformed messages are INVALID_ARGUMENT.
//!
//! Every call goes through [`Api::call`]: authorization, then the work (for
//! the caller the audit log names), then the metrics by method and status.
//! [`service`] is every service as one tower service, which `crate::net`
//! serves on the gRPC listener.

mod convert;
mod deadline;
mod decode;
mod events;
mod info;
mod records;
mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::time::Instant;

use axum::http;
use dugong_store::Actor;
use tonic::Extensions;
use tower::ServiceExt;

use dugong_proto::v1::apps_server::AppsServer;
use dugong_proto::v1::contexts_server::ContextsServer;
use dugong_proto::v1::events_server::EventsServer;
use dugong_proto::v1::flows_server::FlowsServer;
use dugong_proto::v1::info_server::InfoServer;
use dugong_proto::v1::settings_server::SettingsServer;
use dugong_proto::v1::watch_server::WatchServer;
use tonic::metadata::MetadataMap;
use tonic::{Response, Status};

use crate::audit;
use crate::auth::Access;
use crate::error::ApiError;
use crate::metrics;
use crate::net::Peer;
use crate::state::AppState;

/// The implementation of every service.
#[derive(Clone)]
pub struct Api {
    state: AppState,
}

impl Api {
    /// Authorizes, runs `work` for the caller (as the audit log names it),
    /// records the call.
    async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        access: Access,
        meta: &MetadataMap,
        ext: &Extensions,
        work: F,
    ) -> Result<Response<T>, Status>
    where
        F: FnOnce(Actor) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let started = Instant::now();
        let header = meta.get("authorization").map(|v| v.as_bytes());
        let result = match self.state.authorize(access, header) {
            Ok(caller) => work(audit::actor(&caller, ext.get::<Peer>())).await,
            Err(e) => Err(e.into()),
        };
        let (status, out) = match result {
            Ok(v) => ("Ok".to_string(), Ok(Response::new(v))),
            Err(e) => {
                let s = e.grpc_status();
                (format!("{:?}", s.code()), Err(s))
            }
        };
        metrics::record_grpc_call(method, &status, started.elapsed());
        out
    }
}

/// Every service of the gRPC API, with the request deadline and the mapping of
/// malformed messages to INVALID_ARGUMENT.
pub fn service(
    state: AppState,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) -> impl tower::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    let limit = state.config.body_limit;
    let timeout = state.config.request_timeout;
    let api = Api { state };
    let routes = tonic::service::Routes::new(health)
        .add_service(AppsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(FlowsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(SettingsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(ContextsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(EventsServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(WatchServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(InfoServer::new(api).max_decoding_message_size(limit))
        .prepare();
    tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let deadline = deadline::of(request.headers(), timeout);
        let call = routes.clone().oneshot(request);
        async move {
            // The deadline bounds the answer's headers: a unary call, or the
            // start of a stream (a watch outlives it).
            let response = match tokio::time::timeout(deadline, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => Status::deadline_exceeded(format!("no answer within {deadline:?}")).into_http(),
            };
            Ok(decode::invalid_argument(response))
        }
    })
}
