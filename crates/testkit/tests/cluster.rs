//! The testkit against real PostgreSQL servers.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use dugong_testkit::{wait_for, Cluster, ClusterOptions};

/// Databases created by the shared-cluster tests, which run at the same time.
static SHARED_DBS: Mutex<Vec<String>> = Mutex::new(Vec::new());

async fn use_shared_cluster(prefix: &str) {
    let cluster = Cluster::shared();
    let db = cluster.create_database(prefix).await.unwrap();
    cluster.psql(&db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)").await.unwrap();
    let client = cluster.connect(&db).await.unwrap();
    let row = client.query_one("SELECT current_database(), current_user, count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), db);
    assert_eq!(row.get::<_, String>(1), "postgres");
    assert_eq!(row.get::<_, i64>(2), 1);
    assert!(db.starts_with(&format!("{prefix}_")), "{db}");
    let mut seen = SHARED_DBS.lock().unwrap();
    assert!(!seen.contains(&db), "{db} handed out twice");
    seen.push(db);
}

#[tokio::test]
async fn shared_cluster_serves_one_test() {
    use_shared_cluster("shared_one").await;
}

#[tokio::test]
async fn shared_cluster_serves_another_test_at_the_same_time() {
    use_shared_cluster("shared_two").await;
}

#[test]
fn shared_is_one_cluster_for_all_threads() {
    let addresses: HashSet<usize> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8).map(|_| scope.spawn(|| Cluster::shared() as *const Cluster as usize)).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(addresses.len(), 1);
    let cluster = Cluster::shared();
    assert_eq!(cluster.host(), "127.0.0.1");
    assert_eq!(cluster.url("x"), format!("postgres://postgres@127.0.0.1:{}/x", cluster.port()));
    assert!(cluster.log_path().is_file());
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
}

#[tokio::test]
async fn create_database_gives_distinct_databases() {
    let cluster = Cluster::shared();
    let a = cluster.create_database("Same Prefix!").await.unwrap();
    let b = cluster.create_database("Same Prefix!").await.unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with("same_prefix__"), "{a}");
    cluster.psql(&a, "CREATE TABLE only_in_a ()").await.unwrap();
    let client = cluster.connect(&b).await.unwrap();
    let found = client.query_opt("SELECT 1 FROM pg_class WHERE relname = 'only_in_a'", &[]).await.unwrap();
    assert!(found.is_none());
}

#[tokio::test]
async fn stop_then_restart_keeps_port_and_data() {
    let cluster = Cluster::start(ClusterOptions::default()).unwrap();
    let port = cluster.port();
    let db = cluster.create_database("stop_restart").await.unwrap();
    cluster.psql(&db, "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')").await.unwrap();

    cluster.stop().unwrap();
    assert!(cluster.connect(&db).await.is_err(), "connected to a stopped server");
    cluster.stop().unwrap(); // stopping a stopped server does nothing

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    let client = cluster.connect(&db).await.unwrap();
    let row = client.query_one("SELECT v FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "kept");
}

#[tokio::test]
async fn kill9_then_restart_recovers() {
    let cluster = Cluster::start(ClusterOptions::default()).unwrap();
    let db = cluster.create_database("kill9").await.unwrap();
    cluster.psql(&db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)").await.unwrap();
    // An open connection, whose backend is orphaned by the killed postmaster.
    let survivor = cluster.connect(&db).await.unwrap();

    cluster.kill9().unwrap();
    assert!(cluster.connect(&db).await.is_err(), "connected to a killed server");
    assert!(survivor.simple_query("SELECT 1").await.is_err());
    assert!(!cluster.data_dir().join("postmaster.pid").exists());
    assert!(cluster.kill9().is_err(), "killing a dead server should say so");

    cluster.restart().unwrap();
    let client = cluster.connect(&db).await.unwrap();
    let row = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    let log = std::fs::read_to_string(cluster.log_path()).unwrap();
    assert!(log.contains("was not properly shut down"), "no crash recovery in log");
}

#[tokio::test]
async fn restart_waits_for_its_port_to_be_released() {
    let cluster = Cluster::start(ClusterOptions::default()).unwrap();
    cluster.stop().unwrap();
    // Someone else holds the port for a while; restart must not move or give up.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", cluster.port())).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(squatter);
    });
    cluster.restart().unwrap();
    release.join().unwrap();
    cluster.connect("postgres").await.unwrap();
    let log = std::fs::read_to_string(cluster.log_path()).unwrap();
    assert!(log.contains("could not bind"), "the port was never found taken");
}

