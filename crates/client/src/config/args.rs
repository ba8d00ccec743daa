//! The connection flags shared by every `dugong client` command, each also an environment
//! variable, so library users get the same names through [`ClientConfig::from_env`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use super::{ClientConfig, ConfigError, Target, Token};

/// Where the application servers are and how the client treats them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// The servers as grpc://DOMAIN:PORT (grpcs:// for TLS); with --servers N the names
    /// 0.DOMAIN … (N-1).DOMAIN (several names on one site weight it), without it DOMAIN alone.
    #[arg(long, env = "DUGONG_URL", value_name = "grpc[s]://DOMAIN:PORT")]
    pub url: Option<String>,
    /// How many numbered names --url stands for.
    #[arg(long, env = "DUGONG_SERVERS", value_name = "N")]
    pub servers: Option<usize>,
    /// A server as HOST:PORT (grpcs://HOST:PORT for TLS), instead of --url; repeat it (or
    /// separate with commas); a server listed twice weighs twice.
    #[arg(long = "server", env = "DUGONG_SERVER", value_name = "HOST:PORT", value_delimiter = ',')]
    pub server: Vec<String>,
    /// The API token (one of the servers' DUGONG_API_TOKENS), sent as `authorization: Bearer …`
    /// with every call; writes need one. Never sent in cleartext beyond loopback (see --insecure).
    #[arg(long, env = "DUGONG_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// grpcs:// only: check the servers' certificates against the CAs in this PEM file instead
    /// of the system's.
    #[arg(long, env = "DUGONG_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Allow sending the token over cleartext grpc:// to servers that are not on this machine
    /// (loopback); without it such a call is refused.
    #[arg(long, env = "DUGONG_INSECURE")]
    pub insecure: bool,
    /// How long a failed server is left out before it is tried again, e.g. 180s; a bare number is
    /// seconds. [default: 180s]
    #[arg(long, env = "DUGONG_RECONNECT_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    pub reconnect_delay: Option<Duration>,
    /// Per server: TCP connect plus the first round trip. [default: 3s]
    #[arg(long, env = "DUGONG_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Per attempt: how long to wait for an answer. [default: 10s]
    #[arg(long, env = "DUGONG_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Per call, failovers included. [default: 30s]
    #[arg(long, env = "DUGONG_DEADLINE", value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// Ask this DNS server (IP:PORT) instead of the system resolver.
    #[arg(long, env = "DUGONG_DNS", value_name = "IP:PORT")]
    pub dns: Option<SocketAddr>,
    /// The least time between two DNS resolutions (lower TTLs are raised). [default: 5s]
    #[arg(long, env = "DUGONG_DNS_MIN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub dns_min_ttl: Option<Duration>,
    /// The most time between two DNS resolutions (higher TTLs are cut). [default: 300s]
    #[arg(long, env = "DUGONG_DNS_MAX_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub dns_max_ttl: Option<Duration>,
    /// Do not require grpc.health.v1 SERVING from new connections; a TCP connect is enough.
    #[arg(long, env = "DUGONG_NO_HEALTH_CHECK")]
    pub no_health_check: bool,
    /// HTTP/2 keepalive: ping a server that sent nothing for this long while calls are open (at
    /// least 500ms, what Dugong servers permit). [default: 1s]
    #[arg(long, env = "DUGONG_KEEPALIVE", value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive: Option<Duration>,
    /// A server that does not answer a keepalive ping within this is dead: its calls fail over
    /// (with the default 1s a frozen server is found within 1.75s). [default: 750ms]
    #[arg(long, env = "DUGONG_KEEPALIVE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive_timeout: Option<Duration>,
    /// Happy Eyeballs: when a server has not connected after this long, try the next one
    /// alongside it; the first to connect takes the call. [default: 250ms]
    #[arg(long, env = "DUGONG_CONNECT_STAGGER", value_name = "DURATION", value_parser = parse_duration)]
    pub connect_stagger: Option<Duration>,
    /// When every server is left out after failing, try them anyway, the one that failed longest
    /// ago first, instead of failing at once (each address at most once a second). [default: true]
    #[arg(long, env = "DUGONG_FAIL_OPEN", value_name = "BOOL", action = ArgAction::Set)]
    pub fail_open: Option<bool>,
}

