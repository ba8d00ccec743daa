//! The WAN profile (`dugong-bench wan`, issue 17): Dugong and native logical
//! replication side by side, each crossing its own delay link of D ms one way,
//! for several delays in one run.
//!
//! Dugong runs "at site 0": it reads site 0 directly and reaches site 1 across
//! its link (with `--dugong-at 1`, at site 1: it reads site 0 across the link
//! and applies to site 1 directly). Native's subscriber runs at site 1 and pulls from its publisher on
//! site 0 across its link. The workloads write site 0 and read site 1 directly,
//! so only replication crosses a link. A link of 0 ms is still in place at
//! D = 0, so round trips are counted there too.
//!
//! - [`block`]: one system at one delay in one repetition: every measurement.
//! - [`report`]: the samples, the table (one row per delay), issue 17's targets
//!   and the JSON.

mod block;
mod report;

use crate::cluster::Route;
use crate::cluster::Sites;
use crate::options::{self, Scale};
use crate::plan::{self, WorkDir};
use crate::replicators::Replicators;
use crate::report::render::{Machine, Versions};
use crate::schema;
use crate::system::System;
use anyhow::bail;
use block::Block;
use report::{Meta, Sizes, WanResults};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// What the WAN profile runs and how big.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// One-way delays of the link in milliseconds, comma-separated (RTT = 2 × delay).
    #[arg(long, env = "DUGONG_BENCH_DELAY_MS", value_delimiter = ',', default_value = "0,5,25")]
    delay_ms: Vec<u64>,
    /// Short run: one repetition, a 20,000-row backlog, 8 s of lag.
    #[arg(long, env = "DUGONG_BENCH_QUICK")]
    quick: bool,
    /// Repetitions of every measurement (default 3, or 1 with --quick); medians are reported.
    #[arg(long, env = "DUGONG_BENCH_REPS")]
    reps: Option<usize>,
    /// Systems, comma-separated: dugong, native. (Bucardo is not part of this
    /// profile; `dugong-bench all --delay-ms D` puts it behind one link.)
    #[arg(long, env = "DUGONG_BENCH_SYSTEMS", value_delimiter = ',', default_value = "dugong,native")]
    systems: Vec<String>,
    /// The dugong binary (default: target/release/dugong of this workspace).
    #[arg(long, env = "DUGONG_BENCH_DUGONG")]
    dugong: Option<PathBuf>,
    /// Where to write the JSON (default bench/results/wan/latest.json, quick.json with --quick).
    #[arg(long, env = "DUGONG_BENCH_JSON")]
    json: Option<PathBuf>,
    /// Rows of the catch-up backlog (default 200,000, or 20,000 with --quick).
    #[arg(long, env = "DUGONG_BENCH_BACKLOG_ROWS")]
    backlog_rows: Option<u64>,
    /// Seconds of the lag workload at 200 tx/s (default 30, or 8 with --quick).
    #[arg(long, env = "DUGONG_BENCH_LAG_SECONDS")]
    lag_seconds: Option<u64>,
    /// Seconds of the idle window (replicator running, nothing written) over
    /// which round trips and Dugong's CPU are counted.
    #[arg(long, env = "DUGONG_BENCH_IDLE_SECONDS", default_value_t = 5)]
    idle_seconds: u64,
    /// How long to wait for a replicator to deliver one workload before recording
    /// a timeout (default 300s, or 60s with --quick).
    #[arg(long, env = "DUGONG_BENCH_DEADLINE", value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
    /// The site Dugong's replicator runs at: 0, beside the writes (it applies
    /// across the link), or 1, beside the site it applies to (it reads across
    /// the link, as native's subscriber does).
    #[arg(long, env = "DUGONG_BENCH_DUGONG_AT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    dugong_at: u8,
    /// Keep the work directory (configs, replicator logs, and each lag
    /// workload's rows: commit time and lag, `lag-<db>-<delay>ms-r<rep>.txt`)
    /// after the run.
    #[arg(long, env = "DUGONG_BENCH_KEEP")]
    keep: bool,
    /// An extra postgresql.conf setting for both clusters, NAME=VALUE (repeatable).
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pg_settings: Vec<String>,
}

