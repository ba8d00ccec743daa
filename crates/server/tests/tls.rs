//! TLS on every listener: handshakes with the right CA and name succeed on
//! HTTP, gRPC and metrics; a wrong CA, a wrong name and an expired
//! certificate are refused by the client; plain HTTP on a TLS port is told
//! so; certificates reload without a restart (a file change, or a nudge);
//! with a client CA, only clients with a certificate it signed get in.

mod common;

use std::path::Path;
use std::time::Duration;

use common::tls::{channel, client, get};
use common::{config, TestServer, DEADLINE};
use dugong_server::TlsConfig;
use dugong_testkit::{wait_for, CertFiles, TestCa};

/// A SQLite server serving TLS with `cert`, checked for changes every 100 ms.
async fn tls_server(dir: &Path, cert: &CertFiles, client_ca: Option<&Path>) -> TestServer {
    let db = format!("sqlite:{}", dir.join("site.sqlite").display()).parse().unwrap();
    let mut cfg = config(db);
    let mut tls = TlsConfig::new(&cert.cert, &cert.key);
    tls.client_ca = client_ca.map(Path::to_path_buf);
    tls.reload_every = Duration::from_millis(100);
    cfg.tls = Some(tls);
    TestServer::spawn(cfg).await
}

/// Waits until `/healthz` answers over TLS with `config`.
async fn wait_healthy(s: &TestServer, config: std::sync::Arc<rustls::ClientConfig>) {
    wait_for("the TLS server to answer /healthz", DEADLINE, || async {
        assert!(!s.finished(), "the server stopped while starting");
        get(s.http, "localhost", config.clone(), "/healthz").await.ok().filter(|(status, _)| *status == 200)
    })
    .await;
}

