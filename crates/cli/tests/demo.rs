//! `dugong demo --exit`, the README's first command, run through the real binary: every chapter
//! of the story reports the outcome it promises, and nothing is left behind.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole story takes a few seconds; a hung demo must fail the test, not the CI run.
const DEMO_TIMEOUT: Duration = Duration::from_secs(240);

fn run_demo() -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_dugong"))
        .args(["demo", "--exit"])
        .env("DUGONG_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dugong demo");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < DEMO_TIMEOUT {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signal 0 only checks that the process we started still exists.
            if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
                return;
            }
        }
        // SAFETY: the demo we started, still running past its time.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    });
    let output = child.wait_with_output().expect("wait for dugong demo");
    let _ = watchdog.join();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The text after `marker` up to the end of its line.
fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    Some(text[start..].lines().next().unwrap_or(""))
}

#[test]
fn the_demo_tells_the_whole_story_and_cleans_up() {
    let (ok, text) = run_demo();
    assert!(ok, "dugong demo --exit failed:\n{text}");
    for promise in [
        "ok site 0 up in",
        "ok site 1 up in",
        "ok replicator running: its first change crossed to site 1",
        "apps written on site 0, each on site 1 within",
        "apps written on site 1, each on site 0 within",
        "made on site 0, logs in on site 1's console",
        "site 0 saved \"pricing (edited on site 0)\" as version 2 at 20",
        "ok both sites settled on \"pricing (edited on site 1, later)\"",
        "the later commit won",
        "site 1 won over site 0 (later commit; its change at 20",
        "ok the session is on site 0",
        "site 0's server killed with SIGKILL",
        "ok the client carried on at site 1: first answer from site 1",
        "writes made while site 0 was down are on site 0",
        "calls, none failed",
        "ok compare: the sites are identical",
        "What was shown",
    ] {
        assert!(text.contains(promise), "the demo's output lacks {promise:?}:\n{text}");
    }
    assert!(!text.contains("!!"), "the demo reported a failure:\n{text}");
    // It points at the Conflicts page, with the conflict's id; times read as times, not epochs.
    let page = after(&text, "a button that restores the losing one: ").expect("a link to the Conflicts page");
    let id = page.split("/conflicts/").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or("");
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a conflict id in {page:?}");
    assert!(text.contains(" UTC"), "readable times:\n{text}");

    // Every process it started is gone: nothing listens on the sites' addresses any more.
    for site in ["site 0", "site 1"] {
        let line = after(&text, &format!("ok {site} up in")).unwrap();
        let grpc = after(line, "gRPC ").and_then(|s| s.split(',').next()).unwrap();
        let addr: SocketAddr = grpc.parse().unwrap_or_else(|e| panic!("{grpc}: {e}"));
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "{site} still listens on {addr}"
        );
    }
    // And its directory is removed.
    let dir = PathBuf::from(after(&text, "stopped every process and removed ").unwrap().trim());
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    assert!(!dir.exists(), "the demo left {} behind", dir.display());
}
