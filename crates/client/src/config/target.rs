//! Where the servers are: a `grpc://DOMAIN:PORT` URL expanded to numbered names, or a list.

use std::fmt;
use std::net::IpAddr;

use super::ConfigError;

/// The only URL scheme the guide's clients use: plain gRPC over HTTP/2.
const SCHEME: &str = "grpc";

/// A host (DNS name or IP literal) and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// A DNS name or an IP literal (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
    pub fn parse(value: &str) -> Result<HostPort, ConfigError> {
        let bad = |reason: &str| ConfigError::BadServer { value: value.to_string(), reason: reason.to_string() };
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("an IPv6 address needs a closing ']'"))?;
            let port = after.strip_prefix(':').ok_or_else(|| bad("expected HOST:PORT"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("only an IPv6 address goes in brackets"));
            }
            (host, port)
        } else {
            let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("expected HOST:PORT"))?;
            if host.contains(':') {
                return Err(bad("write an IPv6 address as [ADDRESS]:PORT"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.contains('/') || host.contains(char::is_whitespace) {
            return Err(bad("the host may not contain '/' or spaces (give HOST:PORT, not a URL)"));
        }
        let port = port.parse::<u16>().map_err(|_| bad("the port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
        Ok(HostPort { host: host.to_string(), port })
    }

    /// True when the host is an IP literal, which needs no DNS.
    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The configured servers, before any DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `grpc://DOMAIN:PORT` with `--servers N`: the names `0.DOMAIN` … `(N-1).DOMAIN`; without
    /// `--servers`, just `DOMAIN` (a client configured directly for one site).
    Numbered {
        /// The domain and port of the URL.
        base: HostPort,
        /// `N`, or `None` for the URL's host alone.
        count: Option<usize>,
    },
    /// An explicit list of servers; a name listed twice weighs twice.
    List(Vec<HostPort>),
}

impl Target {
    /// Parses `grpc://DOMAIN:PORT`; `count` is `--servers`.
    pub fn url(url: &str, count: Option<usize>) -> Result<Target, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl { url: url.to_string(), reason: reason.to_string() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected grpc://DOMAIN:PORT"))?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(ConfigError::BadScheme { url: url.to_string(), scheme: scheme.to_string() });
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('?') || authority.contains('#') {
            return Err(bad("a server URL has no path, query or fragment"));
        }
        if authority.contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let base = HostPort::parse(authority).map_err(|e| match e {
            ConfigError::BadServer { reason, .. } => bad(&reason),
            other => other,
        })?;
        match count {
            Some(0) => Err(ConfigError::ZeroServers),
            Some(_) if base.is_ip() => {
                Err(bad("--servers numbers DNS names (0.DOMAIN, 1.DOMAIN, …); an IP address has none"))
            }
            _ => Ok(Target::Numbered { base, count }),
        }
    }

    /// An explicit list of `HOST:PORT`.
    pub fn list<I, S>(servers: I) -> Result<Target, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = servers.into_iter().map(|s| HostPort::parse(s.as_ref().trim())).collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(ConfigError::NoServers);
        }
        Ok(Target::List(list))
    }

    /// Every server name in configuration order; duplicates are kept (they are the weights).
    pub fn names(&self) -> Vec<HostPort> {
        match self {
            Target::Numbered { base, count: None } => vec![base.clone()],
            Target::Numbered { base, count: Some(n) } => {
                (0..*n).map(|k| HostPort { host: format!("{k}.{}", base.host), port: base.port }).collect()
            }
            Target::List(list) => list.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    #[test]
    fn url_expands_to_numbered_names() {
        let t = Target::url("grpc://ha.test:8001", Some(3)).unwrap();
        assert_eq!(t.names(), vec![hp("0.ha.test", 8001), hp("1.ha.test", 8001), hp("2.ha.test", 8001)]);
        let single = Target::url("GRPC://0.ha.test:8001/", None).unwrap();
        assert_eq!(single.names(), vec![hp("0.ha.test", 8001)]);
    }

    #[test]
    fn url_errors_say_what_is_wrong() {
        let e = Target::url("http://ha.test:8001", Some(2)).unwrap_err().to_string();
        assert!(e.contains("unsupported scheme \"http\""), "{e}");
        assert!(Target::url("grpc://ha.test:8001", Some(0)).unwrap_err().to_string().contains("at least 1"));
        assert!(Target::url("grpc://ha.test", Some(2)).unwrap_err().to_string().contains("HOST:PORT"));
        assert!(Target::url("ha.test:8001", Some(2)).unwrap_err().to_string().contains("grpc://"));
        assert!(Target::url("grpc://ha.test:8001/x", Some(2)).unwrap_err().to_string().contains("no path"));
        assert!(Target::url("grpc://ha.test:0", Some(2)).unwrap_err().to_string().contains("1 to 65535"));
        assert!(Target::url("grpc://10.0.0.1:8001", Some(2)).unwrap_err().to_string().contains("IP address"));
    }

    #[test]
    fn host_port_parses_names_and_ip_literals() {
        assert_eq!(HostPort::parse("a.test:1").unwrap(), hp("a.test", 1));
        assert_eq!(HostPort::parse("[::1]:5").unwrap(), hp("::1", 5));
        assert_eq!(HostPort::parse("[::1]:5").unwrap().to_string(), "[::1]:5");
        assert!(HostPort::parse("127.0.0.1:7").unwrap().is_ip());
        assert!(HostPort::parse("a.test").is_err());
        assert!(HostPort::parse(":80").is_err());
        assert!(HostPort::parse("::1:80").is_err());
        assert!(HostPort::parse("grpc://a:80").is_err());
        assert!(matches!(Target::list(Vec::<String>::new()), Err(ConfigError::NoServers)));
    }
}