/// `5s`, `300ms`, `3m` (humantime), or a bare number of seconds as the guide writes it (`5`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().map(Duration::from_secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(value).map_err(|e| format!("{e} (write e.g. 180s, 500ms or 3m)"))
}

impl ConnectArgs {
    /// Only the `DUGONG_*` environment variables, no command line.
    pub fn from_env() -> Result<ConnectArgs, ConfigError> {
        #[derive(Parser)]
        struct EnvOnly {
            #[command(flatten)]
            args: ConnectArgs,
        }
        EnvOnly::try_parse_from(["dugong-client"])
            .map(|e| e.args)
            .map_err(|e| ConfigError::Invalid(e.to_string().trim().to_string()))
    }

    /// The validated configuration these flags describe.
    pub fn to_config(&self) -> Result<ClientConfig, ConfigError> {
        let target = match (&self.url, self.server.is_empty()) {
            (Some(_), false) => return Err(ConfigError::UrlAndList),
            (Some(url), true) => Target::url(url, self.servers)?,
            (None, _) if self.servers.is_some() => return Err(ConfigError::CountWithoutUrl),
            (None, false) => Target::list(&self.server)?,
            (None, true) => return Err(ConfigError::NoServers),
        };
        let mut config = ClientConfig::with_target(target).with_health_check(!self.no_health_check);
        config.dns = self.dns;
        config.ca = self.ca.clone();
        config.insecure = self.insecure;
        config.token = self.token.as_deref().map(Token::new).transpose().map_err(ConfigError::BadToken)?;
        if let Some(on) = self.fail_open {
            config.fail_open = on;
        }
        let set = |slot: &mut Duration, value: Option<Duration>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        set(&mut config.reconnect_delay, self.reconnect_delay);
        set(&mut config.connect_timeout, self.connect_timeout);
        set(&mut config.request_timeout, self.request_timeout);
        set(&mut config.deadline, self.deadline);
        set(&mut config.dns_min_ttl, self.dns_min_ttl);
        set(&mut config.dns_max_ttl, self.dns_max_ttl);
        set(&mut config.keepalive, self.keepalive);
        set(&mut config.keepalive_timeout, self.keepalive_timeout);
        set(&mut config.connect_stagger, self.connect_stagger);
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConnectArgs,
    }

    fn config(argv: &[&str]) -> Result<ClientConfig, ConfigError> {
        let mut full = vec!["dugong"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).map_err(|e| ConfigError::Invalid(e.to_string()))?.args.to_config()
    }

    #[test]
    fn flags_become_a_config() {
        let c = config(&["--url", "grpc://ha.test:8001", "--servers", "2", "--reconnect-delay", "5"]).unwrap();
        assert_eq!(c.reconnect_delay, Duration::from_secs(5));
        assert_eq!(c.target.names().len(), 2);
        let c =
            config(&["--server", "a.test:1,b.test:2", "--server", "a.test:1", "--connect-timeout", "250ms"]).unwrap();
        assert_eq!(c.target.names().len(), 3);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.reconnect_delay, Duration::from_secs(180));
    }

    #[test]
    fn configuration_errors_are_clear() {
        let msg = |argv: &[&str]| config(argv).unwrap_err().to_string();
        assert!(msg(&["--url", "grpc://ha.test:8001", "--servers", "0"]).contains("--servers must be at least 1"));
        assert!(msg(&["--url", "https://ha.test:8001", "--servers", "2"]).contains("unsupported scheme \"https\""));
        assert_eq!(
            msg(&["--server", "a.test:1", "--reconnect-delay", "0s"]),
            "--reconnect-delay must be greater than zero"
        );
        assert!(msg(&[]).contains("no servers configured"));
        assert!(msg(&["--servers", "2"]).contains("needs --url"));
        assert!(msg(&["--url", "grpc://ha.test:8001", "--server", "a:1"]).contains("not both"));
        assert!(msg(&["--server", "a:1", "--deadline", "soon"]).contains("180s"));
    }
}
