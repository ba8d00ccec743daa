//! TLS for connections to a [`PgTarget`], as its `sslmode` asks:
//!
//! | sslmode       | the server's certificate must…                              |
//! |---------------|-------------------------------------------------------------|
//! | `disable`     | — (no TLS)                                                  |
//! | `prefer`      | nothing (any certificate), or chain to `sslrootcert` if set |
//! | `require`     | nothing (any certificate), or chain to `sslrootcert` if set |
//! | `verify-ca`   | chain to `sslrootcert` (or the system's CAs)                |
//! | `verify-full` | chain to `sslrootcert` (or the system's CAs), name the host |
//!
//! These are libpq's rules. `require` and the verify modes never fall back to
//! a plain connection: tokio-postgres is told `require` for all three, and a
//! server that does not offer TLS is an error. A Unix socket never uses TLS,
//! as in libpq.
//!
//! The certificate checks are rustls' own (webpki); the modes that do not
//! check the host name use the same verifier and only forgive a name that
//! does not match, so expiry, key usage and the chain are still checked.
//! Everything runs on the `ring` provider.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::database::PgTarget;
use crate::sslmode::SslMode;

/// Why TLS for a target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// The CA file is missing, unreadable or holds no usable certificate.
    #[error("sslrootcert {path}: {reason}")]
    RootCert {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A verify mode without `sslrootcert`, and no system CA to trust.
    #[error(
        "sslmode={mode} checks the server's certificate against the system's CAs, but {reason}; \
         set sslrootcert to the PEM file of the CA that signed it"
    )]
    NoSystemRoots {
        /// The sslmode that needs a CA.
        mode: &'static str,
        /// Why the system's CAs are of no use.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What a connection checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing: any certificate (the handshake still proves the server holds
    /// the key of the certificate it sent).
    Nothing,
    /// The chain to a trusted CA, not the name.
    Chain,
    /// The chain and the host name.
    ChainAndName,
}

impl Check {
    /// What `sslmode` checks when `sslrootcert` is (or is not) given; `None`
    /// for no TLS.
    pub fn of(sslmode: SslMode, has_root_cert: bool) -> Option<Check> {
        match (sslmode, has_root_cert) {
            (SslMode::Disable, _) => None,
            (SslMode::Prefer | SslMode::Require, false) => Some(Check::Nothing),
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, _) => Some(Check::Chain),
            (SslMode::VerifyFull, _) => Some(Check::ChainAndName),
        }
    }
}

/// The TLS connector for `target`; `None` to connect without TLS. The CA file
/// is read now: build a new connector to pick up a renewed one.
pub fn connector(target: &PgTarget) -> Result<Option<MakeRustlsConnect>, PgTlsError> {
    connector_for(target.sslmode, target.sslrootcert.as_deref(), &target.config)
}

/// [`connector`] from the parts of a target: its `sslmode`, `sslrootcert`
/// and connection settings.
pub fn connector_for(
    sslmode: SslMode,
    sslrootcert: Option<&Path>,
    config: &tokio_postgres::Config,
) -> Result<Option<MakeRustlsConnect>, PgTlsError> {
    let Some(check) = Check::of(sslmode, sslrootcert.is_some()) else { return Ok(None) };
    if only_unix_sockets(config) {
        return Ok(None);
    }
    let provider = ring();
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(AnyCertificate { provider: provider.clone() }),
        Check::Chain | Check::ChainAndName => {
            let roots = match sslrootcert {
                Some(path) => Arc::new(read_roots(path)?),
                None => system_roots()
                    .map_err(|reason| PgTlsError::NoSystemRoots { mode: sslmode.as_str(), reason: reason.clone() })?,
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|err| PgTlsError::Rustls(rustls::Error::General(err.to_string())))?;
            match check {
                Check::ChainAndName => webpki,
                _ => Arc::new(AnyName { inner: webpki }),
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The `ring` provider, made once.
fn ring() -> Arc<CryptoProvider> {
    static RING: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    RING.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// Whether every host is a Unix socket directory (libpq and PostgreSQL never
/// speak TLS there).
fn only_unix_sockets(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty() && config.get_hostaddrs().is_empty() && hosts.iter().all(|h| !matches!(h, Host::Tcp(_)))
}

/// The certificates of a PEM file, as trust anchors.
pub fn read_roots(path: &Path) -> Result<RootCertStore, PgTlsError> {
    let fail = |reason: String| PgTlsError::RootCert { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|err| fail(format!("cannot be read: {err}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|err| fail(format!("is not valid PEM: {err}")))?;
        roots.add(cert).map_err(|err| fail(format!("holds a certificate that is not a usable CA: {err}")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no certificate".to_owned()));
    }
    Ok(roots)
}

/// The system's CAs, read once (they change with a package upgrade).
fn system_roots() -> Result<Arc<RootCertStore>, &'static String> {
    static SYSTEM: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!("no system CA certificate could be loaded ({} errors)", found.errors.len()));
            }
            Ok(Arc::new(roots))
        })
        .as_ref()
        .map(Arc::clone)
}

/// `verify-ca` (and `prefer`/`require` with a CA): webpki's checks, except
/// that the certificate need not name the host.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: any certificate, as libpq does. This
/// stops passive eavesdropping only.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
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
        assert_eq!(Check::of(SslMode::VerifyFull, false), Some(Check::ChainAndName));
    }

    #[test]
    fn no_tls_over_unix_sockets_or_when_disabled() {
        let socket = PgTarget::parse("host=/var/run/postgresql user=app sslmode=require").unwrap();
        assert!(connector(&socket).unwrap().is_none());
        let disabled = PgTarget::parse("postgres://app@db.example/x?sslmode=disable").unwrap();
        assert!(connector(&disabled).unwrap().is_none());
        let required = PgTarget::parse("postgres://app@db.example/x?sslmode=require").unwrap();
        assert!(connector(&required).unwrap().is_some());
    }
}
