//! The order of a run: set up, capture overhead (every repetition runs every
//! variant, rotated), then per repetition a block per system (rotated too),
//! each block starting from empty tables:
//!
//! fresh burst → two-way → lag → stop, backlog, start: catch-up → burst after
//! the backlog → (first block of a repetition) the COPY ceiling of the same rows.
//!
//! Only one replicator runs at a time, so none pays for another's CPU.

use crate::cluster::Route;
use crate::cluster::Sites;
use crate::options::{Options, Workload};
use crate::replicators::{self, Replicators};
use crate::report::render::{self, Machine, Meta, Sizes, Versions};
use crate::report::{Metric, Results, Subject};
use crate::schema;
use crate::stats::Sample;
use crate::system::System;
use crate::workloads::{burst, catchup, lag, overhead};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How long a started system may take to move its first row.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs everything `options` selects, prints the table and the JSON, and writes
/// the JSON file.
pub async fn run_all(options: Options) -> anyhow::Result<()> {
    let load_before = loadavg();
    // Taken before anything runs: run.sh builds the binary right before this.
    let dugong_version = git_describe();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let clock = Instant::now();
    let mut workdir = WorkDir::create(options.keep)?;
    let sites = Sites::start(options.systems.contains(&System::Bucardo), &options.pg_settings).await?;
    schema::create(&sites, &options.systems).await?;
    // With --delay-ms, every replicator reaches its remote site through its own
    // delay link, for the whole run; the workloads write and read the sites
    // directly. The links outlive the replicators (declared first, dropped last),
    // so dropping a subscription can still reach its publisher.
    let mut links = Vec::new();
    let mut routes = Vec::new();
    for system in &options.systems {
        let route = match options.delay {
            Some(delay) => {
                let (link, route) = replicators::wan_route(&sites, *system, delay, 0).await?;
                links.push(link);
                route
            }
            None => Route::direct(&sites),
        };
        routes.push((*system, route));
    }
    let route_of = |system: System| routes.iter().find(|(s, _)| *s == system).map_or(Route::direct(&sites), |r| r.1);
    let mut replicators =
        Replicators::setup(&sites, &options.systems, route_of, &options.dugong_bin, workdir.path()).await?;
    let mut results = Results::default();
    measure(&sites, &mut replicators, &options, workdir.path(), &mut results, clock).await;

    let meta = Meta {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: options.quick,
        reps: options.scale.reps,
        started_at,
        duration_s: clock.elapsed().as_secs_f64(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            load_before,
            load_after: loadavg(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        },
        versions: Versions {
            postgresql: sites.server_version().await.unwrap_or_default(),
            bucardo: replicators.bucardo_version(),
            dugong: dugong_version,
            dugong_bin: options.dugong_bin.display().to_string(),
        },
        sizes: sizes(&options),
        extra_pg_settings: options.pg_settings.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        delay_ms: options.delay.map(|d| d.as_millis() as u64),
        method: METHOD.to_vec(),
    };
    results.derive();
    let json = render::json(&results, &meta);
    println!("\n{}", render::table(&results, &options.systems));
    println!("{}", render::targets(&results.targets()));
    publish(&json, &options.json_path, results.errors.len(), &mut workdir)
}

/// Prints the JSON and writes it to `path`; with errors, keeps the work
/// directory and fails naming it.
pub(crate) fn publish(
    json: &serde_json::Value,
    path: &Path,
    errors: usize,
    workdir: &mut WorkDir,
) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(json).context("rendering the JSON")?);
    write_json(path, json)?;
    println!("\nJSON written to {}", path.display());
    if errors > 0 {
        workdir.keep = true;
        bail!("{errors} error(s) during the run (listed above); logs kept in {}", workdir.path().display());
    }
    Ok(())
}

