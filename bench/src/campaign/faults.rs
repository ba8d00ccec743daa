//! The faults of a run, drawn from its seed. Three lanes run side by side, so faults overlap
//! as they do in a real incident:
//!
//! - the network lane cuts the link of a site (the replicator loses that site) or of the
//!   replicator itself (it loses them all) for a while — from a blink to well past the
//!   servers' keepalive timeouts — then heals it;
//! - the process lane kills the replicator with SIGKILL and starts it again;
//! - the database lane crashes a site's PostgreSQL (`pg_ctl -m immediate stop`: no
//!   checkpoint, recovery from the WAL at start) and starts it again.
//!
//! When the window closes every lane repairs what it broke at once; the instant the last
//! repair is done is where convergence time is measured from.

use super::lab::Run;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a fault did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A site's link down: the replicator cut off that site.
    CutSite,
    /// The replicator's own link down: cut off every site.
    CutReplicator,
    /// `kill -9` of the replicator, then a new one.
    KillReplicator,
    /// `pg_ctl -m immediate stop` of a site's server, then a start.
    CrashDatabase,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] =
        [FaultKind::CutSite, FaultKind::CutReplicator, FaultKind::KillReplicator, FaultKind::CrashDatabase];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::CutSite => "link to a site cut",
            FaultKind::CutReplicator => "replicator's link cut",
            FaultKind::KillReplicator => "replicator kill -9",
            FaultKind::CrashDatabase => "database crash",
        }
    }
}

/// The faults one run injected, and when the last one was repaired.
#[derive(Debug)]
pub struct Injected {
    pub counts: BTreeMap<FaultKind, u32>,
    /// One line per fault: when, what, for how long.
    pub events: Vec<String>,
    pub last_repair: Instant,
}

/// One lane's record.
struct Lane {
    counts: BTreeMap<FaultKind, u32>,
    events: Vec<String>,
    last_repair: Instant,
    started: Instant,
}

impl Lane {
    fn new(started: Instant) -> Lane {
        Lane { counts: BTreeMap::new(), events: Vec::new(), last_repair: started, started }
    }

    fn note(&mut self, kind: FaultKind, what: String, held: Duration) {
        *self.counts.entry(kind).or_default() += 1;
        let at = self.started.elapsed().saturating_sub(held).as_secs_f64();
        self.events.push(format!("{at:6.2}s {what} for {:.2}s", held.as_secs_f64()));
        self.last_repair = Instant::now();
    }
}

/// Injects faults into `run` until `window` has passed, then repairs everything.
pub async fn inject(run: &Run<'_>, seed: u64, window: Duration) -> anyhow::Result<Injected> {
    let started = Instant::now();
    let end = started + window;
    let (network, process, database) = tokio::join!(
        network_lane(run, StdRng::seed_from_u64(seed ^ 0x6e6574), started, end),
        process_lane(run, StdRng::seed_from_u64(seed ^ 0x70726f63), started, end),
        database_lane(run, StdRng::seed_from_u64(seed ^ 0x6462), started, end),
    );
    let lanes = [network?, process?, database?];
    let mut injected = Injected { counts: BTreeMap::new(), events: Vec::new(), last_repair: started };
    for lane in lanes {
        for (kind, n) in lane.counts {
            *injected.counts.entry(kind).or_default() += n;
        }
        injected.events.extend(lane.events);
        injected.last_repair = injected.last_repair.max(lane.last_repair);
    }
    injected.events.sort();
    Ok(injected)
}

/// Sleeps `d`, but not past `end`; what was slept.
async fn hold(d: Duration, end: Instant) -> Duration {
    let d = d.min(end.saturating_duration_since(Instant::now()));
    tokio::time::sleep(d).await;
    d
}

/// Whether the window leaves room to begin another fault after a gap of `gap`.
async fn wait_gap(gap: Duration, end: Instant) -> bool {
    hold(gap, end).await;
    Instant::now() + Duration::from_millis(100) < end
}

/// A hold drawn half from blinks (under the servers' 6–10 s keepalive timeouts) and half
/// from outages long enough for sessions to die.
fn outage(rng: &mut StdRng) -> Duration {
    if rng.random_bool(0.5) {
        Duration::from_millis(rng.random_range(300..3_000))
    } else {
        Duration::from_millis(rng.random_range(3_000..14_000))
    }
}

async fn network_lane(run: &Run<'_>, mut rng: StdRng, started: Instant, end: Instant) -> anyhow::Result<Lane> {
    let mut lane = Lane::new(started);
    while wait_gap(Duration::from_millis(rng.random_range(200..2_500)), end).await {
        let held = outage(&mut rng);
        let (kind, ns, what) = if rng.random_bool(0.8) {
            let site = rng.random_range(0..run.sites);
            (FaultKind::CutSite, &run.lab.sites[site].ns, format!("site {site}'s link cut"))
        } else {
            (FaultKind::CutReplicator, &run.lab.replicator_ns, "the replicator's link cut".to_owned())
        };
        ns.cut()?;
        let held = hold(held, end).await;
        ns.heal()?;
        lane.note(kind, what, held);
    }
    Ok(lane)
}

async fn process_lane(run: &Run<'_>, mut rng: StdRng, started: Instant, end: Instant) -> anyhow::Result<Lane> {
    let mut lane = Lane::new(started);
    while wait_gap(Duration::from_millis(rng.random_range(1_000..6_000)), end).await {
        run.kill_replicator()?;
        let held = hold(Duration::from_millis(rng.random_range(0..2_000)), end).await;
        run.start_replicator()?;
        lane.note(FaultKind::KillReplicator, "replicator killed (kill -9), restarted".into(), held);
    }
    Ok(lane)
}

async fn database_lane(run: &Run<'_>, mut rng: StdRng, started: Instant, end: Instant) -> anyhow::Result<Lane> {
    let mut lane = Lane::new(started);
    while wait_gap(Duration::from_millis(rng.random_range(2_000..8_000)), end).await {
        let site = rng.random_range(0..run.sites);
        let cluster = run.lab.sites[site].cluster.clone();
        tokio::task::spawn_blocking(move || cluster.stop()).await?.with_context(|| format!("crashing site {site}"))?;
        let held = hold(Duration::from_millis(rng.random_range(200..3_000)), end).await;
        let cluster = run.lab.sites[site].cluster.clone();
        tokio::task::spawn_blocking(move || cluster.restart())
            .await?
            .with_context(|| format!("restarting site {site}"))?;
        lane.note(FaultKind::CrashDatabase, format!("site {site}'s database crashed (-m immediate), restarted"), held);
    }
    Ok(lane)
}
