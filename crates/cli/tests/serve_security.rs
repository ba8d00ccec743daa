//! `dugong serve` and `dugong users` as an operator runs them, for what the
//! security review asked: logs at TRACE carry no row value, token, password
//! or login name (PostgreSQL's driver would log statement parameters); the
//! TLS flags serve TLS and SIGHUP reloads; the allowlist comes from the
//! environment; users are managed from the command line and audited.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dugong_testkit::{free_port, wait_for, Cluster, TestCa};

const TOKEN: &str = "cli-token-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(30);

fn dugong(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.current_dir(dir.path()).env_remove("DUGONG_API_TOKENS").env_remove("DUGONG_LOG").stdin(Stdio::null());
    c
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dugong serve` with `args` and the environment `env`, logging to
/// `serve.log` in `dir`; returns it and its HTTP port.
fn serve(dir: &tempfile::TempDir, args: &[&str], env: &[(&str, String)]) -> (Running, u16) {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut cmd = dugong(dir);
    cmd.arg("serve")
        .args(args)
        .env("DUGONG_API_TOKENS", TOKEN)
        .env("DUGONG_GRPC", format!("127.0.0.1:{grpc}"))
        .env("DUGONG_HTTP", format!("127.0.0.1:{http}"))
        .env("DUGONG_METRICS", format!("127.0.0.1:{metrics}"))
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Running(cmd.spawn().unwrap()), http)
}

#[tokio::test]
async fn trace_logs_carry_no_values_tokens_passwords_or_login_names() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("redacted").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "the-password-of-alice\n").unwrap();
    let url = cluster.url(&db);
    let users = |cmd: &[&str]| {
        let out = dugong(&dir)
            .args(["users", "--site", "0", "--db", &url, "--password-file", "pw"])
            .args(cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    users(&["create", "alice-login-name"]);
    let (running, http) = serve(
        &dir,
        &["--site", "0", "--console-insecure-cookie"],
        &[("DUGONG_DB", url.clone()), ("DUGONG_LOG", "trace".into())],
    );
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    wait_for("dugong serve to be ready", DEADLINE, || async {
        client.get(format!("{base}/readyz")).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    let r = client
        .put(format!("{base}/api/v1/settings/k"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"value": "row-value-that-must-not-be-logged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = client.get(format!("{base}/api/v1/settings/k")).send().await.unwrap().text().await.unwrap();
    assert!(got.contains("row-value-that-must-not-be-logged"));
    let login = |name: &'static str, password: &'static str| {
        client.post(format!("{base}/login")).form(&[("name", name), ("password", password), ("next", "/apps")]).send()
    };
    assert_eq!(login("typed-into-the-name-field", "x").await.unwrap().status(), 401);
    assert_eq!(login("alice-login-name", "the-password-of-alice").await.unwrap().status(), 303);
    // A connection that closes before a request: a DEBUG line of our own.
    drop(tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap());
    wait_for("the DEBUG line", DEADLINE, || async {
        std::fs::read_to_string(dir.path().join("serve.log")).ok()?.contains("DEBUG").then_some(())
    })
    .await;
    drop(running);

    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("audit"), "the log has audit lines: {log}");
    for secret in [
        "row-value-that-must-not-be-logged",
        TOKEN,
        "the-password-of-alice",
        "typed-into-the-name-field",
        "alice-login-name",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
    assert!(users(&["list"]).contains("alice-login-name"));
}

#[tokio::test]
async fn tls_flags_serve_tls_and_sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cli").unwrap();
    let cert = ca.server("server", &["localhost", "127.0.0.1"]).unwrap();
    let (cert_path, key_path) = (cert.cert.display().to_string(), cert.key.display().to_string());
    let (running, http) = serve(
        &dir,
        &["--site", "0", "--tls-cert", &cert_path, "--tls-key", &key_path, "--tls-reload-check", "1h"],
        &[("DUGONG_ALLOW", "127.0.0.1/32,10.0.0.0/8".into()), ("DUGONG_LOG", "info".into())],
    );
    // Plain HTTP to the TLS port is told what to use.
    let text = wait_for("dugong serve to listen", DEADLINE, || async {
        let r = reqwest::get(format!("http://127.0.0.1:{http}/healthz")).await.ok()?;
        (r.status() == 400).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(text.contains("This port speaks TLS"), "{text}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(running.0.id() as i32, libc::SIGHUP) };
    wait_for("the reload to be logged", DEADLINE, || async {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).ok()?;
        log.contains("TLS certificates reloaded").then_some(())
    })
    .await;
    drop(running);

    // A bad allowlist is refused before any port is taken.
    let out = dugong(&dir)
        .args(["serve", "--site", "0", "--allow", "10.0.0.1/8"])
        .env("DUGONG_API_TOKENS", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 10.0.0.0/8"));
}

#[test]
fn users_from_the_command_line_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "a long enough password\n").unwrap();
    let run = |args: &[&str]| {
        let out = dugong(&dir).args(["users", "--site", "9", "--password-file", "pw"]).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(run(&["create", "carol"]).0);
    let (ok, _, err) = run(&["create", "carol"]);
    assert!(!ok && err.contains("carol"), "{err}");
    assert!(run(&["disable", "carol"]).0);
    assert!(run(&["list"]).1.contains("carol") && run(&["list"]).1.contains("disabled"));
    assert!(run(&["password", "carol"]).0);
    assert!(run(&["delete", "carol"]).0);
    let (ok, _, err) = run(&["enable", "carol"]);
    assert!(!ok && err.contains("not found"), "{err}");

    let audit = rusqlite::Connection::open(dir.path().join("dugong-9.sqlite"))
        .unwrap()
        .prepare("SELECT actor_kind, action, key FROM audit_log ORDER BY at")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(actions, ["create", "disable", "password_reset", "delete"]);
    assert!(audit.iter().all(|(kind, _, key)| kind == "cli" && key == "carol"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("dugong-9.sqlite")).unwrap().permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600, "the embedded database is private");
}
