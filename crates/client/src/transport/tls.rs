//! TLS for `grpcs://`: the servers' certificates are checked against the CAs of `--ca FILE` or
//! the system's, and against the DNS name the client used to find the server — `0.ha.test` for
//! the first of `grpcs://ha.test:8443 --servers 2`, not `ha.test` — or the IP address when the
//! server was given as one. HTTP/2 is negotiated with ALPN, as gRPC requires.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::describe_error;
use crate::config::ConfigError;

/// The TLS side of connecting: one rustls configuration for every server.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
}

impl Tls {
    /// Trusting the CAs in `ca` (a PEM file), or the system's when `None`.
    pub fn new(ca: Option<&Path>) -> Result<Tls, ConfigError> {
        let roots = match ca {
            Some(path) => {
                Arc::new(ca_file(path).map_err(|reason| ConfigError::Ca { path: path.to_path_buf(), reason })?)
            }
            None => system_roots().map_err(ConfigError::NoSystemRoots)?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// The TLS handshake on `tcp`, checking the certificate against `name` (a DNS name), or
    /// against the address when there is no name or it is an IP literal.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        name: Option<&str>,
    ) -> Result<TlsStream<TcpStream>, String> {
        let server_name = server_name(addr, name)?;
        let shown = server_name.to_str().into_owned();
        let stream = self
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {shown} failed: {}", describe_error(&e)))?;
        let (_, session) = stream.get_ref();
        if session.alpn_protocol().is_some_and(|p| p != b"h2") {
            return Err(format!("TLS with {shown}: the server does not speak HTTP/2 (ALPN)"));
        }
        Ok(stream)
    }
}

/// What the certificate must name: the DNS name used, else the IP address.
fn server_name(addr: SocketAddr, name: Option<&str>) -> Result<ServerName<'static>, String> {
    match name.filter(|n| n.parse::<IpAddr>().is_err()) {
        Some(name) => {
            ServerName::try_from(name.to_string()).map_err(|e| format!("{name} is not a valid TLS name: {e}"))
        }
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    }
}

/// Every certificate of a PEM file, as trust anchors.
fn ca_file(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("is not a valid PEM file: {e}"))?;
        roots.add(cert).map_err(|e| format!("holds a certificate that cannot be a trust anchor: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no certificate (a `-----BEGIN CERTIFICATE-----` block)".into());
    }
    Ok(roots)
}

/// The system's CAs (`SSL_CERT_FILE`, `/etc/ssl/certs` and the like), read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static SYSTEM: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            match (added, found.errors.first()) {
                (0, Some(e)) => Err(format!("they cannot be read ({e})")),
                (0, None) => Err("the system has none".into()),
                _ => Ok(Arc::new(roots)),
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_checked_against_the_name_used_or_the_address() {
        let addr: SocketAddr = "10.0.0.5:8443".parse().unwrap();
        assert_eq!(server_name(addr, Some("0.ha.test")).unwrap().to_str(), "0.ha.test");
        assert_eq!(server_name(addr, Some("10.0.0.5")).unwrap().to_str(), "10.0.0.5");
        assert_eq!(server_name(addr, None).unwrap().to_str(), "10.0.0.5");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        assert!(ca_file(&empty).unwrap_err().contains("holds no certificate"));
        assert!(ca_file(&dir.path().join("missing.pem")).unwrap_err().contains("cannot be read"));
        let e = Tls::new(Some(&empty)).err().unwrap().to_string();
        assert!(e.starts_with("--ca ") && e.contains("empty.pem"), "{e}");
    }
}
