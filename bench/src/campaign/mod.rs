//! `dugong-bench campaign`: the partition campaign (issue 15, item 7). Seeded runs of
//! writers on every site while the replicator's links to the sites are cut and healed, the
//! replicator is killed with SIGKILL and the databases crash; after each run's last fault, the
//! time until the sites converge, then the checks: nothing committed lost, nothing phantom,
//! sites identical (by reading every row, and by `dugong compare`), each hot key its latest
//! committed write. With `--delay-ms D`, all of it across a WAN: every connection of the
//! replicator to a site crosses a delay link of D ms each way (issue 17, item 5).
//!
//! - [`lab`]: the network namespaces, the sites' PostgreSQL, one run's replicator.
//! - [`link`]: the delay links between the replicator and the sites
//!   (`dugong-bench delay-link`).
//! - [`writer`]: the writers and what they committed, settled after crashes.
//! - [`faults`]: the three fault lanes of a run, drawn from its seed.
//! - [`check`]: the expected end state and the checks.
//! - [`report`]: per-run records, totals, the table and the JSON.

mod check;
mod faults;
mod lab;
pub mod link;
mod report;
mod writer;

use anyhow::Context;
use lab::{Lab, Run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report::RunRecord;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The lab always has this many sites; a run uses two or all three.
const LAB_SITES: usize = 3;

/// The campaign's command line.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A short smoke profile: 3 runs (one of two sites, two of three) of 8 s each.
    #[arg(long, env = "DUGONG_CAMPAIGN_QUICK")]
    quick: bool,
    /// How many runs (default 50, or 3 with --quick).
    #[arg(long, env = "DUGONG_CAMPAIGN_RUNS")]
    runs: Option<usize>,
    /// The seed of the first run; run i uses seed + i (default: drawn, and printed so a run
    /// can be repeated with `--seed S --runs 1`).
    #[arg(long, env = "DUGONG_CAMPAIGN_SEED")]
    seed: Option<u64>,
    /// How long each run writes and injects faults (default: 12–25 s drawn per run, 8 s
    /// with --quick).
    #[arg(long, env = "DUGONG_CAMPAIGN_WINDOW", value_parser = humantime::parse_duration)]
    window: Option<Duration>,
    /// How long the sites may take to converge after a run's last fault before the run is
    /// recorded as not converged.
    #[arg(long, env = "DUGONG_CAMPAIGN_DEADLINE", default_value = "300s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// The dugong binary (default: target/release/dugong of this workspace).
    #[arg(long, env = "DUGONG_BENCH_DUGONG")]
    dugong: Option<PathBuf>,
    /// Where to write the JSON (default bench/results/campaign/latest.json, quick.json with
    /// --quick).
    #[arg(long, env = "DUGONG_CAMPAIGN_JSON")]
    json: Option<PathBuf>,
    /// Keep the work directory (configurations, replicator logs) even when every run passed.
    #[arg(long, env = "DUGONG_CAMPAIGN_KEEP")]
    keep: bool,
    /// One-way delay in ms of a WAN link between the replicator and every site (0: none).
    /// The default JSON is then quick-delay-Dms.json or latest-delay-Dms.json.
    #[arg(long, env = "DUGONG_CAMPAIGN_DELAY_MS", default_value_t = 0)]
    delay_ms: u64,
}

