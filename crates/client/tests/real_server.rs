//! The HA client and `dugong client` against real application servers: `dugong_server::run`
//! in-process, each in its own runtime on its own thread (so killing one drops its listener and
//! every connection at once, like a process dying), on SQLite files or a shared PostgreSQL
//! database.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use dugong_client::api::Token;
use dugong_client::cli::{run_with, Args, Command};
use dugong_client::{Client, ClientConfig};
use dugong_proto::v1 as pb;
use dugong_server::{Auth, Listeners, ServerConfig};
use dugong_store::DbUrl;
use dugong_testkit::{wait_for, Cluster};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const TOKEN: &str = "client-test-token-0123456789";
/// How long a test waits for anything.
const DEADLINE: Duration = Duration::from_secs(20);

/// One application server in its own runtime.
struct Server {
    grpc: SocketAddr,
    site: String,
    stop: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    async fn sqlite(site: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let db: DbUrl = format!("sqlite:{}", dir.path().join("site.sqlite").display()).parse().unwrap();
        let mut server = Server::start(site, db).await;
        server._dir = Some(dir);
        server
    }

    /// A server over `db`, answering once `Info.ServerInfo` works.
    async fn start(site: &str, db: DbUrl) -> Server {
        let mut config = ServerConfig::new(site, db, Auth::new(vec![dugong_server::Token::new(TOKEN).unwrap()], false));
        config.watch_poll = Duration::from_millis(20);
        config.health_interval = Duration::from_millis(100);
        config.drain_timeout = Duration::from_secs(5);
        let bind = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).unwrap();
            listener
        };
        let (grpc, http) = (bind(), bind());
        let addr = grpc.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (kill, killed) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let task = rt.spawn(async move {
                let listeners = Listeners {
                    grpc: tokio::net::TcpListener::from_std(grpc).unwrap(),
                    http: tokio::net::TcpListener::from_std(http).unwrap(),
                    metrics: None,
                };
                dugong_server::run(listeners, config, async move {
                    let _ = stopped.await;
                })
                .await
            });
            rt.block_on(async {
                tokio::select! {
                    ended = task => { ended.expect("server task").expect("the server ran"); }
                    _ = killed => {}
                }
            });
            // Every task, listener and connection goes at once.
            rt.shutdown_background();
        });
        let server = Server {
            grpc: addr,
            site: site.into(),
            stop: Some(stop),
            kill: Some(kill),
            thread: Some(thread),
            _dir: None,
        };
        let url = format!("http://{addr}");
        wait_for("the server to answer ServerInfo", DEADLINE, || async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone()).ok()?.connect().await.ok()?;
            let mut info = pb::info_client::InfoClient::new(channel);
            info.server_info(pb::ServerInfoRequest {}).await.ok().map(|_| ())
        })
        .await;
        server
    }

    /// Shuts down the way SIGTERM does: watchers told `GoingAway`, calls in flight finished.
    fn begin_shutdown(&mut self) {
        self.stop.take();
    }

    /// Dies at once: listener and connections closed, nothing finished.
    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client of `servers` with the token, with timeouts for tests.
async fn client(servers: &[&Server]) -> Client {
    Client::new(config(servers).with_token(Token::new(TOKEN).unwrap())).await.expect("a client")
}

/// A client of `servers` without a token.
async fn anonymous(servers: &[&Server]) -> Client {
    Client::new(config(servers)).await.expect("a client")
}

fn config(servers: &[&Server]) -> ClientConfig {
    ClientConfig::servers(servers.iter().map(|s| s.grpc.to_string()))
        .expect("good servers")
        .with_connect_timeout(Duration::from_millis(500))
        .with_request_timeout(Duration::from_secs(3))
        .with_deadline(Duration::from_secs(10))
        .with_reconnect_delay(Duration::from_secs(60))
}

#[derive(Parser)]
struct Dugong {
    #[command(flatten)]
    args: Args,
}

/// A `dugong client` command line (after the connection flags).
fn command(argv: &[&str]) -> (bool, Command) {
    let mut full = vec!["dugong-client", "--server", "127.0.0.1:1"];
    full.extend_from_slice(argv);
    let args = Dugong::try_parse_from(full).unwrap_or_else(|e| panic!("{e}")).args;
    (args.json, args.command)
}

