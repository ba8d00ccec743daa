//! No reconnect storms: a server that accepts and resets every connection is dialled once per
//! reconnect delay, however many sessions call, and two names on its address share that one
//! quarantine. The transport never re-dials behind the client's back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dugong_client::Client;

use crate::faults::Resetter;
use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{dns_with, url_config, who};

const DELAY: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_resets_connections_is_dialled_once_per_reconnect_delay() {
    let world = World::new();
    let ip = ips(72, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let good = TestServer::start(listeners.pop().unwrap(), "good", &world);
    let resetter = Resetter::start(listeners.pop().unwrap());
    // 0.ha.test and 1.ha.test on the resetter (two thirds of the first choices), 2.ha.test on the
    // good server.
    let dns = dns_with(&[ip[0], ip[0], ip[1]]).await;
    let client = Client::new(url_config(port, 3, &dns).with_reconnect_delay(DELAY)).await.unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, calls, stop) = (client.clone(), calls.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    assert_eq!(who(&client.new_session()).await.expect("the good server serves"), "good");
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let dials = resetter.accepted();
    let bound = 1 + (elapsed.as_secs_f64() / DELAY.as_secs_f64()).floor() as u64;
    println!(
        "{} calls in {elapsed:?}: {dials} connections to the resetter (at most {bound})",
        calls.load(Ordering::SeqCst)
    );
    assert!(calls.load(Ordering::SeqCst) > 100);
    assert!(dials >= 2, "the resetter was never tried again after its delay");
    assert!(dials <= bound, "{dials} connections in {elapsed:?} with a delay of {DELAY:?}");
    assert_eq!(good.accepted(), 1, "the good server was dialled more than once");
}
