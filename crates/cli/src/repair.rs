//! `dugong repair`: makes the databases of a sync identical again after they
//! diverged outside the replicator. Exits 0 when repaired (a dry run: when
//! nothing would change), 5 when a dry run found keys to repair, 3 when a
//! database cannot be reached, 2 for bad configuration, 1 otherwise
//! (`crate::exit`).

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_core::DbId;
use dugong_replica::repair::{self, RepairOptions, DEFAULT_BATCH};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// Repair only this sync.
    #[arg(long, env = "DUGONG_SYNC")]
    sync: Option<String>,
    /// Repair only this table: `schema.name`, or a name in any schema.
    #[arg(long, env = "DUGONG_REPAIR_TABLE")]
    table: Option<String>,
    /// Show what would be done; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Make this database (`N` or `dbN`) authoritative: its version of every
    /// differing row wins, and rows it lacks are deleted elsewhere. Without
    /// it, the later commit wins and missing rows are copied.
    #[arg(long, env = "DUGONG_REPAIR_SOURCE", value_parser = parse_db)]
    source: Option<DbId>,
    /// How many differing keys one transaction settles.
    #[arg(long, env = "DUGONG_REPAIR_BATCH", default_value_t = DEFAULT_BATCH)]
    batch: usize,
    /// Print a machine-readable JSON report.
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
}

fn parse_db(text: &str) -> Result<DbId, String> {
    let digits = text.strip_prefix("db").unwrap_or(text);
    digits.parse::<u32>().map(DbId).map_err(|_| format!("{text:?} is not a database id (N or dbN)"))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let options = RepairOptions {
        sync: args.sync,
        table: args.table,
        dry_run: args.dry_run,
        source: args.source,
        batch: args.batch.max(1),
    };
    let report = repair::repair(&config, &options).await?;
    let text = if args.json { serde_json::to_string_pretty(&report)? + "\n" } else { repair::render_text(&report) };
    stdout::write(&text)?;
    let settled: u64 = report.syncs.iter().flat_map(|s| &s.tables).map(|t| t.settled).sum();
    Ok(if report.unreachable() {
        Exit::Unreachable
    } else if report.errors() {
        Exit::Failed
    } else if args.dry_run && settled > 0 {
        Exit::Differ
    } else {
        Exit::Ok
    }
    .into())
}
