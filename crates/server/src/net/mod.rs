//! The server's listeners, from the accepted socket to the protocol: every
//! connection passes the same steps, on gRPC, HTTP and metrics alike.
//!
//! 1. `gate` — the allowlist and the connection limits (in all, per peer),
//!    before a byte is read.
//! 2. `sniff` and `tls` — within the handshake deadline: the first bytes (a
//!    plain HTTP request on a TLS port is answered and closed), the TLS
//!    handshake with the certificates loaded now (`tls` reloads them), and
//!    the first bytes of a request inside it (the HTTP/2 preface on gRPC).
//! 3. hyper serves the connection: HTTP/1.1 with a header deadline (which also
//!    bounds how long a kept-alive connection waits for its next request), or
//!    HTTP/2 with keep-alive pings and a stream limit; `activity` closes one
//!    that has had no request in flight for the idle timeout.
//!
//! Every request carries the [`Peer`] it came from (and axum's `ConnectInfo`).
//! Shutdown stops accepting, asks every connection to finish gracefully (a
//! GOAWAY on HTTP/2), and waits for them.

mod activity;
pub mod gate;
mod sniff;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use http_body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use self::activity::{Activity, Tracked};
use self::gate::{Gate, Permit};
use self::sniff::{first_bytes, refuse_http, tls_first, FirstBytes, Rewind};
use self::tls::{Alpn, Tls};
use crate::config::NetConfig;
use crate::metrics;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1: REST, console, metrics.
    Http1,
    /// HTTP/2 (prior knowledge, or ALPN `h2` in TLS): gRPC.
    Grpc,
}

/// The address a request came from; in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Whether the connection is TLS (and so, with `--tls-client-ca`, proved
    /// a client certificate).
    pub tls: bool,
}

/// What every listener of a server shares.
pub struct Net {
    pub gate: Arc<Gate>,
    pub tls: Option<Arc<Tls>>,
    pub config: NetConfig,
}

/// A stream hyper can serve.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How a connection ended before it was served, for the metric.
#[derive(Debug)]
enum Failed {
    Timeout,
    Closed,
    PlainOnTls,
    NotGrpc,
    Tls(std::io::Error),
}

impl Failed {
    fn label(&self) -> &'static str {
        match self {
            Failed::Timeout => "handshake_timeout",
            Failed::Closed => "closed_early",
            Failed::PlainOnTls => "plain_on_tls",
            Failed::NotGrpc => "not_http2",
            Failed::Tls(_) => "tls_failed",
        }
    }
}

/// Serves `service` on `listener` until `stop`, then drains: no new
/// connections, the open ones asked to finish.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    proto: Proto,
    service: S,
    net: Arc<Net>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let shutdown = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin, and keep serving what is open.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match net.gate.admit(addr.ip()) {
                    Ok(p) => p,
                    Err(refusal) => {
                        metrics::connection_refused(name, refusal.as_str());
                        tracing::debug!(listener = name, peer = %addr, reason = refusal.as_str(), "connection refused");
                        // Close at once (RST), without waiting for the peer.
                        let _ = tcp.set_zero_linger();
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let conn = Conn { name, proto, net: net.clone(), addr, _permit: permit };
                connections.spawn(conn.run(tcp, service.clone(), shutdown.clone()));
            }
        }
    }
    // New connections are refused at once (not left waiting in the backlog)
    // while the open ones finish.
    drop(listener);
    shutdown.cancel();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One accepted connection and its place at the gate.
struct Conn {
    name: &'static str,
    proto: Proto,
    net: Arc<Net>,
    addr: SocketAddr,
    _permit: Permit,
}

