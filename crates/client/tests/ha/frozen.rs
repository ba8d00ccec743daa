//! A frozen server (the process stopped, or the network black-holes the connection after it was
//! made) is found by HTTP/2 keepalive pings within about 2 s: a call in flight fails over (or,
//! not idempotent, says its outcome is unknown) instead of waiting out the request timeout.

use std::time::{Duration, Instant};

use dugong_client::{CallError, Client, Idempotency};

use crate::faults::Freezer;
use crate::pb::probe_client::ProbeClient;
use crate::pb::{AddRequest, SleepRequest};
use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{list_config, who};

/// The default keepalive (1 s, 750 ms to answer) with a request timeout far beyond it.
fn frozen_config(servers: &[std::net::SocketAddr]) -> dugong_client::ClientConfig {
    list_config(servers)
        .with_keepalive(dugong_client::DEFAULT_KEEPALIVE)
        .with_keepalive_timeout(dugong_client::DEFAULT_KEEPALIVE_TIMEOUT)
        .with_request_timeout(Duration::from_secs(10))
        .with_deadline(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_on_a_frozen_server_fails_over_within_two_seconds() {
    let world = World::new();
    let ip = ips(76, 3);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let proxy = Freezer::start(listeners.pop().unwrap(), a.addr());
    let client = Client::new(frozen_config(&[proxy.addr(), b.addr()])).await.unwrap();
    let session = loop {
        let s = client.new_session();
        if who(&s).await.unwrap() == "a" {
            break s;
        }
    };
    // A slow call on a (it answers after 3 s), frozen 200 ms into it.
    let call = session.call(Idempotency::Idempotent, |channel| async move {
        ProbeClient::new(channel).sleep(SleepRequest { millis: 3_000, only_on: "a".into() }).await.map(|_| ())
    });
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.freeze();
        Instant::now()
    };
    let (result, frozen_at) = tokio::join!(call, freeze);
    let detected = frozen_at.elapsed();
    result.expect("the call failed over to b");
    assert_eq!(session.current_server(), Some(b.addr()));
    println!("frozen server left {detected:?} after it froze (keepalive 1s, timeout 750ms)");
    assert!(detected < Duration::from_millis(2500), "the frozen server held the call {detected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_is_not_idempotent_on_a_frozen_server_is_unknown_within_two_seconds() {
    let world = World::new();
    let ip = ips(77, 3);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let proxy = Freezer::start(listeners.pop().unwrap(), a.addr());
    let client = Client::new(frozen_config(&[proxy.addr(), b.addr()])).await.unwrap();
    let session = loop {
        let s = client.new_session();
        if who(&s).await.unwrap() == "a" {
            break s;
        }
    };
    let call = session.call(Idempotency::NotIdempotent, |channel| async move {
        let request = AddRequest { amount: 1, die_before_answer: false, millis: 3_000 };
        ProbeClient::new(channel).add(request).await.map(|r| r.into_inner().total)
    });
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.freeze();
        Instant::now()
    };
    let (result, frozen_at) = tokio::join!(call, freeze);
    let detected = frozen_at.elapsed();
    match result {
        Err(CallError::OutcomeUnknown { server, cause }) => {
            assert_eq!(server, proxy.addr());
            println!("unknown after {detected:?}: {cause}");
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert!(detected < Duration::from_millis(2500), "took {detected:?}");
    // The next call goes to b at once.
    assert_eq!(who(&session).await.unwrap(), "b");
}
