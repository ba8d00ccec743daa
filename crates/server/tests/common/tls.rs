//! TLS clients for tests of the server's listeners: HTTPS over hyper and gRPC
//! over tonic, both on rustls with the CA (and client certificate) a test
//! chooses, so a refused handshake shows as an error naming why.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use dugong_testkit::CertFiles;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client configuration trusting `ca`, presenting `identity` when given,
/// offering `alpn`.
pub fn client(ca: &Path, identity: Option<&CertFiles>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert).unwrap().map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Connects to `addr` checking the certificate against `name`.
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())
}

/// `GET path` over HTTPS: the status and body, or why it failed.
pub async fn get(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let tls = connect(addr, name, config).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", format!("{name}:{}", addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A gRPC channel over TLS to `addr`, checking the certificate against `name`.
pub async fn channel(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, String> {
    let name = name.to_string();
    tonic::transport::Endpoint::from_shared(format!("http://{name}:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (name, config) = (name.clone(), config.clone());
            async move { connect(addr, &name, config).await.map(TokioIo::new).map_err(std::io::Error::other) }
        }))
        .await
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
}
