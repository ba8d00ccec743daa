//! A real DNS server in-process, for tests of DNS discovery: UDP on `127.0.0.1`, port 0, answering
//! A and AAAA queries from records the test changes while the client runs.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::net::Ipv4Addr;
//! let dns = dugong_testkit::TestDns::start().await?;
//! dns.set("0.ha.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
//! dns.remove("1.ha.test"); // NXDOMAIN from now on
//! dns.set_down(true); // queries are read and counted, never answered
//! let resolver_target = dns.addr();
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Zone {
    records: Mutex<HashMap<String, Vec<IpAddr>>>,
    ttl: AtomicU32,
    down: AtomicBool,
    queries: AtomicU64,
}

impl Zone {
    fn records(&self) -> MutexGuard<'_, HashMap<String, Vec<IpAddr>>> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An authoritative DNS server for whatever names the test sets. Stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<Zone>,
    task: JoinHandle<()>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl TestDns {
    /// Binds UDP `127.0.0.1:0` and starts answering. Records have TTL 0 until [`TestDns::set_ttl`].
    pub async fn start() -> io::Result<TestDns> {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
        let addr = socket.local_addr()?;
        let zone = Arc::new(Zone::default());
        let task = tokio::spawn(serve(socket, zone.clone()));
        Ok(TestDns { addr, zone, task })
    }

    /// Where to send queries.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `name` resolve to `ips` (A and AAAA records), replacing what it had. An empty list
    /// keeps the name with no addresses (NOERROR, no records).
    pub fn set<I: Into<IpAddr> + Copy>(&self, name: &str, ips: &[I]) {
        let ips = ips.iter().map(|ip| (*ip).into()).collect();
        self.zone.records().insert(key(name), ips);
    }

    /// Removes `name`: NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.zone.records().remove(&key(name));
    }

    /// The TTL of every answer from now on, in seconds.
    pub fn set_ttl(&self, seconds: u32) {
        self.zone.ttl.store(seconds, Ordering::SeqCst);
    }

    /// A server that is down reads and counts queries but never answers them, like a DNS server
    /// that stopped responding.
    pub fn set_down(&self, down: bool) {
        self.zone.down.store(down, Ordering::SeqCst);
    }

    /// How many queries arrived so far (answered or not).
    pub fn queries(&self) -> u64 {
        self.zone.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else { continue };
        zone.queries.fetch_add(1, Ordering::SeqCst);
        if zone.down.load(Ordering::SeqCst) {
            continue;
        }
        // Anything that does not parse gets no answer, as from a real server that drops garbage.
        let Some(reply) = Message::from_vec(&buf[..len]).ok().and_then(|q| answer(&q, &zone).to_vec().ok()) else {
            continue;
        };
        let _ = socket.send_to(&reply, peer).await;
    }
}

fn answer(query: &Message, zone: &Zone) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.edns = query.edns.clone();
    let ttl = zone.ttl.load(Ordering::SeqCst);
    let records = zone.records();
    for q in &query.queries {
        reply.add_query(q.clone());
        let Some(ips) = records.get(&key(&q.name().to_ascii())) else {
            reply.metadata.response_code = ResponseCode::NXDomain;
            continue;
        };
        for ip in ips {
            let rdata = match (q.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(q.name().clone(), ttl, rdata));
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    async fn ask(dns: &TestDns, name: &str) -> Message {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        socket.send_to(&query.to_vec().unwrap(), dns.addr()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv_from(&mut buf));
        let (len, _) = read.await.expect("an answer within 5 s").unwrap();
        Message::from_vec(&buf[..len]).unwrap()
    }

    #[tokio::test]
    async fn answers_change_when_the_records_do() {
        let dns = TestDns::start().await.unwrap();
        dns.set("0.ha.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
        dns.set_ttl(7);
        let reply = ask(&dns, "0.ha.test.").await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].ttl, 7);
        assert_eq!(reply.answers[0].data, RData::A(A(Ipv4Addr::new(127, 0, 0, 2))));
        dns.remove("0.ha.test");
        assert_eq!(ask(&dns, "0.HA.test.").await.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(dns.queries(), 2);
    }
}
