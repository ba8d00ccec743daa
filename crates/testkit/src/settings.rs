//! What a test server is configured with: [`ClusterOptions`], rendered into the settings file
//! that `postgresql.conf` includes.

use std::fmt::Write as _;
use std::path::Path;

use crate::tls::ServerCerts;

/// The address every test server listens on.
pub(crate) const HOST: &str = "127.0.0.1";

/// The settings file written into the data directory.
pub(crate) const SETTINGS_FILE: &str = "dugong_testkit.conf";

/// How to set up a new [`Cluster`](crate::Cluster).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `track_commit_timestamp`, which conflict resolution by commit time needs. Default on.
    pub track_commit_timestamp: bool,
    /// More `postgresql.conf` settings, as (name, value); values are quoted for you. They
    /// come after the testkit's own settings, so they can override them.
    pub extra_settings: Vec<(String, String)>,
    /// Serve TLS (`ssl = on`) with a certificate for `127.0.0.1` and `localhost` signed by a
    /// CA made for this cluster, whose certificate is [`Cluster::ca_cert_path`]. Clients may
    /// still connect without TLS. Default off.
    ///
    /// [`Cluster::ca_cert_path`]: crate::Cluster::ca_cert_path
    pub tls: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { track_commit_timestamp: true, extra_settings: Vec::new(), tls: false }
    }
}

/// The settings file for a server on `host:port` with its Unix socket in `socket_dir`,
/// serving TLS with `certs` when given.
///
/// Fast and disposable: fsync off, as tests may (benchmarks must not). Room for 300
/// connections, since replication tests hold many at once.
pub(crate) fn render(
    opts: &ClusterOptions,
    host: &str,
    port: u16,
    socket_dir: &Path,
    certs: Option<&ServerCerts>,
) -> String {
    let on_off = |on: bool| if on { "on" } else { "off" };
    let ours = [
        ("listen_addresses", host.to_owned()),
        ("port", port.to_string()),
        ("unix_socket_directories", socket_dir.display().to_string()),
        ("fsync", "off".to_owned()),
        ("track_commit_timestamp", on_off(opts.track_commit_timestamp).to_owned()),
        ("max_connections", "300".to_owned()),
        ("shared_buffers", "64MB".to_owned()),
    ];
    let tls = certs.into_iter().flat_map(|certs| {
        [
            ("ssl", "on".to_owned()),
            ("ssl_cert_file", certs.cert.display().to_string()),
            ("ssl_key_file", certs.key.display().to_string()),
        ]
    });
    let extra = opts.extra_settings.iter().map(|(name, value)| (name.as_str(), value.clone()));
    let mut text = String::from("# Written by dugong-testkit; rewritten on every start.\n");
    for (name, value) in ours.into_iter().chain(tls).chain(extra) {
        let _ = writeln!(text, "{name} = {}", quote(&value));
    }
    text
}

/// A `postgresql.conf` string literal: any setting's value may be written quoted.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ours_then_the_extras_quoted() {
        let opts = ClusterOptions {
            track_commit_timestamp: false,
            extra_settings: vec![("search_path".into(), r"it's a\b".into())],
            tls: false,
        };
        let text = render(&opts, "198.18.0.1", 15432, Path::new("/tmp/x"), None);
        assert!(text.contains("listen_addresses = '198.18.0.1'\n"));
        assert!(text.contains("port = '15432'\n"));
        assert!(text.contains("unix_socket_directories = '/tmp/x'\n"));
        assert!(text.contains("track_commit_timestamp = 'off'\n"));
        assert!(!text.contains("ssl"), "{text}");
        assert!(text.ends_with("search_path = 'it''s a\\\\b'\n"), "{text}");
    }

    #[test]
    fn tls_settings_name_the_certificate_files() {
        let certs = ServerCerts {
            ca_cert: "/c/tls/ca.crt".into(),
            cert: "/c/tls/server.crt".into(),
            key: "/c/tls/server.key".into(),
        };
        let text = render(&ClusterOptions::default(), HOST, 15432, Path::new("/tmp/x"), Some(&certs));
        assert!(text.contains("ssl = 'on'\nssl_cert_file = '/c/tls/server.crt'\nssl_key_file = '/c/tls/server.key'\n"));
    }
}
