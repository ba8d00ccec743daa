//! `dugong client …`: the HA client from the command line, as library functions so the `dugong`
//! binary only wires them in.
//!
//! - `info` — which server and which site answered (`Info.ServerInfo`).
//! - `sessions` — N independent sessions, one call each, counted per server.
//! - `data` — `apps|flows|settings|contexts get|list|put|delete`, `events post|list`: values in
//!   and records out as JSON (`json`), each call with its idempotency (see [`crate::api`]).
//! - `watch` — changes as they come, resumed on another server from the last position.

mod data;
mod info;
mod json;
mod sessions;
pub mod watch;

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use dugong_proto::v1 as pb;

pub use data::{EventOp, Op, Resource};
pub use info::{server_info, site_json};
pub use sessions::{count_sessions, Tally};

use crate::api::Token;
use crate::{Client, ConnectArgs};

/// Talk to the application servers through the HA client (failover, load balancing).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the servers are and how to treat them.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The API token (one of the server's DUGONG_API_TOKENS), sent as `authorization: Bearer …`;
    /// writes need one.
    #[arg(long, env = "DUGONG_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `dugong client` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask a server who it is: which server (IP:PORT) and which site answered.
    Info {
        /// Print JSON: {"server": "IP:PORT", "names": [...], "site": 0, "version", "engine",
        /// "database_reachable", "schema_version", "replication": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Open N independent sessions, make one call in each, and count where they landed.
    Sessions {
        /// How many sessions.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// How many sessions run at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Print JSON: {"servers": {"IP:PORT": count, ...}, "failures": n, "errors": {...}}.
        #[arg(long)]
        json: bool,
    },
    /// Apps (records: {"id", "name", "description", "version", "updated_at"}).
    #[command(subcommand)]
    Apps(Op),
    /// Flows, the scripts of an app ({"id", "app_id", "name", "script", "version", …}).
    #[command(subcommand)]
    Flows(Op),
    /// Settings: a key and any JSON value ({"key", "value", "version", "updated_at"}).
    #[command(subcommand)]
    Settings(Op),
    /// Contexts: a user's map of strings ({"user", "values", "version", "updated_at"}).
    #[command(subcommand)]
    Contexts(Op),
    /// Events: posted in batches with client-made ids, listed in order.
    #[command(subcommand)]
    Events(EventOp),
    /// Print changes as they come, on through failovers (one line each; Ctrl-C ends it).
    Watch {
        /// Start after this position (from an earlier change); none: from now.
        #[arg(long, value_name = "POSITION", default_value = "")]
        from: String,
        /// Only these: apps, flows, settings, contexts (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',', value_parser = parse_resource)]
        resource: Vec<pb::Resource>,
        /// Stop after this many changes.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line: {"event": "started"|"change"|"reset"|"going_away", …}.
        #[arg(long)]
        json: bool,
    },
}

fn parse_resource(name: &str) -> Result<pb::Resource, String> {
    match name {
        "apps" => Ok(pb::Resource::Apps),
        "flows" => Ok(pb::Resource::Flows),
        "settings" => Ok(pb::Resource::Settings),
        "contexts" => Ok(pb::Resource::Contexts),
        other => Err(format!("{other:?}: write apps, flows, settings or contexts")),
    }
}

/// Runs `dugong client …`, printing to stdout.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.connect.to_config()?;
    let token = args.token.as_deref().map(Token::new).transpose().map_err(anyhow::Error::msg)?;
    let client = Client::new(config).await?;
    let mut stdout = std::io::stdout();
    run_with(&client, token, args.command, &mut stdout).await
}

/// Runs one `dugong client` command with `client`, printing to `out`.
pub async fn run_with(
    client: &Client,
    token: Option<Token>,
    command: Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let value = match command {
        Command::Info { json } => {
            let info = server_info(client, token.as_ref()).await?;
            if json {
                writeln!(out, "{info}")?;
            } else {
                writeln!(out, "{}", info::human(&info))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Sessions { count, concurrency, json } => {
            return sessions::run(client, count, concurrency, json, out).await;
        }
        Command::Watch { from, resource, limit, json } => {
            watch::run(client, token, from, resource, limit, json, out).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Apps(op) => data::run(client, token.as_ref(), Resource::Apps, op).await?,
        Command::Flows(op) => data::run(client, token.as_ref(), Resource::Flows, op).await?,
        Command::Settings(op) => data::run(client, token.as_ref(), Resource::Settings, op).await?,
        Command::Contexts(op) => data::run(client, token.as_ref(), Resource::Contexts, op).await?,
        Command::Events(op) => data::events(client, token.as_ref(), op).await?,
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(ExitCode::SUCCESS)
}
