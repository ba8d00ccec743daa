//! Failing over: a refused first choice, a server that accepts TCP and never answers, a server
//! killed under a steady stream of calls, and everything down at once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dugong_client::{CallError, Client, Health, Idempotency};

use crate::pb::probe_client::ProbeClient;
use crate::pb::AddRequest;
use crate::server::{bind_same_port, ips, BlackHole, TestServer, World};
use crate::{dns_with, list_config, refused, url_config, who};

async fn add(client: &Client, amount: u64) -> Result<u64, CallError> {
    client
        .call(Idempotency::NotIdempotent, |channel| async move {
            let request = AddRequest { amount, die_before_answer: false, millis: 0 };
            ProbeClient::new(channel).add(request).await.map(|r| r.into_inner().total)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_choice_moves_on_at_once() {
    let world = World::new();
    let ip = ips(20, 2);
    let dead = refused(ip[0]);
    let (_, mut listeners) = bind_same_port(&ip[1..]);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    // Seeded clients: some draw the dead server first; all are served, by b, at once.
    let mut first_choice_dead = 0;
    for seed in 0..20 {
        let client = Client::new(list_config(&[dead, b.addr()]).with_seed(seed)).await.unwrap();
        let started = Instant::now();
        assert_eq!(who(&client).await.unwrap(), "b");
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        let dead_health = client.servers().into_iter().find(|s| s.addr == dead).map(|s| s.health);
        if let Some(Health::Quarantined { cause, .. }) = dead_health {
            assert!(cause.contains("refused"), "{cause}");
            first_choice_dead += 1;
        }
    }
    assert!(first_choice_dead > 0, "no seed drew the dead server first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_tcp_and_never_answers_is_skipped_within_the_connect_timeout() {
    let world = World::new();
    let ip = ips(21, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let hole = BlackHole::start(listeners.pop().unwrap());
    let connect_timeout = Duration::from_millis(300);
    let mut adds = 0;
    for seed in 0..12 {
        let config = list_config(&[hole.addr(), b.addr()]).with_seed(seed).with_connect_timeout(connect_timeout);
        let client = Client::new(config).await.unwrap();
        let started = Instant::now();
        // Not idempotent, and still safe: the health round trip found the black hole before the
        // call was sent, so the call never reached it.
        add(&client, 1).await.unwrap();
        adds += 1;
        assert!(started.elapsed() < connect_timeout + Duration::from_secs(1), "took {:?}", started.elapsed());
        assert_eq!(who(&client).await.unwrap(), "b");
    }
    assert!(hole.accepted() > 0, "no client tried the black hole");
    assert_eq!(world.added.load(Ordering::SeqCst), adds, "an Add ran twice or not at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_mid_call_hits_the_request_timeout() {
    let world = World::new();
    let ip = ips(22, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let _b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let _a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let servers = [_a.addr(), _b.addr()];
    let config = list_config(&servers).with_request_timeout(Duration::from_millis(300));
    let client = Client::new(config.clone()).await.unwrap();
    let first = who(&client).await.unwrap();

    // Idempotent: after the request timeout the call goes to the other server.
    let started = Instant::now();
    let slow = sleep_on(&client, &first, Idempotency::Idempotent).await;
    assert!(slow.is_ok(), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_ne!(who(&client).await.unwrap(), first);

    // Not idempotent: the client cannot know whether it ran, so it says so instead of sending it again.
    let client = Client::new(config).await.unwrap();
    let first = who(&client).await.unwrap();
    match sleep_on(&client, &first, Idempotency::NotIdempotent).await {
        Err(CallError::OutcomeUnknown { server, cause }) => {
            assert!(servers.contains(&server));
            assert!(cause.contains("request timeout"), "{cause}");
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
}

async fn sleep_on(client: &Client, server: &str, idempotency: Idempotency) -> Result<(), CallError> {
    let request = crate::pb::SleepRequest { millis: 30_000, only_on: server.to_string() };
    client
        .call(idempotency, |channel| {
            let request = request.clone();
            async move { ProbeClient::new(channel).sleep(request).await.map(|_| ()) }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_is_not_idempotent_is_not_run_twice_when_its_server_dies_mid_call() {
    let world = World::new();
    let ip = ips(23, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let client = Client::new(list_config(&[a.addr(), b.addr()])).await.unwrap();
    who(&client).await.unwrap();
    let result = client
        .call(Idempotency::NotIdempotent, |channel| async move {
            let request = AddRequest { amount: 5, die_before_answer: true, millis: 0 };
            ProbeClient::new(channel).add(request).await.map(|r| r.into_inner().total)
        })
        .await;
    let err = result.expect_err("the server died before answering");
    assert!(matches!(err, CallError::OutcomeUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("may or may not have run"), "{err}");
    assert_eq!(world.added.load(Ordering::SeqCst), 5, "the Add ran exactly once");
    // The next call goes to the survivor.
    who(&client).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_current_server_under_calls_every_50ms_loses_no_call() {
    let world = World::new();
    let ip = ips(24, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let mut servers =
        [TestServer::start(listeners.remove(0), "a", &world), TestServer::start(listeners.remove(0), "b", &world)];
    let dns = dns_with(&ip).await;
    let client = Client::new(url_config(port, 2, &dns)).await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut killed: Option<(String, Instant)> = None;
    let mut after_kill = Vec::new();
    for i in 0..60 {
        tick.tick().await;
        let served = who(&client).await.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        match &killed {
            None if i == 20 => {
                let victim = servers.iter_mut().find(|s| s.name == served).unwrap();
                victim.kill();
                killed = Some((served, Instant::now()));
            }
            None => {}
            Some((victim, at)) => {
                assert_ne!(&served, victim, "call {i} served by the killed server");
                if after_kill.is_empty() {
                    let took = at.elapsed();
                    assert!(took < Duration::from_millis(1500), "first call after the kill took {took:?}");
                }
                after_kill.push(served);
            }
        }
    }
    assert_eq!(after_kill.len(), 39);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_down_gives_one_error_listing_each_server_and_its_cause() {
    let world = World::new();
    let ip = ips(25, 3);
    let dead = refused(ip[0]);
    let (_, mut listeners) = bind_same_port(&ip[1..]);
    let mut killed = TestServer::start(listeners.pop().unwrap(), "killed", &world);
    let hole = BlackHole::start(listeners.pop().unwrap());
    let connect_timeout = Duration::from_millis(300);
    let config = list_config(&[dead, hole.addr(), killed.addr()]).with_connect_timeout(connect_timeout);
    let client = Client::new(config).await.unwrap();
    who(&client).await.unwrap();
    killed.kill();

    let started = Instant::now();
    let err = who(&client).await.expect_err("every server is down");
    let took = started.elapsed();
    let text = err.to_string();
    println!("{text}\n(after {took:?})");
    assert!(matches!(err, CallError::AllServersDown { .. }), "{err:?}");
    assert!(took < connect_timeout * 3 + Duration::from_secs(1), "took {took:?}");
    for addr in [dead, hole.addr(), killed.addr()] {
        assert!(text.contains(&addr.to_string()), "{addr} missing from: {text}");
    }
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains("no answer to a health check"), "{text}");

    // Asked again at once: no server is tried (all are left out), the answer is immediate and
    // still names each server with its cause.
    let started = Instant::now();
    let again = who(&client).await.expect_err("still down").to_string();
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
    assert!(again.contains("left out for another"), "{again}");
    assert_eq!(hole.accepted(), 1, "the black hole was tried again within its reconnect delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_deadline_bounds_a_call_whatever_the_servers_do() {
    let ip = ips(26, 3);
    let (_, listeners) = bind_same_port(&ip);
    let holes: Vec<BlackHole> = listeners.into_iter().map(BlackHole::start).collect();
    let addrs: Vec<_> = holes.iter().map(|h| h.addr()).collect();
    let config =
        list_config(&addrs).with_connect_timeout(Duration::from_secs(1)).with_deadline(Duration::from_millis(1500));
    let client = Client::new(config).await.unwrap();
    let started = Instant::now();
    let err = who(&client).await.expect_err("no server answers");
    let took = started.elapsed();
    assert!(matches!(err, CallError::DeadlineExceeded { .. }), "{err:?}");
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    let text = err.to_string();
    assert!(addrs.iter().all(|a| text.contains(&a.to_string())), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_health_is_not_serving_is_not_used() {
    let world = World::new();
    let ip = ips(27, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    a.set_serving(false).await;
    for seed in 0..10 {
        let client = Client::new(list_config(&[a.addr(), b.addr()]).with_seed(seed)).await.unwrap();
        assert_eq!(who(&client).await.unwrap(), "b");
    }
}