async fn show(cluster: &Cluster, setting: &str) -> String {
    let client = cluster.connect("postgres").await.unwrap();
    let row = client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap();
    row.get(0)
}

#[tokio::test]
async fn settings_are_what_was_asked() {
    assert_eq!(show(Cluster::shared(), "track_commit_timestamp").await, "on");
    assert_eq!(show(Cluster::shared(), "max_connections").await, "300");
    assert_eq!(show(Cluster::shared(), "fsync").await, "off");

    let cluster = Cluster::start(ClusterOptions {
        track_commit_timestamp: false,
        extra_settings: vec![("work_mem".into(), "7MB".into()), ("application_name".into(), "it's quoted".into())],
        tls: false,
    })
    .unwrap();
    assert_eq!(show(&cluster, "track_commit_timestamp").await, "off");
    assert_eq!(show(&cluster, "work_mem").await, "7MB");
    assert_eq!(show(&cluster, "application_name").await, "it's quoted");
}

#[tokio::test]
async fn a_tls_cluster_serves_tls_and_hands_out_its_ca() {
    assert_eq!(show(Cluster::shared(), "ssl").await, "off");
    assert_eq!(Cluster::shared().ca_cert_path(), None);

    let cluster = Cluster::start(ClusterOptions { tls: true, ..ClusterOptions::default() }).unwrap();
    assert_eq!(show(&cluster, "ssl").await, "on");
    let ca = std::fs::read_to_string(cluster.ca_cert_path().expect("a TLS cluster has a CA")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    // Plain connections still work, so the testkit's own helpers need no TLS.
    let db = cluster.create_database("tls_plain").await.unwrap();
    cluster.psql(&db, "SELECT 1").await.unwrap();
}

#[test]
fn start_error_shows_the_server_log() {
    let err = Cluster::start(ClusterOptions {
        extra_settings: vec![("no_such_setting".into(), "1".into())],
        ..ClusterOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("did not start"), "{err}");
    assert!(err.contains("no_such_setting"), "log tail missing: {err}");
}

#[test]
fn drop_stops_the_server_and_removes_its_directory() {
    let cluster = Cluster::start(ClusterOptions::default()).unwrap();
    let port = cluster.port();
    let dir = cluster.data_dir().parent().unwrap().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(cluster);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms waiting for the impossible")]
async fn wait_for_panics_when_time_runs_out() {
    wait_for("the impossible", Duration::from_millis(50), || async { None::<()> }).await;
}

#[tokio::test]
async fn wait_for_returns_once_the_condition_holds() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("wait_for").await.unwrap();
    cluster.psql(&db, "CREATE TABLE t (id int)").await.unwrap();
    let client = cluster.connect(&db).await.unwrap();
    let writer = async {
        cluster.psql(&db, "INSERT INTO t VALUES (42)").await.unwrap();
    };
    let reader = wait_for("row 42", Duration::from_secs(10), || async {
        client.query_opt("SELECT id FROM t", &[]).await.ok()?.map(|row| row.get::<_, i32>(0))
    });
    let ((), id) = tokio::join!(writer, reader);
    assert_eq!(id, 42);
}

/// Set in the child process of `watchdog_cleans_up_after_a_killed_test_process`.
const CHILD_ENV: &str = "DUGONG_TESTKIT_WATCHDOG_CHILD";

/// Does nothing in a normal run. As the child of the test below, starts the shared cluster,
/// reports where it is, and aborts: no destructor runs, the watchdog must clean up.
#[test]
fn watchdog_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let cluster = Cluster::shared();
    println!("CLUSTER {} {}", cluster.port(), cluster.data_dir().display());
    std::process::abort();
}

#[test]
fn watchdog_cleans_up_after_a_killed_test_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "watchdog_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The harness prints "test watchdog_child ... " first, on the same line.
    let line = stdout
        .lines()
        .map(Result::unwrap)
        .find_map(|line| Some(line.split_once("CLUSTER ")?.1.to_owned()))
        .expect("child reported its cluster");
    let status = child.wait().unwrap();
    assert!(!status.success(), "child should have aborted");
    let mut parts = line.split(' ');
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap()).parent().unwrap().to_path_buf();

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dir.exists() || TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "server on port {port} or {} outlived its test process",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
