//! `grpcs://` without `--ca` trusts the system's CAs — here the test's own CA, made the system's
//! through `SSL_CERT_FILE` as an operator would install a private CA. (Its own test binary: it
//! sets the process environment before the system's CAs are read, once per process.)

use std::time::Duration;

use dugong_client::{Client, ClientConfig, Idempotency};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn grpcs_without_ca_trusts_the_systems_cas() {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("system-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // Before anything reads the system's CAs (they are read once per process).
    std::env::set_var("SSL_CERT_FILE", &ca_file);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert.pem(), key.serialize_pem()));
    let server = Server::builder().tls_config(tls).unwrap().add_service(health);
    let task = tokio::spawn(server.serve_with_incoming(TcpListenerStream::new(listener)));

    let config = ClientConfig::servers([format!("grpcs://{addr}")])
        .unwrap()
        .with_connect_timeout(Duration::from_secs(2))
        .with_deadline(Duration::from_secs(5));
    let client = Client::new(config).await.expect("the system's CAs are readable");
    client
        .call(Idempotency::Idempotent, |channel| async move {
            HealthClient::new(channel).check(HealthCheckRequest::default()).await
        })
        .await
        .expect("the certificate chains to a CA the system trusts");
    task.abort();
}
