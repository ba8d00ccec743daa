//! One DNS lookup of one server name, through hickory: the system's resolver configuration
//! (`/etc/resolv.conf`, `/etc/hosts`) or the DNS server given with `--dns`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::ConfigError;

/// What DNS said about one name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    /// Addresses, valid for `ttl`.
    Found {
        /// The addresses, in DNS order.
        ips: Vec<IpAddr>,
        /// How long the answer may be kept.
        ttl: Duration,
    },
    /// The DNS answered that the name has no address (NXDOMAIN or no A/AAAA records).
    Missing(String),
    /// No usable answer: DNS timed out, refused, failed.
    Failed(String),
}

/// A resolver for server names.
#[derive(Clone)]
pub(crate) struct Lookup {
    resolver: TokioResolver,
}

impl Lookup {
    /// A resolver asking `dns`, or the system's resolver when `None`. Queries time out after
    /// `timeout` (twice, then the name counts as failed) and nothing is cached: the client decides
    /// when to ask again, from the TTLs.
    pub fn new(dns: Option<SocketAddr>, timeout: Duration) -> Result<Lookup, ConfigError> {
        let mut builder = match dns {
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| ConfigError::SystemResolver(e.to_string()))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = timeout;
        opts.attempts = 2;
        let resolver = builder.build().map_err(|e| ConfigError::SystemResolver(e.to_string()))?;
        Ok(Lookup { resolver })
    }

    /// Resolves one host name.
    pub async fn resolve(&self, host: &str) -> Answer {
        match self.resolver.lookup_ip(host).await {
            Ok(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                let ttl = lookup.valid_until().saturating_duration_since(std::time::Instant::now());
                if ips.is_empty() {
                    Answer::Missing("no address records".into())
                } else {
                    Answer::Found { ips, ttl }
                }
            }
            Err(e) if e.is_nx_domain() => Answer::Missing("no such name (NXDOMAIN)".into()),
            Err(e) if e.is_no_records_found() => Answer::Missing("no address records".into()),
            Err(e) => Answer::Failed(e.to_string()),
        }
    }
}
