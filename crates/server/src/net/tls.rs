//! TLS for the server's listeners (rustls on `ring`): the certificate chain
//! and key from PEM files, optionally a CA that every client certificate
//! must chain to, and reloading all of them while connections keep being
//! served.
//!
//! Each listener asks [`Tls::acceptor`] per connection, so a reload applies
//! to the next handshake; connections already open keep the session they
//! made. A reload that fails (a half-written file, a key that does not match
//! the certificate) keeps what was loaded and logs why.

use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, TlsConfig};
use crate::metrics;

/// What a listener speaks inside TLS, offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1: the REST API, the console, metrics.
    Http1,
    /// HTTP/2: gRPC.
    H2,
}

/// The loaded configuration of every listener, swapped whole on reload.
pub struct Tls {
    files: TlsConfig,
    current: RwLock<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    http1: Arc<ServerConfig>,
    h2: Arc<ServerConfig>,
    stamp: Vec<Option<SystemTime>>,
}

impl Tls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsConfig) -> Result<Arc<Tls>, ConfigError> {
        let loaded = load(&files)?;
        Ok(Arc::new(Tls { files, current: RwLock::new(loaded) }))
    }

    /// The acceptor for a new connection, with what was last loaded.
    pub fn acceptor(&self, alpn: Alpn) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(match alpn {
            Alpn::Http1 => current.http1.clone(),
            Alpn::H2 => current.h2.clone(),
        })
    }

    /// Loads the files again now; on failure keeps the old ones.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// Reloads when a file changed (checked every `reload_every`) or when
    /// told to, until `stop`.
    pub async fn watch(self: Arc<Tls>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.files.reload_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let asked = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => false,
                _ = self.files.reload.notified() => true,
            };
            let stamp = stamps(&self.files);
            let changed = stamp != self.current.read().unwrap_or_else(|p| p.into_inner()).stamp;
            if !(asked || changed) {
                continue;
            }
            match self.reload() {
                Ok(()) => {
                    metrics::tls_reload("ok");
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded");
                }
                Err(e) => {
                    metrics::tls_reload("failed");
                    // Keep retrying on the next tick only if the files change again.
                    if let Ok(mut current) = self.current.write() {
                        current.stamp = stamp;
                    }
                    tracing::error!(error = %e, "TLS reload failed; still serving the certificates loaded before");
                }
            }
        }
    }
}

/// The modification times of the files, to notice a change.
fn stamps(files: &TlsConfig) -> Vec<Option<SystemTime>> {
    let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()];
    paths.iter().flatten().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn load(files: &TlsConfig) -> Result<Loaded, ConfigError> {
    let stamp = stamps(files);
    let chain = certificates(&files.cert, "--tls-cert")?;
    let not_after = chain.first().and_then(|c| metrics::certificate::not_after(c));
    let key = private_key(&files.key)?;
    let provider = ring();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "--tls-client-ca")? {
                roots.add(cert).map_err(|e| {
                    ConfigError::Tls(format!("--tls-client-ca {}: not a usable CA certificate: {e}", path.display()))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::Tls(format!("--tls-client-ca {}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        ConfigError::Tls(format!(
            "--tls-cert {} and --tls-key {} do not make a usable pair: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    let with_alpn = |protocols: &[&[u8]]| {
        let mut c = config.clone();
        c.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    };
    metrics::tls_certificate_loaded(not_after);
    Ok(Loaded { http1: with_alpn(&[b"http/1.1"]), h2: with_alpn(&[b"h2"]), stamp })
}

fn certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let fail = |reason: String| ConfigError::Tls(format!("{flag} {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("holds no certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let fail = |reason: String| ConfigError::Tls(format!("--tls-key {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| fail(format!("holds no usable private key: {e}")))
}

/// The `ring` provider, made once.
fn ring() -> Arc<CryptoProvider> {
    static RING: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    RING.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}
