//! `dugong client …`: the HA client from the command line, as library functions so the `dugong`
//! binary only wires them in.
//!
//! - `info` — which server and which site answered (`Info.ServerInfo`).
//! - `sessions` — N independent sessions, one call each, counted per server.
//! - `data` — `apps|flows|settings|contexts get|list|put|delete`, `events post|list`: values in
//!   and records out as JSON (`json`), each call with its idempotency (see [`crate::api`]).
//! - `watch` — changes as they come, resumed on another server from the last position.
//! - `failure` — exit codes per class of failure, and errors as one line or JSON.

mod data;
mod failure;
mod info;
mod json;
mod sessions;
pub mod watch;

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use dugong_proto::v1 as pb;

pub use data::{EventOp, Op, Resource};
pub use failure::{BadInput, Failure, EXIT_CODES};
pub use info::{server_info, site_json};
pub use sessions::{count_sessions, Tally};

use crate::{Client, ConnectArgs};

/// Talk to the application servers through the HA client (failover, load balancing).
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// Where the servers are and how to treat them.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print results as JSON (info, sessions, watch; the record commands always do), and errors
    /// as one JSON object on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `dugong client` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask a server who it is: which server (IP:PORT) and which site answered. With --json:
    /// {"server": "IP:PORT", "names": [...], "site": 0, "version", "engine", "database_reachable",
    /// "schema_version", "replication": [...]}.
    Info,
    /// Open N independent sessions, make one call in each, and count where they landed.
    Sessions {
        /// How many sessions.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// How many sessions run at once. (With --json: {"servers": {"IP:PORT": count, ...},
        /// "failures": n, "errors": {...}}.)
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
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
        /// Stop after this many changes. (With --json: one JSON object per line, {"event":
        /// "started"|"change"|"reset"|"going_away", …}.)
        #[arg(long)]
        limit: Option<usize>,
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

/// Runs `dugong client …`, printing results to stdout and a failure to stderr (one line, or one
/// JSON object with `--json`); the exit code says which class of failure it was ([`EXIT_CODES`]).
pub async fn run(args: Args) -> ExitCode {
    let json = args.json;
    match run_args(args).await {
        Ok(code) => code,
        Err(err) => {
            let failure = Failure::of(&err);
            if json {
                eprintln!("{}", failure::json(&err));
            } else {
                eprintln!("dugong client: {}", failure::line(&err));
            }
            ExitCode::from(failure.code())
        }
    }
}

/// [`run`], with the failure returned rather than printed.
pub async fn run_args(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.connect.to_config()?;
    let client = Client::new(config).await?;
    let mut stdout = std::io::stdout();
    run_with(&client, args.json, args.command, &mut stdout).await
}

/// Runs one `dugong client` command with `client` (which carries the token), printing to `out`.
pub async fn run_with(
    client: &Client,
    json: bool,
    command: Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let value = match command {
        Command::Info => {
            let info = server_info(client).await?;
            if json {
                writeln!(out, "{info}")?;
            } else {
                writeln!(out, "{}", info::human(&info))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Sessions { count, concurrency } => {
            return sessions::run(client, count, concurrency, json, out).await;
        }
        Command::Watch { from, resource, limit } => {
            watch::run(client, from, resource, limit, json, out).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Apps(op) => data::run(client, Resource::Apps, op).await?,
        Command::Flows(op) => data::run(client, Resource::Flows, op).await?,
        Command::Settings(op) => data::run(client, Resource::Settings, op).await?,
        Command::Contexts(op) => data::run(client, Resource::Contexts, op).await?,
        Command::Events(op) => data::events(client, op).await?,
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(ExitCode::SUCCESS)
}
