//! The servers as resolved addresses, their weights and their health.
//!
//! Health is kept per address, not per name: two names on one address are one server and fail
//! together. A failed server is quarantined for the reconnect delay (with up to 20 % jitter, so
//! clients that saw one failure together do not return together); after it, the server may be
//! drawn again, and the first draw claims the one re-admission attempt (the server is `Probing`
//! until it ends), so that at most one attempt per quarantined server is made per delay,
//! whatever the number of sessions.
//!
//! Failing open: when no server may be drawn because every one is quarantined (or probing), a
//! call would fail although a server may well be back — a site restarted sooner than the
//! reconnect delay. [`Pool::draw_fail_open`] then offers the quarantined servers anyway, the one
//! that failed longest ago first (those that failed within [`TIE`] of it are drawn among by
//! weight), each at most once per fail-open interval; a server already being probed is offered
//! too, so that the call waits for that one attempt instead of failing.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Up to this share of the reconnect delay is added at random to each quarantine.
const JITTER: f64 = 0.2;
/// Servers that failed within this of each other count as failing together when failing open:
/// one of them is drawn by weight rather than by a few milliseconds' difference.
pub(crate) const TIE: Duration = Duration::from_millis(100);

/// The health of one server address.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    /// Usable.
    Live,
    /// Failed; not tried again before `until` (unless every server is, see the module docs).
    Quarantined {
        /// When it failed.
        since: Instant,
        /// When the one re-admission attempt may be made.
        until: Instant,
        /// Why it failed.
        cause: String,
    },
    /// One connection attempt is re-admitting it (its quarantine is over, or the client fails
    /// open); no other attempt is made meanwhile.
    Probing {
        /// When it failed last.
        since: Instant,
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

/// Why a server was drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// It is live.
    Live,
    /// Its quarantine is over: this draw claimed its one re-admission attempt.
    Readmission,
    /// Every server is out: this draw fails open onto it (and claimed its attempt, unless one
    /// was already being made — then `since` says when it failed).
    FailOpen {
        /// When it failed last.
        since: Instant,
        /// True when this draw claimed the attempt (the server was quarantined, not probing).
        claimed: bool,
    },
}

