//! The exit codes of `replicate --once`, `status`, `compare` and `conflicts`,
//! each provoked for real: a broken configuration (2), a database that cannot
//! be reached (3), a Bad sync (4), a signal before the command finished (130);
//! and a closed stdout, which ends a command quietly.

use dugong_testkit::{free_port, wait_for, Cluster};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text)";

/// The four commands with exit codes, as argument lists.
const COMMANDS: [&[&str]; 4] = [&["replicate", "--once"], &["status"], &["compare"], &["conflicts"]];

struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, json: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("dugong-exit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bucardo.json");
        std::fs::File::create(&path).unwrap().write_all(json.as_bytes()).unwrap();
        ConfigFile { dir, path }
    }

    /// Two sources: `dbs[i]` of the shared cluster, or a server on `ports[i]`.
    fn two(name: &str, dbs: &[String], ports: [u16; 2]) -> ConfigFile {
        let db = |i: usize| {
            format!(
                r#"{{"id": {i}, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}"#,
                dbs[i], ports[i]
            )
        };
        ConfigFile::new(
            name,
            &format!(
                r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "tables": "all", "onetimecopy": 0}}]}}"#,
                db(0),
                db(1)
            ),
        )
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(args: &[&str], config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.args(args).arg("--config").arg(config).env("DUGONG_LOG", "warn").stdin(Stdio::null());
    for var in ["DUGONG_SYNC", "DUGONG_JSON"] {
        c.env_remove(var);
    }
    c
}

fn run(args: &[&str], config: &Path) -> Output {
    command(args, config).output().expect("run dugong")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn two_databases(prefix: &str) -> Vec<String> {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("{prefix}{i}")).await.unwrap();
        cluster.psql(&db, SCHEMA).await.unwrap();
        dbs.push(db);
    }
    dbs
}

#[test]
fn every_command_lists_its_exit_codes_in_its_help() {
    for (command, special) in [
        ("replicate", "4    a sync is not Good"),
        ("status", "4    a sync is not Good"),
        ("compare", "5    the databases of a sync differ"),
        ("conflicts", "6    refused: the row changed since the conflict"),
        ("setup", "6    refused: a site is not ready, each problem printed with its exact fix"),
        ("repair", "5    a dry run found keys to repair"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dugong")).args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for line in [
            "Exit codes:",
            "0    done",
            "2    configuration or usage error",
            "3    a database could not be reached",
            special,
            "130  interrupted",
        ] {
            assert!(help.contains(line), "`dugong {command} --help` lacks {line:?}:\n{help}");
        }
    }
}

#[tokio::test]
async fn a_broken_configuration_exits_2() {
    let cfg = ConfigFile::new("broken", r#"{"databases": [], "syncs": [{"sources": [0]"#);
    for args in COMMANDS {
        let out = run(args, &cfg.path);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(&cfg.path.display().to_string()), "{}", show(&out));
    }
    let dbs = two_databases("exit_cfg").await;
    let port = Cluster::shared().port();
    let cfg = ConfigFile::two("unknown_sync", &dbs, [port, port]);
    for args in [&["status", "nope"][..], &["compare", "--sync", "nope"], &["conflicts", "--sync", "nope"]] {
        let out = run(args, &cfg.path);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no sync named \"nope\""), "{}", show(&out));
    }
    let out = run(&["conflicts", "restore", "not-an-id"], &cfg.path);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_exits_3() {
    let dbs = two_databases("exit_down").await;
    let dead = free_port();
    let cfg = ConfigFile::two("down", &dbs, [Cluster::shared().port(), dead]);
    for args in COMMANDS {
        let out = run(args, &cfg.path);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", show(&out));
        assert!(show(&out).contains(&dead.to_string()), "{args:?} names the database: {}", show(&out));
    }
}

#[tokio::test]
async fn a_sync_that_is_not_good_exits_4() {
    let dbs = two_databases("exit_bad").await;
    let port = Cluster::shared().port();
    let cfg = ConfigFile::two("bad", &dbs, [port, port]);
    let out = run(&["status"], &cfg.path);
    assert_eq!(out.status.code(), Some(4), "never replicated: {}", show(&out));
    Cluster::shared().psql(&dbs[1], "ALTER TABLE t ADD COLUMN extra int").await.unwrap();
    let out = run(&["replicate", "--once"], &cfg.path);
    assert_eq!(out.status.code(), Some(4), "a schema mismatch: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("column \"extra\""), "{}", show(&out));
    let out = run(&["status"], &cfg.path);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
}

/// A server that accepts connections and never answers: a command connecting
/// to it waits, so a signal certainly comes first. Tells `accepted` of each
/// connection and keeps it open while the listener lives.
fn silent_server(accepted: mpsc::Sender<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            if accepted.send(()).is_err() {
                return;
            }
        }
    });
    port
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("dugong to exit after the signal", Duration::from_secs(10), || {
        let status = child.try_wait().ok().flatten();
        async move { status }
    })
    .await
}

#[tokio::test]
async fn a_signal_before_the_command_finished_exits_130() {
    let dbs = two_databases("exit_int").await;
    let (accepted, connections) = mpsc::channel();
    let silent = silent_server(accepted);
    let cfg = ConfigFile::two("int", &dbs, [silent, Cluster::shared().port()]);
    for (args, signal) in COMMANDS.iter().zip([libc::SIGINT, libc::SIGTERM, libc::SIGINT, libc::SIGTERM]) {
        let mut child = command(args, &cfg.path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Connected to the silent server: the command is waiting for it.
        connections.recv_timeout(Duration::from_secs(10)).expect("the command connects");
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = wait_exit(&mut child).await;
        let out = child.wait_with_output().unwrap();
        assert_eq!(status.code(), Some(130), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"), "{args:?}: {}", show(&out));
        // Connections this command made besides the first are not the next one's.
        while connections.try_recv().is_ok() {}
    }
}

#[tokio::test]
async fn a_closed_stdout_ends_quietly() {
    let dbs = two_databases("exit_pipe").await;
    let port = Cluster::shared().port();
    let cfg = ConfigFile::two("pipe", &dbs, [port, port]);
    let out = run(&["replicate", "--once"], &cfg.path);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for args in COMMANDS {
        // `dugong … | head -0`: the reader is gone before anything is written.
        let mut child = command(args, &cfg.path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {}", show(&out));
    }
}

#[tokio::test]
async fn postgres_notices_stay_out_of_the_info_log() {
    let dbs = two_databases("exit_notice").await;
    let port = Cluster::shared().port();
    let cfg = ConfigFile::two("notice", &dbs, [port, port]);
    // A start that installs again over what is there (the stamps of the last
    // install emptied, as the runbook says to force one) makes each CREATE …
    // IF NOT EXISTS send "already exists, skipping".
    for log in ["info", "info", "dugong_replica=debug"] {
        Cluster::shared().psql(&dbs[0], "DELETE FROM dugong.installed").await.ok();
        let out = command(&["replicate", "--once"], &cfg.path).env("DUGONG_LOG", log).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if log == "info" {
            assert!(!stderr.contains("already exists") && !stderr.contains("NOTICE"), "{}", show(&out));
        } else {
            assert!(stderr.contains("server notice") && stderr.contains("already exists, skipping"), "{}", show(&out));
        }
    }
}