/// Everything a WAN run needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub delays: Vec<Duration>,
    pub systems: Vec<System>,
    pub scale: Scale,
    pub idle: Duration,
    pub dugong_bin: PathBuf,
    pub json_path: PathBuf,
    pub keep: bool,
    pub pg_settings: Vec<(String, String)>,
    /// The site Dugong's replicator runs at.
    pub dugong_at: usize,
}

impl Options {
    pub fn from_args(args: Args) -> anyhow::Result<Options> {
        let quick = args.quick;
        let mut delays = Vec::new();
        for d in args.delay_ms.iter().map(|ms| Duration::from_millis(*ms)) {
            if !delays.contains(&d) {
                delays.push(d);
            }
        }
        let mut systems = Vec::new();
        for name in &args.systems {
            let system = System::parse(name)?;
            if system == System::Bucardo {
                bail!(
                    "the WAN profile measures dugong and native; Bucardo keeps the route it was set up with, \
                     so measure it behind one link with `dugong-bench all --delay-ms D --systems bucardo`"
                );
            }
            if !systems.contains(&system) {
                systems.push(system);
            }
        }
        if systems.is_empty() || delays.is_empty() {
            bail!("nothing to run: give at least one system and one delay");
        }
        let scale = Scale {
            reps: args.reps.unwrap_or(if quick { 1 } else { 3 }).max(1),
            backlog_rows: args.backlog_rows.unwrap_or(if quick { 20_000 } else { 200_000 }),
            burst_rows: 0,
            two_way_rows_per_site: 0,
            txn_rows: 1_000,
            writers: 4,
            lag_rate: 200,
            lag_duration: Duration::from_secs(args.lag_seconds.unwrap_or(if quick { 8 } else { 30 })),
            pgbench_seconds: 0,
            pgbench_clients: 0,
            deadline: args.deadline.unwrap_or(Duration::from_secs(if quick { 60 } else { 300 })),
        };
        let dugong_bin = options::dugong_bin(args.dugong, &systems)?;
        let json_path = args.json.unwrap_or_else(|| options::results_file("results/wan", quick));
        let pg_settings = options::pg_settings(&args.pg_settings)?;
        Ok(Options {
            quick,
            delays,
            systems,
            scale,
            idle: Duration::from_secs(args.idle_seconds.max(1)),
            dugong_bin,
            json_path,
            keep: args.keep,
            pg_settings,
            dugong_at: usize::from(args.dugong_at),
        })
    }
}

/// How each figure is measured, for the JSON.
const METHOD: &[&str] = &[
    "two PostgreSQL 15 clusters on this host (site 0, site 1): fsync, synchronous_commit, full_page_writes on; wal_level=logical; shared_buffers=512MB; track_commit_timestamp=on",
    "each system crosses its own delay link (testkit DelayLink: every chunk delivered D ms after it arrived, in order, many in flight; RTT = 2D); a fresh link per system, delay and repetition, 0 ms included",
    "Dugong (dugong replicate, its defaults) runs at site 0: db 0 by its own port, db 1 through the link (with --dugong-at 1, at site 1: db 0 through the link, db 1 by its own port; the command is recorded); native: subscription on site 1 whose CONNECTION names the link in front of site 0",
    "workload writers write site 0 and pollers read site 1 directly: only replication crosses the link",
    "one replicator runs at a time; each block starts from empty events tables and change logs; systems rotate per delay and repetition",
    "lag: one writer commits single-row INSERTs at 200 tx/s; a poller on site 1 sends a query every 1 ms; lag = send time of the first poll that returned the row - time the INSERT returned",
    "lag starts once each system runs as it does all day: native once its probe row arrived (its subscription streams); Dugong once its probe rows arrived and its doorbells stream from both sites (pg_stat_replication, application 'dugong doorbell'; logged, and measured polling, if they do not within 10 s)",
    "round trips per transaction: the link's round trips (a client speaking again after the server answered, per connection) during the lag workload divided by its transactions",
    "idle: 1 s after the lag workload's last row arrived, the link's round trips per second and Dugong's CPU (utime+stime of /proc/<pid>/stat, percent of one core) over the idle window",
    "first row: replicator stopped (Dugong: process exited after SIGTERM; native: subscription disabled and its apply worker gone), one row written on site 0, clock and round-trip count start when the replicator is started, stop when a 1 ms poll on site 1 returns the row",
    "catch-up: replicator stopped, backlog written in 1000-row transactions from 4 connections, CHECKPOINT; clock starts when the replicator is started and stops when site 1 has every row",
];

