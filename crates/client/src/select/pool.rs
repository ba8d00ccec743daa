//! The servers as resolved addresses, their weights and their health.
//!
//! Health is kept per address, not per name: two names on one address are one server and fail
//! together. A failed server is quarantined for the reconnect delay (with up to 20 % jitter, so
//! clients that saw one failure together do not return together); after it, the server may be
//! drawn again, and the first draw claims the one re-admission attempt, so that at most one
//! attempt per quarantined server is made per delay, whatever the number of sessions.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Up to this share of the reconnect delay is added at random to each quarantine.
const JITTER: f64 = 0.2;

/// The health of one server address.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    /// Usable.
    Live,
    /// Failed; not tried again before `until`.
    Quarantined {
        /// When the one re-admission attempt may be made.
        until: Instant,
        /// Why it failed.
        cause: String,
    },
    /// Its quarantine is over and one call is trying it; nobody else does meanwhile.
    Readmitting {
        /// Why it failed last.
        cause: String,
    },
}

/// One server as the pool sees it, for reports and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerStatus {
    /// The resolved address.
    pub addr: SocketAddr,
    /// The configured names that resolve to it.
    pub names: Vec<String>,
    /// Its share of first choices relative to the others (the number of names).
    pub weight: f64,
    /// Its health now.
    pub health: Health,
}

/// The outcome of a draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draw {
    /// The server drawn.
    pub addr: SocketAddr,
    /// True when this draw claimed the re-admission attempt of a quarantined server.
    pub readmission: bool,
}

#[derive(Debug)]
struct Entry {
    names: Vec<String>,
    weight: f64,
    health: Health,
}

/// Every server address with its weight and health. Addresses are kept sorted, so a seeded RNG
/// gives the same draws on every run.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    servers: BTreeMap<SocketAddr, Entry>,
}

impl Pool {
    /// Replaces the set of addresses (after DNS), keeping the health of those that stay.
    pub fn update(&mut self, table: Vec<(SocketAddr, Vec<String>, f64)>) {
        let mut old = std::mem::take(&mut self.servers);
        for (addr, names, weight) in table {
            let health = old.remove(&addr).map(|e| e.health).unwrap_or(Health::Live);
            self.servers.insert(addr, Entry { names, weight, health });
        }
    }

    /// True when a session that is on `addr` may stay there.
    pub fn is_live(&self, addr: SocketAddr) -> bool {
        matches!(self.servers.get(&addr), Some(Entry { health: Health::Live, .. }))
    }

    /// True when a call may use `addr` now: live, or re-admission claimed by that very call.
    pub fn is_usable(&self, addr: SocketAddr, readmission: bool) -> bool {
        match self.servers.get(&addr).map(|e| &e.health) {
            Some(Health::Live) => true,
            Some(Health::Readmitting { .. }) => readmission,
            _ => false,
        }
    }

    /// Draws a server by weight among those that may be tried, leaving out `exclude` (those this
    /// call already tried). A server whose quarantine is over takes part, and drawing it claims
    /// its single re-admission attempt.
    pub fn draw(&mut self, rng: &mut impl Rng, now: Instant, exclude: &HashSet<SocketAddr>) -> Option<Draw> {
        let candidates: Vec<(SocketAddr, f64)> = self
            .servers
            .iter()
            .filter(|(addr, e)| !exclude.contains(addr) && e.weight > 0.0 && e.may_try(now))
            .map(|(addr, e)| (*addr, e.weight))
            .collect();
        let addr = weighted_pick(rng, &candidates)?;
        let entry = self.servers.get_mut(&addr)?;
        let readmission = match &entry.health {
            Health::Quarantined { cause, .. } => {
                entry.health = Health::Readmitting { cause: cause.clone() };
                true
            }
            _ => false,
        };
        Some(Draw { addr, readmission })
    }

    /// Marks `addr` failed and quarantines it for `delay` plus jitter. Returns the quarantine, or
    /// `None` when the server was already quarantined (the first failure's quarantine stands, so
    /// many calls failing together do not keep pushing it back).
    pub fn fail(
        &mut self,
        addr: SocketAddr,
        cause: &str,
        delay: Duration,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let entry = self.servers.get_mut(&addr)?;
        if matches!(entry.health, Health::Quarantined { .. }) {
            return None;
        }
        let hold = delay.mul_f64(1.0 + JITTER * rng.random::<f64>());
        entry.health = Health::Quarantined { until: now + hold, cause: cause.to_string() };
        Some(hold)
    }

    /// Marks `addr` live. Returns true when it was not (a re-admission).
    pub fn succeed(&mut self, addr: SocketAddr) -> bool {
        match self.servers.get_mut(&addr) {
            Some(entry) if entry.health != Health::Live => {
                entry.health = Health::Live;
                true
            }
            _ => false,
        }
    }

    /// A claimed re-admission that never got to try (the call ended first): eligible again.
    pub fn release(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(entry) = self.servers.get_mut(&addr) {
            if let Health::Readmitting { cause } = &entry.health {
                entry.health = Health::Quarantined { until: now, cause: cause.clone() };
            }
        }
    }

