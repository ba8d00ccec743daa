//! `dugong conflicts`: the conflict log of the syncs — each conflict with both
//! versions of its row, who won and why, newest first — and `restore`, which
//! writes a losing version back as a new change that replicates.

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_replica::conflicts::{self, ListOptions, DEFAULT_LIMIT};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// Only this sync's conflicts.
    #[arg(long, env = "DUGONG_SYNC")]
    sync: Option<String>,
    /// Only this table's conflicts: `schema.name`, or a name in any schema.
    #[arg(long, env = "DUGONG_CONFLICTS_TABLE")]
    table: Option<String>,
    /// Only conflicts logged within this long, e.g. `1h`, `30m`, `7d`.
    #[arg(long, env = "DUGONG_CONFLICTS_SINCE", value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// List at most this many (the newest).
    #[arg(long, env = "DUGONG_CONFLICTS_LIMIT", default_value_t = DEFAULT_LIMIT)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Write a conflict's losing version back, as a new change on the database
    /// that lost it (the replicator then ships it to the others). Refused when
    /// the row changed since the conflict, unless --force.
    Restore {
        /// The conflict's id as `dugong conflicts` lists it (or its first
        /// digits, when no other id starts with them).
        id: String,
        /// Write the losing version even if the row changed since the
        /// conflict, overwriting that newer change.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    if let Some(Action::Restore { id, force }) = &args.action {
        let restored = conflicts::restore(&config, args.sync.as_deref(), id, *force).await?;
        let text = if args.json {
            serde_json::to_string_pretty(&restored)? + "\n"
        } else {
            conflicts::render_restored(&restored)
        };
        stdout::write(&text)?;
        return Ok(Exit::Ok.into());
    }
    let options = ListOptions { sync: args.sync, table: args.table, since: args.since, limit: args.limit };
    let list = conflicts::list(&config, &options).await?;
    let text = if args.json { serde_json::to_string_pretty(&list)? + "\n" } else { conflicts::render_local(&list) };
    stdout::write(&text)?;
    Ok(match (list.unreadable.is_empty(), list.unreachable) {
        (true, _) => Exit::Ok,
        (false, true) => Exit::Unreachable,
        (false, false) => Exit::Failed,
    }
    .into())
}
