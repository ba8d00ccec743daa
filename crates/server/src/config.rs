//! What a server is told at start: its site, its database, who may write, and
//! its timings. Built by `dugong serve` from flags and the environment, or by
//! tests directly; [`ServerConfig::validate`] names the rule a value breaks.

use std::path::Path;
use std::time::Duration;

use dugong_store::DbUrl;

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
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookie: true,
            login_attempts: 5,
            login_window: Duration::from_secs(300),
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
        if self.console.session_ttl.is_zero() || self.console.login_window.is_zero() || self.console.login_attempts == 0
        {
            return Err(ConfigError::Invalid {
                setting: "console",
                reason: "session lifetime, login window and attempts must be more than zero".into(),
            });
        }
        if self.body_limit < 1024 {
            return Err(ConfigError::Invalid { setting: "body limit", reason: "must be at least 1024 bytes".into() });
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
    #[error("--api-tokens-file {path}: {reason}")]
    TokensFile { path: String, reason: String },
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
/// line; blank lines and `#` comments skipped). Short tokens are refused: a
/// guessable token is no protection.
pub fn load_tokens(env: Option<&str>, file: Option<&Path>) -> Result<Vec<Token>, ConfigError> {
    let mut tokens = Vec::new();
    if let Some(list) = env {
        for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            tokens.push(Token::new(t).map_err(|reason| ConfigError::Invalid { setting: "DUGONG_API_TOKENS", reason })?);
        }
    }
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::TokensFile { path: shown.clone(), reason: e.to_string() })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let token = Token::new(line).map_err(|reason| ConfigError::TokensFile {
                path: shown.clone(),
                reason: format!("line {}: {reason}", n + 1),
            })?;
            tokens.push(token);
        }
    }
    Ok(tokens)
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
        let err = load_tokens(Some("short"), None).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("short"), "the token itself is never shown: {err}");
        std::fs::write(&path, "tiny\n").unwrap();
        let err = load_tokens(None, Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
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
