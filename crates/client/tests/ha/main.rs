//! The HA client against real servers: tonic servers on loopback addresses, a real DNS server
//! in-process whose records change during the tests, real sockets and timeouts throughout.
//!
//! Each test uses its own `127.0.N.x` addresses (see `server::ips`), so they run in parallel.

mod faults;
mod pki;
mod server;

mod calls;
mod dns;
mod eyeballs;
mod failopen;
mod failover;
mod frozen;
mod outcomes;
mod quarantine;
mod storms;
mod tls;
mod watch;
mod weights;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dugong_client::{CallError, Client, ClientConfig, Idempotency};
use dugong_testkit::TestDns;

pub mod pb {
    tonic::include_proto!("dugong.clienttest");
}

use pb::probe_client::ProbeClient;
use pb::WhoRequest;

/// Which server answered a `Who` call made through `client`.
pub async fn who(client: &Client) -> Result<String, CallError> {
    client
        .call(Idempotency::Idempotent, |channel| async move {
            ProbeClient::new(channel).who(WhoRequest {}).await.map(|r| r.into_inner().server)
        })
        .await
}

/// Short timeouts for tests; the reconnect delay is long unless a test is about it.
pub fn quick(config: ClientConfig) -> ClientConfig {
    config
        .with_connect_timeout(Duration::from_millis(500))
        .with_request_timeout(Duration::from_secs(3))
        .with_deadline(Duration::from_secs(10))
        .with_reconnect_delay(Duration::from_secs(60))
        .with_dns_ttl(Duration::from_millis(50), Duration::from_secs(1))
}

/// A DNS server with `names[k]` (`k.ha.test`) on `names[k]`'s address.
pub async fn dns_with(names: &[Ipv4Addr]) -> TestDns {
    let dns = TestDns::start().await.expect("start the test DNS server");
    for (k, ip) in names.iter().enumerate() {
        dns.set(&format!("{k}.ha.test"), &[*ip]);
    }
    dns
}

/// `grpc://ha.test:PORT` with `n` names, asking `dns`.
pub fn url_config(port: u16, n: usize, dns: &TestDns) -> ClientConfig {
    quick(ClientConfig::url(&format!("grpc://ha.test:{port}"), Some(n)).expect("a good URL").with_dns(dns.addr()))
}

/// An explicit server list.
pub fn list_config(servers: &[SocketAddr]) -> ClientConfig {
    quick(ClientConfig::servers(servers.iter().map(|s| s.to_string())).expect("good servers"))
}

/// An address nothing listens on (connections are refused).
pub fn refused(ip: Ipv4Addr) -> SocketAddr {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind a loopback address");
    listener.local_addr().expect("an address")
}

/// Every log line of this test binary, in memory. Tests run in parallel, so a test counts only
/// the lines that carry something of its own (its addresses, its port).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The log of this test binary (installed by the first caller).
    pub fn global() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
            logs
        })
        .clone()
    }

    /// The lines that contain every one of `needles`.
    pub fn lines(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(str::to_string).collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
