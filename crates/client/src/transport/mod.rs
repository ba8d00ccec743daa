//! The way to one server: a TCP connection the client dials itself, TLS over it for `grpcs://`
//! (the certificate checked against the DNS name used), and a tonic channel on that one
//! connection, with HTTP/2 keepalive pings as `dugong_proto::keepalive` agrees with the servers.
//!
//! - `once` — the connector that hands tonic the connection and never dials again, so the
//!   client's quarantine is the only reconnect policy.
//! - `tls` — roots (`--ca FILE` or the system's), server names, ALPN.
//! - `channel` — [`ServerChannel`], which adds the client's token to every request.
//!
//! The token never travels in cleartext beyond loopback unless the configuration says
//! `insecure` ([`Transport::guard`]).

mod cause;
mod channel;
mod once;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tonic::transport::{Endpoint, Uri};

pub(crate) use cause::{append_sources, describe_error};
pub use channel::ServerChannel;
use once::{Duplex, Once};

use crate::config::{ClientConfig, ConfigError, Token};

/// TCP keepalive: probes answered by the peer's kernel; they find a vanished peer on an idle
/// connection (HTTP/2 pings run only while calls are open).
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Everything needed to open a connection, built once per client.
pub(crate) struct Transport {
    tls: Option<tls::Tls>,
    token: Option<Token>,
    insecure: bool,
    keepalive: Duration,
    keepalive_timeout: Duration,
}

impl Transport {
    /// Reads the CAs for `grpcs://` (a bad `--ca` file is a configuration error).
    pub fn new(config: &ClientConfig) -> Result<Transport, ConfigError> {
        let tls = if config.target.scheme().is_tls() { Some(tls::Tls::new(config.ca.as_deref())?) } else { None };
        Ok(Transport {
            tls,
            token: config.token.clone(),
            insecure: config.insecure,
            keepalive: config.keepalive,
            keepalive_timeout: config.keepalive_timeout,
        })
    }

    /// Whether the client may talk to `addr` at all: a token goes in cleartext only to loopback
    /// addresses, unless the configuration says `insecure`.
    pub fn guard(&self, addr: SocketAddr, name: &str) -> Result<(), ConfigError> {
        let exposed = self.token.is_some() && self.tls.is_none() && !addr.ip().is_loopback();
        if exposed && !self.insecure {
            return Err(ConfigError::CleartextToken { name: name.to_string(), addr });
        }
        Ok(())
    }

    /// Dials `addr` (known as `name`), does TLS when configured, and starts HTTP/2 on it. The
    /// caller bounds the time.
    pub async fn open(&self, addr: SocketAddr, name: Option<&str>) -> Result<ServerChannel, String> {
        self.guard(addr, name.unwrap_or("")).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| describe_error(&e))?;
        // Requests are small and latency-bound: no Nagle delay behind the peer's delayed ACK.
        tcp.set_nodelay(true).map_err(|e| describe_error(&e))?;
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE).with_interval(TCP_KEEPALIVE / 3);
        socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive).map_err(|e| describe_error(&e))?;
        let stream: Box<dyn Duplex> = match &self.tls {
            Some(tls) => Box::new(tls.handshake(tcp, addr, name).await?),
            None => Box::new(tcp),
        };
        let channel = self
            .endpoint(addr, name)?
            .connect_with_connector(Once::new(addr, stream))
            .await
            .map_err(|e| describe_error(&e))?;
        Ok(ServerChannel::new(channel, self.token.as_ref().map(|t| t.http_header().clone())))
    }

    /// The tonic endpoint for one connection: the `:authority` (and TLS name) is the DNS name
    /// used, as when connecting by name.
    fn endpoint(&self, addr: SocketAddr, name: Option<&str>) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = name.filter(|n| n.parse::<std::net::IpAddr>().is_err()).map(str::to_string);
        let authority = match host {
            Some(host) => format!("{host}:{}", addr.port()),
            None => addr.to_string(),
        };
        let origin: Uri = format!("{scheme}://{authority}").parse().map_err(|e| format!("bad server name: {e}"))?;
        // The URI only names the server for tonic; the connection comes from `Once`, and its
        // scheme stays http so that tonic does not try TLS of its own.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| describe_error(&e))?
            .origin(origin)
            .http2_keep_alive_interval(self.keepalive)
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(false);
        Ok(endpoint)
    }
}
