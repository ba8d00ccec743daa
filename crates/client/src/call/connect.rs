//! One connection attempt to one server address: the transport's connection (TCP, TLS, HTTP/2)
//! and a first round trip — a `grpc.health.v1` Check — before the channel is used, so a server that
//! accepts TCP but never answers is found before any call is sent to it. All within the connect
//! timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::outcome::{describe, human};
use crate::transport::{ServerChannel, Transport};

/// Connects to `addr` (known as `name`) within `timeout` and, when `health_check`, checks its
/// health. The error is the cause in words, for the "all servers down" report.
pub(crate) async fn connect(
    transport: &Transport,
    addr: SocketAddr,
    name: Option<&str>,
    timeout: Duration,
    health_check: bool,
) -> Result<ServerChannel, String> {
    let deadline = Instant::now() + timeout;
    let channel = match tokio::time::timeout_at(deadline, transport.open(addr, name)).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(cause)) => return Err(cause),
        Err(_) => return Err(format!("no connection within {}", human(timeout))),
    };
    if !health_check {
        return Ok(channel);
    }
    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest { service: String::new() };
    match tokio::time::timeout_at(deadline, health.check(request)).await {
        Err(_) => Err(format!("connected, but no answer to a health check within {}", human(timeout))),
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Ok(channel),
            other => Err(format!("health check says {}", other.as_str_name())),
        },
        // A server without the health service answered all the same: it is alive (gRFC A17).
        Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(channel),
        Ok(Err(status)) => Err(format!("health check failed: {}", describe(&status))),
    }
}
