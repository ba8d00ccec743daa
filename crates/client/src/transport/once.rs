//! A connector that hands tonic one connection the client made itself, and refuses to make
//! another: tonic's channel reconnects by itself when its connection drops, which would dial a
//! failed server again behind the quarantine's back (twice in one sequence for a server that
//! resets connections). With this connector a dropped connection stays dropped: the next request
//! on the channel fails as never sent, and the client's quarantine alone decides when the server
//! is dialled again.

use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::Uri;
use tower_service::Service;

/// A byte stream to a server: TCP, or TLS over TCP.
pub(crate) trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// The connection to hand over, once.
#[derive(Clone)]
pub(crate) struct Once {
    addr: SocketAddr,
    stream: Arc<Mutex<Option<Box<dyn Duplex>>>>,
}

impl Once {
    pub fn new(addr: SocketAddr, stream: Box<dyn Duplex>) -> Once {
        Once { addr, stream: Arc::new(Mutex::new(Some(stream))) }
    }
}

/// Asked for a second connection: the first one was lost.
#[derive(Debug, thiserror::Error)]
#[error("the connection to {addr} was lost (not reconnecting: the client decides when to try it again)")]
pub(crate) struct ConnectionLost {
    addr: SocketAddr,
}

impl Service<Uri> for Once {
    type Response = TokioIo<Box<dyn Duplex>>;
    type Error = ConnectionLost;
    type Future = Ready<Result<Self::Response, ConnectionLost>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectionLost>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let taken = self.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        ready(taken.map(TokioIo::new).ok_or(ConnectionLost { addr: self.addr }))
    }
}
