//! `dugong probe`, the health check of the image and the units: exit 0 on a
//! 2xx answer, 1 on anything else with the reason on stderr — a refusal, a
//! 503 or 404, a certificate it cannot trust — and `--wait` for a server that
//! is still starting; a client certificate for a server that demands one.

use dugong_testkit::{free_port, wait_for, TestCa};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const TOKEN: &str = "probe-test-token-0123456789";

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dugong() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.env("DUGONG_LOG", "warn").env_remove("DUGONG_PROBE_CA").stdin(Stdio::null());
    c
}

fn probe(args: &[&str]) -> Output {
    dugong().arg("probe").args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `dugong serve` on an embedded database in `dir`, with `extra` flags.
fn serve(dir: &std::path::Path, http: u16, extra: &[&str]) -> Running {
    let log = std::fs::File::create(dir.join(format!("serve-{http}.log"))).unwrap();
    Running(
        dugong()
            .current_dir(dir)
            .args(["serve", "--site", "0"])
            .args(extra)
            .env("DUGONG_API_TOKENS", TOKEN)
            .env("DUGONG_HTTP", format!("127.0.0.1:{http}"))
            .env("DUGONG_GRPC", format!("127.0.0.1:{}", free_port()))
            .env("DUGONG_METRICS", format!("127.0.0.1:{}", free_port()))
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn waits_for_readiness_and_tells_why_a_server_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let ready = format!("http://127.0.0.1:{http}/readyz");
    // Nothing listens yet.
    let out = probe(&["--timeout", "2s", &ready]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));

    // Waiting: the probe starts before the server does.
    let waiting = dugong()
        .args(["probe", "--wait", "60s", &ready])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _server = serve(dir.path(), http, &[]);
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{ready}: 200\n"));

    let out = probe(&[&format!("http://127.0.0.1:{http}/no/such/page")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(": 404"), "{}", stderr(&out));
    let out = probe(&["grpc://127.0.0.1:8001"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("http or https"), "{}", stderr(&out));
}

#[tokio::test]
async fn checks_the_servers_certificate_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "probe").unwrap();
    let cert = ca.server("site0", &["0.ha.test", "127.0.0.1"]).unwrap();
    let http = free_port();
    let (cert_path, key_path) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let _server = serve(dir.path(), http, &["--tls-cert", cert_path, "--tls-key", key_path]);
    let ca_path = ca.cert_path();
    let ready = format!("https://127.0.0.1:{http}/readyz");
    wait_for("the TLS server ready", Duration::from_secs(30), || async {
        probe(&["--ca", ca_path.to_str().unwrap(), &ready]).status.success().then_some(())
    })
    .await;
    // By the name the certificate carries, reached at an address.
    let out = probe(&["--ca", ca_path.to_str().unwrap(), "--tls-name", "0.ha.test", &ready]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = probe(&["--ca", ca_path.to_str().unwrap(), "--tls-name", "1.ha.test", &ready]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("TLS handshake with 1.ha.test failed"), "{}", stderr(&out));
    // A CA the server's certificate does not chain to.
    let stranger = TestCa::new(dir.path(), "stranger").unwrap();
    let out = probe(&["--ca", stranger.cert_path().to_str().unwrap(), &ready]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("TLS handshake"), "{}", stderr(&out));
    // Plain HTTP to the TLS port is answered, and not 2xx.
    let out = probe(&[&format!("http://127.0.0.1:{http}/readyz")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[tokio::test]
async fn shows_a_client_certificate_to_a_server_that_demands_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "mutual").unwrap();
    let cert = ca.server("site0", &["127.0.0.1"]).unwrap();
    let client = ca.client("prometheus", "prometheus").unwrap();
    let http = free_port();
    let ca_path = ca.cert_path();
    let ca_arg = ca_path.to_str().unwrap();
    let tls = ["--tls-cert", cert.cert.to_str().unwrap(), "--tls-key", cert.key.to_str().unwrap()];
    let _server = serve(dir.path(), http, &[&tls[..], &["--tls-client-ca", ca_arg]].concat());
    let ready = format!("https://127.0.0.1:{http}/readyz");
    let with_identity =
        ["--ca", ca_arg, "--client-cert", client.cert.to_str().unwrap(), "--client-key", client.key.to_str().unwrap()];
    let args: Vec<&str> = with_identity.iter().copied().chain([ready.as_str()]).collect();
    wait_for("the mutual-TLS server ready", Duration::from_secs(30), || async {
        probe(&args).status.success().then_some(())
    })
    .await;
    let out = probe(&["--ca", ca_arg, &ready]);
    assert_eq!(out.status.code(), Some(1), "no client certificate: {}", stderr(&out));
}