/// Runs a command with `client` and returns its output as JSON.
async fn json_of(client: &Client, argv: &[&str]) -> anyhow::Result<Value> {
    let (json, command) = command(argv);
    let mut out = Vec::new();
    assert_eq!(run_with(client, json, command, &mut out).await?, ExitCode::SUCCESS);
    Ok(serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{argv:?}: {e}: {}", String::from_utf8_lossy(&out))))
}

/// A writer that sends each line it is given.
struct Lines {
    tx: mpsc::UnboundedSender<String>,
    buf: Vec<u8>,
}

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let _ = self.tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `dugong client … watch ARGS --json` in a task: its lines arrive on the receiver.
fn spawn_watch(
    client: &Client,
    argv: &[&str],
) -> (mpsc::UnboundedReceiver<Value>, tokio::task::JoinHandle<anyhow::Result<ExitCode>>) {
    let (json, command) = command(argv);
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    let (json_tx, json_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if json_tx.send(value).is_err() {
                return;
            }
        }
    });
    let client = client.clone();
    let task = tokio::spawn(async move {
        let mut out = Lines { tx, buf: Vec::new() };
        run_with(&client, json, command, &mut out).await
    });
    (json_rx, task)
}

async fn next_line(lines: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(DEADLINE, lines.recv()).await.expect("a watch line in time").expect("the watch runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_says_which_server_and_site_answered() {
    let (mut s0, s1) = (Server::sqlite("0").await, Server::sqlite("1").await);
    let client = client(&[&s0, &s1]).await;
    let info = json_of(&client, &["info", "--json"]).await.unwrap();
    let answered = info["server"].as_str().expect("server").to_string();
    let (this, other) = if answered == s0.grpc.to_string() { (&s0, &s1) } else { (&s1, &s0) };
    assert_eq!(answered, this.grpc.to_string());
    assert_eq!(info["site"], json!(this.site.parse::<u64>().unwrap()), "{info}");
    assert_eq!((info["engine"].as_str(), info["database_reachable"].as_bool()), (Some("sqlite"), Some(true)));
    let (other_addr, other_site) = (other.grpc.to_string(), other.site.clone());

    // The same session stays where it is; when its server dies, the other one answers.
    for _ in 0..5 {
        assert_eq!(json_of(&client, &["info", "--json"]).await.unwrap()["server"], json!(answered));
    }
    if this.grpc == s0.grpc {
        s0.kill();
    } else {
        drop(s1);
    }
    let info = json_of(&client, &["info", "--json"]).await.unwrap();
    assert_eq!(
        (info["server"].as_str(), info["site"].clone()),
        (Some(other_addr.as_str()), json!(other_site.parse::<u64>().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_through_the_ha_client() {
    let (s0, s1) = (Server::sqlite("0").await, Server::sqlite("1").await);
    let client = client(&[&s0, &s1]).await;

    // Settings: put, get, list, delete.
    let put = json_of(&client, &["settings", "put", "ui.theme", r#"{"a": 1}"#]).await.unwrap();
    assert_eq!(
        (put["key"].as_str(), put["value"].clone(), put["version"].as_i64()),
        (Some("ui.theme"), json!({"a": 1}), Some(1))
    );
    let put =
        json_of(&client, &["settings", "put", "ui.theme", r#"{"a": 2}"#, "--expected-version", "1"]).await.unwrap();
    assert_eq!(put["version"], json!(2));
    let err = json_of(&client, &["settings", "put", "ui.theme", "3", "--expected-version", "1"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("Aborted"), "{err:#}");
    json_of(&client, &["settings", "put", "zoom", "1.5"]).await.unwrap();
    let got = json_of(&client, &["settings", "get", "ui.theme"]).await.unwrap();
    assert_eq!((got["value"].clone(), got["version"].as_i64()), (json!({"a": 2}), Some(2)));
    let listed = json_of(&client, &["settings", "list", "--page-size", "1"]).await.unwrap();
    let keys: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["ui.theme", "zoom"], "every page");
    let deleted = json_of(&client, &["settings", "delete", "zoom"]).await.unwrap();
    assert_eq!(deleted, json!({"deleted": "zoom", "version": 1}));
    let err = json_of(&client, &["settings", "get", "zoom"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("NotFound"), "{err:#}");

    // Writes need the token.
    let err = json_of(&anonymous(&[&s0, &s1]).await, &["settings", "put", "k", "1"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("Unauthenticated"), "{err:#}");

    // Apps and their flows, contexts.
    let app = dugong_client::api::new_id();
    let flow = dugong_client::api::new_id();
    let a =
        json_of(&client, &["apps", "put", &app, r#"{"name": "Journal"}"#, "--expected-version", "0"]).await.unwrap();
    assert_eq!(
        (a["id"].as_str(), a["name"].as_str(), a["version"].as_i64()),
        (Some(app.as_str()), Some("Journal"), Some(1))
    );
    let flow_value = json!({"app_id": app, "name": "login", "script": "type(user)\n"}).to_string();
    json_of(&client, &["flows", "put", &flow, &flow_value]).await.unwrap();
    let flows = json_of(&client, &["flows", "list", "--app", &app]).await.unwrap();
    assert_eq!(flows[0]["script"], json!("type(user)\n"));
    json_of(&client, &["contexts", "put", "alice", r#"{"patient": "0101-1234"}"#]).await.unwrap();
    let ctx = json_of(&client, &["contexts", "get", "alice"]).await.unwrap();
    assert_eq!(ctx["values"], json!({"patient": "0101-1234"}));
    assert_eq!(json_of(&client, &["apps", "list"]).await.unwrap().as_array().unwrap().len(), 1);
    json_of(&client, &["apps", "delete", &app, "--expected-version", "1"]).await.unwrap();
    let err = json_of(&client, &["flows", "get", &flow]).await.unwrap_err();
    assert!(format!("{err:#}").contains("NotFound"), "deleting an app deletes its flows: {err:#}");

    // Events: ids made by the client; the same batch again stores nothing twice.
    let posted = json_of(
        &client,
        &[
            "events",
            "post",
            r#"[{"kind": "flow.started", "user": "alice"}, {"kind": "flow.ended", "payload": {"ok": true}}]"#,
        ],
    )
    .await
    .unwrap();
    assert_eq!((posted["accepted"].as_u64(), posted["duplicates"].as_u64()), (Some(2), Some(0)));
    let ids = posted["ids"].as_array().unwrap();
    let again = json!([{"id": ids[0], "kind": "flow.started"}, {"id": ids[1], "kind": "flow.ended"}]).to_string();
    let posted = json_of(&client, &["events", "post", &again]).await.unwrap();
    assert_eq!((posted["accepted"].as_u64(), posted["duplicates"].as_u64()), (Some(0), Some(2)));
    let events = json_of(&client, &["events", "list"]).await.unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2);
    let ended = events.as_array().unwrap().iter().find(|e| e["kind"] == "flow.ended").expect("flow.ended listed");
    assert_eq!(ended["payload"], json!({"ok": true}));
    let site = json_of(&client, &["info", "--json"]).await.unwrap()["site"].clone();
    assert_eq!(json!(events[0]["site"].as_str().unwrap().parse::<u64>().unwrap()), site, "all on the session's server");
}

/// Calls every 50 ms while the session's server goes away (`how`): none fails, and the first
/// call after it is answered by the other server within 1.5 s.
async fn calls_go_on_when_the_server_goes(how: fn(&mut Server)) {
    let (mut s0, mut s1) = (Server::sqlite("0").await, Server::sqlite("1").await);
    let client = client(&[&s0, &s1]).await;
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut killed: Option<(Instant, String)> = None;
    let mut after_kill = Vec::new();
    for i in 0..60 {
        ticks.tick().await;
        let started = Instant::now();
        let info = dugong_client::cli::server_info(&client).await.unwrap_or_else(|e| panic!("call {i} failed: {e:#}"));
        let server = info["server"].as_str().unwrap().to_string();
        if let Some((at, _)) = &killed {
            after_kill.push((started.duration_since(*at), started.elapsed() + started.duration_since(*at), server));
        } else if i == 20 {
            let victim = if server == s0.grpc.to_string() { &mut s0 } else { &mut s1 };
            how(victim);
            killed = Some((Instant::now(), server));
        }
    }
    let (_, victim) = killed.unwrap();
    let (_, answered_after, server) = &after_kill[0];
    eprintln!("the first call after {victim} went away was answered by {server} {answered_after:?} after");
    assert_ne!(*server, victim, "the first call after the kill went to the other server");
    assert!(*answered_after < Duration::from_millis(1500), "answered {answered_after:?} after the kill");
    assert!(after_kill.iter().all(|(_, _, s)| *s != victim), "a call went to the dead server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_current_server_under_calls_every_50ms() {
    calls_go_on_when_the_server_goes(Server::kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_the_current_server_under_calls_every_50ms() {
    calls_go_on_when_the_server_goes(Server::begin_shutdown).await;
}

/// Two servers on one PostgreSQL database, so positions are valid on both: `dugong client watch`
/// sees its server go away, resumes on the other from its last position, and misses no change
/// written meanwhile — nor repeats one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_the_other_server_without_losing_a_change() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("client_watch").await.expect("a database");
    let url: DbUrl = cluster.url(&db).parse().unwrap();
    let mut servers = [Server::start("0", url.clone()).await, Server::start("0", url).await];
    let client = client(&[&servers[0], &servers[1]]).await;
    const TOTAL: usize = 60;
    let limit = TOTAL.to_string();
    let (mut lines, watch) = spawn_watch(&client, &["watch", "--json", "--limit", &limit]);
    let first = next_line(&mut lines).await;
    assert_eq!(first["event"], "started", "{first}");
    let on = first["server"].as_str().unwrap().to_string();
    let (victim, survivor) = if on == servers[0].grpc.to_string() { (0, 1) } else { (1, 0) };

    // Writes go to the surviving server, one every 20 ms, through the failover.
    let writer = {
        let addr = servers[survivor].grpc;
        tokio::spawn(async move {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
            let mut settings = pb::settings_client::SettingsClient::new(channel);
            let token = Token::new(TOKEN).unwrap();
            for i in 0..TOTAL {
                let put = pb::PutSettingRequest {
                    key: format!("k{i:03}"),
                    value_json: i.to_string(),
                    expected_version: None,
                };
                settings.put_setting(dugong_client::api::request(put, Some(&token))).await.expect("a write");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut keys = Vec::new();
    let mut last_position = String::new();
    let mut moved = false;
    while keys.len() < TOTAL {
        let line = next_line(&mut lines).await;
        match line["event"].as_str().unwrap() {
            "change" => {
                assert_eq!(line["resource"], "settings");
                keys.push(line["key"].as_str().unwrap().to_string());
                last_position = line["position"].as_str().unwrap().to_string();
                if keys.len() == 20 {
                    servers[victim].begin_shutdown();
                }
            }
            "going_away" => {
                assert_eq!(line["server"].as_str(), Some(on.as_str()), "{line}");
                let started = next_line(&mut lines).await;
                assert_eq!(started["event"], "started", "{started}");
                assert_eq!(started["server"].as_str(), Some(servers[survivor].grpc.to_string().as_str()));
                assert_eq!(started["position"].as_str(), Some(last_position.as_str()), "resumed from the last change");
                moved = true;
            }
            other => panic!("unexpected {other}: {line}"),
        }
    }
    assert!(moved, "the watch moved to the other server");
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("k{i:03}")).collect();
    assert_eq!(keys, expected, "changes lost or repeated");
    writer.await.unwrap();
    let ended = tokio::time::timeout(DEADLINE, watch).await.expect("the watch ends at its limit");
    assert_eq!(ended.unwrap().unwrap(), ExitCode::SUCCESS);
}

/// A position the server cannot resume (from another database) is shown as a reset, and the
/// watch follows from the position it gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_shown_and_the_watch_goes_on() {
    let s = Server::sqlite("0").await;
    let client = client(&[&s]).await;
    let (mut lines, _watch) =
        spawn_watch(&client, &["watch", "--json", "--from", "another-database:5", "--resource", "settings"]);
    assert_eq!(next_line(&mut lines).await["event"], "started");
    let reset = next_line(&mut lines).await;
    assert_eq!(reset["event"], "reset", "{reset}");
    assert!(reset["reason"].as_str().unwrap().contains("another database"), "{reset}");
    json_of(&client, &["settings", "put", "after.reset", "true"]).await.unwrap();
    let change = next_line(&mut lines).await;
    assert_eq!(
        (change["event"].as_str(), change["key"].as_str(), change["record"]["value"].clone()),
        (Some("change"), Some("after.reset"), json!(true))
    );
}
