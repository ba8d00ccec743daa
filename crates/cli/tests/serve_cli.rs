//! `dugong serve` as operators run it: the real binary, configured from the
//! environment, refusing unsafe starts, serving, and draining on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dugong_testkit::{free_port, wait_for};

const TOKEN: &str = "cli-token-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(30);

fn dugong(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.current_dir(dir.path()).env("DUGONG_LOG", "info").env_remove("DUGONG_API_TOKENS").stdin(Stdio::null());
    c
}

#[test]
fn without_tokens_it_refuses_to_start_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dugong(&dir).args(["serve", "--site", "0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no API tokens configured") && stderr.contains("--insecure-no-auth"), "{stderr}");

    let out = dugong(&dir).args(["serve", "--site", "0", "--db", "mysql://x"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dugong(&dir).args(["serve", "--site", "a b"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--site \"a b\""));
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn it_serves_the_embedded_database_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = dugong(&dir)
        .args(["serve", "--site", "7"])
        .env("DUGONG_API_TOKENS", TOKEN)
        .env("DUGONG_GRPC", format!("127.0.0.1:{grpc}"))
        .env("DUGONG_HTTP", format!("127.0.0.1:{http}"))
        .env("DUGONG_METRICS", format!("127.0.0.1:{metrics}"))
        .stderr(log)
        .spawn()
        .unwrap();
    let running = Running(child);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    wait_for("dugong serve to be ready", DEADLINE, || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let info: serde_json::Value = client.get(format!("{base}/api/v1/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!((info["site"].as_str(), info["engine"].as_str()), (Some("7"), Some("sqlite")));
    assert!(dir.path().join("dugong-7.sqlite").exists(), "the embedded default lives in the working directory");
    let r = client
        .put(format!("{base}/api/v1/settings/greeting"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"value": "hej"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = client.get(format!("http://127.0.0.1:{metrics}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("dugong_api_requests_total"), "{text}");

    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(running.0.id() as i32, libc::SIGTERM) };
    let running = std::sync::Mutex::new(running);
    let status = wait_for("dugong serve to exit after SIGTERM", DEADLINE, || {
        let exited = running.lock().unwrap().0.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("SIGTERM: draining") && log.contains("stopped"), "{log}");
    assert!(!log.contains(TOKEN) && !log.contains("hej"), "no token or value in the log: {log}");
}

/// `--create-admin` stores a console user with the password from standard
/// input or a file (never the command line), and exits without serving.
#[test]
fn create_admin_reads_the_password_from_stdin_or_a_file() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("site.sqlite").display());
    let mut child = dugong(&dir)
        .args(["serve", "--site", "0", "--db", &db, "--create-admin", "admin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"first password 123\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("console user created \"admin\""), "{stderr}");
    assert!(!stderr.contains("first password"), "the password is never printed: {stderr}");

    let file = dir.path().join("password");
    std::fs::write(&file, "second password 456\n").unwrap();
    let out = dugong(&dir)
        .args(["serve", "--site", "0", "--db", &db, "--create-admin", "admin", "--password-file"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("password changed for \"admin\""), "{stderr}");

    let stored: String = rusqlite_hash(&dir.path().join("site.sqlite"));
    assert!(stored.starts_with("$argon2id$"), "stored as an argon2id hash");

    // Too short, or nothing at all: refused.
    std::fs::write(&file, "short\n").unwrap();
    let out = dugong(&dir)
        .args(["serve", "--site", "0", "--db", &db, "--create-admin", "admin", "--password-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));
    let out = dugong(&dir).args(["serve", "--site", "0", "--db", &db, "--create-admin", "admin"]).output().unwrap();
    assert!(!out.status.success(), "empty standard input");
}

/// The stored hash of console user `admin`, read with the store.
fn rusqlite_hash(path: &std::path::Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let url: dugong_store::DbUrl = format!("sqlite:{}", path.display()).parse().unwrap();
        let store = dugong_store::Store::open(&url, dugong_store::StoreOptions::default()).await.unwrap();
        store.console_user("admin").await.unwrap().unwrap().password_hash
    })
}
