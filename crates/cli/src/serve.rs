//! `dugong serve`: one site's application server — gRPC, REST + console, and
//! Prometheus metrics — over the site's database. All the work is in the
//! `dugong-server` library; this binds the addresses, reads the secrets and
//! turns SIGTERM/SIGINT into a drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dugong_server::auth::ReadAccess;
use dugong_server::{Auth, Listeners, ServerConfig, TlsConfig};
use dugong_store::{DbUrl, SqliteSync};
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
    /// Admin tokens (`NAME TOKEN` or `TOKEN` per line), which may also read
    /// the audit log; also DUGONG_ADMIN_TOKENS (comma-separated).
    #[arg(long, env = "DUGONG_ADMIN_TOKENS_FILE")]
    admin_tokens_file: Option<PathBuf>,
    /// Accept writes without a token when none is configured (warns loudly).
    #[arg(long, env = "DUGONG_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Require a token for reads too, even on loopback. (Beyond loopback they
    /// need one anyway, unless --open-reads.)
    #[arg(long, env = "DUGONG_AUTH_READS", conflicts_with = "open_reads")]
    auth_reads: bool,
    /// Let anyone who can connect read apps, flows and settings without a
    /// token, even when listening beyond loopback (warns at start).
    #[arg(long, env = "DUGONG_OPEN_READS")]
    open_reads: bool,
    /// Serve gRPC, HTTP (console included) and metrics over TLS with this
    /// certificate chain (PEM). Reloaded when the file changes or on SIGHUP.
    #[arg(long, env = "DUGONG_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "DUGONG_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) on every
    /// connection: mutual TLS between sites and from clients.
    #[arg(long, env = "DUGONG_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "DUGONG_TLS_RELOAD_CHECK", default_value = "5s", value_parser = humantime::parse_duration)]
    tls_reload_check: Duration,
    /// Networks that may connect (repeatable; CIDR or an address), checked
    /// before anything is read. Also DUGONG_ALLOW, comma-separated. Default: all.
    #[arg(long = "allow", value_name = "CIDR", env = "DUGONG_ALLOW", value_delimiter = ',')]
    allow: Vec<String>,
    /// Most connections open at once, over all listeners. Each needs a file
    /// descriptor: ulimit -n must be above this plus the pool size plus 64.
    #[arg(long, env = "DUGONG_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Most connections open at once from one address.
    #[arg(long, env = "DUGONG_MAX_CONNECTIONS_PER_PEER", default_value_t = 512)]
    max_connections_per_peer: usize,
    /// Longest from connect to a finished TLS handshake and the first bytes of
    /// a request; a connection that says nothing is closed then.
    #[arg(long, env = "DUGONG_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// HTTP: longest a request's headers may take, and a kept-alive
    /// connection may wait for its next request.
    #[arg(long, env = "DUGONG_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    #[arg(long, env = "DUGONG_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// SQLite: `full` (an acknowledged write survives a power loss) or
    /// `normal` (faster; the last writes may be lost on power loss).
    #[arg(long, env = "DUGONG_SQLITE_SYNCHRONOUS", default_value = "full")]
    sqlite_synchronous: SqliteSync,
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
    /// Create the console user NAME (or set its password), then exit without
    /// serving. The password is read from --password-file, or else from the
    /// first line of standard input; never from the command line. Users are
    /// replicated, so one made on any site logs in on all of them.
    #[arg(long, value_name = "NAME")]
    create_admin: Option<String>,
    /// With --create-admin: a file whose first line is the password.
    #[arg(long, env = "DUGONG_PASSWORD_FILE", requires = "create_admin")]
    password_file: Option<PathBuf>,
    /// How long a console login lasts.
    #[arg(long, env = "DUGONG_CONSOLE_SESSION", default_value = "12h", value_parser = humantime::parse_duration)]
    console_session: Duration,
    /// Send the console's session cookie without `Secure`. Browsers keep a
    /// Secure cookie only from HTTPS pages or loopback addresses, so a console
    /// reached over plain HTTP on another address needs this (or, better, a
    /// TLS proxy in front).
    #[arg(long, env = "DUGONG_CONSOLE_INSECURE_COOKIE")]
    console_insecure_cookie: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    dugong_server::config::site_id(&args.site)?;
    let db = match &args.db {
        Some(url) => url.parse::<DbUrl>().context("--db")?,
        None => DbUrl::default_sqlite(&args.site),
    };
    if let Some(name) = &args.create_admin {
        return create_admin(&args.site, &db, name, args.password_file.as_deref(), args.startup_wait).await;
    }
    let env_tokens = std::env::var("DUGONG_API_TOKENS").ok();
    let mut tokens = dugong_server::config::load_tokens(env_tokens.as_deref(), args.api_tokens_file.as_deref())?;
    let env_admin = std::env::var("DUGONG_ADMIN_TOKENS").ok();
    tokens.extend(dugong_server::config::load_admin_tokens(env_admin.as_deref(), args.admin_tokens_file.as_deref())?);
    let mut auth = Auth::new(tokens, args.insecure_no_auth);
    auth.reads = match (args.auth_reads, args.open_reads) {
        (true, _) => ReadAccess::Token,
        (_, true) => ReadAccess::Open,
        _ => ReadAccess::Auto,
    };
    let mut config = ServerConfig::new(args.site, db, auth);
    config.pool_size = args.pool_size;
    config.drain_timeout = args.drain_timeout;
    config.startup_wait = args.startup_wait;
    config.watch_poll = args.watch_poll;
    config.watch_retention = args.watch_retention;
    config.body_limit = args.body_limit;
    config.console.session_ttl = args.console_session;
    config.console.secure_cookie = !args.console_insecure_cookie;
    config.sqlite_sync = args.sqlite_synchronous;
    config.net.allow = args.allow.iter().map(|a| dugong_server::config::parse_allow(a)).collect::<Result<_, _>>()?;
    config.net.max_connections = args.max_connections;
    config.net.max_connections_per_peer = args.max_connections_per_peer;
    config.net.handshake_timeout = args.handshake_timeout;
    config.net.header_timeout = args.header_timeout;
    config.net.idle_timeout = args.idle_timeout;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = TlsConfig::new(cert, key);
        tls.client_ca = args.tls_client_ca.clone();
        tls.reload_every = args.tls_reload_check;
        reload_on_sighup(tls.reload.clone());
        config.tls = Some(tls);
    }
    // Refuse a bad configuration before taking any port.
    config.validate()?;
    raise_open_files(&config);
    let shutdown = wait_for_signal();
    let listeners = Listeners {
        grpc: bind("--grpc", args.grpc).await?,
        http: bind("--http", args.http).await?,
        metrics: Some(bind("--metrics", args.metrics).await?),
    };
    // The server's recorder, installed now so the build can be recorded in it.
    dugong_server::metrics::handle();
    crate::version::record_build_info();
    dugong_server::run(listeners, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--create-admin NAME`: migrates the database if needed, stores the user
/// with an argon2id hash of the password, and exits.
async fn create_admin(
    site: &str,
    db: &DbUrl,
    name: &str,
    password_file: Option<&std::path::Path>,
    wait: Duration,
) -> anyhow::Result<ExitCode> {
    dugong_store::console::user_name(name).context("--create-admin")?;
    let password = crate::operator::read_password(name, password_file)?;
    let hash = tokio::task::spawn_blocking(move || dugong_server::console::password::hash(&password))
        .await
        .context("hashing the password")??;
    let options = dugong_store::StoreOptions { site: site.to_string(), ..Default::default() };
    let store = dugong_store::Store::open(db, options).await.with_context(|| format!("database {}", db.display()))?;
    dugong_server::migrate(&store, wait).await.with_context(|| format!("database {}", db.display()))?;
    let user = store.put_console_user(name, &hash).await.with_context(|| format!("database {}", db.display()))?;
    let action = if user.version == 1 { dugong_store::Action::Create } else { dugong_store::Action::PasswordReset };
    let entry = dugong_store::NewAudit {
        actor: crate::operator::actor(),
        action,
        resource: dugong_store::audit::USERS.to_string(),
        key: name.to_string(),
        version: Some(user.version),
        detail: "--create-admin".to_string(),
    };
    store.append_audit(&entry).await.with_context(|| format!("database {}", db.display()))?;
    let what = if user.version == 1 { "created" } else { "password changed for" };
    eprintln!("console user {what} {name:?} on {} (replicated to the other sites by dugong replicate)", db.display());
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP reloads the TLS certificates (as for most servers).
fn reload_on_sighup(reload: std::sync::Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the TLS certificates");
                    reload.notify_one();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot catch SIGHUP; certificates still reload when their files change"),
    }
}

/// Raises the soft limit on open files towards the hard one when the
/// connection limits need more (the server warns if it is still too low).
fn raise_open_files(config: &ServerConfig) {
    let need = (config.net.max_connections + config.pool_size + 64) as libc::rlim_t;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < need {
            limit.rlim_cur = need.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{flag} {addr}: cannot listen"))
}

/// Completes on SIGTERM or SIGINT. The handlers are installed here, before
/// any port answers, not when the future is first polled: a SIGTERM that
/// arrives while the server is still starting must drain it, not kill it.
fn wait_for_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining, then stopping"),
            _ = int.recv() => tracing::info!("SIGINT: draining, then stopping"),
        }
    }
}
