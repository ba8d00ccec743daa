//! `dugong serve`: one site's application server — gRPC, REST + console, and
//! Prometheus metrics — over the site's database. All the work is in the
//! `dugong-server` library; this binds the addresses, reads the secrets and
//! turns SIGTERM/SIGINT into a drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dugong_server::{Auth, Listeners, ServerConfig};
use dugong_store::DbUrl;
use tokio::net::TcpListener;

#[derive(clap::Args)]
pub struct Args {
    /// This server's site id, e.g. `0` or `site-a` (stamped on events, shown in info).
    #[arg(long, env = "DUGONG_SITE")]
    site: String,
    /// The site's database: `postgres://USER:PASS@HOST:PORT/DB` or `sqlite:PATH`.
    /// Without it, an embedded SQLite file `dugong-<site>.sqlite` in the working
    /// directory. Prefer the environment variable: a URL may hold a password.
    #[arg(long, env = "DUGONG_DB", hide_env_values = true)]
    db: Option<String>,
    /// gRPC address.
    #[arg(long, env = "DUGONG_GRPC", default_value = "0.0.0.0:8001")]
    grpc: SocketAddr,
    /// HTTP address (REST API, console, /healthz, /readyz).
    #[arg(long, env = "DUGONG_HTTP", default_value = "0.0.0.0:8000")]
    http: SocketAddr,
    /// Prometheus metrics address (/metrics).
    #[arg(long, env = "DUGONG_METRICS", default_value = "0.0.0.0:6060")]
    metrics: SocketAddr,
    /// A file of API tokens, one per line (`#` comments). Tokens are also read
    /// from DUGONG_API_TOKENS (comma-separated); writes need one of them.
    #[arg(long, env = "DUGONG_API_TOKENS_FILE")]
    api_tokens_file: Option<PathBuf>,
    /// Accept writes without a token when none is configured (warns loudly).
    #[arg(long, env = "DUGONG_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Require a token for reads too.
    #[arg(long, env = "DUGONG_AUTH_READS")]
    auth_reads: bool,
    /// Most database connections at once.
    #[arg(long, env = "DUGONG_POOL_SIZE", default_value_t = 16)]
    pool_size: usize,
    /// How long a shutdown waits for calls in flight.
    #[arg(long, env = "DUGONG_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// How long to keep retrying an unreachable database at start.
    #[arg(long, env = "DUGONG_STARTUP_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    startup_wait: Duration,
    /// How often the change feed behind Watch is polled.
    #[arg(long, env = "DUGONG_WATCH_POLL", default_value = "100ms", value_parser = humantime::parse_duration)]
    watch_poll: Duration,
    /// How long changes are kept for watchers that reconnect with a position.
    #[arg(long, env = "DUGONG_WATCH_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    watch_retention: Duration,
    /// Largest request body or gRPC message, in bytes.
    #[arg(long, env = "DUGONG_BODY_LIMIT", default_value_t = 2 * 1024 * 1024)]
    body_limit: usize,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    dugong_server::config::site_id(&args.site)?;
    let db = match &args.db {
        Some(url) => url.parse::<DbUrl>().context("--db")?,
        None => DbUrl::default_sqlite(&args.site),
    };
    let env_tokens = std::env::var("DUGONG_API_TOKENS").ok();
    let tokens = dugong_server::config::load_tokens(env_tokens.as_deref(), args.api_tokens_file.as_deref())?;
    let mut auth = Auth::new(tokens, args.insecure_no_auth);
    auth.protect_reads = args.auth_reads;
    let mut config = ServerConfig::new(args.site, db, auth);
    config.pool_size = args.pool_size;
    config.drain_timeout = args.drain_timeout;
    config.startup_wait = args.startup_wait;
    config.watch_poll = args.watch_poll;
    config.watch_retention = args.watch_retention;
    config.body_limit = args.body_limit;
    // Refuse a bad configuration before taking any port.
    config.validate()?;
    let listeners = Listeners {
        grpc: bind("--grpc", args.grpc).await?,
        http: bind("--http", args.http).await?,
        metrics: Some(bind("--metrics", args.metrics).await?),
    };
    dugong_server::run(listeners, config, wait_for_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{flag} {addr}: cannot listen"))
}

/// Completes on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining, then stopping"),
        _ = int.recv() => tracing::info!("SIGINT: draining, then stopping"),
    }
}
