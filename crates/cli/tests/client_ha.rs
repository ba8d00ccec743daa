//! The HA client against real `dugong serve` processes, failures injected as users meet them:
//! SIGTERM (a drain) under a load of writes that are not idempotent, SIGSTOP (a frozen server)
//! under a watch and under new sessions, and each class of failure as its own exit code of
//! `dugong client`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dugong_client::{CallError, Client, ClientConfig, Idempotency, Token};
use dugong_proto::v1 as pb;
use dugong_testkit::{free_port, wait_for, TestDns};
use futures_util::StreamExt;
use serde_json::Value;

const TOKEN: &str = "client-ha-token-0123456789";
const DEADLINE: Duration = Duration::from_secs(30);

/// A `dugong serve` process on its own SQLite file.
struct Site {
    child: Child,
    grpc: String,
    db: PathBuf,
}

impl Site {
    async fn start(dir: &Path, site: usize) -> Site {
        let grpc = format!("127.0.0.1:{}", free_port());
        let db = dir.join(format!("site{site}.sqlite"));
        let log = std::fs::File::create(dir.join(format!("site{site}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dugong"))
            .current_dir(dir)
            .args(["serve", "--site", &site.to_string(), "--grpc", &grpc])
            .args(["--db", &format!("sqlite:{}", db.display())])
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics", &format!("127.0.0.1:{}", free_port())])
            .args(["--drain-timeout", "10s"])
            .env("DUGONG_API_TOKENS", TOKEN)
            .env("DUGONG_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let site = Site { child, grpc, db };
        let url = format!("http://{}", site.grpc);
        wait_for("dugong serve to answer", DEADLINE, || async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone()).ok()?.connect().await.ok()?;
            pb::info_client::InfoClient::new(channel).server_info(pb::ServerInfoRequest {}).await.ok().map(drop)
        })
        .await;
        site
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "signal {signal} to {}", self.pid());
    }

    /// The version of each setting in this site's database.
    fn versions(&self) -> HashMap<String, i64> {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = conn.prepare("SELECT key, version FROM settings").unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(sites: &[&Site]) -> ClientConfig {
    ClientConfig::servers(sites.iter().map(|s| s.grpc.clone()))
        .unwrap()
        .with_token(Token::new(TOKEN).unwrap())
        .with_connect_timeout(Duration::from_secs(3))
        .with_request_timeout(Duration::from_secs(10))
        .with_reconnect_delay(Duration::from_secs(60))
}

/// A write's key and what the client said about it.
type Outcome = (String, Result<i64, CallError>);

async fn put(client: &Client, key: &str, value: u64) -> Result<i64, CallError> {
    client
        .call(Idempotency::NotIdempotent, |channel| {
            let request =
                pb::PutSettingRequest { key: key.into(), value_json: value.to_string(), expected_version: None };
            async move { pb::settings_client::SettingsClient::new(channel).put_setting(request).await }
        })
        .await
        .map(|r| r.into_inner().version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_a_load_of_writes_runs_each_exactly_once_and_tells_no_caller_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let sites = [Site::start(dir.path(), 0).await, Site::start(dir.path(), 1).await];
    let client = Client::new(config(&[&sites[0], &sites[1]])).await.unwrap();
    // 24 sessions, each writing its own key without an expected version (not idempotent: each
    // write that runs adds one to the key's version).
    let sessions: Vec<(String, Client)> = (0..24).map(|i| (format!("k{i:02}"), client.new_session())).collect();
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for (key, session) in &sessions {
        let (key, session, outcomes, stop) = (key.clone(), session.clone(), outcomes.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let result = put(&session, &key, n).await;
                outcomes.lock().unwrap().push((key.clone(), result));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let on: Vec<_> = sessions.iter().filter_map(|(_, s)| s.current_server()).collect();
    let victim = if on.iter().filter(|a| a.to_string() == sites[0].grpc).count() * 2 >= on.len() { 0 } else { 1 };
    sites[victim].signal(libc::SIGTERM);
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    // Per key: writes answered, writes reported unknown, and writes that ran on either site.
    let (v0, v1) = (sites[0].versions(), sites[1].versions());
    let mut tally: HashMap<String, (i64, i64)> = HashMap::new();
    for (key, result) in &outcomes {
        let entry = tally.entry(key.clone()).or_default();
        match result {
            Ok(_) => entry.0 += 1,
            Err(CallError::OutcomeUnknown { .. }) => entry.1 += 1,
            Err(other) => panic!("{key}: {other}"),
        }
    }
    let (mut unknown, mut unknown_ran) = (0, 0);
    for (key, (answered, unsure)) in &tally {
        let ran = v0.get(key).copied().unwrap_or(0) + v1.get(key).copied().unwrap_or(0);
        // Each write that was answered ran exactly once, on one site or the other.
        assert!(
            ran >= *answered && ran <= answered + unsure,
            "{key}: {answered} answered, {unsure} unknown, {ran} ran"
        );
        unknown += unsure;
        unknown_ran += ran - answered;
    }
    println!(
        "{} writes across the SIGTERM of site {victim} ({:?} ago): {unknown} unknown, of which {unknown_ran} ran",
        outcomes.len(),
        signalled.elapsed()
    );
    let unknowns: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_err()).collect();
    assert_eq!(unknown, 0, "a draining server left callers unknown: {unknowns:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_left_within_two_seconds_by_a_watch_and_at_once_by_new_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let sites = [Site::start(dir.path(), 0).await, Site::start(dir.path(), 1).await];
    let client = Client::new(config(&[&sites[0], &sites[1]])).await.unwrap();
    let mut events = dugong_client::cli::watch::events(&client, String::new(), vec![]);
    let first = tokio::time::timeout(DEADLINE, events.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first.event, Some(pb::watch_event::Event::Started(_))), "{first:?}");
    let on = client.current_server().unwrap().to_string();
    let (stopped, other) = if on == sites[0].grpc { (&sites[0], &sites[1]) } else { (&sites[1], &sites[0]) };
    stopped.signal(libc::SIGSTOP);
    let at = Instant::now();
    // The watch moves to the other server (a reset: its positions are another database's).
    loop {
        let event = tokio::time::timeout(DEADLINE, events.next()).await.expect("the watch moves on").unwrap().unwrap();
        if matches!(event.event, Some(pb::watch_event::Event::Started(_))) {
            break;
        }
    }
    let watch_moved = at.elapsed();
    assert_eq!(client.current_server().unwrap().to_string(), other.grpc);
    // A new `dugong client` run with the stopped server drawn first races the other after 250 ms.
    let mut runs = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let out = dugong_client(&["--server", &format!("{},{}", stopped.grpc, other.grpc), "info", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["server"].as_str(), Some(other.grpc.as_str()));
        runs.push(started.elapsed());
    }
    stopped.signal(libc::SIGCONT);
    println!("SIGSTOP: the watch moved after {watch_moved:?}; dugong client info runs took {runs:?}");
    assert!(watch_moved < Duration::from_millis(2500), "the watch stayed {watch_moved:?} on the stopped server");
    assert!(runs.iter().all(|t| *t < Duration::from_secs(2)), "{runs:?}");
}

/// `dugong client ARGS` with the token and quick timeouts.
fn dugong_client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dugong"))
        .args(["client", "--connect-timeout", "1s", "--deadline", "5s"])
        .args(args)
        .env("DUGONG_TOKEN", TOKEN)
        .env("DUGONG_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_of_failure_has_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start(dir.path(), 0).await;
    let here = ["--server", site.grpc.as_str()];

    // 0: success.
    let ok = dugong_client(&[&here[..], &["settings", "put", "k", "1"]].concat());
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));

    // 2: configuration.
    let bad = dugong_client(&["--url", "http://ha.test:8001", "--servers", "2", "info"]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("unsupported scheme \"http\""), "{}", stderr(&bad));
    assert_eq!(stderr(&bad).trim_end().lines().count(), 1, "one line: {}", stderr(&bad));
    let bad_value = dugong_client(&[&here[..], &["settings", "put", "k", "{not json"]].concat());
    assert_eq!(code(&bad_value), 2, "{}", stderr(&bad_value));

    // 3: name resolution.
    let dns = TestDns::start().await.unwrap();
    let dns_addr = dns.addr().to_string();
    let nothing = dugong_client(&["--url", "grpc://ha.test:8001", "--servers", "2", "--dns", &dns_addr, "info"]);
    assert_eq!(code(&nothing), 3, "{}", stderr(&nothing));

    // 4: all servers unavailable, each named with its cause, on one line; and as JSON.
    let dead = format!("127.0.0.1:{}", free_port());
    let down = dugong_client(&["--server", &format!("{dead},{dead}"), "info"]);
    assert_eq!(code(&down), 4, "{}", stderr(&down));
    assert!(stderr(&down).contains(&dead) && stderr(&down).contains("refused"), "{}", stderr(&down));
    assert_eq!(stderr(&down).trim_end().lines().count(), 1, "{}", stderr(&down));
    let json = dugong_client(&["--server", &dead, "--json", "info"]);
    assert_eq!(code(&json), 4);
    let error: Value = serde_json::from_str(stderr(&json).trim()).unwrap_or_else(|e| panic!("{e}: {}", stderr(&json)));
    assert_eq!(error["error"]["kind"], "unavailable");
    assert_eq!(error["error"]["exit_code"], 4);
    assert_eq!(error["error"]["servers"][0]["server"].as_str(), Some(dead.as_str()));

    // 5: authentication.
    let wrong =
        dugong_client(&[&here[..], &["--token", "not-the-token-0123456789", "settings", "put", "k", "2"]].concat());
    assert_eq!(code(&wrong), 5, "{}", stderr(&wrong));

    // 6: refused by the server: a missing record, a version conflict.
    let missing = dugong_client(&[&here[..], &["settings", "get", "no-such-key"]].concat());
    assert_eq!(code(&missing), 6, "{}", stderr(&missing));
    let conflict = dugong_client(&[&here[..], &["settings", "put", "k", "3", "--expected-version", "9"]].concat());
    assert_eq!(code(&conflict), 6, "{}", stderr(&conflict));

    // 7: outcome unknown: a write the server took in but could not finish within the request
    // timeout, because its database is locked; it runs once the lock is gone.
    let lock = rusqlite::Connection::open(&site.db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let unknown =
        dugong_client(&[&here[..], &["--request-timeout", "300ms", "settings", "put", "locked", "1"]].concat());
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(code(&unknown), 7, "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("may or may not have run"), "{}", stderr(&unknown));

    // The codes are in --help.
    let help = Command::new(env!("CARGO_BIN_EXE_dugong")).args(["client", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for line in ["Exit codes:", "3  name resolution", "4  all servers unavailable", "7  outcome unknown"] {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }
}
