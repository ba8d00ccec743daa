//! One system at one delay in one repetition: a fresh link in front of its
//! remote site, then lag at 200 tx/s (and the round trips it costs), the idle
//! window, time to first row after start, and backlog catch-up — in that
//! order, so the heavy catch-up leaves nothing behind for the lighter figures.

use super::report::{WanMetric, WanResults};
use super::Options;
use crate::cluster::Sites;
use crate::replicators::{self, Replicators};
use crate::report::render;
use crate::schema;
use crate::stats::Sample;
use crate::system::System;
use crate::workloads::{catchup, lag, rows};
use anyhow::Context;
use dugong_testkit::{DelayLink, LinkCounts};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a started system may take to move its first probe row.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Pause between the lag workload's last arrival and the idle window, so the
/// window holds no tail of the workload.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// How long Dugong's doorbells may take to stream before the lag workload
/// starts without them (they never do without `wal_level = logical`).
const BELLS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the first-row poller looks on site 1.
const FIRST_ROW_POLL: Duration = Duration::from_millis(1);

pub struct Block<'a> {
    pub sites: &'a Sites,
    pub options: &'a Options,
    pub system: System,
    pub delay: Duration,
    pub rep: usize,
    pub clock: Instant,
    /// Where each lag workload's rows are written (`--keep`: the work
    /// directory, beside the replicator's logs).
    pub samples: Option<&'a Path>,
}

