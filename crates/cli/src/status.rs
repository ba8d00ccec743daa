//! `dugong status`: the state of the syncs, read from the databases, in
//! Bucardo's summary and detail layouts or as JSON. Exits 0 when every shown
//! sync is Good with all its databases reachable, 3 when a database cannot be
//! reached, 4 when a sync is not Good (for monitoring; `crate::exit`).

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_replica::status::{self, render};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// Show this sync in detail, as `bucardo status <sync>` does (`all` for
    /// every sync); without it, the summary table of all syncs.
    #[arg(env = "DUGONG_SYNC")]
    sync: Option<String>,
    /// Print the same information as JSON.
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    // `all` asks for every sync in detail, unless a sync is really named so.
    let only = args.sync.as_deref().filter(|s| *s != "all" || config.sync(s).is_some());
    let report = status::gather(&config, only).await?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else if args.sync.is_some() {
        render::detail_local(&report)
    } else {
        render::summary_local(&report)
    };
    stdout::write(&text)?;
    Ok(if report.unreachable() {
        Exit::Unreachable
    } else if !report.healthy {
        Exit::SyncBad
    } else {
        Exit::Ok
    }
    .into())
}
