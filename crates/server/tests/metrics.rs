//! What `/metrics` tells about the server process beyond its calls: when
//! the served certificate expires (following a reload), and the process's
//! resources under the names every Prometheus client exports.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::tls::{client, get};
use common::{config, TestServer, DEADLINE};
use dugong_server::TlsConfig;
use dugong_testkit::{wait_for, TestCa};

/// The value of an unlabelled series on a metrics page.
fn value(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.trim().parse().ok())
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test]
async fn the_certificates_expiry_and_the_process_are_exported_and_follow_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "metrics").unwrap();
    let cert = ca.server("server", &["localhost"]).unwrap();
    let db = format!("sqlite:{}", dir.path().join("site.sqlite").display()).parse().unwrap();
    let mut cfg = config(db);
    let mut tls = TlsConfig::new(&cert.cert, &cert.key);
    tls.reload_every = Duration::from_millis(100);
    cfg.tls = Some(tls);
    let s = TestServer::spawn(cfg).await;
    let tls_client = client(&ca.cert_path(), None, b"http/1.1");
    let scrape = || async {
        assert!(!s.finished(), "the server stopped");
        get(s.metrics, "localhost", tls_client.clone(), "/metrics").await.ok().map(|(_, body)| body)
    };
    let page = wait_for("metrics over TLS", DEADLINE, scrape).await;

    // TestCa's certificates are valid for 365 days from now.
    let expiry = value(&page, "dugong_tls_certificate_expiry_timestamp_seconds").expect(&page);
    let days = (expiry - now()) / 86_400.0;
    assert!((364.0..=365.0).contains(&days), "expires in {days} days");
    assert!(value(&page, "process_resident_memory_bytes").is_some_and(|v| v > 0.0), "{page}");
    assert!(value(&page, "process_open_fds").is_some_and(|v| v >= 3.0), "{page}");
    assert!(page.contains("# TYPE process_cpu_seconds_total counter"), "{page}");

    // An expired certificate put in place: the gauge says so after the reload.
    let expired = ca.expired_server("expired", &["localhost"]).unwrap();
    std::fs::copy(&expired.key, &cert.key).unwrap();
    std::fs::copy(&expired.cert, &cert.cert).unwrap();
    wait_for("the expiry to follow the reload", DEADLINE, || async {
        // The handshake itself fails once the expired certificate serves, so
        // read the recorder the page is rendered from.
        let page = dugong_server::metrics::render(&dugong_server::metrics::handle());
        value(&page, "dugong_tls_certificate_expiry_timestamp_seconds").filter(|t| *t < now())
    })
    .await;
    s.stop().await.unwrap();
}
