//! Who may hold a connection: the allowlist, then the limits on connections
//! in all and per peer address. Checked right after `accept`, before a byte
//! is read, so a refused peer costs a file descriptor for an instant and no
//! TLS work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::NetConfig;

/// Why a connection was refused at the gate (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is not on the allowlist.
    NotAllowed,
    /// The server holds `max_connections` already.
    Full,
    /// The peer holds `max_connections_per_peer` already.
    PeerFull,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::Full => "max_connections",
            Refusal::PeerFull => "max_connections_per_peer",
        }
    }
}

/// The connections open now, shared by every listener of a server.
pub struct Gate {
    config: NetConfig,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Gate {
    pub fn new(config: NetConfig) -> Arc<Gate> {
        Arc::new(Gate { config, open: Mutex::new(Open::default()) })
    }

    /// A place for a connection from `ip`, held until the [`Permit`] drops.
    pub fn admit(self: &Arc<Gate>, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = ip.to_canonical();
        if !self.config.allows(ip) {
            return Err(Refusal::NotAllowed);
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.config.max_connections {
            return Err(Refusal::Full);
        }
        let mine = open.per_peer.get(&ip).copied().unwrap_or(0);
        if mine >= self.config.max_connections_per_peer {
            return Err(Refusal::PeerFull);
        }
        open.total += 1;
        open.per_peer.insert(ip, mine + 1);
        Ok(Permit { gate: self.clone(), ip })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One admitted connection; dropping it gives its place back.
pub struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_peer.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_peer_and_in_all_and_places_come_back() {
        let config = NetConfig { max_connections: 3, max_connections_per_peer: 2, ..NetConfig::default() };
        let gate = Gate::new(config);
        let (a, b, c) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refusal::PeerFull));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(c).err(), Some(Refusal::Full));
        drop(a1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(c).is_ok());
    }

    #[test]
    fn the_allowlist_comes_first() {
        let config = NetConfig { allow: vec!["127.0.0.1/32".parse().unwrap()], ..NetConfig::default() };
        let gate = Gate::new(config);
        let _held = gate.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(gate.admit("127.0.0.2".parse().unwrap()).err(), Some(Refusal::NotAllowed));
        assert_eq!(gate.open(), 1);
    }
}
