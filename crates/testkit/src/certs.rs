//! Certificates for TLS tests of our own servers and clients, made in-process
//! (rcgen on `ring`): a CA per test, server certificates for the names and
//! addresses a test connects to, client certificates for mutual TLS, and
//! certificates already expired. Everything is written as PEM files into a
//! directory the test owns.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::error::TestkitError;

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throw-away certificate authority.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl TestCa {
    /// A new CA named `name` (each test's CA its own name, so a stranger's
    /// certificate is unknown rather than forged), its certificate written to
    /// `dir/<name>-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> Result<TestCa, TestkitError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, format!("dugong test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        let ca = TestCa {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        };
        write(&ca.cert_path(), &ca.cert_pem)?;
        Ok(ca)
    }

    /// The CA's certificate (PEM), what clients and servers trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid now.
    pub fn server(&self, file: &str, names: &[&str]) -> Result<CertFiles, TestkitError> {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for `names` that expired yesterday.
    pub fn expired_server(&self, file: &str, names: &[&str]) -> Result<CertFiles, TestkitError> {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, file: &str, name: &str) -> Result<CertFiles, TestkitError> {
        self.issue(file, &[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Result<CertFiles, TestkitError> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("dugong test"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(24 * 3600);
        if expired {
            params.not_before = (now - 30 * day).into();
            params.not_after = (now - day).into();
        } else {
            params.not_before = (now - day).into();
            params.not_after = (now + 365 * day).into();
        }
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        let files = CertFiles { cert: self.dir.join(format!("{file}.crt")), key: self.dir.join(format!("{file}.key")) };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, pem: &str) -> Result<(), TestkitError> {
    std::fs::write(path, pem).map_err(|err| TestkitError::io(format!("writing {}", path.display()), err))
}

fn fail(err: rcgen::Error) -> TestkitError {
    TestkitError::io("making a test certificate", std::io::Error::other(err.to_string()))
}