impl Block<'_> {
    /// Measures, then finishes the system while its link is still up (dropping
    /// a subscription reaches the publisher through it) and resets its tables.
    pub async fn run(&self, replicators: &mut Replicators, results: &mut WanResults) -> anyhow::Result<()> {
        schema::reset_system(self.sites, self.system).await?;
        schema::checkpoint(self.sites).await?;
        let (link, route) = replicators::wan_route(self.sites, self.system, self.delay, self.options.dugong_at).await?;
        replicators.reroute(self.system, route)?;
        let measured = self.measure(replicators, &link, results).await;
        let finished = replicators.finish(self.sites, self.system).await;
        drop(link);
        measured?;
        finished?;
        schema::reset_system(self.sites, self.system).await
    }

    /// Writes the lag workload's rows, one per line: the commit's wall-clock
    /// time in Unix seconds and the row's lag in ms, to line up slow rows
    /// with what the replicator's log says it did then.
    fn write_samples(&self, dir: &Path, l: &lag::Lag) -> anyhow::Result<()> {
        let name = format!("lag-{}-{}ms-r{}.txt", self.system.db(), self.delay.as_millis(), self.rep);
        let mut text = String::with_capacity(l.samples.len() * 24);
        for (wall, lag) in &l.samples {
            let at = wall.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            text.push_str(&format!("{at:.6} {lag:.3}\n"));
        }
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    async fn measure(
        &self,
        replicators: &mut Replicators,
        link: &DelayLink,
        results: &mut WanResults,
    ) -> anyhow::Result<()> {
        let (sites, system, rep, scale) = (self.sites, self.system, self.rep, &self.options.scale);
        replicators.start_and_wait(sites, system, PROBE_TIMEOUT).await?;
        if system == System::Dugong {
            self.wait_for_bells().await?;
        }

        let before = link.counts();
        let lag_started = Instant::now();
        let l = lag::run(sites, system, scale, rep).await?;
        if let Some(dir) = self.samples {
            self.write_samples(dir, &l)?;
        }
        let during = link.counts().since(&before);
        let per_s = during.round_trips as f64 / lag_started.elapsed().as_secs_f64().max(1e-9);
        let complete = l.arrived == l.rows;
        let per_tx = during.round_trips as f64 / l.rows.max(1) as f64;
        self.log(&format!(
            "lag: p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms ({} of {} rows, {:.0} tx/s); {:.2} round trips per tx",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.arrived, l.rows, l.rate, per_tx
        ));
        for (metric, value) in [
            (WanMetric::LagP50, l.p50_ms),
            (WanMetric::LagP95, l.p95_ms),
            (WanMetric::LagP99, l.p99_ms),
            (WanMetric::LagMax, l.max_ms),
            (WanMetric::RoundTripsPerTx, per_tx),
            (WanMetric::LagRoundTripsPerS, per_s),
        ] {
            self.add(results, metric, Sample { value, complete });
        }
        self.add(results, WanMetric::LagWriterRate, Sample::complete(l.rate));

        let idle = self.idle(replicators, link).await?;
        self.log(&format!(
            "idle: {:.1} round trips/s{}",
            idle.round_trips_per_s,
            idle.cpu_percent.map_or(String::new(), |c| format!(", CPU {c:.2}% of a core"))
        ));
        self.add(results, WanMetric::IdleRoundTripsPerS, Sample::complete(idle.round_trips_per_s));
        if let Some(cpu) = idle.cpu_percent {
            self.add(results, WanMetric::IdleCpu, Sample::complete(cpu));
        }

        let first = self.first_row(replicators, link).await?;
        self.log(&format!(
            "first row after start: {:.1} ms, {} round trips over {} connection(s)",
            first.ms, first.counts.round_trips, first.counts.connections
        ));
        self.add(results, WanMetric::FirstRowMs, Sample { value: first.ms, complete: first.complete });
        self.add(
            results,
            WanMetric::FirstRowRoundTrips,
            Sample { value: first.counts.round_trips as f64, complete: first.complete },
        );

        let before = link.counts();
        let c = catchup::run(sites, replicators, system, scale, rep).await?;
        let during = link.counts().since(&before);
        let per_thousand = during.round_trips as f64 * 1000.0 / c.rows.max(1) as f64;
        self.log(&format!(
            "catch-up of {} rows: {} rows/s; {} round trips ({per_thousand:.1} per 1000 rows)",
            c.rows,
            render::number(c.rate.value),
            during.round_trips
        ));
        self.add(results, WanMetric::CatchUp, c.rate);
        self.add(results, WanMetric::CatchUpRoundTrips, Sample { value: per_thousand, complete: c.rate.complete });
        Ok(())
    }

    /// The running replicator with nothing to do: the link's round trips per
    /// second and, for Dugong, the process's CPU over the idle window.
    async fn idle(&self, replicators: &Replicators, link: &DelayLink) -> anyhow::Result<Idle> {
        tokio::time::sleep(IDLE_SETTLE).await;
        let pid = if self.system == System::Dugong {
            Some(replicators.dugong_pid().context("the Dugong replicator is not running")?)
        } else {
            None
        };
        let cpu_before = pid.map(cpu_seconds).transpose()?;
        let before = link.counts();
        let started = Instant::now();
        tokio::time::sleep(self.options.idle).await;
        let counts = link.counts().since(&before);
        let cpu_after = pid.map(cpu_seconds).transpose()?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Idle {
            round_trips_per_s: counts.round_trips as f64 / seconds,
            cpu_percent: cpu_before.zip(cpu_after).map(|(b, a)| (a - b) / seconds * 100.0),
        })
    }

    /// With the replicator stopped, one row on site 0; the time and the link's
    /// round trips from starting the replicator until the row is on site 1. The
    /// replicator is running afterwards.
    async fn first_row(&self, replicators: &mut Replicators, link: &DelayLink) -> anyhow::Result<FirstRow> {
        let (sites, system) = (self.sites, self.system);
        let db = system.db();
        let writer = sites.connect(0, db).await?;
        let poller = sites.connect(1, db).await?;
        let lookup = poller
            .prepare("SELECT count(*) FROM events WHERE id = $1::text::uuid")
            .await
            .context("preparing the first-row lookup")?;
        replicators.stop(sites, system).await?;
        let tag = rows::tag(system, self.rep, "first-row", 0);
        let id: String = writer
            .query_one(
                "INSERT INTO events (client, kind, payload) VALUES ($1, 'first-row', '{}') RETURNING id::text",
                &[&tag],
            )
            .await
            .context("writing the first row")?
            .get(0);
        let before = link.counts();
        let started = Instant::now();
        replicators.start(sites, system).await?;
        let deadline = started + self.options.scale.deadline;
        let mut tick = tokio::time::interval(FIRST_ROW_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sent = Instant::now();
            let row = poller.query_one(&lookup, &[&id]).await.context("looking for the first row on site 1")?;
            if row.get::<_, i64>(0) == 1 {
                let ms = (sent - started).as_secs_f64() * 1000.0;
                return Ok(FirstRow { ms, counts: link.counts().since(&before), complete: true });
            }
            if sent >= deadline {
                let ms = (sent - started).as_secs_f64() * 1000.0;
                return Ok(FirstRow { ms, counts: link.counts().since(&before), complete: false });
            }
        }
    }

    /// Waits until Dugong's doorbell streams from both sites, so that its lag
    /// is that of a replicator running as it does all day, as native's is
    /// (its subscription streams before its probe row arrives). Without the
    /// bells, the first rows would be found by polling. Logs when they do
    /// not stream in time and goes on: the figures then say what polling
    /// alone does.
    async fn wait_for_bells(&self) -> anyhow::Result<()> {
        let db = self.system.db();
        let clients = [self.sites.connect(0, db).await?, self.sites.connect(1, db).await?];
        let deadline = Instant::now() + BELLS_TIMEOUT;
        loop {
            let mut streaming = 0;
            for client in &clients {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_replication
                         WHERE application_name = 'dugong doorbell' AND state = 'streaming'",
                        &[],
                    )
                    .await
                    .context("looking for Dugong's doorbell walsenders")?;
                streaming += usize::from(row.get::<_, i64>(0) > 0);
            }
            if streaming == clients.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.log(&format!("the doorbells did not stream within {BELLS_TIMEOUT:?}: lag measured while polling"));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn add(&self, results: &mut WanResults, metric: WanMetric, sample: Sample) {
        results.add(self.delay, metric, self.system, self.rep, sample);
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[wan {}] {} {} ms r{}: {what}",
            crate::plan::elapsed(self.clock),
            self.system.label(),
            self.delay.as_millis(),
            self.rep
        );
    }
}

struct Idle {
    round_trips_per_s: f64,
    /// Dugong only: percent of one core.
    cpu_percent: Option<f64>,
}

struct FirstRow {
    ms: f64,
    counts: LinkCounts,
    /// False when the row had not arrived by the deadline.
    complete: bool,
}

/// CPU seconds (user + system) a process has used: fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the command name's closing parenthesis
/// (the name may hold spaces).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&text)
        .map(|ticks| ticks as f64 / clock_ticks_per_second())
        .with_context(|| format!("no utime and stime in {path}"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_a_name_with_spaces() {
        let stat = "4242 (dugong (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 123 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn our_own_cpu_time_is_readable() {
        let seconds = cpu_seconds(std::process::id()).expect("own /proc/<pid>/stat");
        assert!(seconds >= 0.0);
    }
}
