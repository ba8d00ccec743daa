//! `dugong`: the command line of the Dugong HA stack. Each subcommand lives in
//! its own module and only orchestrates library crates.

mod compare;
mod demo;
mod logging;
mod metrics_http;
mod operator;
mod replicate;
mod serve;
mod status;
mod users;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Dugong: dual-center high availability — master-master replication, status and
/// consistency checks, Bucardo-compatible.
#[derive(Parser)]
#[command(name = "dugong", version, about)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `dugong_replica=debug`.
    #[arg(long, global = true, env = "DUGONG_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "DUGONG_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the replication daemon for every sync of a Bucardo-style config.
    Replicate(replicate::Args),
    /// Show the state of the syncs, in Bucardo's format (or JSON).
    Status(status::Args),
    /// Compare every synced table across the databases of each sync.
    Compare(compare::Args),
    /// HA client: which server answers, how sessions spread (failover and load balancing).
    Client(Box<dugong_client::cli::Args>),
    /// Serve one site's application server: gRPC, REST + console, metrics.
    Serve(Box<serve::Args>),
    /// Console users and sessions of a site: list, create, set passwords,
    /// disable, end sessions, delete.
    Users(users::Args),
    /// The whole HA story on this machine, on embedded SQLite: two sites, replication both
    /// ways, a conflict, an HA client riding through the loss of a site.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dugong: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Replicate(args) => replicate::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Compare(args) => compare::run(args).await,
            // Prints its own errors: its exit code tells scripts why it failed.
            Command::Client(args) => Ok(dugong_client::cli::run(*args).await),
            Command::Serve(args) => serve::run(*args).await,
            Command::Users(args) => users::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dugong: {e:#}");
            ExitCode::from(2)
        }
    }
}
