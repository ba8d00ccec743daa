//! What a server is told at start: its site, its database, who may write, and
//! its timings. Built by `dugong serve` from flags and the environment, or by
//! tests directly; [`ServerConfig::validate`] names the rule a value breaks.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dugong_store::{DbUrl, SqliteSync};

use crate::auth::{Auth, Token};

/// A server's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The site this server belongs to (`--site`): letters, digits, `.`, `_`, `-`.
    pub site: String,
    /// The site's database.
    pub db: DbUrl,
    /// Who may write (and, optionally, read).
    pub auth: Auth,
    /// Most database connections at once.
    pub pool_size: usize,
    /// How long to keep retrying an unreachable database at start.
    pub startup_wait: Duration,
    /// How long a shutdown waits for calls in flight before cutting them.
    pub drain_timeout: Duration,
    /// How often the change feed is polled for new changes.
    pub watch_poll: Duration,
    /// How long changes are kept for watchers that resume (older positions get a reset).
    pub watch_retention: Duration,
    /// How often database health is checked (readiness, gRPC health, metrics).
    pub health_interval: Duration,
    /// Largest request body or gRPC message, in bytes.
    pub body_limit: usize,
    /// Longest a unary call (gRPC) or request (REST) may take.
    pub request_timeout: Duration,
    /// The console's logins.
    pub console: ConsoleConfig,
    /// TLS on every listener (gRPC, HTTP and metrics); `None` serves plain.
    pub tls: Option<TlsConfig>,
    /// Who may connect, how many connections, and how long they may idle.
    pub net: NetConfig,
    /// SQLite only: how hard a commit waits for the disk.
    pub sqlite_sync: SqliteSync,
}

/// The server's certificate and key (PEM files), and optionally the CA that
/// client certificates must chain to (mutual TLS).
///
/// The files are read at start and again whenever one of them changes (they
/// are checked every `reload_every`) or [`TlsConfig::reload`] is notified
/// (`dugong serve` does on SIGHUP). A reload that fails keeps the
/// certificates in use and logs why.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require a client certificate signed by this CA on every connection.
    pub client_ca: Option<PathBuf>,
    pub reload_every: Duration,
    pub reload: Arc<tokio::sync::Notify>,
}

impl TlsConfig {
    /// TLS with `cert` and `key`, no client certificates, checked for
    /// changes every 5 s.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            reload_every: Duration::from_secs(5),
            reload: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// Limits on the server's listeners. Connections are checked in this order:
/// the allowlist (before any byte is read), the connection limits, then a
/// deadline for the TLS handshake and the first bytes of a request.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Networks that may connect (`10.0.0.0/8`, `192.0.2.7`); empty: all.
    pub allow: Vec<ipnet::IpNet>,
    /// Most connections open at once, over all listeners.
    pub max_connections: usize,
    /// Most connections open at once from one address.
    pub max_connections_per_peer: usize,
    /// From accept to a finished TLS handshake and the first bytes of a
    /// request (the HTTP/2 preface on gRPC).
    pub handshake_timeout: Duration,
    /// HTTP/1: longest a request's headers may take to arrive, and longest a
    /// kept-alive connection may wait for its next request.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (gRPC: told to go away first, so clients reconnect cleanly).
    pub idle_timeout: Duration,
    /// HTTP/2 pings on quiet gRPC connections, and how long an answer may take.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Most concurrent calls on one gRPC connection.
    pub max_streams_per_connection: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            allow: Vec::new(),
            max_connections: 10_000,
            max_connections_per_peer: 512,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            // The keepalive agreement with clients (who may ping every 500 ms
            // while calls are open).
            keepalive_interval: dugong_proto::keepalive::SERVER_PING_INTERVAL,
            keepalive_timeout: dugong_proto::keepalive::SERVER_PING_TIMEOUT,
            max_streams_per_connection: 256,
        }
    }
}

