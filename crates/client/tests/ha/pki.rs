//! Test certificates: a CA made for the test, and server certificates it signs for the names
//! (DNS names or IP addresses) a test gives, as a deployment's own CA would.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tonic::transport::Identity;

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, format!("dugong test CA {name}"));
        let key = KeyPair::generate().expect("a CA key");
        Ca { issuer: CertifiedIssuer::self_signed(params, key).expect("a self-signed CA") }
    }

    /// The CA certificate as a PEM file in `dir`, for `--ca`.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.issuer.pem()).expect("write the CA file");
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key.
    pub fn server(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params.distinguished_name.push(DnType::CommonName, "dugong test server");
        let key = KeyPair::generate().expect("a server key");
        let cert = params.signed_by(&key, &self.issuer).expect("a signed server certificate");
        Identity::from_pem(cert.pem(), key.serialize_pem())
    }
}
