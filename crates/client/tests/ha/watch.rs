//! A watch survives its server's death: it resumes on the other server from the last event seen,
//! and no event is lost or repeated.

use std::time::Duration;

use dugong_client::watch::resume;
use dugong_client::Client;
use futures_util::StreamExt;

use crate::pb::probe_client::ProbeClient;
use crate::pb::{Event, WatchRequest};
use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{dns_with, url_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_the_other_server_without_losing_a_change() {
    let world = World::new();
    let ip = ips(50, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let mut servers =
        [TestServer::start(listeners.remove(0), "a", &world), TestServer::start(listeners.remove(0), "b", &world)];
    let dns = dns_with(&ip).await;
    let client = Client::new(url_config(port, 2, &dns)).await.unwrap();
    const TOTAL: u64 = 300;
    let writer = {
        let world = world.clone();
        tokio::spawn(async move {
            for _ in 0..TOTAL {
                world.append();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut events = resume(
        &client,
        0u64,
        |channel, after| async move {
            ProbeClient::new(channel).watch(WatchRequest { after }).await.map(|r| r.into_inner())
        },
        |event: &Event| Some(event.seq),
    );
    let mut seen: Vec<Event> = Vec::new();
    let mut victim = None;
    let read = async {
        while let Some(event) = events.next().await {
            let event = event.expect("the watch survives the failover");
            if event.seq == 100 {
                let server = servers.iter_mut().find(|s| s.name == event.server).unwrap();
                server.kill();
                victim = Some(event.server.clone());
            }
            let last = event.seq;
            seen.push(event);
            if last == TOTAL {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("all events within 20 s");
    writer.await.unwrap();
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>(), "events lost or repeated");
    let victim = victim.expect("a server was killed");
    assert!(seen[100..].iter().all(|e| e.server != victim), "events after the kill from the dead server");
}
