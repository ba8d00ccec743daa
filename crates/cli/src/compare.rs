//! `dugong compare`: every synced table across the databases of its sync —
//! row counts and checksums, then the differing keys. Exits 0 when all are
//! identical, 1 when something differs, 2 when something could not be
//! compared (an unreachable database, a bad configuration).

use dugong_config::Config;
use dugong_replica::compare::{self, DEFAULT_LIMIT};
use std::io::Write;
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
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::from(report.exit_code()))
}
