//! Picking TCP ports for test servers.
//!
//! Ports come from below the kernel's ephemeral range (`ip_local_port_range`), not from
//! binding port 0: a port from the ephemeral range can be handed out again as the *source*
//! port of some outgoing connection while its server is stopped, and then `restart()` on the
//! same port would fail. Below the range only servers bind, and each is checked free first.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The lowest port handed out: clear of the well-known and most registered service ports.
const LOWEST: u16 = 15_000;

/// Used when the ephemeral range cannot be read; Linux's default lower bound.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;

/// Ports this process already handed out, never given twice even after their server stopped
/// (it may be restarted on the same port).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that nothing listens on now and that this process has not handed
/// out before. Another process may still take it before you bind it: servers started by the
/// testkit retry on a new port when that happens, and so should yours.
pub fn free_port() -> u16 {
    let top = ephemeral_start().max(LOWEST + 1_000);
    let span = u64::from(top - LOWEST);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..1_000 {
        let port = LOWEST + (random() % span) as u16;
        if !handed_out.contains(&port) && is_free(port) {
            handed_out.insert(port);
            return port;
        }
    }
    // Below the range is crowded: fall back to whatever the kernel picks.
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("binding 127.0.0.1:0 to find a free port");
        if handed_out.insert(port) {
            return port;
        }
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A random number, different in every process and every call: a fresh SipHash key per
/// process (std seeds it randomly) over a counter. No crate needed for picking ports.
fn random() -> u64 {
    static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = STATE.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!(port >= LOWEST && port < ephemeral_start().max(LOWEST + 1_000));
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
        }
    }
}
