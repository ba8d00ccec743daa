//! `dugong replicate`: the replication daemon. With `--once` it exits with
//! the codes of `crate::exit`: 0 when every sync is Good, 3 when a database
//! cannot be reached, 4 when a sync is Bad, 2 for bad configuration, 130 when
//! a signal stopped it first. The daemon itself exits 0 when told to stop.

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_replica::capture::Uninstalled;
use dugong_replica::consistency::ConsistencyOptions;
use dugong_replica::daemon::{self, DaemonOptions};
use dugong_replica::ReplicaError;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// Run every sync until nothing is pending, then exit: 0 when all are Good.
    #[arg(long)]
    once: bool,
    /// Remove everything the replicator installed (schema, triggers, change
    /// logs) from every database, leaving the application's tables untouched.
    #[arg(long, conflicts_with = "once")]
    uninstall: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "DUGONG_METRICS")]
    metrics: Option<SocketAddr>,
    /// How often a busy sync (one that moved rows in the last second) polls
    /// its change logs.
    #[arg(long, env = "DUGONG_POLL_INTERVAL", default_value = "1ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// The slowest an idle sync polls: the interval doubles from
    /// --poll-interval with every empty poll, up to this.
    #[arg(long, env = "DUGONG_IDLE_POLL_INTERVAL", default_value = "50ms", value_parser = humantime::parse_duration)]
    idle_poll_interval: Duration,
    /// About how many change rows one run ships per source [default: 50000
    /// on PostgreSQL, 20000 on SQLite files, whose runs hold the files' write
    /// lock].
    #[arg(long, env = "DUGONG_BATCH_ROWS")]
    batch_rows: Option<usize>,
    /// How often the background consistency check compares a chunk of a
    /// table across the databases (exported as
    /// dugong_replica_rows_differing); `0s` turns it off.
    #[arg(long, env = "DUGONG_CONSISTENCY_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    consistency_interval: Duration,
    /// How many rows (by primary key) one consistency check compares.
    #[arg(long, env = "DUGONG_CONSISTENCY_CHUNK", default_value_t = 10_000)]
    consistency_chunk: usize,
    /// Copy this table again in the initial copy (`onetimecopy`), although the
    /// copy looked at it before: `schema.name` or `name`, repeatable. Without
    /// it, each table is copied once, ever, so a restart with `onetimecopy`
    /// still in the file never brings back rows a site deleted meanwhile.
    #[arg(long, env = "DUGONG_RECOPY", value_delimiter = ',', value_name = "TABLE")]
    recopy: Vec<String>,
    /// The longest wait between retries of a Bad sync.
    #[arg(long, env = "DUGONG_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    for db in &config.databases {
        if let dugong_config::Location::Postgres(target) = &db.location {
            if target.has_default_login() {
                tracing::warn!(db = %db.id, "uses the default login postgres/postgres; with sites exposed to each other's network, set a real password (and pass it with \"pass\": \"env\")");
            }
        }
    }
    for ignored in &config.ignored {
        tracing::info!(field = %ignored, "Bucardo option ignored by Dugong");
    }
    if args.uninstall {
        return uninstall(&config).await;
    }
    let shutdown = CancellationToken::new();
    let metrics_task = match args.metrics {
        Some(addr) => Some(
            crate::metrics_http::serve(addr, dugong_replica::metrics::RUN_DURATION_BUCKETS, shutdown.clone()).await?,
        ),
        None => None,
    };
    // Installed before any sync starts, so a signal is never missed.
    let signals = tokio::spawn(wait_for_signal(Signals::install(), shutdown.clone()));
    let options = DaemonOptions {
        poll_interval: args.poll_interval,
        idle_poll_interval: args.idle_poll_interval,
        batch_rows: args.batch_rows.map(|n| n.max(1)),
        once: args.once,
        backoff_max: args.max_backoff,
        recopy: args.recopy.clone(),
        progress: std::io::stderr().is_terminal(),
        consistency: (!args.consistency_interval.is_zero()).then_some(ConsistencyOptions {
            interval: args.consistency_interval,
            chunk_rows: args.consistency_chunk.max(1),
        }),
        ..DaemonOptions::default()
    };
    tracing::info!(config = %args.config.display(), syncs = config.syncs.len(), "replicator starting");
    let reports = daemon::run(Arc::new(config), options, shutdown.clone()).await;
    // The signal task has ended only if a signal came.
    let signalled = if signals.is_finished() {
        signals.await.unwrap_or(false)
    } else {
        signals.abort();
        false
    };
    shutdown.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let mut worst = Exit::Ok;
    let mut report = String::new();
    for r in &reports {
        if !r.good {
            let exit = r.class.map(Exit::of_class).unwrap_or(Exit::SyncBad);
            // A database down outranks a Bad sync, and configuration both.
            if rank(exit) > rank(worst) {
                worst = exit;
            }
            eprintln!(
                "config file {}: {}: Bad: {}",
                args.config.display(),
                r.sync,
                r.error.as_deref().unwrap_or("unknown error")
            );
        } else if args.once && !signalled {
            report.push_str(&format!("{}: Good\n", r.sync));
        }
    }
    stdout::write(&report)?;
    tracing::info!("replicator stopped");
    if args.once && signalled {
        eprintln!("dugong: interrupted by a signal before every sync caught up");
        return Ok(Exit::Interrupted.into());
    }
    // Stopped by a signal, the daemon exits 0 whatever the syncs' state (the
    // state stays recorded in the databases): a service manager's stop is not
    // a failure. With --once, or when a sync could not start, the state decides.
    if signalled {
        return Ok(Exit::Ok.into());
    }
    Ok(worst.into())
}

/// Which exit wins when syncs ended differently.
fn rank(exit: Exit) -> u8 {
    match exit {
        Exit::Ok => 0,
        Exit::SyncBad => 1,
        Exit::Unreachable => 2,
        Exit::Failed => 3,
        _ => 4,
    }
}

/// The handlers of SIGTERM and SIGINT.
struct Signals(Option<(Signal, Signal)>);

impl Signals {
    fn install() -> Signals {
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => {
                tracing::error!("cannot install signal handlers");
                Signals(None)
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT and starts the shutdown; returns true when one came.
async fn wait_for_signal(signals: Signals, shutdown: CancellationToken) -> bool {
    let Some((mut term, mut int)) = signals.0 else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the run in progress, then stopping"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the run in progress, then stopping"),
    }
    shutdown.cancel();
    true
}

async fn uninstall(config: &Config) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for (id, result) in dugong_replica::uninstall::uninstall(config).await {
        let what = match config.database(id).map(|d| &d.location) {
            Some(dugong_config::Location::Sqlite(_)) => "Dugong's dugong_* tables",
            _ => "the dugong schema",
        };
        failed |= !report_uninstall(id, what, result)?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Prints what uninstall did on one database; false when it failed.
fn report_uninstall(
    db: dugong_core::DbId,
    what: &str,
    result: Result<Uninstalled, ReplicaError>,
) -> std::io::Result<bool> {
    match result {
        Ok(u) if u.schema_dropped => {
            stdout::write(&format!("{db}: removed {what} and the capture triggers of {} table(s)\n", u.tables.len()))?;
            Ok(true)
        }
        Ok(_) => {
            stdout::write(&format!("{db}: nothing installed\n"))?;
            Ok(true)
        }
        Err(e) => {
            eprintln!("{db}: {e}");
            Ok(false)
        }
    }
}
