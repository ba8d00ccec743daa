//! Truthful outcomes: a call that never reached a server's application goes to another server
//! even when it is not idempotent — the server was draining (GOAWAY) or refused the stream — and
//! only a call that may have run is reported as unknown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dugong_client::{CallError, Client, Idempotency};
use futures_util::future::join_all;

use crate::faults::{GoingAway, Refuser};
use crate::pb::probe_client::ProbeClient;
use crate::pb::AddRequest;
use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{list_config, who, Logs};

async fn add(client: &Client, millis: u64) -> Result<u64, CallError> {
    client
        .call(Idempotency::NotIdempotent, |channel| async move {
            let request = AddRequest { amount: 1, die_before_answer: false, millis };
            ProbeClient::new(channel).add(request).await.map(|r| r.into_inner().total)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_draining_under_load_leaves_no_caller_with_an_unknown_outcome() {
    let logs = Logs::global();
    let world = World::new();
    let ip = ips(74, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let mut servers =
        [TestServer::start(listeners.remove(0), "a", &world), TestServer::start(listeners.remove(0), "b", &world)];
    let client = Client::new(list_config(&[servers[0].addr(), servers[1].addr()])).await.unwrap();
    // 32 sessions, each a stream of Adds (not idempotent) taking 5 ms each.
    let sessions: Vec<Client> = (0..32).map(|_| client.new_session()).collect();
    for s in &sessions {
        who(s).await.unwrap();
    }
    let on_a = sessions.iter().filter(|s| s.current_server() == Some(servers[0].addr())).count();
    assert!(on_a > 4, "only {on_a} sessions on a");
    let results: Arc<std::sync::Mutex<Vec<Result<u64, CallError>>>> = Arc::default();
    let run = join_all(sessions.iter().map(|s| {
        let results = results.clone();
        async move {
            for _ in 0..40 {
                let r = add(s, 5).await;
                results.lock().unwrap().push(r);
            }
        }
    }));
    let drain = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        servers[0].drain();
    };
    tokio::join!(run, drain);
    let results = std::mem::take(&mut *results.lock().unwrap());
    let unknown: Vec<_> = results.iter().filter(|r| matches!(r, Err(CallError::OutcomeUnknown { .. }))).collect();
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    println!("{ok} Adds answered, {} failed ({} unknown) across a's drain", failed.len(), unknown.len());
    assert!(unknown.is_empty(), "told unknown for calls a draining server never ran: {unknown:?}");
    assert!(failed.is_empty(), "{failed:?}");
    // Each Add ran exactly once: none was lost, none ran twice.
    assert_eq!(world.adds.load(Ordering::SeqCst), ok);
    assert_eq!(ok, 32 * 40);
    assert!(sessions.iter().all(|s| s.current_server() == Some(servers[1].addr())));
    // Calls were sent to a after it began to drain (those that found it quarantined already went
    // straight to b), and each was known never to have run there.
    let resent = logs.lines(&["call never reached the server", &servers[0].addr().to_string()]);
    let causes: std::collections::BTreeSet<&str> = resent.iter().filter_map(|l| l.split("error=").nth(1)).collect();
    println!("{} calls sent again as never sent: {causes:?}", resent.len());
    assert!(!resent.is_empty(), "no call met the drain: the test proved nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again_elsewhere_even_when_not_idempotent() {
    let world = World::new();
    let ip = ips(75, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let refuser = Refuser::start(listeners.pop().unwrap());
    // No health check, so the refusal meets the call itself rather than the connect.
    let config = list_config(&[refuser.addr(), b.addr()]).with_health_check(false);
    let mut refused_calls = 0;
    for seed in 0..12 {
        let client = Client::new(config.clone().with_seed(seed)).await.unwrap();
        let before = refuser.refused();
        add(&client, 0).await.expect("refused streams were never processed: sent to b");
        refused_calls += usize::from(refuser.refused() > before);
    }
    assert!(refused_calls > 0, "no seed drew the refusing server first");
    assert_eq!(world.adds.load(Ordering::SeqCst), 12, "an Add ran twice or not at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_a_goaway_says_was_not_processed_is_sent_again_even_when_not_idempotent() {
    let world = World::new();
    let ip = ips(78, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let leaving = GoingAway::start(listeners.pop().unwrap());
    let config = list_config(&[leaving.addr(), b.addr()]).with_health_check(false);
    let mut met_goaway = 0;
    for seed in 0..12 {
        let client = Client::new(config.clone().with_seed(seed)).await.unwrap();
        let before = leaving.requests();
        add(&client, 0).await.expect("a stream above the GOAWAY's last stream id was not processed: sent to b");
        met_goaway += usize::from(leaving.requests() > before);
    }
    assert!(met_goaway > 0, "no seed drew the server going away first");
    assert_eq!(world.adds.load(Ordering::SeqCst), 12, "an Add ran twice or not at all");
}
