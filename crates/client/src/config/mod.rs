//! Client configuration: where the servers are and how patient to be with them.
//!
//! Built in code ([`ClientConfig::url`], [`ClientConfig::servers`] and the `with_*` setters), from
//! command-line flags ([`ConnectArgs`]) or from the environment ([`ClientConfig::from_env`]); every
//! route ends in [`ClientConfig::validate`], so a bad value is refused before any network traffic.

mod args;
mod target;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dugong_proto::keepalive::MIN_CLIENT_PING_INTERVAL;

pub use args::{parse_duration, ConnectArgs};
pub use target::{HostPort, Scheme, Target};
pub use token::{Token, AUTHORIZATION};

/// How long a failed server stays out before one attempt to re-admit it (the guide: about 180 s
/// in production).
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_secs(180);
/// TCP connect plus the first HTTP/2 round trip (health check) to one server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt on one server may wait for its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on a whole call, failovers included.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// HTTP/2 keepalive ping interval while calls are open: a ping goes out when nothing was read
/// from the server for this long. With [`DEFAULT_KEEPALIVE_TIMEOUT`] a frozen server is found
/// within 1.75 s of its last byte. Dugong servers permit pings every 500 ms
/// (`dugong_proto::keepalive`).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(1);
/// How long a keepalive ping may go unanswered before the connection counts as dead.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(750);
/// Happy Eyeballs: when the server a call is connecting to has not answered after this long, the
/// next one is tried alongside it (RFC 8305's 250 ms).
pub const DEFAULT_CONNECT_STAGGER: Duration = Duration::from_millis(250);
/// When every server is quarantined and the client fails open, one server address is tried at
/// most this often.
pub const DEFAULT_FAIL_OPEN_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds on how often DNS is asked again: TTLs below are raised, TTLs above are cut.
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(5);
/// See [`DEFAULT_DNS_MIN_TTL`].
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);

/// A configuration the client refuses, with the reason in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--servers 0`.
    #[error("--servers must be at least 1 (it is the number of names 0.DOMAIN … (N-1).DOMAIN), got 0")]
    ZeroServers,
    /// A scheme other than `grpc://` and `grpcs://`.
    #[error("unsupported scheme \"{scheme}\" in {url}: use grpc://DOMAIN:PORT, or grpcs://DOMAIN:PORT for TLS")]
    BadScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A malformed URL.
    #[error("bad server URL {url}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed `--server`.
    #[error("bad server \"{value}\": {reason}")]
    BadServer {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither `--url` nor `--server`.
    #[error("no servers configured: give --url grpc://DOMAIN:PORT (with --servers N), or --server HOST:PORT")]
    NoServers,
    /// Both `--url` and `--server`.
    #[error("give either --url (with --servers) or --server, not both")]
    UrlAndList,
    /// `--server` entries with different schemes.
    #[error("the servers mix schemes ({first} and {other}): all are grpc:// or all are grpcs://")]
    MixedSchemes {
        /// The first entry.
        first: String,
        /// An entry with another scheme.
        other: String,
    },
    /// `--ca` for cleartext servers.
    #[error("--ca checks TLS certificates, but the servers are grpc:// (cleartext): use grpcs://")]
    CaWithoutTls,
    /// A `--ca` file that cannot be used.
    #[error("--ca {}: {reason}", .path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No CA to check servers' certificates against.
    #[error("grpcs:// checks the servers' certificates against the system's CAs, but {0}; give --ca FILE")]
    NoSystemRoots(String),
    /// The API token would travel in cleartext beyond this machine.
    #[error(
        "refusing to send the API token in cleartext to {addr} ({name}), which is not a loopback address: \
         use grpcs:// (with --ca FILE for a private CA), or pass --insecure on a network you trust"
    )]
    CleartextToken {
        /// The server's name as configured.
        name: String,
        /// The address it resolved to.
        addr: SocketAddr,
    },
    /// `--keepalive` more often than servers permit.
    #[error(
        "--keepalive {given:?} pings more often than Dugong servers permit (at most every {min:?} while calls \
         are open); a server would be entitled to close the connection: use --keepalive {min:?} or more"
    )]
    KeepaliveTooFrequent {
        /// The interval asked for.
        given: Duration,
        /// The server's limit.
        min: Duration,
    },
    /// `--servers` without `--url`.
    #[error("--servers needs --url grpc://DOMAIN:PORT to number")]
    CountWithoutUrl,
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The flag, e.g. `--reconnect-delay`.
        field: &'static str,
    },
    /// `--dns-min-ttl` above `--dns-max-ttl`.
    #[error("--dns-min-ttl ({min:?}) is above --dns-max-ttl ({max:?})")]
    DnsTtlBounds {
        /// The lower bound.
        min: Duration,
        /// The upper bound.
        max: Duration,
    },
    /// An API token that cannot be sent.
    #[error("--token: {0}")]
    BadToken(String),
    /// A flag or environment variable that does not parse.
    #[error("{0}")]
    Invalid(String),
    /// The system's resolver configuration cannot be read.
    #[error("cannot use the system DNS resolver ({0}); give --dns HOST:PORT")]
    SystemResolver(String),
    /// Not one configured name resolves, so there is nothing to connect to.
    #[error("none of the server names resolves: {}", list_failures(.0))]
    NothingResolves(Vec<(String, String)>),
}

