//! Real gRPC servers for the tests: tonic on a loopback address, serving `grpc.health.v1` and the
//! test-only `Probe` service, each in its own runtime on its own thread, so that killing one
//! drops its listener and every open connection at once, like a process dying.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::pb::probe_server::{Probe, ProbeServer};
use super::pb::{AddReply, AddRequest, Event, SleepReply, SleepRequest, WatchRequest, WhoReply, WhoRequest};

/// What all test servers share, as the sites of one deployment share replicated data.
pub struct World {
    /// The sum of every `Add` ever executed, on any server.
    pub added: AtomicU64,
    /// How many `Add` calls were executed, on any server.
    pub adds: AtomicU64,
    /// The newest event number; events are 1..=newest.
    log: watch::Sender<u64>,
}

impl World {
    pub fn new() -> Arc<World> {
        Arc::new(World { added: AtomicU64::new(0), adds: AtomicU64::new(0), log: watch::channel(0).0 })
    }

    /// Appends an event and returns its number.
    pub fn append(&self) -> u64 {
        self.log.send_modify(|n| *n += 1);
        *self.log.borrow()
    }
}

struct ProbeService {
    name: String,
    world: Arc<World>,
    served: Arc<AtomicU64>,
    die: Arc<Notify>,
}

#[tonic::async_trait]
impl Probe for ProbeService {
    async fn who(&self, _: Request<WhoRequest>) -> Result<Response<WhoReply>, Status> {
        self.served.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(WhoReply { server: self.name.clone() }))
    }

    async fn add(&self, request: Request<AddRequest>) -> Result<Response<AddReply>, Status> {
        let request = request.into_inner();
        let total = self.world.added.fetch_add(request.amount, Ordering::SeqCst) + request.amount;
        self.world.adds.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(request.millis)).await;
        if request.die_before_answer {
            self.die.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(Response::new(AddReply { total }))
    }

    async fn sleep(&self, request: Request<SleepRequest>) -> Result<Response<SleepReply>, Status> {
        let request = request.into_inner();
        if request.only_on.is_empty() || request.only_on == self.name {
            tokio::time::sleep(Duration::from_millis(request.millis)).await;
        }
        Ok(Response::new(SleepReply {}))
    }

    type WatchStream = ReceiverStream<Result<Event, Status>>;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut log = self.world.log.subscribe();
        let mut next = request.into_inner().after + 1;
        let server = self.name.clone();
        tokio::spawn(async move {
            loop {
                let newest = *log.borrow_and_update();
                while next <= newest {
                    if tx.send(Ok(Event { seq: next, server: server.clone() })).await.is_err() {
                        return;
                    }
                    next += 1;
                }
                if log.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One application server on a loopback address.
pub struct TestServer {
    pub name: String,
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    health: HealthReporter,
    kill: Option<oneshot::Sender<()>>,
    drain: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves on `listener` (already bound, so the address is known and fixed).
    pub fn start(listener: TcpListener, name: &str, world: &Arc<World>) -> TestServer {
        TestServer::start_with(listener, name, world, None)
    }

    /// Serves gRPC over TLS with `identity` (certificate chain and key).
    pub fn start_tls(listener: TcpListener, name: &str, world: &Arc<World>, identity: Identity) -> TestServer {
        TestServer::start_with(listener, name, world, Some(identity))
    }

    fn start_with(listener: TcpListener, name: &str, world: &Arc<World>, tls: Option<Identity>) -> TestServer {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let accepted = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (health, health_service) = tonic_health::server::health_reporter();
        let die = Arc::new(Notify::new());
        let probe =
            ProbeService { name: name.to_string(), world: world.clone(), served: served.clone(), die: die.clone() };
        let (kill, killed) = oneshot::channel::<()>();
        let (drain, drained) = oneshot::channel::<()>();
        let counter = accepted.clone();
        let thread = std::thread::Builder::new()
            .name(format!("server-{name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                runtime.block_on(async move {
                    listener.set_nonblocking(true).expect("non-blocking listener");
                    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let incoming = TcpListenerStream::new(listener).map(move |conn| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        conn
                    });
                    let mut builder = tonic::transport::Server::builder();
                    if let Some(identity) = tls {
                        builder = builder.tls_config(ServerTlsConfig::new().identity(identity)).expect("a TLS config");
                    }
                    // Draining as servers do on SIGTERM: no new connections, GOAWAY on the open
                    // ones, calls in flight answered.
                    let serve = builder
                        .add_service(health_service)
                        .add_service(ProbeServer::new(probe))
                        .serve_with_incoming_shutdown(incoming, async move {
                            let _ = drained.await;
                        });
                    tokio::select! {
                        result = serve => result.expect("the test server runs"),
                        _ = killed => {}
                        _ = die.notified() => {}
                    }
                });
                // Dropping the runtime drops every connection task: sockets close at once.
                drop(runtime);
            })
            .expect("a server thread");
        TestServer {
            name: name.to_string(),
            addr,
            accepted,
            served,
            health,
            kill: Some(kill),
            drain: Some(drain),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// `Who` calls answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    pub async fn set_serving(&self, serving: bool) {
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.health.set_service_status("", status).await;
    }

    /// Starts draining (as on SIGTERM); returns at once.
    pub fn drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
    }

    /// Kills the server: listener and connections close; returns when they have.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server that accepts TCP connections and never says anything.
pub struct BlackHole {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub fn start(listener: TcpListener) -> BlackHole {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        BlackHole { addr, accepted, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `127.0.net.1` … `127.0.net.count`: each test uses its own `net`, so tests running at once never
/// meet on an address.
pub fn ips(net: u8, count: u8) -> Vec<Ipv4Addr> {
    (1..=count).map(|host| Ipv4Addr::new(127, 0, net, host)).collect()
}

/// Listeners on one port on every address in `ips` (DNS names carry no port, so all sites of a
/// `grpc://DOMAIN:PORT` URL listen on the same port).
pub fn bind_same_port(ips: &[Ipv4Addr]) -> (u16, Vec<TcpListener>) {
    for _ in 0..100 {
        let first = TcpListener::bind((ips[0], 0)).expect("bind a loopback address");
        let port = first.local_addr().expect("an address").port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == ips.len() {
            return (port, listeners);
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Listens again on `addr` (a server restarted where it was).
pub fn rebind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("rebind {addr}: {e}"))
}