/// The outcome of a draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draw {
    /// The server drawn.
    pub addr: SocketAddr,
    /// Why.
    pub mode: Mode,
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
        let mode = match &entry.health {
            Health::Quarantined { since, cause, .. } => {
                entry.health = Health::Probing { since: *since, cause: cause.clone() };
                Mode::Readmission
            }
            _ => Mode::Live,
        };
        Some(Draw { addr, mode })
    }

    /// When [`Pool::draw`] finds nothing: a quarantined server anyway, the one that failed longest
    /// ago first (by weight among those within [`TIE`] of it), leaving out those tried again within
    /// `interval`. A server being probed is offered as well (the caller joins that attempt).
    pub fn draw_fail_open(
        &mut self,
        rng: &mut impl Rng,
        now: Instant,
        exclude: &HashSet<SocketAddr>,
        interval: Duration,
    ) -> Option<Draw> {
        let candidates: Vec<(SocketAddr, f64, Instant)> = self
            .servers
            .iter()
            .filter(|(addr, e)| !exclude.contains(addr) && e.weight > 0.0)
            .filter_map(|(addr, e)| match &e.health {
                Health::Quarantined { since, .. } if *since + interval <= now => Some((*addr, e.weight, *since)),
                Health::Probing { since, .. } => Some((*addr, e.weight, *since)),
                _ => None,
            })
            .collect();
        let oldest = candidates.iter().map(|c| c.2).min()?;
        let equals: Vec<(SocketAddr, f64)> =
            candidates.iter().filter(|c| c.2 <= oldest + TIE).map(|c| (c.0, c.1)).collect();
        let addr = weighted_pick(rng, &equals)?;
        let entry = self.servers.get_mut(&addr)?;
        let mode = match &entry.health {
            Health::Quarantined { since, cause, .. } => {
                let since = *since;
                entry.health = Health::Probing { since, cause: cause.clone() };
                Mode::FailOpen { since, claimed: true }
            }
            Health::Probing { since, .. } => Mode::FailOpen { since: *since, claimed: false },
            Health::Live => Mode::Live,
        };
        Some(Draw { addr, mode })
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
        entry.health = Health::Quarantined { since: now, until: now + hold, cause: cause.to_string() };
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
            Health::Probing { .. } => false,
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
            claims += usize::from(d.mode == Mode::Readmission);
            assert!(d.addr == addr(2) || d.mode == Mode::Readmission, "{d:?}");
        }
        assert_eq!(claims, 1);
        assert!(matches!(p.statuses()[0].health, Health::Probing { .. }));
        assert!(p.succeed(addr(1)));
        assert!(p.is_live(addr(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_readmission_waits_a_full_delay_again() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut p = pool(&[1.0]);
        let delay = Duration::from_secs(10);
        p.fail(addr(1), "refused", delay, Instant::now(), &mut rng).unwrap();
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).is_none());
        tokio::time::advance(delay.mul_f64(1.0 + JITTER)).await;
        assert_eq!(p.draw(&mut rng, Instant::now(), &HashSet::new()).unwrap().mode, Mode::Readmission);
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).is_none(), "one attempt at a time");
        p.fail(addr(1), "still refused", delay, Instant::now(), &mut rng).unwrap();
        tokio::time::advance(delay.mul_f64(0.99)).await;
        assert!(p.draw(&mut rng, Instant::now(), &HashSet::new()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn failing_open_offers_the_oldest_failure_first_at_most_once_per_interval() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut p = pool(&[1.0, 1.0, 1.0]);
        let delay = Duration::from_secs(180);
        let every = Duration::from_secs(1);
        let none = HashSet::new();
        p.fail(addr(2), "refused", delay, Instant::now(), &mut rng);
        tokio::time::advance(Duration::from_millis(500)).await;
        p.fail(addr(1), "refused", delay, Instant::now(), &mut rng);
        p.fail(addr(3), "refused", delay, Instant::now(), &mut rng);
        assert!(p.draw(&mut rng, Instant::now(), &none).is_none());
        // Within the interval of server 2's failure nothing is offered; then 2, the oldest.
        assert!(p.draw_fail_open(&mut rng, Instant::now(), &none, every).is_none());
        tokio::time::advance(Duration::from_millis(500)).await;
        let d = p.draw_fail_open(&mut rng, Instant::now(), &none, every).unwrap();
        assert_eq!(d.addr, addr(2));
        assert!(matches!(d.mode, Mode::FailOpen { claimed: true, .. }), "{d:?}");
        // Another call joins the attempt in flight rather than failing, or dialling a second time.
        let joined = p.draw_fail_open(&mut rng, Instant::now(), &none, every).unwrap();
        assert_eq!(
            (joined.addr, joined.mode),
            (
                addr(2),
                Mode::FailOpen {
                    since: match d.mode {
                        Mode::FailOpen { since, .. } => since,
                        _ => unreachable!(),
                    },
                    claimed: false
                }
            )
        );
        // It fails again: now 1 and 3 (failed together) are the oldest, drawn among by weight.
        p.fail(addr(2), "refused", delay, Instant::now(), &mut rng);
        let exclude = HashSet::from([addr(2)]);
        let mut seen = HashSet::new();
        for _ in 0..64 {
            let mut q = pool(&[1.0, 1.0, 1.0]);
            q.fail(addr(1), "x", delay, Instant::now(), &mut rng);
            q.fail(addr(3), "x", delay, Instant::now(), &mut rng);
            q.fail(addr(2), "x", delay, Instant::now() + Duration::from_millis(200), &mut rng);
            tokio::time::advance(every).await;
            seen.insert(q.draw_fail_open(&mut rng, Instant::now(), &exclude, every).unwrap().addr);
        }
        assert_eq!(seen, HashSet::from([addr(1), addr(3)]));
        // A success re-admits at once.
        assert!(p.succeed(addr(2)));
        assert_eq!(p.draw(&mut rng, Instant::now(), &none).unwrap().addr, addr(2));
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
