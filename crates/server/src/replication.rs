//! What this server knows about replication over time, kept in memory: the
//! last replication state it read from the site's database (so the status
//! page can still show it while the database is down), since when the
//! database has been unreachable and why, and a sample of lag and pending
//! rows every `console.sample_every` over the last hour, for the status
//! page's chart.
//!
//! Filled by the health task's sampler and by every read of server info;
//! bounded, and lost on restart (a restarted server starts a new hour).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use dugong_store::SyncHealth;

/// How far back the chart reaches.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Most samples kept, whatever the interval.
const MAX_SAMPLES: usize = 7200;

/// The replication state as last read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: SystemTime,
    pub syncs: Vec<SyncHealth>,
}

/// The site's database stopped answering.
#[derive(Debug, Clone)]
pub struct Outage {
    /// When a read first failed.
    pub since: SystemTime,
    /// The latest failure.
    pub error: String,
}

/// One point of the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: SystemTime,
    /// `None`: the database did not answer.
    pub lag: Option<f64>,
    pub pending: Option<i64>,
}

#[derive(Default)]
struct Inner {
    seen: Option<Seen>,
    outage: Option<Outage>,
    samples: VecDeque<Sample>,
}

/// The server's memory of replication.
pub struct Monitor {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Monitor {
    /// A monitor sampled every `every`: it keeps an hour of samples.
    pub fn new(every: Duration) -> Monitor {
        let per_hour = (WINDOW.as_secs_f64() / every.as_secs_f64().max(0.001)).ceil() as usize + 1;
        Monitor { inner: Mutex::new(Inner::default()), capacity: per_hour.clamp(2, MAX_SAMPLES) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database answered with this state.
    pub fn seen(&self, syncs: &[SyncHealth]) {
        let mut inner = self.lock();
        inner.seen = Some(Seen { at: SystemTime::now(), syncs: syncs.to_vec() });
        inner.outage = None;
    }

    /// The database answered (the state may not have been readable).
    pub fn reachable(&self) {
        self.lock().outage = None;
    }

    /// The database did not answer.
    pub fn unreachable(&self, error: &str) {
        let mut inner = self.lock();
        let since = inner.outage.as_ref().map_or_else(SystemTime::now, |o| o.since);
        inner.outage = Some(Outage { since, error: error.to_string() });
    }

    /// Records a point of the chart: `syncs` as read now, `None` when the
    /// database did not answer.
    pub fn sample(&self, syncs: Option<&[SyncHealth]>) {
        let (lag, pending) = match syncs {
            None => (None, None),
            Some(syncs) => {
                let lag = syncs.iter().filter_map(|s| s.lag).map(|l| l.as_secs_f64()).reduce(f64::max);
                (Some(lag.unwrap_or(0.0)), Some(syncs.iter().map(SyncHealth::pending).sum()))
            }
        };
        let mut inner = self.lock();
        if inner.samples.len() == self.capacity {
            inner.samples.pop_front();
        }
        inner.samples.push_back(Sample { at: SystemTime::now(), lag, pending });
    }

    /// The state last read, if ever.
    pub fn last_seen(&self) -> Option<Seen> {
        self.lock().seen.clone()
    }

    /// The outage going on, if any.
    pub fn outage(&self) -> Option<Outage> {
        self.lock().outage.clone()
    }

    /// The samples of the last [`WINDOW`], oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let now = SystemTime::now();
        let inner = self.lock();
        inner.samples.iter().filter(|s| now.duration_since(s.at).map_or(true, |age| age <= WINDOW)).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dugong_store::Backlog;

    #[test]
    fn samples_are_bounded_to_an_hour_of_them() {
        let m = Monitor::new(Duration::from_secs(1200));
        let sync = SyncHealth {
            lag: Some(Duration::from_millis(1500)),
            backlog: vec![Backlog { target: "db1".into(), rows: 7, lag: None }],
            ..SyncHealth::default()
        };
        for _ in 0..10 {
            m.sample(Some(std::slice::from_ref(&sync)));
        }
        m.sample(None);
        let samples = m.samples();
        assert_eq!(samples.len(), 4, "an hour of 20-minute samples, and the newest");
        assert_eq!((samples[0].lag, samples[0].pending), (Some(1.5), Some(7)));
        assert_eq!(samples[3].lag, None);
    }

    #[test]
    fn an_outage_keeps_its_start_and_ends_when_the_database_answers() {
        let m = Monitor::new(Duration::from_secs(10));
        m.seen(&[SyncHealth { sync: "sync0".into(), ..SyncHealth::default() }]);
        m.unreachable("refused");
        let since = m.outage().unwrap().since;
        m.unreachable("refused again");
        let outage = m.outage().unwrap();
        assert_eq!((outage.since, outage.error.as_str()), (since, "refused again"));
        assert_eq!(m.last_seen().unwrap().syncs[0].sync, "sync0", "the last state is kept through the outage");
        m.reachable();
        assert!(m.outage().is_none());
    }
}
