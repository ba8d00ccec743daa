//! The first bytes of a connection: read before the protocol takes over, so
//! that a connection that never speaks is closed at the handshake deadline,
//! a plain HTTP request on a TLS port or an HTTP/1 request on the gRPC port is
//! answered with a line saying what the port speaks, and the bytes read are
//! handed on ([`Rewind`]) as if never taken.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The HTTP/2 connection preface every gRPC client sends first.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// What the port expects.
    Expected,
    /// Plain text that looks like an HTTP request, on a port that expects
    /// something else.
    Http,
    /// Anything else unexpected.
    Garbage,
}

/// Whether `first` starts a TLS handshake.
pub fn tls_first(first: &[u8]) -> FirstBytes {
    match first.first() {
        Some(&TLS_HANDSHAKE) => FirstBytes::Expected,
        Some(b) if b.is_ascii_uppercase() => FirstBytes::Http,
        _ => FirstBytes::Garbage,
    }
}

/// Reads from `io` until `prefix` bytes are known to match (or not) the start
/// of [`H2_PREFACE`], or until one byte arrived when `h2` is false. Returns
/// the bytes read. An end of stream before that is an error.
pub async fn first_bytes<IO: AsyncRead + Unpin>(io: &mut IO, h2: bool) -> io::Result<(Vec<u8>, FirstBytes)> {
    let mut got = Vec::with_capacity(H2_PREFACE.len());
    let mut buf = [0u8; 64];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a request"));
        }
        got.extend_from_slice(&buf[..n]);
        if !h2 {
            return Ok((got, FirstBytes::Expected));
        }
        let common = got.len().min(H2_PREFACE.len());
        if got[..common] != H2_PREFACE[..common] {
            let kind = if got[0].is_ascii_uppercase() { FirstBytes::Http } else { FirstBytes::Garbage };
            return Ok((got, kind));
        }
        if common == H2_PREFACE.len() {
            return Ok((got, FirstBytes::Expected));
        }
    }
}

/// Answers an HTTP request that came to the wrong kind of port, then closes.
pub async fn refuse_http<IO: AsyncWrite + Unpin>(io: &mut IO, message: &str) {
    let body = format!("{message}\n");
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// A stream that yields `prefix` before reading from `inner`.
pub struct Rewind<IO> {
    prefix: Vec<u8>,
    at: usize,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(prefix: Vec<u8>, inner: IO) -> Rewind<IO> {
        Rewind { prefix, at: 0, inner }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_preface_is_recognised_and_given_back() {
        let (mut client, mut server) = tokio::io::duplex(256);
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        client.write_all(b"rest").await.unwrap();
        let (got, kind) = first_bytes(&mut server, true).await.unwrap();
        assert_eq!(kind, FirstBytes::Expected);
        let mut rewound = Rewind::new(got, server);
        let mut all = vec![0u8; H2_PREFACE.len() + 4];
        rewound.read_exact(&mut all).await.unwrap();
        assert_eq!(&all[..H2_PREFACE.len()], H2_PREFACE);
        assert_eq!(&all[H2_PREFACE.len()..], b"rest");
    }

    #[tokio::test]
    async fn http_on_the_grpc_port_is_told_apart() {
        let (mut client, mut server) = tokio::io::duplex(256);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(first_bytes(&mut server, true).await.unwrap().1, FirstBytes::Http);
        assert_eq!(tls_first(b"GET /"), FirstBytes::Http);
        assert_eq!(tls_first(&[0x16, 3, 1]), FirstBytes::Expected);
        assert_eq!(tls_first(&[0]), FirstBytes::Garbage);
    }
}
