//! Where the servers are: a `grpc://DOMAIN:PORT` (or `grpcs://`) URL expanded to numbered names,
//! or a list.

use std::fmt;
use std::net::IpAddr;

use super::ConfigError;

/// How the servers are spoken to: the URL scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `grpc://`: gRPC over cleartext HTTP/2, as the guide's clients use it.
    #[default]
    Grpc,
    /// `grpcs://`: gRPC over TLS; the server's certificate must name the DNS name connected to.
    Grpcs,
}

impl Scheme {
    /// The scheme of `scheme://…`, if it is one of ours.
    fn parse(scheme: &str) -> Option<Scheme> {
        if scheme.eq_ignore_ascii_case("grpc") {
            Some(Scheme::Grpc)
        } else if scheme.eq_ignore_ascii_case("grpcs") {
            Some(Scheme::Grpcs)
        } else {
            None
        }
    }

    /// True for `grpcs://`.
    pub fn is_tls(self) -> bool {
        self == Scheme::Grpcs
    }

    /// As written in a URL, without `://`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Grpc => "grpc",
            Scheme::Grpcs => "grpcs",
        }
    }
}

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
        /// `grpc` or `grpcs`.
        scheme: Scheme,
    },
    /// An explicit list of servers; a name listed twice weighs twice.
    List {
        /// The servers in configuration order.
        servers: Vec<HostPort>,
        /// `grpc` (plain `HOST:PORT` entries) or `grpcs` (entries written `grpcs://HOST:PORT`).
        scheme: Scheme,
    },
}

impl Target {
    /// Parses `grpc://DOMAIN:PORT` or `grpcs://DOMAIN:PORT`; `count` is `--servers`.
    pub fn url(url: &str, count: Option<usize>) -> Result<Target, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl { url: url.to_string(), reason: reason.to_string() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected grpc://DOMAIN:PORT"))?;
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| ConfigError::BadScheme { url: url.to_string(), scheme: scheme.to_string() })?;
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
            _ => Ok(Target::Numbered { base, count, scheme }),
        }
    }

    /// An explicit list of `HOST:PORT`, each optionally written `grpc://HOST:PORT` or
    /// `grpcs://HOST:PORT`; all entries must use one scheme.
    pub fn list<I, S>(servers: I) -> Result<Target, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut schemes = Vec::new();
        let mut list = Vec::new();
        for value in servers {
            let value = value.as_ref().trim();
            let (scheme, rest) = match value.split_once("://") {
                Some((scheme, rest)) => {
                    let parsed = Scheme::parse(scheme)
                        .ok_or_else(|| ConfigError::BadScheme { url: value.to_string(), scheme: scheme.to_string() })?;
                    (parsed, rest.strip_suffix('/').unwrap_or(rest))
                }
                None => (Scheme::Grpc, value),
            };
            schemes.push((scheme, value.to_string()));
            list.push(HostPort::parse(rest).map_err(|e| match e {
                ConfigError::BadServer { reason, .. } => ConfigError::BadServer { value: value.to_string(), reason },
                other => other,
            })?);
        }
        let Some((scheme, _)) = schemes.first().cloned() else { return Err(ConfigError::NoServers) };
        if let Some((_, other)) = schemes.iter().find(|(s, _)| *s != scheme) {
            return Err(ConfigError::MixedSchemes { first: schemes[0].1.clone(), other: other.clone() });
        }
        Ok(Target::List { servers: list, scheme })
    }

    /// Every server name in configuration order; duplicates are kept (they are the weights).
    pub fn names(&self) -> Vec<HostPort> {
        match self {
            Target::Numbered { base, count: None, .. } => vec![base.clone()],
            Target::Numbered { base, count: Some(n), .. } => {
                (0..*n).map(|k| HostPort { host: format!("{k}.{}", base.host), port: base.port }).collect()
            }
            Target::List { servers, .. } => servers.clone(),
        }
    }

    /// `grpc` or `grpcs`.
    pub fn scheme(&self) -> Scheme {
        match self {
            Target::Numbered { scheme, .. } | Target::List { scheme, .. } => *scheme,
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
        assert_eq!(single.scheme(), Scheme::Grpc);
        let tls = Target::url("grpcs://ha.test:8443", Some(2)).unwrap();
        assert_eq!((tls.names()[1].clone(), tls.scheme()), (hp("1.ha.test", 8443), Scheme::Grpcs));
    }

    #[test]
    fn a_list_takes_one_scheme_for_all_its_servers() {
        let plain = Target::list(["a.test:1", "grpc://b.test:2"]).unwrap();
        assert_eq!((plain.names(), plain.scheme()), (vec![hp("a.test", 1), hp("b.test", 2)], Scheme::Grpc));
        let tls = Target::list(["grpcs://a.test:1", "grpcs://10.0.0.1:2/"]).unwrap();
        assert_eq!(tls.scheme(), Scheme::Grpcs);
        let e = Target::list(["grpcs://a.test:1", "b.test:2"]).unwrap_err().to_string();
        assert!(e.contains("grpcs://a.test:1") && e.contains("b.test:2"), "{e}");
        let e = Target::list(["https://a.test:1"]).unwrap_err().to_string();
        assert!(e.contains("unsupported scheme \"https\""), "{e}");
        let e = Target::list(["grpcs://a.test"]).unwrap_err().to_string();
        assert!(e.contains("grpcs://a.test") && e.contains("HOST:PORT"), "{e}");
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
