//! A TCP proxy on `127.0.0.1` that forwards to a server and can lose an answer
//! on purpose: once the client has sent bytes containing a marker, the
//! server's next bytes are dropped and both connections are closed. The
//! request reached the server (and committed, for a database write), but the
//! client never hears so — the fault that makes a write's outcome unknown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    marker: Arc<Mutex<Option<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of `127.0.0.1` and forwards every connection to
    /// `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let marker: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let armed = marker.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let armed = armed.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, armed).await;
                    }
                });
            }
        });
        Ok(FaultProxy { addr, marker, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Loses the answer to the next request that contains `marker` (once).
    pub fn lose_answer_to(&self, marker: &[u8]) {
        *self.marker.lock().unwrap_or_else(|p| p.into_inner()) = Some(marker.to_vec());
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes, or until the armed marker has
/// gone up and the answer comes down: then both are closed unanswered.
async fn forward(client: TcpStream, server: TcpStream, marker: Arc<Mutex<Option<Vec<u8>>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (tripped_tx, mut tripped) = tokio::sync::watch::channel(false);
    let up = async move {
        let mut seen: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            seen.extend_from_slice(&buf[..n]);
            {
                let mut armed = marker.lock().unwrap_or_else(|p| p.into_inner());
                let hit = armed.as_ref().is_some_and(|m| seen.windows(m.len()).any(|w| w == m.as_slice()));
                if hit {
                    *armed = None;
                    let _ = tripped_tx.send(true);
                }
            }
            // Keep only enough to find a marker split across two reads.
            if seen.len() > 64 * 1024 {
                seen.drain(..seen.len() - 1024);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if *tripped.borrow_and_update() {
                // The answer is lost: both sides go away unanswered.
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
