//! `dugong`: the command line of the Dugong HA stack. Each subcommand lives in
//! its own module and only orchestrates library crates.

mod compare;
mod completions;
mod conflicts;
mod ddl;
mod demo;
#[cfg(test)]
mod deploy_files;
mod exit;
mod logging;
mod man;
mod metrics_http;
mod operator;
mod probe;
mod repair;
mod replicate;
mod serve;
mod setup;
mod status;
mod stdout;
mod users;
mod verify;
mod version;

use clap::{CommandFactory, Parser, Subcommand};
use exit::Exit;
use std::future::Future;
use std::process::ExitCode;

/// Dugong: dual-center high availability — master-master replication, status and
/// consistency checks, Bucardo-compatible.
#[derive(Parser)]
#[command(name = "dugong", version = version::LONG, about)]
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
    #[command(after_help = exit::replicate_help())]
    Replicate(replicate::Args),
    /// Show the state of the syncs, in Bucardo's format (or JSON).
    #[command(after_help = exit::status_help())]
    Status(status::Args),
    /// Compare every synced table across the databases of each sync.
    #[command(after_help = exit::compare_help())]
    Compare(compare::Args),
    /// List the conflicts the replicator decided, with both versions of each
    /// row; `restore ID` writes a losing version back.
    #[command(after_help = exit::conflicts_help())]
    Conflicts(conflicts::Args),
    /// Set up a sync online: from one live site and empty databases to
    /// master-master, while the application keeps writing.
    #[command(after_help = exit::setup_help())]
    Setup(setup::Args),
    /// Make diverged databases of a sync identical (later commit wins; or
    /// --source), recording every change in the conflict log.
    #[command(after_help = exit::repair_help())]
    Repair(repair::Args),
    /// Prove the HA setup: the deployment guide's six checks against live
    /// sites, through their servers' API (token from DUGONG_TOKEN).
    #[command(after_help = exit::verify_help())]
    Verify(verify::Args),
    /// Apply a schema statement on every site of a sync, all or none, while
    /// applications keep writing; tables it creates are captured at once.
    #[command(after_help = exit::ddl_help())]
    Ddl(ddl::Args),
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
    /// GET a URL and exit 0 on a 2xx answer: the health check of images
    /// without a shell, and systemd's wait for readiness.
    Probe(probe::Args),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the manual page, or write one per command into a directory.
    Man(man::Args),
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
    runtime.block_on(async {
        match cli.command {
            // The operator commands exit with the codes of `exit`.
            Command::Replicate(args) => with_exit_codes(replicate::run(args)).await,
            Command::Status(args) => with_exit_codes(interruptible(status::run(args))).await,
            Command::Compare(args) => with_exit_codes(interruptible(compare::run(args))).await,
            Command::Conflicts(args) => with_exit_codes(interruptible(conflicts::run(args))).await,
            Command::Setup(args) => with_exit_codes(interruptible(setup::run(args))).await,
            Command::Repair(args) => with_exit_codes(interruptible(repair::run(args))).await,
            Command::Verify(args) => with_exit_codes(interruptible(verify::run(args))).await,
            // Not interruptible: it ends its transactions itself.
            Command::Ddl(args) => with_exit_codes(ddl::run(args)).await,
            // Prints its own errors: its exit code tells scripts why it failed.
            Command::Client(args) => dugong_client::cli::run(*args).await,
            Command::Serve(args) => exit_2_on_error(serve::run(*args).await),
            Command::Users(args) => exit_2_on_error(users::run(args).await),
            Command::Demo(args) => exit_2_on_error(demo::run(args).await),
            Command::Probe(args) => exit_1_on_error(probe::run(args).await),
            Command::Completions(args) => exit_2_on_error(completions::run(args, Cli::command())),
            Command::Man(args) => exit_2_on_error(man::run(args, Cli::command())),
        }
    })
}

/// Prints an error as one report and exits with the code its kind has.
async fn with_exit_codes(command: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    match command.await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dugong: {e:#}");
            Exit::of_error(&e).into()
        }
    }
}

fn exit_2_on_error(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("dugong: {e:#}");
        ExitCode::from(2)
    })
}

/// Health checks read any exit but 0 and 1 as something else than "unhealthy".
fn exit_1_on_error(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("dugong: {e:#}");
        ExitCode::FAILURE
    })
}

/// Runs a command that only reads until SIGINT or SIGTERM, which end it at
/// once with [`Exit::Interrupted`] (its connections are simply dropped).
async fn interruptible(command: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return command.await;
    };
    tokio::select! {
        result = command => result,
        _ = term.recv() => Ok(interrupted("SIGTERM")),
        _ = int.recv() => Ok(interrupted("SIGINT")),
    }
}

fn interrupted(signal: &str) -> ExitCode {
    eprintln!("dugong: interrupted by {signal}");
    Exit::Interrupted.into()
}
