//! TLS on connections to PostgreSQL, with libpq's `sslmode` meanings:
//!
//! | sslmode       | TLS                        | the server's certificate                           |
//! |---------------|----------------------------|----------------------------------------------------|
//! | `disable`     | never                      | —                                                  |
//! | `prefer`      | when the server offers it  | not checked; the chain when `sslrootcert` is given |
//! | `require`     | always, or fail            | not checked; the chain when `sslrootcert` is given |
//! | `verify-ca`   | always, or fail            | the chain, to `sslrootcert` or the system's CAs    |
//! | `verify-full` | always, or fail            | the chain, and the name of the host connected to   |
//!
//! `prefer` and `require` without a CA protect against passive eavesdropping
//! only: whoever can intercept the connection can present a certificate of
//! their own. Checking the chain when `sslrootcert` is given with them is
//! libpq's rule too (kept there for compatibility). As in libpq, a connection
//! over a Unix socket never uses TLS.
//!
//! tokio-postgres knows only disable, prefer and require; the config tells it
//! `require` for the verify modes, and the rustls configuration built here does
//! the checking. Everything runs on the `ring` provider.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use dugong_config::{PgTarget, SslMode};
use dugong_core::DbId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::ReplicaError;

/// What a connection checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: any certificate will do (the handshake's signatures are still
    /// checked, so the server holds the key of the certificate it sent).
    Nothing,
    /// That it chains to a trusted CA, whatever name it carries.
    Chain,
    /// That it chains to a trusted CA and names the host connected to.
    ChainAndName,
}

impl Check {
    /// What `sslmode` checks, given whether `sslrootcert` is set.
    fn of(sslmode: SslMode, has_root_cert: bool) -> Option<Check> {
        match sslmode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require if has_root_cert => Some(Check::Chain),
            SslMode::Prefer | SslMode::Require => Some(Check::Nothing),
            SslMode::VerifyCa => Some(Check::Chain),
            SslMode::VerifyFull => Some(Check::ChainAndName),
        }
    }
}

/// The TLS connector for `target`, or `None` to connect without TLS (and with
/// `sslmode=disable` told to tokio-postgres).
pub(crate) fn connector(db: DbId, target: &PgTarget) -> Result<Option<MakeRustlsConnect>, ReplicaError> {
    let Some(check) = Check::of(target.sslmode, target.sslrootcert.is_some()) else { return Ok(None) };
    if unix_sockets_only(&target.config) {
        return Ok(None);
    }
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ReplicaError::Config(format!("{db}: cannot set up TLS: {err}")))?;
    let config = match check {
        Check::Nothing => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(WithoutHostName { roots: None, algorithms }))
        }
        Check::Chain => {
            let roots = roots(db, target)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(WithoutHostName { roots: Some(roots), algorithms }))
        }
        Check::ChainAndName => builder.with_root_certificates(roots(db, target)?),
    };
    Ok(Some(MakeRustlsConnect::new(config.with_no_client_auth())))
}

/// The `ring` provider, built once.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// libpq never uses TLS over a Unix socket, whatever sslmode says; neither does
/// a server, so asking would only fail `require`.
fn unix_sockets_only(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty() && config.get_hostaddrs().is_empty() && hosts.iter().all(|host| !matches!(host, Host::Tcp(_)))
}

/// The CAs to trust: those of `sslrootcert`, read at each connection so that a
/// renewed file is picked up, or else the system's.
fn roots(db: DbId, target: &PgTarget) -> Result<Arc<RootCertStore>, ReplicaError> {
    match &target.sslrootcert {
        Some(path) => root_cert_file(path)
            .map(Arc::new)
            .map_err(|reason| ReplicaError::Config(format!("{db}: sslrootcert {}: {reason}", path.display()))),
        None => system_roots().map_err(|reason| {
            ReplicaError::Config(format!(
                "{db}: sslmode={} checks the server's certificate against the system's CAs, but {reason}; \
                 set sslrootcert to the PEM file of the CA that signed it",
                target.sslmode.as_str()
            ))
        }),
    }
}

/// Every certificate of a PEM file, as trust anchors.
fn root_cert_file(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|err| format!("cannot be read: {err}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|err| format!("is not a valid PEM file: {err}"))?;
        roots.add(cert).map_err(|err| format!("holds a certificate that cannot be a trust anchor: {err}"))?;
    }
    if roots.is_empty() {
        return Err("holds no certificate (a `-----BEGIN CERTIFICATE-----` block)".to_owned());
    }
    Ok(roots)
}

/// The system's CAs (`/etc/ssl/certs` and the like, as OpenSSL finds them),
/// loaded once: they change with a package upgrade, not while we run.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static SYSTEM: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(match errors.is_empty() {
                    true => "none were found".to_owned(),
                    false => format!("none could be loaded ({})", errors.join("; ")),
                });
            }
            if !found.errors.is_empty() {
                tracing::warn!(errors = ?found.errors, "some system CA certificates could not be loaded");
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// The verifier of every mode that does not check the host name.
///
/// - `roots: None` — `prefer` and `require` without `sslrootcert`: any
///   certificate is accepted, as libpq does.
/// - `roots: Some` — `verify-ca` (and `prefer`/`require` with `sslrootcert`):
///   the certificate must chain to one of `roots`; the name it carries is not
///   checked. As with libpq without `sslcrl`, revocation is not checked.
///
/// The handshake's signatures are always verified with the provider's
/// algorithms, so the session is at least bound to the key of the certificate
/// shown.
#[derive(Debug)]
struct WithoutHostName {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_mode_checks() {
        assert_eq!(Check::of(SslMode::Disable, true), None);
        assert_eq!(Check::of(SslMode::Prefer, false), Some(Check::Nothing));
        assert_eq!(Check::of(SslMode::Require, false), Some(Check::Nothing));
        assert_eq!(Check::of(SslMode::Require, true), Some(Check::Chain));
        assert_eq!(Check::of(SslMode::VerifyCa, false), Some(Check::Chain));
        assert_eq!(Check::of(SslMode::VerifyFull, true), Some(Check::ChainAndName));
    }

    #[test]
    fn a_unix_socket_never_uses_tls() {
        let mut config = tokio_postgres::Config::new();
        config.host("/var/run/postgresql");
        assert!(unix_sockets_only(&config));
        config.host("db.example");
        assert!(!unix_sockets_only(&config));
        assert!(!unix_sockets_only(&tokio_postgres::Config::new()));
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("dugong-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(root_cert_file(&empty).unwrap_err().contains("holds no certificate"));
        let missing = root_cert_file(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.starts_with("cannot be read: "), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