/// Runs the campaign; an error when a run failed its checks or could not be carried out.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = bench_dir.parent().context("the bench crate has no parent directory")?;
    let dugong = args.dugong.clone().unwrap_or_else(|| workspace.join("target/release/dugong"));
    anyhow::ensure!(
        dugong.is_file(),
        "no dugong binary at {}; build it with `cargo build --release -p dugong`",
        dugong.display()
    );
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 50 });
    let seed = args.seed.unwrap_or_else(|| rand::rng().random_range(0..1_000_000));
    let delay = Duration::from_millis(args.delay_ms);
    let json = args.json.clone().unwrap_or_else(|| {
        let profile = if args.quick { "quick" } else { "latest" };
        let name = match args.delay_ms {
            0 => format!("{profile}.json"),
            d => format!("{profile}-delay-{d}ms.json"),
        };
        bench_dir.join("results").join("campaign").join(name)
    });
    let workdir = std::env::temp_dir().join(format!("dugong-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    eprintln!(
        "[campaign] {runs} runs from seed {seed}; one-way delay {} ms; dugong {}; work directory {}",
        args.delay_ms,
        dugong.display(),
        workdir.display()
    );

    let lab = Lab::start(&dugong, &workdir, LAB_SITES, delay).await?;
    let mut records = Vec::new();
    for i in 0..runs {
        let run_seed = seed + i as u64;
        let mut rng = StdRng::seed_from_u64(run_seed);
        let sites = if args.quick {
            [2, 3, 3][i % 3]
        } else if rng.random_bool(0.4) {
            3
        } else {
            2
        };
        let window = args.window.unwrap_or_else(|| {
            if args.quick {
                Duration::from_secs(8)
            } else {
                Duration::from_millis(rng.random_range(12_000..25_000))
            }
        });
        let record = one_run(&lab, i, run_seed, sites, window, args.deadline).await?;
        eprintln!("{}", record.line());
        records.push(record);
        // Written after every run, so a campaign cut short keeps what it ran.
        report::Report::new(seed, delay, &dugong, std::mem::take(&mut records)).write_keeping(&json, &mut records)?;
    }
    drop(lab);
    let report = report::Report::new(seed, delay, &dugong, records);
    print!("{}", report.render());
    report.write(&json)?;
    eprintln!("[campaign] JSON written to {}", json.display());
    let failed = report.failed();
    if failed == 0 && !args.keep {
        let _ = std::fs::remove_dir_all(&workdir);
    } else {
        eprintln!("[campaign] configurations and replicator logs kept in {}", workdir.display());
    }
    anyhow::ensure!(failed == 0, "{failed} of {runs} runs failed their checks (seeds in the table above)");
    Ok(())
}

/// One run: fresh databases, capture installed, writers and faults for `window`, repair,
/// convergence, checks.
async fn one_run(
    lab: &Lab,
    index: usize,
    seed: u64,
    sites: usize,
    window: Duration,
    deadline: Duration,
) -> anyhow::Result<RunRecord> {
    let run = Run::create(lab, sites, &format!("campaign_{index}")).await?;
    run.start_replicator()?;
    run.wait_capture().await?;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..sites)
        .map(|site| {
            let cluster = lab.sites[site].cluster.clone();
            let seed = seed.wrapping_mul(31).wrapping_add(site as u64);
            tokio::spawn(writer::write(site, cluster, run.db.clone(), seed, stop.clone()))
        })
        .collect();
    let injected = faults::inject(&run, seed, window).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for w in writers {
        written.push(w.await.context("a writer panicked")?);
    }
    let injected = injected?;
    // A replicator that exited by itself is started again, as its supervisor would, and
    // the run fails for it.
    run.start_replicator()?;

    // Settle lost commit answers and read the hot writes' commit times on each recovered site.
    let mut hot = Vec::new();
    for w in &mut written {
        let c = lab.sites[w.site].cluster.connect(&run.db).await?;
        writer::settle(&c, w).await?;
        for (key, at, value) in writer::hot_commit_times(&c, w).await? {
            hot.push((w.site, at, key, value));
        }
    }
    let expected = check::expected(&written, &hot);
    let converged = check::wait_converged(&run, expected.rows.len(), deadline).await;
    // From the last repair, not from the first look: settling the writers' open commits
    // came in between.
    let since_repair = converged.map(|_| injected.last_repair.elapsed());
    let mut verdict = check::check(&run, &expected).await?;
    verdict.replicator_exits = run.exits();
    let record =
        RunRecord::new(index, seed, sites, window, &written, &expected, injected, since_repair, verdict, run.log());
    if record.passed() {
        run.finish().await?;
    } else {
        // Kept for reading: the databases stay until the next campaign, the log in the work
        // directory.
        run.stop_replicator().await?;
    }
    Ok(record)
}
