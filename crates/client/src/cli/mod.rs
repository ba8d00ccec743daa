//! `dugong client …`: the HA client from the command line, as library functions so the `dugong`
//! binary only wires them in.
//!
//! - `info` — which server answered (and, once the server reports it, which site).
//! - `sessions` — N independent sessions, one call each, counted per server.
//!
//! The data commands (`apps|flows|settings|contexts`, `events post`, `watch`) come with the
//! application server's API.

mod info;
mod sessions;

use std::process::ExitCode;

use clap::Subcommand;

pub use sessions::{count_sessions, Tally};

use crate::{Client, ConnectArgs};

/// Talk to the application servers through the HA client (failover, load balancing).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the servers are and how to treat them.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `dugong client` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make one call and show which server answered.
    Info {
        /// Print JSON: {"server": "IP:PORT", "names": [...], "site": ..., "health": ...}.
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
}

/// Runs `dugong client …`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.connect.to_config()?;
    let client = Client::new(config).await?;
    match args.command {
        Command::Info { json } => info::run(&client, json).await,
        Command::Sessions { count, concurrency, json } => sessions::run(&client, count, concurrency, json).await,
    }
}