impl NetConfig {
    /// Whether a peer at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Reads `--allow` values: CIDR networks or single addresses.
pub fn parse_allow(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    let text = text.trim();
    let bad = || ConfigError::Invalid {
        setting: "--allow",
        reason: format!("`{text}` is neither a network (10.0.0.0/8, 2001:db8::/32) nor an address"),
    };
    if text.contains('/') {
        let net: ipnet::IpNet = text.parse().map_err(|_| bad())?;
        if net.trunc() != net {
            return Err(ConfigError::Invalid {
                setting: "--allow",
                reason: format!("`{text}` has host bits set; did you mean {}?", net.trunc()),
            });
        }
        Ok(net)
    } else {
        text.parse::<IpAddr>().map(ipnet::IpNet::from).map_err(|_| bad())
    }
}

/// How the console's logins behave.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (and name it `__Host-…`). Browsers
    /// keep such a cookie only from HTTPS pages or from `localhost`/loopback
    /// addresses; turn it off only for plain HTTP on a trusted network.
    pub secure_cookie: bool,
    /// Failed logins allowed per user name and client address within
    /// `login_window` before that pair must wait.
    pub login_attempts: u32,
    pub login_window: Duration,
    /// How often the server samples replication for the status page's
    /// chart of the last hour (and refreshes what it shows while the
    /// database is down).
    pub sample_every: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookie: true,
            login_attempts: 5,
            login_window: Duration::from_secs(300),
            sample_every: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// Defaults for everything but what must be chosen.
    pub fn new(site: impl Into<String>, db: DbUrl, auth: Auth) -> ServerConfig {
        ServerConfig {
            site: site.into(),
            db,
            auth,
            pool_size: 16,
            startup_wait: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            watch_poll: Duration::from_millis(100),
            watch_retention: Duration::from_secs(24 * 3600),
            health_interval: Duration::from_secs(1),
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            console: ConsoleConfig::default(),
            tls: None,
            net: NetConfig::default(),
            sqlite_sync: SqliteSync::Full,
        }
    }

