//! Servers that fail the way real ones do, for the tests: one that accepts TCP connections and
//! resets them at once, a proxy whose connections freeze (a black hole after connect, or a
//! stopped process: bytes are taken in and nothing comes back), and an HTTP/2 server that
//! refuses every stream (REFUSED_STREAM: the request was not processed).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Accepts every TCP connection and resets it (RST, not FIN) at once.
pub struct Resetter {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Resetter {
    pub fn start(listener: TcpListener) -> Resetter {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                // A zero linger makes close send RST.
                let _ = socket.set_zero_linger();
                drop(socket);
            }
        });
        Resetter { addr, accepted, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted (and reset) so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Resetter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards TCP connections to a server until frozen; then every connection stays open and
/// nothing moves either way, as with a stopped process or a network that drops packets.
pub struct Freezer {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Freezer {
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Freezer {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pipes.spawn(pipe(client_read, server_write, flag.clone()));
                pipes.spawn(pipe(server_read, client_write, flag.clone()));
            }
        });
        Freezer { addr, frozen, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing is forwarded; connections stay open.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies until the connection ends; once frozen, holds what it read and never writes again.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Keep both halves (the connection stays open) and never forward again.
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// An HTTP/2 server that answers every request with RST_STREAM(REFUSED_STREAM).
pub struct Refuser {
    addr: SocketAddr,
    streams: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Refuser {
    pub fn start(listener: TcpListener) -> Refuser {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let streams = Arc::new(AtomicU64::new(0));
        let counter = streams.clone();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let counter = counter.clone();
                conns.spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else { return };
                    while let Some(Ok((_, mut respond))) = conn.accept().await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    }
                });
            }
        });
        Refuser { addr, streams, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Streams refused so far.
    pub fn refused(&self) -> u64 {
        self.streams.load(Ordering::SeqCst)
    }
}

impl Drop for Refuser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/2 server that answers the first request of each connection with GOAWAY
/// (last-stream-id 0, NO_ERROR): "going away, and I processed none of your streams" — what a
/// draining server tells a client whose request crossed its GOAWAY. Written frame by frame
/// (RFC 9113 §4.1): a 9-byte header of length, type, flags and stream id, then the payload.
pub struct GoingAway {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Frame types (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;

impl GoingAway {
    pub fn start(listener: TcpListener) -> GoingAway {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                conns.spawn(go_away_on_first_request(socket, counter.clone()));
            }
        });
        GoingAway { addr, requests, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests (HEADERS frames) answered with GOAWAY so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for GoingAway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

async fn go_away_on_first_request(mut socket: TcpStream, requests: Arc<AtomicU64>) {
    let mut preface = [0u8; 24];
    if socket.read_exact(&mut preface).await.is_err() {
        return;
    }
    if socket.write_all(&frame(SETTINGS, 0, &[])).await.is_err() {
        return;
    }
    let mut header = [0u8; 9];
    while socket.read_exact(&mut header).await.is_ok() {
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        if socket.read_exact(&mut payload).await.is_err() {
            return;
        }
        match header[3] {
            SETTINGS if header[4] & 0x1 == 0 => {
                let _ = socket.write_all(&frame(SETTINGS, 0x1, &[])).await;
            }
            HEADERS => {
                requests.fetch_add(1, Ordering::SeqCst);
                // Last stream id 0, error code NO_ERROR: no stream of yours was processed.
                let _ = socket.write_all(&frame(GOAWAY, 0, &[0; 8])).await;
            }
            _ => {}
        }
    }
}
