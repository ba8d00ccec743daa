//! The retry budget: retries may add at most a share of the successful calls, plus a small
//! floor per second (Finagle's and Linkerd's rule: 20 % + 10/s). It stops one client from turning
//! an outage into a retry storm; failovers of single calls always fit in the floor.

use std::time::Duration;

use tokio::time::Instant;

/// How long unused tokens are kept (the floor accumulates for at most this long).
const WINDOW: Duration = Duration::from_secs(10);

/// Tokens for retries.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    tokens: f64,
    cap: f64,
    per_sec: f64,
    ratio: f64,
    last: Instant,
}

impl RetryBudget {
    /// `ratio` tokens per success, `per_sec` tokens per second, full at the start.
    pub fn new(ratio: f64, per_sec: f64, now: Instant) -> RetryBudget {
        let cap = (per_sec * WINDOW.as_secs_f64()).max(1.0);
        RetryBudget { tokens: cap, cap, per_sec, ratio, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.cap);
        self.last = now;
    }

    /// Takes one token for a retry; false when there is none.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        // A hair of tolerance: five deposits of 0.2 must make one token.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A call succeeded.
    pub fn deposit(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + self.ratio).min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_come_back_with_time_and_successes() {
        let mut b = RetryBudget::new(0.2, 10.0, Instant::now());
        let granted = (0..1000).filter(|_| b.withdraw(Instant::now())).count();
        assert_eq!(granted, 100);
        for _ in 0..10 {
            b.deposit(Instant::now());
        }
        assert!(b.withdraw(Instant::now()) && b.withdraw(Instant::now()) && !b.withdraw(Instant::now()));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..100).filter(|_| b.withdraw(Instant::now())).count(), 5);
    }
}
