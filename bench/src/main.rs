//! `dugong-bench`: issue 3's benchmark. Dugong, Bucardo 5.6 and PostgreSQL's native
//! logical replication run the same workloads on the same durable PostgreSQL 15
//! clusters in one run, and every figure is printed side by side with Dugong's
//! ratio to the others, as a table and as JSON.
//!
//! Modules, in the order a run uses them:
//! - [`options`]: the command line and the workload sizes it selects.
//! - [`cluster`]: three throw-away PostgreSQL servers (site 0, site 1, Bucardo's
//!   control database) with the baseline's durable settings.
//! - [`schema`]: the baseline's tables, the databases of each system, resets.
//! - [`system`]: the systems measured; [`dugong`], [`bucardo`], [`native`]:
//!   starting, stopping and configuring each replicator; [`replicators`] puts
//!   them behind one interface.
//! - [`workloads`]: catch-up, sustained, lag and capture-overhead measurements.
//! - [`plan`]: the order of repetitions and systems.
//! - [`stats`], [`report`]: medians, the table, the JSON and the targets.
//! - [`wan`]: the WAN profile (`dugong-bench wan`): Dugong and native logical
//!   replication each behind a delay link, at several delays.
//! - [`campaign`]: the partition campaign (`dugong-bench campaign`), a fault campaign
//!   rather than a measurement of speed.

mod bucardo;
mod campaign;
mod cluster;
mod dugong;
mod native;
mod options;
mod plan;
mod replicators;
mod report;
mod schema;
mod stats;
mod system;
mod wan;
mod workloads;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Dugong vs Bucardo vs native logical replication, measured side by side.
#[derive(Parser)]
#[command(name = "dugong-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every workload against every system; prints the table and writes the JSON.
    All(options::Args),
    /// The WAN profile of issue 17: Dugong and native logical replication, each across
    /// its own delay link, at several one-way delays; prints the table and writes the JSON.
    Wan(wan::Args),
    /// The partition campaign: seeded runs of writers on every site under link cuts, kill -9
    /// of the replicator and database crashes; checks every run and reports the figures.
    Campaign(campaign::Args),
    /// A delay link until killed: the campaign runs one per site in the replicator's
    /// namespace (`campaign --delay-ms`).
    #[command(hide = true)]
    DelayLink(campaign::link::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The testkit picks the newest PostgreSQL under /usr/lib/postgresql; the
    // baseline was measured on 15. Set before any thread starts.
    if std::env::var_os(dugong_testkit::PG_BIN_ENV).is_none() {
        std::env::set_var(dugong_testkit::PG_BIN_ENV, cluster::PG15_BIN);
    }
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dugong-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::All(args) => {
                let options = options::Options::from_args(args)?;
                // Ctrl-C drops the run: every guard (replicators, Bucardo, clusters)
                // stops what it started on the way out.
                tokio::select! {
                    result = plan::run_all(options) => result,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; everything started was stopped")),
                }
            }
            Command::Wan(args) => {
                let options = wan::Options::from_args(args)?;
                tokio::select! {
                    result = wan::run(options) => result,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; everything started was stopped")),
                }
            }
            Command::Campaign(args) => tokio::select! {
                result = campaign::run(args) => result,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; everything started was stopped")),
            },
            Command::DelayLink(args) => campaign::link::serve(args).await,
        }
    })
}
