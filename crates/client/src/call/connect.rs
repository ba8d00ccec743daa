//! One tonic channel per server address: connect with a deadline, HTTP/2 and TCP keepalive a
//! server accepts, and a first round trip (`grpc.health.v1` Check) before the channel is used,
//! so a server that accepts TCP but never answers is found before any call is sent to it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::outcome::{describe, describe_error, human};
use crate::config::ClientConfig;

/// How long an HTTP/2 keepalive ping may go unanswered before the connection counts as dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive: probes answered by the peer's kernel, invisible to gRPC's ping policing, so they
/// may be frequent; they find a vanished peer on an idle connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// The endpoint for one server address. `name` (a configured DNS name) becomes the `:authority`
/// of requests, as when connecting by name.
fn endpoint(addr: SocketAddr, name: Option<&str>, config: &ClientConfig) -> Result<Endpoint, String> {
    let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| describe_error(&e))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .tcp_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL))
        .tcp_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES))
        .http2_keep_alive_interval(config.keepalive)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false);
    if let Some(name) = name.filter(|n| n.parse::<std::net::IpAddr>().is_err()) {
        if let Ok(origin) = format!("http://{name}:{}", addr.port()).parse::<Uri>() {
            endpoint = endpoint.origin(origin);
        }
    }
    Ok(endpoint)
}

/// Connects to `addr` before `deadline` and, when configured, checks its health. The error is
/// the cause in words, for the "all servers down" report.
pub(crate) async fn connect(
    addr: SocketAddr,
    name: Option<&str>,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<Channel, String> {
    let budget = deadline.saturating_duration_since(Instant::now()) + Duration::from_micros(500);
    let endpoint = endpoint(addr, name, config)?;
    let channel = match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(describe_error(&e)),
        Err(_) => return Err(format!("no TCP connection within {}", human(budget))),
    };
    if !config.health_check {
        return Ok(channel);
    }
    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest { service: String::new() };
    match tokio::time::timeout_at(deadline, health.check(request)).await {
        Err(_) => Err(format!("connected, but no answer to a health check within {}", human(budget))),
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Ok(channel),
            other => Err(format!("health check says {}", other.as_str_name())),
        },
        // A server without the health service answered all the same: it is alive (gRFC A17).
        Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(channel),
        Ok(Err(status)) => Err(format!("health check failed: {}", describe(&status))),
    }
}
