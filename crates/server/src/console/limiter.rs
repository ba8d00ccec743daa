//! The limit on failed console logins ([`LoginLimiter`]), kept in memory by
//! each server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per user name and client address: after `max` failures within
/// `window`, that pair is refused until the oldest failure leaves the window.
/// Kept in memory by each server (a restart forgets; several servers each
/// count their own).
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<(String, IpAddr), Vec<Instant>>>,
}

/// Pairs tracked at most; beyond, the stalest are dropped first.
const LIMITER_CAPACITY: usize = 10_000;

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> LoginLimiter {
        LoginLimiter { max: max.max(1) as usize, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(wait)` when this pair must wait before trying again.
    pub fn check(&self, user: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(&key(user, ip)) else {
            return Ok(());
        };
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() < self.max {
            return Ok(());
        }
        Err(self.window.saturating_sub(now.duration_since(times[0])).max(Duration::from_secs(1)))
    }

    pub fn failed(&self, user: &str, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= LIMITER_CAPACITY {
            let window = self.window;
            map.retain(|_, times| times.last().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= LIMITER_CAPACITY {
                map.clear();
            }
        }
        map.entry(key(user, ip)).or_default().push(now);
    }

    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(user, ip));
    }
}

/// The limiter's key: a user name longer than any real one (64 characters) is
/// cut, so huge names cost no memory.
fn key(user: &str, ip: IpAddr) -> (String, IpAddr) {
    (user.chars().take(65).collect(), ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_are_limited_per_user_and_address() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("admin", a, t0).is_ok());
            limiter.failed("admin", a, t0);
        }
        let wait = limiter.check("admin", a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.check("admin", b, t0).is_ok(), "another address is not blocked");
        assert!(limiter.check("other", a, t0).is_ok(), "another user is not blocked");
        assert!(limiter.check("admin", a, t0 + Duration::from_secs(61)).is_ok(), "the window passes");
        limiter.failed("admin", b, t0);
        limiter.succeeded("admin", b);
        assert!(limiter.failures.lock().unwrap().get(&("admin".to_string(), b)).is_none());
    }
}
