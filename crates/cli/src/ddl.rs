//! `dugong ddl`: one schema statement on every site of a sync, all or none,
//! while the applications keep writing; then waits until what was written
//! around the change has shipped.

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_core::DbId;
use dugong_replica::ddl::{self, DdlOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// The schema statement(s), e.g. "ALTER TABLE items ADD COLUMN note text".
    #[arg(long)]
    sql: String,
    /// Only this sync's databases (default: every sync's).
    #[arg(long, env = "DUGONG_SYNC")]
    sync: Option<String>,
    /// Only these database ids (repeat the flag), to finish a change that
    /// committed on some sites only.
    #[arg(long = "database", value_name = "ID")]
    databases: Vec<u32>,
    /// How long the statement waits for a lock on one site before every site
    /// rolls back and it tries again.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    lock_timeout: Duration,
    /// How long to wait, after the change, for the replicator to ship what
    /// waited (0s: do not wait).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Print JSON instead of text.
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let databases: Vec<DbId> = args.databases.iter().copied().map(DbId).collect();
    let options = DdlOptions { lock_timeout: args.lock_timeout, ..DdlOptions::default() };
    let report = ddl::apply(&config, args.sync.as_deref(), &databases, &args.sql, &options).await?;
    let settled = if args.wait.is_zero() { Vec::new() } else { ddl::wait(&config, &report.syncs, args.wait).await? };
    let text = if args.json {
        serde_json::to_string_pretty(&serde_json::json!({ "applied": report, "syncs": settled }))? + "\n"
    } else {
        ddl::render(&report, &settled)
    };
    stdout::write(&text)?;
    let waiting = settled.iter().any(|s| s.replicator_running && !s.shipped);
    Ok(if waiting { Exit::SyncBad } else { Exit::Ok }.into())
}