#[tokio::test]
async fn handshakes_succeed_only_with_the_right_ca_name_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "site").unwrap();
    let cert = ca.server("server", &["localhost", "127.0.0.1"]).unwrap();
    let s = tls_server(dir.path(), &cert, None).await;
    let good = client(&ca.cert_path(), None, b"http/1.1");
    wait_healthy(&s, good.clone()).await;

    // HTTP, console and metrics over TLS; gRPC over TLS (ALPN h2).
    let (status, body) = get(s.http, "localhost", good.clone(), "/api/v1/info").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(s.http, "127.0.0.1", good.clone(), "/login").await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = get(s.metrics, "localhost", good.clone(), "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("dugong_connections_open"), "{body}");
    let h2 = client(&ca.cert_path(), None, b"h2");
    let mut info = dugong_proto::v1::info_client::InfoClient::new(channel(s.grpc, "localhost", h2).await.unwrap());
    let reply = info.server_info(dugong_proto::v1::ServerInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(reply.site, "s0");

    // A stranger CA, a name the certificate does not carry.
    let stranger = TestCa::new(dir.path(), "stranger").unwrap();
    let err = get(s.http, "localhost", client(&stranger.cert_path(), None, b"http/1.1"), "/healthz").await.unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
    let err = get(s.http, "wrong.example", good.clone(), "/healthz").await.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    let h2 = client(&stranger.cert_path(), None, b"h2");
    assert!(channel(s.grpc, "localhost", h2).await.is_err(), "gRPC with a stranger CA");

    // Plain HTTP to a TLS port is answered in plain words, then closed.
    let plain = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(plain.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(plain.text().await.unwrap().contains("This port speaks TLS"));
    s.stop().await.unwrap();

    // An expired certificate: the server serves it, clients refuse it.
    let expired = ca.expired_server("expired", &["localhost"]).unwrap();
    let s = tls_server(dir.path(), &expired, None).await;
    wait_for("the expired server to listen", DEADLINE, || async {
        let err = get(s.http, "localhost", good.clone(), "/healthz").await.err()?;
        err.to_lowercase().contains("expired").then_some(())
    })
    .await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn certificates_reload_on_change_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new(dir.path(), "old").unwrap(), TestCa::new(dir.path(), "new").unwrap());
    let live = CertFiles { cert: dir.path().join("live.crt"), key: dir.path().join("live.key") };
    let install = |from: &CertFiles| {
        // Key first, then the certificate: a reload between the two fails
        // the pair check and keeps the old ones.
        std::fs::copy(&from.key, &live.key).unwrap();
        std::fs::copy(&from.cert, &live.cert).unwrap();
    };
    install(&old_ca.server("old-server", &["localhost"]).unwrap());
    let s = tls_server(dir.path(), &live, None).await;
    let (old, new) = (client(&old_ca.cert_path(), None, b"http/1.1"), client(&new_ca.cert_path(), None, b"http/1.1"));
    wait_healthy(&s, old.clone()).await;
    assert!(get(s.http, "localhost", new.clone(), "/healthz").await.is_err());

    // A broken file is refused and the old certificate keeps serving.
    std::fs::write(&live.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(s.http, "localhost", old.clone(), "/healthz").await.unwrap().0, 200);

    install(&new_ca.server("new-server", &["localhost"]).unwrap());
    wait_for("the new certificate to be served", DEADLINE, || async {
        get(s.http, "localhost", new.clone(), "/healthz").await.ok().filter(|(status, _)| *status == 200)
    })
    .await;
    assert!(get(s.http, "localhost", old.clone(), "/healthz").await.is_err(), "the old CA no longer works");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_nudge_reloads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new(dir.path(), "a").unwrap(), TestCa::new(dir.path(), "b").unwrap());
    let first = old_ca.server("first", &["localhost"]).unwrap();
    let db = format!("sqlite:{}", dir.path().join("site.sqlite").display()).parse().unwrap();
    let mut cfg = config(db);
    let mut tls = TlsConfig::new(&first.cert, &first.key);
    // Never by itself within the test: only the nudge (SIGHUP in `dugong serve`).
    tls.reload_every = Duration::from_secs(3600);
    let nudge = tls.reload.clone();
    cfg.tls = Some(tls);
    let s = TestServer::spawn(cfg).await;
    wait_healthy(&s, client(&old_ca.cert_path(), None, b"http/1.1")).await;
    let second = new_ca.server("second", &["localhost"]).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    std::fs::copy(&second.cert, &first.cert).unwrap();
    nudge.notify_one();
    let new = client(&new_ca.cert_path(), None, b"http/1.1");
    wait_for("the nudged reload", DEADLINE, || async {
        get(s.http, "localhost", new.clone(), "/healthz").await.ok().filter(|(status, _)| *status == 200)
    })
    .await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn with_a_client_ca_only_its_certificates_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "servers").unwrap();
    let clients = TestCa::new(dir.path(), "clients").unwrap();
    let stranger = TestCa::new(dir.path(), "elsewhere").unwrap();
    let cert = ca.server("server", &["localhost"]).unwrap();
    let s = tls_server(dir.path(), &cert, Some(&clients.cert_path())).await;
    let site1 = clients.client("site1", "site1.ha.test").unwrap();
    let with_cert = client(&ca.cert_path(), Some(&site1), b"http/1.1");
    wait_healthy(&s, with_cert.clone()).await;

    let without = client(&ca.cert_path(), None, b"http/1.1");
    let err = get(s.http, "localhost", without, "/healthz").await.unwrap_err();
    assert!(!err.is_empty(), "no client certificate: refused");
    let foreign = stranger.client("mallory", "mallory.example").unwrap();
    let err = get(s.http, "localhost", client(&ca.cert_path(), Some(&foreign), b"http/1.1"), "/healthz").await;
    assert!(err.is_err(), "a certificate from another CA is refused");
    let h2 = client(&ca.cert_path(), Some(&site1), b"h2");
    let mut info = dugong_proto::v1::info_client::InfoClient::new(channel(s.grpc, "localhost", h2).await.unwrap());
    assert!(info.server_info(dugong_proto::v1::ServerInfoRequest {}).await.is_ok());
    s.stop().await.unwrap();
}
