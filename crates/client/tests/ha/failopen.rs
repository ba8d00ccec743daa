//! Failing open: every server failed recently, one comes back before its reconnect delay is
//! over, and new sessions reach it at once instead of failing until the delay runs out — while a
//! server still down is dialled at most once per fail-open interval.

use std::time::{Duration, Instant};

use dugong_client::{CallError, Client, Health};
use dugong_testkit::wait_for;

use crate::faults::Resetter;
use crate::server::{bind_same_port, ips, rebind, TestServer, World};
use crate::{list_config, who, Logs};

const DELAY: Duration = Duration::from_secs(60);
const INTERVAL: Duration = Duration::from_millis(300);

/// Sessions every 20 ms while everything is down and `a` comes back; returns how many failed
/// after `a` was back, how long until the first one succeeded, and the test's servers.
async fn all_down_then_one_back(fail_open: bool, net: u8) -> (usize, Option<Duration>, u64, TestServer) {
    let world = World::new();
    let ip = ips(net, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let resetter = Resetter::start(listeners.pop().unwrap());
    let mut a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let config = list_config(&[a.addr(), resetter.addr()])
        .with_reconnect_delay(DELAY)
        .with_fail_open(fail_open)
        .with_fail_open_interval(INTERVAL);
    let client = Client::new(config).await.unwrap();
    // Everything fails once: a is killed under a session, the resetter resets.
    wait_for("a session on a", Duration::from_secs(5), || async {
        (who(&client.new_session()).await.ok()? == "a").then_some(())
    })
    .await;
    a.kill();
    let err = who(&client.new_session()).await.expect_err("every server is down");
    assert!(matches!(err, CallError::AllServersDown { .. }), "{err}");
    assert!(client.servers().iter().all(|s| matches!(s.health, Health::Quarantined { .. })), "{:?}", client.servers());
    let resets_before = resetter.accepted();

    // a is back long before its 60 s delay.
    let a = TestServer::start(rebind(a.addr()), "a", &world);
    let back = Instant::now();
    let mut failed_after_back = 0;
    let mut first_success = None;
    while back.elapsed() < Duration::from_millis(1500) {
        match who(&client.new_session()).await {
            Ok(server) => {
                assert_eq!(server, "a");
                first_success.get_or_insert(back.elapsed());
            }
            Err(_) => failed_after_back += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resets = resetter.accepted() - resets_before;
    println!(
        "fail_open={fail_open}: first session on a {first_success:?} after it came back, {failed_after_back} \
         sessions failed meanwhile; {} connections to a, {resets} to the resetter in 1.5 s",
        a.accepted()
    );
    (failed_after_back, first_success, resets, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_back_before_its_delay_takes_new_sessions_when_all_failed() {
    let logs = Logs::global();
    let (failed, first, resets, a) = all_down_then_one_back(true, 70).await;
    let a_addr = a.addr().to_string();
    assert!(!logs.lines(&["failing open onto the one that failed longest ago", "127.0.70."]).is_empty());
    assert_eq!(logs.lines(&["server answered while failing open; re-admitted at once", &a_addr]).len(), 1);
    let first = first.expect("a session reached a before its reconnect delay");
    assert!(first <= INTERVAL + Duration::from_millis(500), "first session on a after {first:?}");
    assert!(failed <= (INTERVAL.as_millis() / 20 + 5) as usize, "{failed} sessions failed");
    // a kept its one connection; the resetter, still down, was dialled at most once per interval.
    assert_eq!(a.accepted(), 1, "a was dialled more than once");
    assert!(resets <= 1 + (1500 / INTERVAL.as_millis()) as u64, "{resets} connections to the resetter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fail_open_sessions_fail_until_the_delay_runs_out() {
    let (failed, first, resets, a) = all_down_then_one_back(false, 71).await;
    assert_eq!(first, None, "a was used within its reconnect delay");
    assert!(failed > 30, "{failed}");
    assert_eq!((a.accepted(), resets), (0, 0));
}
