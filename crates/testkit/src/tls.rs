//! Certificates for a TLS test server: a throw-away CA and a server certificate it signs for
//! `127.0.0.1` and `localhost`, made with the `openssl` command (Debian's `postgresql`
//! package pulls it in through `ssl-cert`).
//!
//! The server certificate is what a real deployment has: a separate CA, the names in the
//! subject alternative name, `CA:FALSE`, `serverAuth`. Keys are P-256, quick to make.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::TestkitError;
use crate::process::{self, RunAs};

/// The extensions of both certificates, and what `openssl req` needs to run without a
/// system configuration.
const OPENSSL_CONF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = dugong-testkit

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The files a TLS server is started with.
#[derive(Debug, Clone)]
pub(crate) struct ServerCerts {
    /// The CA's certificate, for clients' `sslrootcert`.
    pub(crate) ca_cert: PathBuf,
    /// `ssl_cert_file`.
    pub(crate) cert: PathBuf,
    /// `ssl_key_file`: owned by the server user, mode 0600, as PostgreSQL demands.
    pub(crate) key: PathBuf,
}

/// Makes a new CA and a server certificate under `dir/tls`, readable by the server.
pub(crate) fn make(dir: &Path, run_as: RunAs) -> Result<ServerCerts, TestkitError> {
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).map_err(|err| TestkitError::io(format!("creating {}", tls.display()), err))?;
    let conf = tls.join("openssl.cnf");
    std::fs::write(&conf, OPENSSL_CONF).map_err(|err| TestkitError::io(format!("writing {}", conf.display()), err))?;
    let certs = ServerCerts { ca_cert: tls.join("ca.crt"), cert: tls.join("server.crt"), key: tls.join("server.key") };

    let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", "-days", "3650"];
    // Each CA its own name: clients look a certificate's issuer up by name, and two CAs of
    // one name would make a wrong CA look like a forged signature rather than a stranger.
    let name = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let subject = format!("/CN=dugong-testkit CA {name}");
    let ca_out = ["-subj", &subject, "-keyout", "ca.key", "-out", "ca.crt"];
    openssl(&tls, "making the test CA", &[&ca[..], &new_key, &ca_out].concat())?;
    let request = ["req", "-new", "-config", "openssl.cnf", "-subj", "/CN=localhost"];
    let request_out = ["-keyout", "server.key", "-out", "server.csr"];
    openssl(&tls, "making the test server's key", &[&request[..], &new_key, &request_out].concat())?;
    let sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "2"];
    let sign_out = ["-days", "3650", "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.crt"];
    openssl(&tls, "signing the test server's certificate", &[&sign[..], &sign_out].concat())?;

    let key_mode = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(&certs.key, key_mode)
        .map_err(|err| TestkitError::io(format!("making {} private", certs.key.display()), err))?;
    for path in [&tls, &certs.cert, &certs.key] {
        run_as.chown(path)?;
    }
    Ok(certs)
}

/// Runs `openssl ARGS` in `dir`, where the configuration file is.
fn openssl(dir: &Path, what: &str, args: &[&str]) -> Result<(), TestkitError> {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    let what = format!("{what} with openssl (TLS test clusters need it: apt-get install -y openssl)");
    process::run(cmd, &what).map(drop)
}
