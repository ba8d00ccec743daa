//! The command line, and the workload sizes it selects: issue 3's sizes by
//! default, a tenth of them with `--quick` for a smoke run.

use crate::system::System;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::Duration;

/// What to run and how big.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Smoke run: one repetition, a tenth of the rows, 5 s of lag, 3 s pgbench runs.
    #[arg(long, env = "DUGONG_BENCH_QUICK")]
    quick: bool,
    /// Repetitions of every measurement (default 3, or 1 with --quick).
    #[arg(long, env = "DUGONG_BENCH_REPS")]
    reps: Option<usize>,
    /// Systems to measure, comma-separated: dugong, bucardo, native.
    #[arg(long, env = "DUGONG_BENCH_SYSTEMS", value_delimiter = ',', default_value = "dugong,bucardo,native")]
    systems: Vec<String>,
    /// Workloads to run, comma-separated: overhead, sustained, two-way, lag, catch-up
    /// (catch-up includes the COPY ceiling and the burst after the backlog).
    #[arg(
        long,
        env = "DUGONG_BENCH_WORKLOADS",
        value_delimiter = ',',
        default_value = "overhead,sustained,two-way,lag,catch-up"
    )]
    workloads: Vec<String>,
    /// The dugong binary (default: target/release/dugong of this workspace).
    #[arg(long, env = "DUGONG_BENCH_DUGONG")]
    dugong: Option<PathBuf>,
    /// Where to write the JSON (default bench/results/latest.json, quick.json with --quick).
    #[arg(long, env = "DUGONG_BENCH_JSON")]
    json: Option<PathBuf>,
    /// Seconds of the lag workload (default 30, or 5 with --quick).
    #[arg(long, env = "DUGONG_BENCH_LAG_SECONDS")]
    lag_seconds: Option<u64>,
    /// How long to wait for a replicator to deliver one workload before recording
    /// a timeout (default 300s, or 60s with --quick).
    #[arg(long, env = "DUGONG_BENCH_DEADLINE", value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
    /// Keep the work directory (configs, replicator and Bucardo logs) after the run.
    #[arg(long, env = "DUGONG_BENCH_KEEP")]
    keep: bool,
    /// One-way delay in ms of a WAN link between each replicator and its remote
    /// site (Dugong and Bucardo reach site 1, native's subscriber reaches site 0
    /// through its own link). `dugong-bench wan` measures several delays.
    #[arg(long, env = "DUGONG_BENCH_DELAY_MS")]
    delay_ms: Option<u64>,
    /// An extra postgresql.conf setting for every cluster, NAME=VALUE (repeatable):
    /// for experiments such as `--pg-setting jit=off`. Recorded in the JSON.
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pg_settings: Vec<String>,
}

/// The dugong binary to measure: `given`, else this workspace's release
/// build; it must exist when Dugong is among `systems`.
pub fn dugong_bin(given: Option<PathBuf>, systems: &[System]) -> anyhow::Result<PathBuf> {
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = bench_dir.parent().context("the bench crate has no parent directory")?;
    let bin = given.unwrap_or_else(|| workspace.join("target/release/dugong"));
    if systems.contains(&System::Dugong) && !bin.is_file() {
        bail!("no dugong binary at {}; build it with `cargo build --release -p dugong`", bin.display());
    }
    Ok(bin)
}

/// Where a run writes its JSON by default: `bench/<dir>/latest.json`, or
/// `quick.json` for a short run.
pub fn results_file(dir: &str, quick: bool) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir).join(if quick { "quick.json" } else { "latest.json" })
}

/// `--pg-setting NAME=VALUE` arguments as pairs.
pub fn pg_settings(settings: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for setting in settings {
        let Some((name, value)) = setting.split_once('=') else {
            bail!("--pg-setting {setting:?}: write NAME=VALUE");
        };
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// Which measurements run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Overhead,
    Sustained,
    TwoWay,
    Lag,
    CatchUp,
}

impl Workload {
    fn parse(name: &str) -> anyhow::Result<Workload> {
        Ok(match name.trim() {
            "overhead" => Workload::Overhead,
            "sustained" => Workload::Sustained,
            "two-way" => Workload::TwoWay,
            "lag" => Workload::Lag,
            "catch-up" => Workload::CatchUp,
            other => bail!("unknown workload {other:?}; use overhead, sustained, two-way, lag, catch-up"),
        })
    }
}

/// Sizes and durations of the workloads.
#[derive(Debug, Clone)]
pub struct Scale {
    pub reps: usize,
    /// Rows written while the replicator is stopped.
    pub backlog_rows: u64,
    /// Rows of a one-way burst (fresh, and after the backlog).
    pub burst_rows: u64,
    /// Rows each site writes in the two-way workload.
    pub two_way_rows_per_site: u64,
    /// Rows per transaction of the bulk workloads.
    pub txn_rows: u64,
    /// Concurrent writers of a one-way burst or backlog (two-way: half per site).
    pub writers: usize,
    /// Single-row transactions per second of the lag workload, and for how long.
    pub lag_rate: u32,
    pub lag_duration: Duration,
    /// Length of one pgbench run, and its clients.
    pub pgbench_seconds: u64,
    pub pgbench_clients: u32,
    /// Longest wait for one workload's rows to arrive.
    pub deadline: Duration,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub scale: Scale,
    pub systems: Vec<System>,
    pub workloads: Vec<Workload>,
    pub dugong_bin: PathBuf,
    pub json_path: PathBuf,
    pub keep: bool,
    /// Settings added to the baseline's on every cluster.
    pub pg_settings: Vec<(String, String)>,
    /// One-way delay of a link in front of each replicator's remote site.
    pub delay: Option<Duration>,
}

impl Options {
    pub fn from_args(args: Args) -> anyhow::Result<Options> {
        let quick = args.quick;
        let tenth = |n: u64| if quick { n / 10 } else { n };
        let scale = Scale {
            reps: args.reps.unwrap_or(if quick { 1 } else { 3 }).max(1),
            backlog_rows: tenth(200_000),
            burst_rows: tenth(100_000),
            two_way_rows_per_site: tenth(50_000),
            txn_rows: 1_000,
            writers: 4,
            lag_rate: 200,
            lag_duration: Duration::from_secs(args.lag_seconds.unwrap_or(if quick { 5 } else { 30 })),
            pgbench_seconds: if quick { 3 } else { 10 },
            pgbench_clients: 4,
            deadline: args.deadline.unwrap_or(Duration::from_secs(if quick { 60 } else { 300 })),
        };
        let mut systems = Vec::new();
        for name in &args.systems {
            let system = System::parse(name)?;
            if !systems.contains(&system) {
                systems.push(system);
            }
        }
        let mut workloads = Vec::new();
        for name in &args.workloads {
            let w = Workload::parse(name)?;
            if !workloads.contains(&w) {
                workloads.push(w);
            }
        }
        if systems.is_empty() || workloads.is_empty() {
            bail!("nothing to run: give at least one system and one workload");
        }
        let dugong_bin = dugong_bin(args.dugong, &systems)?;
        let json_path = args.json.unwrap_or_else(|| results_file("results", quick));
        let pg_settings = pg_settings(&args.pg_settings)?;
        Ok(Options {
            quick,
            scale,
            systems,
            workloads,
            dugong_bin,
            json_path,
            keep: args.keep,
            pg_settings,
            delay: args.delay_ms.map(Duration::from_millis),
        })
    }

    pub fn runs(&self, w: Workload) -> bool {
        self.workloads.contains(&w)
    }
}
