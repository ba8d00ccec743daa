//! `dugong client` through the real binary against two real `dugong serve` processes: it reads
//! and writes the API, fails over when the server that answered dies, and names every server
//! when none answers.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dugong_testkit::{free_port, wait_for};

const TOKEN: &str = "client-cli-token-0123456789";
const DEADLINE: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    grpc: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &tempfile::TempDir, site: usize) -> Server {
    let grpc = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join(format!("site{site}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dugong"))
        .current_dir(dir.path())
        .args(["serve", "--site", &site.to_string(), "--grpc", &grpc])
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics", &format!("127.0.0.1:{}", free_port())])
        .env("DUGONG_API_TOKENS", TOKEN)
        .env("DUGONG_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Server { child, grpc }
}

fn client(servers: &[&Server], args: &[&str]) -> Output {
    let list: Vec<&str> = servers.iter().map(|s| s.grpc.as_str()).collect();
    Command::new(env!("CARGO_BIN_EXE_dugong"))
        .args(["client", "--server", &list.join(","), "--connect-timeout", "500ms", "--deadline", "5s"])
        .args(args)
        .env("DUGONG_TOKEN", TOKEN)
        .env("DUGONG_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "dugong client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn the_client_command_reads_writes_and_fails_over_between_real_servers() {
    let dir = tempfile::tempdir().unwrap();
    let mut sites = [serve(&dir, 0), serve(&dir, 1)];
    // Ready when it answers the client's health check, not when it accepts
    // TCP: a loaded machine can take longer than the client's 500 ms between
    // the two.
    for site in &sites {
        wait_for("dugong serve to answer a health check", DEADLINE, || {
            let answered = client(&[site], &["info", "--json"]).status.success();
            async move { answered.then_some(()) }
        })
        .await;
    }
    let both = [&sites[0], &sites[1]];

    // Writes and reads go through whichever server the session drew.
    let put = json(&client(&both, &["settings", "put", "greeting", r#"{"text": "hej"}"#, "--expected-version", "0"]));
    assert_eq!((put["key"].as_str(), put["version"].as_i64()), (Some("greeting"), Some(1)), "{put}");
    let info = json(&client(&both, &["info", "--json"]));
    let answered = info["site"].as_u64().unwrap() as usize;
    assert_eq!(info["server"].as_str(), Some(sites[answered].grpc.as_str()), "{info}");

    // A record that is not there is an error that says so, not an empty success.
    let missing = client(&both, &["apps", "get", "6f1c2a7e-0000-4000-8000-000000000000"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).to_lowercase().contains("not found"), "{missing:?}");

    // Kill the server that answered: the next call is answered by the other, without error.
    let _ = sites[answered].child.kill();
    let _ = sites[answered].child.wait();
    let other = 1 - answered;
    for _ in 0..5 {
        let info = json(&client(&[&sites[0], &sites[1]], &["info", "--json"]));
        assert_eq!(info["site"].as_u64(), Some(other as u64), "{info}");
    }

    // With both gone, one error names every server and why.
    let _ = sites[other].child.kill();
    let _ = sites[other].child.wait();
    let down = client(&[&sites[0], &sites[1]], &["info"]);
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    for site in &sites {
        assert!(stderr.contains(&site.grpc), "the error does not name {}: {stderr}", site.grpc);
    }
}
