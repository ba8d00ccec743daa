//! `dugong compare`: every synced table across the databases of its sync —
//! row counts and checksums, then the differing keys. Exits 0 when all are
//! identical, 5 when something differs, 3 when a database cannot be reached,
//! 1 when something else kept a sync from being compared (`crate::exit`).

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_replica::compare::{self, DEFAULT_LIMIT};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// Compare only this sync.
    #[arg(long, env = "DUGONG_SYNC")]
    sync: Option<String>,
    /// How many differing keys to list per table (the totals are always shown).
    #[arg(long, env = "DUGONG_COMPARE_LIMIT", default_value_t = DEFAULT_LIMIT)]
    limit: usize,
    /// Print a machine-readable JSON report.
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let report = compare::compare(&config, args.sync.as_deref(), args.limit).await?;
    let text = if args.json { serde_json::to_string_pretty(&report)? + "\n" } else { compare::render_text(&report) };
    stdout::write(&text)?;
    Ok(if report.unreachable() {
        Exit::Unreachable
    } else if report.errors {
        Exit::Failed
    } else if !report.identical {
        Exit::Differ
    } else {
        Exit::Ok
    }
    .into())
}