impl Conn {
    async fn run<S, B>(self, tcp: TcpStream, service: S, shutdown: CancellationToken)
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _open = metrics::connection_opened(self.name);
        let handshake = tokio::time::timeout(self.net.config.handshake_timeout, self.handshake(tcp));
        let io = match handshake.await {
            Ok(Ok(io)) => io,
            Ok(Err(failed)) => return self.failed(failed),
            Err(_) => return self.failed(Failed::Timeout),
        };
        let peer = Peer { addr: self.addr, tls: self.net.tls.is_some() };
        let activity = Activity::new();
        let tracker = activity.clone();
        let svc = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(peer);
            request.extensions_mut().insert(ConnectInfo(peer.addr));
            let guard = tracker.begin();
            let call = service.clone().oneshot(request);
            async move {
                let response = call.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
            }
        });
        let config = &self.net.config;
        let io = TokioIo::new(io);
        let idle = activity.idle(config.idle_timeout);
        match self.proto {
            Proto::Http1 => {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).keep_alive(true);
                let conn = builder.serve_connection(io, svc);
                drive(conn, |c| c.graceful_shutdown(), idle, &shutdown).await;
            }
            Proto::Grpc => {
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    .keep_alive_interval(config.keepalive_interval)
                    .keep_alive_timeout(config.keepalive_timeout)
                    .max_concurrent_streams(config.max_streams_per_connection);
                let conn = builder.serve_connection(io, svc);
                drive(conn, |c| c.graceful_shutdown(), idle, &shutdown).await;
            }
        }
    }

    /// Everything before the protocol: TLS, and the first bytes of a request.
    async fn handshake(&self, mut tcp: TcpStream) -> Result<Box<dyn Io>, Failed> {
        let grpc = self.proto == Proto::Grpc;
        let Some(tls) = &self.net.tls else {
            let (bytes, kind) = first_bytes(&mut tcp, grpc).await.map_err(|_| Failed::Closed)?;
            let mut io = Rewind::new(bytes, tcp);
            return self.expect(&mut io, kind).await.map(|()| Box::new(io) as Box<dyn Io>);
        };
        let (bytes, _) = first_bytes(&mut tcp, false).await.map_err(|_| Failed::Closed)?;
        match tls_first(&bytes) {
            FirstBytes::Expected => {}
            FirstBytes::Http => {
                refuse_http(&mut tcp, "This port speaks TLS: use https:// (grpcs:// for gRPC).").await;
                return Err(Failed::PlainOnTls);
            }
            FirstBytes::Garbage => return Err(Failed::PlainOnTls),
        }
        let alpn = if grpc { Alpn::H2 } else { Alpn::Http1 };
        let mut stream = tls.acceptor(alpn).accept(Rewind::new(bytes, tcp)).await.map_err(Failed::Tls)?;
        let (bytes, kind) = first_bytes(&mut stream, grpc).await.map_err(|_| Failed::Closed)?;
        let mut io = Rewind::new(bytes, stream);
        self.expect(&mut io, kind).await.map(|()| Box::new(io) as Box<dyn Io>)
    }

    /// Answers an HTTP/1 request on the gRPC port, or garbage, and gives up.
    async fn expect<IO: Io>(&self, io: &mut IO, kind: FirstBytes) -> Result<(), Failed> {
        match kind {
            FirstBytes::Expected => Ok(()),
            FirstBytes::Http => {
                refuse_http(io, "This port speaks gRPC (HTTP/2); the REST API and console are on the HTTP port.").await;
                Err(Failed::NotGrpc)
            }
            FirstBytes::Garbage => Err(Failed::NotGrpc),
        }
    }

    fn failed(&self, failed: Failed) {
        metrics::connection_refused(self.name, failed.label());
        match &failed {
            Failed::Tls(e) => {
                tracing::debug!(listener = self.name, peer = %self.addr, error = %e, "TLS handshake failed")
            }
            other => {
                tracing::debug!(listener = self.name, peer = %self.addr, reason = other.label(), "connection closed")
            }
        }
    }
}

/// Runs a hyper connection to its end; on shutdown or when idle, asks it to
/// finish gracefully first.
async fn drive<C>(conn: C, graceful: impl Fn(Pin<&mut C>), idle: impl Future<Output = ()>, shutdown: &CancellationToken)
where
    C: Future,
{
    tokio::pin!(conn);
    tokio::pin!(idle);
    let mut finishing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled(), if !finishing => {
                finishing = true;
                graceful(conn.as_mut());
            }
            _ = idle.as_mut(), if !finishing => {
                finishing = true;
                graceful(conn.as_mut());
            }
        }
    }
}
