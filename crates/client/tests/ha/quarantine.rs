//! The reconnect delay: a failed server stays out for it, comes back after it, and is tried at
//! most once per delay however many sessions want it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dugong_client::{Client, Health};
use dugong_testkit::wait_for;

use crate::server::{bind_same_port, ips, rebind, BlackHole, TestServer, World};
use crate::{list_config, who};

const DELAY: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_server_is_left_out_for_the_reconnect_delay_then_readmitted() {
    let world = World::new();
    let ip = ips(30, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let mut a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let client = Client::new(list_config(&[a.addr(), b.addr()]).with_reconnect_delay(DELAY)).await.unwrap();
    // A session on a, then a dies under it.
    let on_a = wait_for("a session on a", Duration::from_secs(5), || async {
        let s = client.new_session();
        (who(&s).await.ok()? == "a").then_some(s)
    })
    .await;
    a.kill();
    assert_eq!(who(&on_a).await.unwrap(), "b");
    let failed_at = Instant::now();
    // a is back at once, on the same address; the client keeps it out for the delay anyway.
    let a = TestServer::start(rebind(a.addr()), "a", &world);
    while failed_at.elapsed() < DELAY.mul_f64(0.8) {
        assert_eq!(who(&client.new_session()).await.unwrap(), "b");
    }
    assert_eq!(a.accepted(), 0, "a was tried during its reconnect delay");
    // After the delay new sessions land on a again.
    wait_for("a session on a again", Duration::from_secs(5), || async {
        (who(&client.new_session()).await.ok()? == "a").then_some(())
    })
    .await;
    let back_after = failed_at.elapsed();
    assert!(back_after >= DELAY, "a was back after {back_after:?}, before the delay of {DELAY:?}");
    let a_health = client.servers().into_iter().find(|s| s.addr == a.addr()).map(|s| s.health);
    assert_eq!(a_health, Some(Health::Live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_make_at_most_one_attempt_per_reconnect_delay_no_reconnect_storm() {
    let world = World::new();
    let ip = ips(31, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let hole = BlackHole::start(listeners.pop().unwrap());
    let config = list_config(&[hole.addr(), b.addr()])
        .with_reconnect_delay(DELAY)
        .with_connect_timeout(Duration::from_millis(100));
    let client = Client::new(config).await.unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_millis(1500);
    let started = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, calls, stop) = (client.clone(), calls.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    // A fresh session per call: every one of them would like the black hole.
                    who(&client.new_session()).await.expect("b serves every call");
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    tokio::time::sleep_until((started + run_for).into()).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let attempts = hole.accepted();
    let bound = 1 + (elapsed.as_secs_f64() / DELAY.as_secs_f64()).ceil() as u64;
    println!(
        "{} calls in {elapsed:?}, {attempts} attempts on the black hole (bound {bound})",
        calls.load(Ordering::SeqCst)
    );
    assert!(calls.load(Ordering::SeqCst) > 100);
    assert!(attempts >= 2, "the black hole was never tried again after its delay");
    assert!(attempts <= bound, "{attempts} attempts in {elapsed:?} with a delay of {DELAY:?}");
}
