//! Discovery through a real DNS server whose records change while the client runs.

use std::time::{Duration, Instant};

use dugong_client::cli::count_sessions;
use dugong_client::{Client, ConfigError};
use dugong_testkit::{wait_for, TestDns};

use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{url_config, who, Logs};

#[tokio::test]
async fn a_name_that_does_not_resolve_is_skipped_with_one_warning() {
    let logs = Logs::global();

    let world = World::new();
    let ip = ips(40, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let _c = TestServer::start(listeners.pop().unwrap(), "c", &world);
    let _a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let dns = TestDns::start().await.unwrap();
    dns.set("0.ha.test", &[ip[0]]);
    dns.set("2.ha.test", &[ip[1]]);
    let client = Client::new(url_config(port, 3, &dns)).await.unwrap();
    assert_eq!(client.servers().len(), 2);
    // Several re-resolutions later there is still one warning, not one per resolution.
    let asked = dns.queries();
    wait_for("five more DNS rounds", Duration::from_secs(10), || async { (dns.queries() >= asked + 15).then_some(()) })
        .await;
    let tally = count_sessions(&client, 300, 16).await;
    assert_eq!(tally.failures, 0, "{tally:?}");
    assert_eq!(tally.servers.len(), 2);
    let name = format!("1.ha.test:{port}");
    let warnings = logs.lines(&["server name does not resolve", &name]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[tokio::test]
async fn no_name_resolving_is_an_immediate_configuration_error() {
    let dns = TestDns::start().await.unwrap();
    let started = Instant::now();
    let err = Client::new(url_config(8001, 2, &dns)).await.err().expect("nothing resolves");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(err, ConfigError::NothingResolves(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("0.ha.test:8001") && text.contains("1.ha.test:8001"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changed_at_run_time_are_followed() {
    let world = World::new();
    let ip = ips(41, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let _b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let _a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let dns = TestDns::start().await.unwrap();
    dns.set("0.ha.test", &[ip[0]]);
    dns.set("1.ha.test", &[ip[0]]);
    let client = Client::new(url_config(port, 2, &dns)).await.unwrap();
    for _ in 0..20 {
        assert_eq!(who(&client.new_session()).await.unwrap(), "a");
    }
    // 1.ha.test moves to b: new sessions start landing there.
    dns.set("1.ha.test", &[ip[1]]);
    wait_for("a session on b", Duration::from_secs(5), || async {
        (who(&client.new_session()).await.ok()? == "b").then_some(())
    })
    .await;
    // 0.ha.test disappears: only b is left.
    dns.remove("0.ha.test");
    wait_for("a alone gone from the servers", Duration::from_secs(5), || async {
        (client.servers().len() == 1).then_some(())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(who(&client.new_session()).await.unwrap(), "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_down_keeps_the_last_good_answer() {
    let world = World::new();
    let ip = ips(42, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let _b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let _a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let dns = TestDns::start().await.unwrap();
    dns.set("0.ha.test", &[ip[0]]);
    dns.set("1.ha.test", &[ip[1]]);
    let config = url_config(port, 2, &dns).with_connect_timeout(Duration::from_millis(200));
    let client = Client::new(config).await.unwrap();
    dns.set_down(true);
    let asked = dns.queries();
    wait_for("lookups while DNS is down", Duration::from_secs(10), || async {
        (dns.queries() >= asked + 4).then_some(())
    })
    .await;
    // DNS is silent, and both servers are still known and used.
    assert_eq!(client.servers().len(), 2);
    let tally = count_sessions(&client, 400, 16).await;
    assert_eq!(tally.failures, 0, "{tally:?}");
    assert_eq!(tally.servers.len(), 2, "{tally:?}");
    // DNS back with a change: it is followed again.
    dns.remove("0.ha.test");
    dns.set_down(false);
    wait_for("the change after DNS came back", Duration::from_secs(10), || async {
        (client.servers().len() == 1).then_some(())
    })
    .await;
}