    /// Every server, in address order.
    pub fn statuses(&self) -> Vec<ServerStatus> {
        self.servers
            .iter()
            .map(|(addr, e)| ServerStatus {
                addr: *addr,
                names: e.names.clone(),
                weight: e.weight,
                health: e.health.clone(),
            })
            .collect()
    }

    /// The names of `addr`, for messages.
    pub fn names(&self, addr: SocketAddr) -> Vec<String> {
        self.servers.get(&addr).map(|e| e.names.clone()).unwrap_or_default()
    }
}

impl Entry {
    fn may_try(&self, now: Instant) -> bool {
        match &self.health {
            Health::Live => true,
            Health::Quarantined { until, .. } => *until <= now,
            Health::Readmitting { .. } => false,
        }
    }
}

/// Picks one of `candidates` with probability proportional to its weight.
fn weighted_pick(rng: &mut impl Rng, candidates: &[(SocketAddr, f64)]) -> Option<SocketAddr> {
    let total: f64 = candidates.iter().map(|(_, w)| w).sum();
    if candidates.is_empty() || total <= 0.0 {
        return None;
    }
    let mut point = rng.random::<f64>() * total;
    for (addr, weight) in candidates {
        if point < *weight {
            return Some(*addr);
        }
        point -= weight;
    }
    candidates.last().map(|(addr, _)| *addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 8001))
    }

    fn pool(weights: &[f64]) -> Pool {
        let mut pool = Pool::default();
        let table = weights.iter().enumerate().map(|(i, w)| (addr(i as u8 + 1), vec![format!("{i}.ha.test")], *w));
        pool.update(table.collect());
        pool
    }

    fn shares(pool: &mut Pool, rng: &mut StdRng, exclude: &HashSet<SocketAddr>, n: usize) -> BTreeMap<u8, f64> {
        let now = Instant::now();
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let d = pool.draw(rng, now, exclude).unwrap();
            let SocketAddr::V4(v4) = d.addr else { unreachable!() };
            *counts.entry(v4.ip().octets()[3]).or_insert(0.0) += 1.0 / n as f64;
        }
        counts
    }

    #[test]
    fn draws_follow_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let s = shares(&mut pool(&[2.0, 1.0]), &mut rng, &HashSet::new(), 100_000);
        assert!((s[&1] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn failover_spreads_the_failed_share_by_weight_not_onto_a_neighbour() {
        // Weights 1, 1, 2 with the middle one failed: the rest split 1:2, as their weights say.
        let mut rng = StdRng::seed_from_u64(11);
        let mut p = pool(&[1.0, 1.0, 2.0]);
        let exclude = HashSet::from([addr(2)]);
        let s = shares(&mut p, &mut rng, &exclude, 100_000);
        assert!((s[&1] - 1.0 / 3.0).abs() < 0.01, "{s:?}");
        assert!((s[&3] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn quarantine_holds_then_allows_exactly_one_readmission_attempt() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut p = pool(&[1.0, 1.0]);
        let delay = Duration::from_secs(180);
        let hold = p.fail(addr(1), "refused", delay, Instant::now(), &mut rng).unwrap();
        assert!(hold >= delay && hold <= delay.mul_f64(1.0 + JITTER), "{hold:?}");
        // A second failure report does not push the quarantine back.
        assert_eq!(p.fail(addr(1), "refused again", delay, Instant::now(), &mut rng), None);
        let none = HashSet::new();
        for _ in 0..1000 {
            assert_eq!(p.draw(&mut rng, Instant::now(), &none).unwrap().addr, addr(2));
        }
        tokio::time::advance(hold).await;
        // The first draw of server 1 claims the attempt; no other draw gets it meanwhile.
        let mut claims = 0;
        for _ in 0..1000 {
            let d = p.draw(&mut rng, Instant::now(), &none).unwrap();
            claims += usize::from(d.readmission);
            assert!(d.addr == addr(2) || d.readmission, "{d:?}");
        }
        assert_eq!(claims, 1);
        assert!(p.is_usable(addr(1), true) && !p.is_usable(addr(1), false));
        assert!(p.succeed(addr(1)));
        assert!(p.is_live(addr(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_claim_is_eligible_again_and_a_failed_one_waits_a_full_delay() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut p = pool(&[1.0]);
        let delay = Duration::from_secs(10);
        p.fail(addr(1), "refused", delay, Instant::now(), &mut rng).unwrap();
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).is_none());
        tokio::time::advance(delay.mul_f64(1.0 + JITTER)).await;
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).unwrap().readmission);
        p.release(addr(1), Instant::now());
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).unwrap().readmission);
        p.fail(addr(1), "still refused", delay, Instant::now(), &mut rng).unwrap();
        tokio::time::advance(delay.mul_f64(0.99)).await;
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).is_none());
    }

    #[test]
    fn health_survives_a_dns_update_for_addresses_that_stay() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut p = pool(&[1.0, 1.0]);
        p.fail(addr(1), "refused", Duration::from_secs(60), Instant::now(), &mut rng);
        p.update(vec![(addr(1), vec!["0.ha.test".into()], 1.0), (addr(3), vec!["1.ha.test".into()], 1.0)]);
        let st = p.statuses();
        assert!(matches!(st[0].health, Health::Quarantined { .. }));
        assert_eq!((st[1].addr, &st[1].health), (addr(3), &Health::Live));
    }
}