/// How each figure is measured, for the JSON.
const METHOD: &[&str] = &[
    "three PostgreSQL 15 clusters on this host (site 0, site 1, Bucardo's control db): fsync, synchronous_commit, full_page_writes on; wal_level=logical; shared_buffers=512MB; track_commit_timestamp=on",
    "one replicator runs at a time; every block of a system starts from empty events tables and change logs",
    "bulk writes: 1000-row transactions (one INSERT … SELECT FROM unnest) from 4 connections; two-way: 2 per site",
    "arrival: primary-key lookups of one row of each writer's last transaction every 2 ms, then a count of the workload's rows",
    "catch-up: clock starts when the stopped replicator is started (bucardo start, dugong replicate, ALTER SUBSCRIPTION ENABLE)",
    "ceiling: the backlog's rows COPYed out of site 0 and into a fresh events table (same PK and index) on site 1 in one transaction, sent in 64 KiB chunks as psql does; also sent with one flushed message per row, as COPY OUT yields them, to show what forwarding rows one by one would cost (dugong replicate coalesces them into 64 KiB messages)",
    "lag: one writer commits single-row INSERTs at a fixed rate; a poller on site 1 sends a query every 1 ms; lag = send time of the first poll that returned the row − time the INSERT returned",
    "overhead: pgbench -M prepared, 4 clients, CHECKPOINT before each run, daemons stopped (capture only); ratios paired within a repetition",
    "Dugong runs with its defaults (poll interval 5 ms, batch 50,000 rows); Bucardo with the defaults it installs (autokick on)",
];

async fn measure(
    sites: &Sites,
    replicators: &mut Replicators,
    options: &Options,
    workdir: &Path,
    results: &mut Results,
    clock: Instant,
) {
    if options.runs(Workload::Overhead) {
        if let Err(e) = overhead::run(sites, &options.systems, &options.scale, workdir, results).await {
            results.error(format!("capture overhead: {e:#}"));
        }
    }
    let replication = [Workload::Sustained, Workload::TwoWay, Workload::Lag, Workload::CatchUp];
    if !replication.iter().any(|w| options.runs(*w)) {
        return;
    }
    for rep in 0..options.scale.reps {
        let mut order = options.systems.clone();
        let n = order.len();
        order.rotate_left(rep % n);
        let mut ceiling_done = false;
        for system in order {
            eprintln!("[bench {}] repetition {rep}: {}", elapsed(clock), system.label());
            let block = Block { sites, options, system, rep, clock };
            if let Err(e) = block.run(replicators, results, &mut ceiling_done).await {
                results.error(format!("{} repetition {rep}: {e:#}", system.label()));
                if let Err(e) = replicators.finish(sites, system).await {
                    results.error(format!("{}: stopping after the error: {e:#}", system.label()));
                }
                let _ = schema::reset_system(sites, system).await;
            }
        }
    }
}

/// One system's workloads in one repetition.
struct Block<'a> {
    sites: &'a Sites,
    options: &'a Options,
    system: System,
    rep: usize,
    clock: Instant,
}

