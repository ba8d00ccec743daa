//! A WAN on `127.0.0.1`: a TCP proxy that delivers every chunk it reads a
//! fixed delay after it arrived, in order, with any number of chunks in
//! flight — a link with a round-trip time of twice the delay and no
//! bandwidth limit to speak of. `tc netem` is not available on these
//! machines; this is what the benchmark and the tests put between a
//! replicator and a remote site instead.
//!
//! The link also counts round trips: on each connection, every time the
//! client speaks again after the server has answered. Requests a client
//! pipelines without waiting count once, which is what makes the count the
//! number of times the client waited for the link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running delay link; it stops (and closes every connection through it)
/// when dropped.
pub struct DelayLink {
    addr: SocketAddr,
    one_way: Duration,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counters {
    round_trips: AtomicU64,
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// Keepalive probes and a limit on unacknowledged data for a link's upstream connections:
/// when either gives up, the connection ends, and with it the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Silence before the first keepalive probe.
    pub idle: Duration,
    /// Between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dead.
    pub count: u32,
    /// Longest time sent data may stay unacknowledged (`TCP_USER_TIMEOUT`).
    pub user_timeout: Duration,
}

impl Probe {
    /// Sets the probes on `stream`'s socket.
    fn apply(&self, stream: &TcpStream) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = stream.as_raw_fd();
        let secs = |d: Duration| d.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
        let millis = self.user_timeout.as_millis().min(u32::MAX as u128) as libc::c_uint;
        set_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1 as libc::c_int)?;
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(self.idle))?;
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(self.interval))?;
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, self.count.min(i32::MAX as u32) as libc::c_int)?;
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis)
    }
}

/// `setsockopt` of one plain value.
fn set_option<T>(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int, value: T) -> std::io::Result<()> {
    // SAFETY: `value` lives through the call and its size is passed with it; the descriptor
    // belongs to a socket the caller holds.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&value as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What crossed a link so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounts {
    /// Times a client spoke again after the server answered, over all connections.
    pub round_trips: u64,
    /// Connections opened through the link.
    pub connections: u64,
    /// Bytes from clients to the server, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl LinkCounts {
    /// What happened between `earlier` and these counts.
    pub fn since(&self, earlier: &LinkCounts) -> LinkCounts {
        LinkCounts {
            round_trips: self.round_trips.saturating_sub(earlier.round_trips),
            connections: self.connections.saturating_sub(earlier.connections),
            bytes_up: self.bytes_up.saturating_sub(earlier.bytes_up),
            bytes_down: self.bytes_down.saturating_sub(earlier.bytes_down),
        }
    }
}

impl DelayLink {
    /// Listens on a free port of `127.0.0.1` and forwards every connection to
    /// `upstream`, each chunk `one_way` after it arrived, both ways. Must be
    /// called within a Tokio runtime, which runs the link.
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> std::io::Result<DelayLink> {
        DelayLink::start_probing(upstream, one_way, None).await
    }

    /// Like [`DelayLink::start`], and every upstream connection probed as `probe` says. A
    /// client's own keepalives reach only the link, which always answers: without probes
    /// upstream, a dead link behind it (cut, no reset) leaves the client waiting forever,
    /// where a direct connection would have failed.
    pub async fn start_probing(
        upstream: SocketAddr,
        one_way: Duration,
        probe: Option<Probe>,
    ) -> std::io::Result<DelayLink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let counters = shared.clone();
                connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = server.set_nodelay(true);
                        if let Some(probe) = probe {
                            if probe.apply(&server).is_err() {
                                return;
                            }
                        }
                        carry(client, server, one_way, counters).await;
                    }
                });
                // Reap the connections that ended.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(DelayLink { addr, one_way, counters, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The delay each way.
    pub fn one_way(&self) -> Duration {
        self.one_way
    }

    /// What crossed the link since it started.
    pub fn counts(&self) -> LinkCounts {
        let c = &self.counters;
        LinkCounts {
            round_trips: c.round_trips.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection's task and closes both of its sockets.
        self.task.abort();
    }
}

/// Which way a connection last carried data.
const IDLE: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Carries one connection both ways until either side closes.
async fn carry(client: TcpStream, server: TcpStream, one_way: Duration, counters: Arc<Counters>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let last = Arc::new(std::sync::atomic::AtomicU8::new(IDLE));
    let up = direction(client_read, server_write, one_way, UP, last.clone(), counters.clone());
    let down = direction(server_read, client_write, one_way, DOWN, last, counters);
    // Either way ending ends the connection: the other half is dropped, which
    // closes its sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// One way of a connection: a reader that stamps each chunk as it arrives,
/// and a writer that sends it on once its delay has passed.
async fn direction(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    way: u8,
    last: Arc<std::sync::atomic::AtomicU8>,
    counters: Arc<Counters>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let previous = last.swap(way, Ordering::Relaxed);
            if way == UP {
                counters.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                if previous != UP {
                    counters.round_trips.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                counters.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
            }
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    // The writer drains what was read before the reader ended.
    let (_, ()) = tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server that answers every chunk it reads.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_exchange_takes_a_round_trip_and_is_counted_once() {
        let link = DelayLink::start(echo().await, Duration::from_millis(20)).await.unwrap();
        let mut s = TcpStream::connect(link.addr()).await.unwrap();
        let started = std::time::Instant::now();
        for i in 0..3u8 {
            s.write_all(&[i]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i);
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(120), "three exchanges over a 40 ms round trip took {took:?}");
        let counts = link.counts();
        assert_eq!((counts.round_trips, counts.connections, counts.bytes_up, counts.bytes_down), (3, 1, 3, 3));
    }

    #[tokio::test]
    async fn a_probed_link_forwards_and_its_probes_are_set() {
        let probe = Probe {
            idle: Duration::from_secs(3),
            interval: Duration::from_secs(1),
            count: 3,
            user_timeout: Duration::from_secs(10),
        };
        let link = DelayLink::start_probing(echo().await, Duration::from_millis(1), Some(probe)).await.unwrap();
        let mut s = TcpStream::connect(link.addr()).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");

        let other = TcpStream::connect(link.addr()).await.unwrap();
        probe.apply(&other).unwrap();
        let read = |level, name| {
            use std::os::fd::AsRawFd;
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: value and len are valid for the call and len is value's size.
            let rc = unsafe {
                libc::getsockopt(other.as_raw_fd(), level, name, (&mut value as *mut libc::c_int).cast(), &mut len)
            };
            assert_eq!(rc, 0);
            value
        };
        assert_eq!(read(libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(read(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 3);
        assert_eq!(read(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 1);
        assert_eq!(read(libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 3);
        assert_eq!(read(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 10_000);
    }

    #[tokio::test]
    async fn chunks_in_flight_keep_their_order() {
        let link = DelayLink::start(echo().await, Duration::from_millis(5)).await.unwrap();
        let mut s = TcpStream::connect(link.addr()).await.unwrap();
        let sent: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let (mut r, mut w) = s.split();
        let (_, got) = tokio::join!(async { w.write_all(&sent).await.unwrap() }, async {
            let mut got = vec![0u8; sent.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        });
        assert!(got == sent, "bytes came back out of order");
    }
}
