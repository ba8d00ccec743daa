//! The limit on failed console logins ([`LoginLimiter`]), kept in memory by
//! each server.
//!
//! Failures are counted per account and per client address, each on its
//! own: after `max` failures within `window` an account must wait (whatever
//! address the next try comes from), and after [`ADDRESS_FACTOR`] times as
//! many an address must (whatever account it tries), until the oldest
//! failure leaves the window. Rotating addresses therefore gains an attacker
//! nothing against one account, and spraying many accounts from one address
//! little; the address limit is looser so that the people behind one NAT
//! address do not lock each other out with a few typos. Only accounts that
//! exist are counted, so made-up names cost no memory.
//!
//! The tables are bounded; when one is full, failures that have left the
//! window go first, then the stalest addresses that are not locked out. A
//! lockout is never forgotten to make room: a table full of lockouts counts
//! no new address (the account limit still holds for it).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept per table at most.
const CAPACITY: usize = 10_000;

/// An address may fail this many times the account limit.
pub const ADDRESS_FACTOR: usize = 4;

/// What a lockout applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Address,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
        }
    }
}

/// Failed logins per account and per address.
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    accounts: Mutex<Failures<String>>,
    addresses: Mutex<Failures<IpAddr>>,
    capacity: usize,
}

struct Failures<K> {
    times: HashMap<K, Vec<Instant>>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> LoginLimiter {
        LoginLimiter::with_capacity(max, window, CAPACITY)
    }

    fn with_capacity(max: u32, window: Duration, capacity: usize) -> LoginLimiter {
        LoginLimiter {
            max: max.max(1) as usize,
            window,
            accounts: Mutex::new(Failures { times: HashMap::new() }),
            addresses: Mutex::new(Failures { times: HashMap::new() }),
            capacity,
        }
    }

    /// `Err((wait, scope))` when the account (an existing user's name) or
    /// the address must wait before trying again.
    pub fn check(&self, account: Option<&str>, ip: IpAddr, now: Instant) -> Result<(), (Duration, Scope)> {
        if let Some(account) = account {
            let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(wait) = self.locked(&mut accounts, &key(account), self.max, now) {
                return Err((wait, Scope::Account));
            }
        }
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        match self.locked(&mut addresses, &ip, self.max * ADDRESS_FACTOR, now) {
            Some(wait) => Err((wait, Scope::Address)),
            None => Ok(()),
        }
    }

    /// Counts a failure; returns the scopes this failure locked out (for the
    /// audit log), each once when its limit is reached.
    pub fn failed(&self, account: Option<&str>, ip: IpAddr, now: Instant) -> Vec<Scope> {
        let mut locked = Vec::new();
        if let Some(account) = account {
            let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            if self.count(&mut accounts, key(account), self.max, now) {
                locked.push(Scope::Account);
            }
        }
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if self.count(&mut addresses, ip, self.max * ADDRESS_FACTOR, now) {
            locked.push(Scope::Address);
        }
        locked
    }

    /// A good login clears the account's and the address's failures.
    pub fn succeeded(&self, account: &str, ip: IpAddr) {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).times.remove(&key(account));
        self.addresses.lock().unwrap_or_else(|p| p.into_inner()).times.remove(&ip);
    }

    /// How long `k` must still wait, if it is locked out.
    fn locked<K: Hash + Eq>(&self, table: &mut Failures<K>, k: &K, max: usize, now: Instant) -> Option<Duration> {
        let times = table.times.get_mut(k)?;
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() < max {
            return None;
        }
        Some(self.window.saturating_sub(now.duration_since(times[0])).max(Duration::from_secs(1)))
    }

    /// Adds a failure of `k`; true when it reached the limit just now.
    fn count<K: Hash + Eq + Clone>(&self, table: &mut Failures<K>, k: K, max: usize, now: Instant) -> bool {
        if !table.times.contains_key(&k) && table.times.len() >= self.capacity && !self.make_room(table, max, now) {
            return false;
        }
        let times = table.times.entry(k).or_default();
        times.retain(|t| now.duration_since(*t) < self.window);
        times.push(now);
        times.len() == max
    }

    /// Frees a place: expired failures first, then the stalest entry that is
    /// not locked out. False when every entry is a lockout.
    fn make_room<K: Hash + Eq + Clone>(&self, table: &mut Failures<K>, max: usize, now: Instant) -> bool {
        let window = self.window;
        table.times.retain(|_, times| times.last().is_some_and(|t| now.duration_since(*t) < window));
        if table.times.len() < self.capacity {
            return true;
        }
        let stalest = table
            .times
            .iter()
            .filter(|(_, times)| times.iter().filter(|t| now.duration_since(**t) < window).count() < max)
            .min_by_key(|(_, times)| times.last().copied())
            .map(|(k, _)| k.clone());
        match stalest {
            Some(k) => {
                table.times.remove(&k);
                true
            }
            None => false,
        }
    }
}

/// An account's key: names longer than any real one (64 characters) are cut.
fn key(account: &str) -> String {
    account.chars().take(65).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn an_account_is_locked_whatever_address_the_failures_come_from() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..2 {
            assert!(limiter.check(Some("admin"), ip(i), t0).is_ok());
            assert!(limiter.failed(Some("admin"), ip(i), t0).is_empty());
        }
        // The third failure, from a third address, locks the account.
        assert_eq!(limiter.failed(Some("admin"), ip(2), t0), [Scope::Account]);
        let (wait, scope) = limiter.check(Some("admin"), ip(99), t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!((wait, scope), (Duration::from_secs(50), Scope::Account));
        assert!(limiter.check(Some("other"), ip(99), t0).is_ok(), "another account is not locked");
        assert!(limiter.check(Some("admin"), ip(99), t0 + Duration::from_secs(61)).is_ok(), "the window passes");
    }

    #[test]
    fn an_address_is_locked_whatever_accounts_it_tries() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        // Twelve failures (four times the account limit) over many accounts.
        for i in 0..11 {
            let account = format!("user{i}");
            assert!(limiter.failed(Some(&account), ip(1), t0).is_empty());
        }
        assert_eq!(limiter.failed(None, ip(1), t0), [Scope::Address]);
        assert_eq!(limiter.check(Some("c"), ip(1), t0).unwrap_err().1, Scope::Address);
        assert!(limiter.check(Some("c"), ip(2), t0).is_ok());
        limiter.succeeded("c", ip(1));
        assert!(limiter.check(Some("c"), ip(1), t0).is_ok(), "a good login clears its address");
    }

    #[test]
    fn a_full_table_never_forgets_a_lockout() {
        let limiter = LoginLimiter::with_capacity(1, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        // Addresses 1 and 2 locked (four failures each), 3 with one failure.
        for n in [1, 1, 1, 1, 2, 2, 2, 2, 3] {
            limiter.failed(None, ip(n), t0);
        }
        // A flood of new addresses evicts the unlocked one only.
        for n in 10..1000 {
            limiter.failed(None, ip(n), t0 + Duration::from_secs(1));
        }
        assert!(limiter.check(None, ip(1), t0 + Duration::from_secs(2)).is_err());
        assert!(limiter.check(None, ip(2), t0 + Duration::from_secs(2)).is_err());
        assert!(limiter.addresses.lock().unwrap().times.len() <= 3);
        // Once the window passes, the lockouts expire and make room.
        assert!(limiter.check(None, ip(1), t0 + Duration::from_secs(61)).is_ok());
    }
}