impl Block<'_> {
    async fn run(
        &self,
        replicators: &mut Replicators,
        results: &mut Results,
        ceiling_done: &mut bool,
    ) -> anyhow::Result<()> {
        let (sites, system, rep, scale) = (self.sites, self.system, self.rep, &self.options.scale);
        let me = Subject::System(system);
        schema::reset_system(sites, system).await?;
        schema::checkpoint(sites).await?;
        replicators.start_and_wait(sites, system, PROBE_TIMEOUT).await?;
        let catch_up = self.options.runs(Workload::CatchUp);
        if self.options.runs(Workload::Sustained) || catch_up {
            let b = burst::one_way(sites, system, scale, rep, "fresh", scale.burst_rows).await?;
            self.log(&format!(
                "fresh burst: {} rows/s (writers {} rows/s, tail {:.2} s)",
                render::number(b.replicated.value),
                render::number(b.writer),
                b.tail_s
            ));
            results.add(Metric::Sustained, me, rep, b.replicated);
            results.add(Metric::SustainedWriter, me, rep, Sample::complete(b.writer));
            results.add(Metric::SustainedTail, me, rep, Sample { value: b.tail_s, complete: b.replicated.complete });
        }
        if self.options.runs(Workload::TwoWay) && system.two_way() {
            let b = burst::two_way(sites, system, scale, rep).await?;
            self.log(&format!("two-way: {} rows/s", render::number(b.replicated.value)));
            results.add(Metric::TwoWay, me, rep, b.replicated);
        }
        if self.options.runs(Workload::Lag) {
            let l = lag::run(sites, system, scale, rep).await?;
            self.log(&format!(
                "lag: p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms ({} of {} rows, {:.0} tx/s)",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.arrived, l.rows, l.rate
            ));
            let complete = l.arrived == l.rows;
            for (metric, value) in [
                (Metric::LagP50, l.p50_ms),
                (Metric::LagP95, l.p95_ms),
                (Metric::LagP99, l.p99_ms),
                (Metric::LagMax, l.max_ms),
            ] {
                results.add(metric, me, rep, Sample { value, complete });
            }
            results.add(Metric::LagWriterRate, me, rep, Sample::complete(l.rate));
        }
        if catch_up {
            let c = catchup::run(sites, replicators, system, scale, rep).await?;
            self.log(&format!("catch-up of {} rows: {} rows/s", c.rows, render::number(c.rate.value)));
            results.add(Metric::CatchUp, me, rep, c.rate);
            if c.rate.complete {
                let b = burst::one_way(sites, system, scale, rep, "after-backlog", scale.burst_rows).await?;
                self.log(&format!("burst after the backlog: {} rows/s", render::number(b.replicated.value)));
                results.add(Metric::BurstAfterBacklog, me, rep, b.replicated);
            } else {
                results.error(format!(
                    "{} repetition {rep}: catch-up hit the deadline; no burst after it",
                    system.label()
                ));
            }
            if !*ceiling_done {
                let ceiling = catchup::ceiling(sites, system.db(), &c.tag).await?;
                self.log(&format!(
                    "COPY ceiling: {} rows/s ({} rows/s with one message per row)",
                    render::number(ceiling.coalesced.value),
                    render::number(ceiling.per_row.value)
                ));
                results.add(Metric::Ceiling, Subject::Reference, rep, ceiling.coalesced);
                results.add(Metric::CeilingPerRow, Subject::Reference, rep, ceiling.per_row);
                *ceiling_done = true;
            }
        }
        replicators.finish(sites, system).await?;
        schema::reset_system(sites, system).await
    }

    fn log(&self, what: &str) {
        eprintln!("[bench {}] {} r{}: {what}", elapsed(self.clock), self.system.label(), self.rep);
    }
}

fn sizes(options: &Options) -> Sizes {
    let s = &options.scale;
    Sizes {
        backlog_rows: s.backlog_rows,
        burst_rows: s.burst_rows,
        two_way_rows_per_site: s.two_way_rows_per_site,
        txn_rows: s.txn_rows,
        writers: s.writers,
        lag_tx_per_s: s.lag_rate,
        lag_seconds: s.lag_duration.as_secs(),
        pgbench_seconds: s.pgbench_seconds,
        pgbench_clients: s.pgbench_clients,
        deadline_s: s.deadline.as_secs(),
    }
}

pub(crate) fn elapsed(clock: Instant) -> String {
    let s = clock.elapsed().as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `git describe --always --dirty` of the workspace: which Dugong was measured.
pub(crate) fn git_describe() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn write_json(path: &Path, json: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(json).context("rendering the JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The run's scratch directory: configs, pgbench scripts, replicator and
/// Bucardo logs. Removed at the end unless kept (`--keep`, or an error).
pub(crate) struct WorkDir {
    path: PathBuf,
    pub(crate) keep: bool,
}

impl WorkDir {
    pub(crate) fn create(keep: bool) -> anyhow::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("dugong-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        eprintln!("[bench] work directory {}", path.display());
        Ok(WorkDir { path, keep })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