    /// Checks every value; the error names the setting and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        site_id(&self.site)?;
        if self.auth.tokens().is_empty() && !self.auth.insecure_no_auth {
            return Err(ConfigError::NoTokens);
        }
        if self.pool_size == 0 {
            return Err(ConfigError::Invalid { setting: "pool size", reason: "must be at least 1".into() });
        }
        if self.watch_poll.is_zero() || self.health_interval.is_zero() {
            return Err(ConfigError::Invalid { setting: "intervals", reason: "must be longer than zero".into() });
        }
        let console = &self.console;
        if console.session_ttl.is_zero()
            || console.login_window.is_zero()
            || console.login_attempts == 0
            || console.sample_every.is_zero()
        {
            return Err(ConfigError::Invalid {
                setting: "console",
                reason: "session lifetime, login window, attempts and sampling interval must be more than zero".into(),
            });
        }
        if self.body_limit < 1024 {
            return Err(ConfigError::Invalid { setting: "body limit", reason: "must be at least 1024 bytes".into() });
        }
        let net = &self.net;
        if net.max_connections == 0 || net.max_connections_per_peer == 0 || net.max_streams_per_connection == 0 {
            return Err(ConfigError::Invalid { setting: "connection limits", reason: "must be at least 1".into() });
        }
        let timeouts = [net.handshake_timeout, net.header_timeout, net.idle_timeout, net.keepalive_interval];
        if timeouts.iter().chain([&net.keepalive_timeout]).any(Duration::is_zero) {
            return Err(ConfigError::Invalid { setting: "timeouts", reason: "must be longer than zero".into() });
        }
        if let Some(tls) = &self.tls {
            if tls.reload_every.is_zero() {
                return Err(ConfigError::Invalid { setting: "TLS reload", reason: "must be longer than zero".into() });
            }
        }
        Ok(())
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no API tokens configured: set DUGONG_API_TOKENS (comma-separated) or --api-tokens-file, \
         or pass --insecure-no-auth to accept writes from anyone"
    )]
    NoTokens,
    #[error("--site {site:?}: {reason}")]
    Site { site: String, reason: &'static str },
    #[error("{setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
    #[error("{flag} {path}: {reason}")]
    TokensFile { flag: &'static str, path: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Checks a site id.
pub fn site_id(site: &str) -> Result<(), ConfigError> {
    let bad = |reason| Err(ConfigError::Site { site: site.to_string(), reason });
    if site.is_empty() || site.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !site.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return bad("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Tokens from `DUGONG_API_TOKENS` (comma-separated) and from a file (one per
/// line; blank lines and `#` comments skipped). Each is `TOKEN` or
/// `NAME TOKEN`; the name is what the audit log records. Short tokens are
/// refused: a guessable token is no protection.
pub fn load_tokens(env: Option<&str>, file: Option<&Path>) -> Result<Vec<Token>, ConfigError> {
    load_token_list(env, file, "DUGONG_API_TOKENS", "--api-tokens-file")
}

/// [`load_tokens`] for admin tokens (`DUGONG_ADMIN_TOKENS`,
/// `--admin-tokens-file`), which may also read the audit log.
pub fn load_admin_tokens(env: Option<&str>, file: Option<&Path>) -> Result<Vec<Token>, ConfigError> {
    let tokens = load_token_list(env, file, "DUGONG_ADMIN_TOKENS", "--admin-tokens-file")?;
    Ok(tokens.into_iter().map(Token::into_admin).collect())
}

fn load_token_list(
    env: Option<&str>,
    file: Option<&Path>,
    env_name: &'static str,
    flag: &'static str,
) -> Result<Vec<Token>, ConfigError> {
    let mut tokens = Vec::new();
    if let Some(list) = env {
        for item in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            tokens.push(token(item).map_err(|reason| ConfigError::Invalid { setting: env_name, reason })?);
        }
    }
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokensFile {
            flag,
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let token = token(line).map_err(|reason| ConfigError::TokensFile {
                flag,
                path: shown.clone(),
                reason: format!("line {}: {reason}", n + 1),
            })?;
            tokens.push(token);
        }
    }
    Ok(tokens)
}

/// `TOKEN` or `NAME TOKEN`.
fn token(text: &str) -> Result<Token, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [secret] => Token::new(secret),
        [name, secret] => Token::named(name, secret),
        _ => Err("write TOKEN or NAME TOKEN (the token itself has no spaces)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids_are_plain() {
        assert!(site_id("site-0.a_b").is_ok());
        assert!(site_id("").is_err());
        assert!(site_id("a b").is_err());
    }

    #[test]
    fn tokens_come_from_env_and_file_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# writers\n\nfile-token-0123456789abcdef\n").unwrap();
        let tokens = load_tokens(Some(" env-token-0123456789abcdef ,"), Some(&path)).unwrap();
        assert_eq!(tokens.len(), 2);
        std::fs::write(&path, "ci file-token-0123456789abcdef\n").unwrap();
        let named = load_admin_tokens(Some("ops env-token-0123456789abcdef"), Some(&path)).unwrap();
        let names: Vec<(&str, bool)> = named.iter().map(|t| (t.name(), t.is_admin())).collect();
        assert_eq!(names, [("ops", true), ("ci", true)]);
        std::fs::write(&path, "a b c\n").unwrap();
        assert!(load_tokens(None, Some(&path)).unwrap_err().to_string().contains("line 1: write TOKEN or NAME TOKEN"));
        let err = load_tokens(Some("short"), None).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("short"), "the token itself is never shown: {err}");
        std::fs::write(&path, "tiny\n").unwrap();
        let err = load_tokens(None, Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn allowlists_take_networks_and_addresses() {
        let mut net = NetConfig::default();
        assert!(net.allows("203.0.113.9".parse().unwrap()), "empty: everyone");
        net.allow = vec![parse_allow("10.0.0.0/8").unwrap(), parse_allow("127.0.0.1").unwrap()];
        assert!(net.allows("10.1.2.3".parse().unwrap()));
        assert!(net.allows("::ffff:10.1.2.3".parse().unwrap()), "IPv4 seen through an IPv6 socket");
        assert!(net.allows("127.0.0.1".parse().unwrap()));
        assert!(!net.allows("127.0.0.2".parse().unwrap()));
        assert!(parse_allow("10.0.0.1/8").unwrap_err().to_string().contains("did you mean 10.0.0.0/8"));
        assert!(parse_allow("ten").unwrap_err().to_string().contains("`ten` is neither"));
        assert_eq!(parse_allow(" 2001:db8::/32 ").unwrap().to_string(), "2001:db8::/32");
    }

    #[test]
    fn no_tokens_refuses_to_start_unless_insecure() {
        let db: DbUrl = "sqlite:x.sqlite".parse().unwrap();
        let config = ServerConfig::new("0", db.clone(), Auth::new(Vec::new(), false));
        assert!(matches!(config.validate(), Err(ConfigError::NoTokens)));
        let config = ServerConfig::new("0", db, Auth::new(Vec::new(), true));
        assert!(config.validate().is_ok());
    }
}