/// Runs the WAN profile, prints the table and the JSON, and writes the JSON file.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let load_before = plan::loadavg();
    let dugong_version = plan::git_describe();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let clock = Instant::now();
    let mut workdir = WorkDir::create(options.keep)?;
    let sites = Sites::start(false, &options.pg_settings).await?;
    schema::create(&sites, &options.systems).await?;
    // Set up directly; each block routes its system through a fresh link.
    let mut replicators =
        Replicators::setup(&sites, &options.systems, |_| Route::direct(&sites), &options.dugong_bin, workdir.path())
            .await?;
    let mut results = WanResults::default();
    for rep in 0..options.scale.reps {
        for (i, delay) in options.delays.iter().enumerate() {
            let mut order = options.systems.clone();
            let n = order.len();
            order.rotate_left((rep + i) % n);
            for system in order {
                eprintln!(
                    "[wan {}] repetition {rep}, {} ms one way: {} (load {})",
                    plan::elapsed(clock),
                    delay.as_millis(),
                    system.label(),
                    plan::loadavg()
                );
                let samples = options.keep.then(|| workdir.path());
                let block = Block { sites: &sites, options: &options, system, delay: *delay, rep, clock, samples };
                if let Err(e) = block.run(&mut replicators, &mut results).await {
                    results.error(format!("{} at {} ms, repetition {rep}: {e:#}", system.label(), delay.as_millis()));
                    let _ = replicators.finish(&sites, system).await;
                    let _ = schema::reset_system(&sites, system).await;
                }
            }
        }
    }

    let meta = Meta {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: options.quick,
        reps: options.scale.reps,
        delays_ms: options.delays.iter().map(|d| d.as_millis() as u64).collect(),
        systems: options.systems.clone(),
        started_at,
        duration_s: clock.elapsed().as_secs_f64(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            load_before,
            load_after: plan::loadavg(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        },
        versions: Versions {
            postgresql: sites.server_version().await.unwrap_or_default(),
            bucardo: None,
            dugong: dugong_version,
            dugong_bin: options.dugong_bin.display().to_string(),
        },
        sizes: Sizes {
            backlog_rows: options.scale.backlog_rows,
            txn_rows: options.scale.txn_rows,
            writers: options.scale.writers,
            lag_tx_per_s: options.scale.lag_rate,
            lag_seconds: options.scale.lag_duration.as_secs(),
            idle_seconds: options.idle.as_secs(),
            deadline_s: options.scale.deadline.as_secs(),
        },
        extra_pg_settings: options.pg_settings.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        method: METHOD.to_vec(),
    };
    let json = report::json(&results, &meta);
    println!("\n{}", report::table(&results, &options.delays));
    println!("{}", report::details(&results, &options.delays, &options.systems));
    println!("{}", report::render_targets(&results.targets(&options.delays)));
    plan::publish(&json, &options.json_path, results.errors.len(), &mut workdir)
}