fn list_failures(failures: &[(String, String)]) -> String {
    failures.iter().map(|(name, cause)| format!("{name}: {cause}")).collect::<Vec<_>>().join("; ")
}

/// Everything the HA client needs to know. Durations are validated by [`ClientConfig::validate`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The servers.
    pub target: Target,
    /// How long a failed server is kept out before one attempt to re-admit it (plus up to 20 %
    /// jitter, so clients that saw one failure together do not come back together).
    pub reconnect_delay: Duration,
    /// Per server: TCP connect plus the first round trip.
    pub connect_timeout: Duration,
    /// Per attempt: how long to wait for an answer.
    pub request_timeout: Duration,
    /// Per call, failovers included.
    pub deadline: Duration,
    /// A DNS server to ask instead of the system's resolver.
    pub dns: Option<SocketAddr>,
    /// The least time between two DNS resolutions.
    pub dns_min_ttl: Duration,
    /// The most time between two DNS resolutions.
    pub dns_max_ttl: Duration,
    /// Require `grpc.health.v1` SERVING on every new connection (a server without the health
    /// service counts as healthy once it answers). Off: a TCP connect and HTTP/2 handshake suffice.
    pub health_check: bool,
    /// HTTP/2 keepalive ping interval while calls are open (at least
    /// `dugong_proto::keepalive::MIN_CLIENT_PING_INTERVAL`).
    pub keepalive: Duration,
    /// How long a keepalive ping may go unanswered before the connection counts as dead.
    pub keepalive_timeout: Duration,
    /// Happy Eyeballs: how long to wait for a server that is connecting before trying the next
    /// alongside it.
    pub connect_stagger: Duration,
    /// When every server is quarantined, try them anyway (oldest failure first) instead of
    /// failing the call.
    pub fail_open: bool,
    /// While failing open, one server address is tried at most this often.
    pub fail_open_interval: Duration,
    /// A PEM file of CAs to check servers' certificates against instead of the system's.
    pub ca: Option<PathBuf>,
    /// The API token the client adds to every call.
    pub token: Option<Token>,
    /// Allow sending the token in cleartext to servers beyond loopback.
    pub insecure: bool,
    /// Retries allowed as a share of successful calls (0.2 = 20 %) …
    pub retry_ratio: f64,
    /// … on top of this many retries per second.
    pub min_retries_per_sec: f64,
    /// Seed for the random choices (tests); `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl ClientConfig {
    /// `grpc://DOMAIN:PORT` with `servers` numbered names (`None`: the URL's host alone).
    pub fn url(url: &str, servers: Option<usize>) -> Result<ClientConfig, ConfigError> {
        Ok(ClientConfig::with_target(Target::url(url, servers)?))
    }

    /// An explicit list of `HOST:PORT`.
    pub fn servers<I, S>(servers: I) -> Result<ClientConfig, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(ClientConfig::with_target(Target::list(servers)?))
    }

    /// The defaults for a target.
    pub fn with_target(target: Target) -> ClientConfig {
        ClientConfig {
            target,
            reconnect_delay: DEFAULT_RECONNECT_DELAY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            dns: None,
            dns_min_ttl: DEFAULT_DNS_MIN_TTL,
            dns_max_ttl: DEFAULT_DNS_MAX_TTL,
            health_check: true,
            keepalive: DEFAULT_KEEPALIVE,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            connect_stagger: DEFAULT_CONNECT_STAGGER,
            fail_open: true,
            fail_open_interval: DEFAULT_FAIL_OPEN_INTERVAL,
            ca: None,
            token: None,
            insecure: false,
            retry_ratio: 0.2,
            min_retries_per_sec: 10.0,
            seed: None,
        }
    }

    /// Everything from `DUGONG_*` environment variables (see [`ConnectArgs`]).
    pub fn from_env() -> Result<ClientConfig, ConfigError> {
        ConnectArgs::from_env()?.to_config()
    }

    /// Sets [`ClientConfig::reconnect_delay`].
    pub fn with_reconnect_delay(mut self, delay: Duration) -> Self {
        self.reconnect_delay = delay;
        self
    }

    /// Sets [`ClientConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::request_timeout`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::deadline`].
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`ClientConfig::dns`].
    pub fn with_dns(mut self, server: SocketAddr) -> Self {
        self.dns = Some(server);
        self
    }

    /// Sets [`ClientConfig::dns_min_ttl`] and [`ClientConfig::dns_max_ttl`].
    pub fn with_dns_ttl(mut self, min: Duration, max: Duration) -> Self {
        self.dns_min_ttl = min;
        self.dns_max_ttl = max;
        self
    }

    /// Sets [`ClientConfig::health_check`].
    pub fn with_health_check(mut self, on: bool) -> Self {
        self.health_check = on;
        self
    }

    /// Sets [`ClientConfig::keepalive`].
    pub fn with_keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = interval;
        self
    }

    /// Sets [`ClientConfig::keepalive_timeout`].
    pub fn with_keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::connect_stagger`].
    pub fn with_connect_stagger(mut self, stagger: Duration) -> Self {
        self.connect_stagger = stagger;
        self
    }

    /// Sets [`ClientConfig::fail_open`].
    pub fn with_fail_open(mut self, on: bool) -> Self {
        self.fail_open = on;
        self
    }

    /// Sets [`ClientConfig::fail_open_interval`].
    pub fn with_fail_open_interval(mut self, interval: Duration) -> Self {
        self.fail_open_interval = interval;
        self
    }

    /// Sets [`ClientConfig::ca`].
    pub fn with_ca(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.ca = Some(pem_file.into());
        self
    }

    /// Sets [`ClientConfig::token`]: the client adds it to every call.
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// Sets [`ClientConfig::insecure`].
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Sets [`ClientConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every rule; the error names the flag and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--reconnect-delay", self.reconnect_delay),
            ("--connect-timeout", self.connect_timeout),
            ("--request-timeout", self.request_timeout),
            ("--deadline", self.deadline),
            ("--dns-min-ttl", self.dns_min_ttl),
            ("--keepalive", self.keepalive),
            ("--keepalive-timeout", self.keepalive_timeout),
            ("--connect-stagger", self.connect_stagger),
            ("the fail-open interval", self.fail_open_interval),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration { field });
        }
        if self.keepalive < MIN_CLIENT_PING_INTERVAL {
            return Err(ConfigError::KeepaliveTooFrequent { given: self.keepalive, min: MIN_CLIENT_PING_INTERVAL });
        }
        if self.ca.is_some() && !self.target.scheme().is_tls() {
            return Err(ConfigError::CaWithoutTls);
        }
        if self.dns_min_ttl > self.dns_max_ttl {
            return Err(ConfigError::DnsTtlBounds { min: self.dns_min_ttl, max: self.dns_max_ttl });
        }
        if !(self.retry_ratio >= 0.0 && self.min_retries_per_sec >= 0.0) {
            return Err(ConfigError::Invalid("the retry budget must not be negative".into()));
        }
        if self.target.names().is_empty() {
            return Err(ConfigError::NoServers);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_durations_are_refused_by_name() {
        let base = ClientConfig::servers(["a.test:1"]).unwrap();
        let e = base.clone().with_reconnect_delay(Duration::ZERO).validate().unwrap_err();
        assert_eq!(e.to_string(), "--reconnect-delay must be greater than zero");
        let e = base.clone().with_connect_timeout(Duration::ZERO).validate().unwrap_err();
        assert!(e.to_string().starts_with("--connect-timeout"));
        let e = base.clone().with_dns_ttl(Duration::from_secs(9), Duration::from_secs(1)).validate().unwrap_err();
        assert!(e.to_string().contains("above --dns-max-ttl"));
        base.validate().unwrap();
    }

    #[test]
    fn keepalive_stays_within_what_servers_permit_and_ca_needs_tls() {
        let base = ClientConfig::servers(["a.test:1"]).unwrap();
        let e = base.clone().with_keepalive(Duration::from_millis(100)).validate().unwrap_err().to_string();
        assert!(e.starts_with("--keepalive 100ms pings more often than Dugong servers permit"), "{e}");
        base.clone().with_keepalive(MIN_CLIENT_PING_INTERVAL).validate().unwrap();
        assert!(matches!(base.clone().with_ca("/ca.pem").validate(), Err(ConfigError::CaWithoutTls)));
        let tls = ClientConfig::servers(["grpcs://a.test:1"]).unwrap();
        assert_eq!(tls.target.scheme(), Scheme::Grpcs);
        tls.with_ca("/ca.pem").validate().unwrap();
    }
}
