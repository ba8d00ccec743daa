//! Sessions spread by weight: 2:1 from names, and a dead server's share spread by weight.

use std::collections::HashMap;
use std::time::Instant;

use dugong_client::cli::count_sessions;
use dugong_client::{Client, Health};
use futures_util::stream::{self, StreamExt};

use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{dns_with, url_config, who};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_weighted_two_to_one_give_two_thirds_of_10000_sessions() {
    let world = World::new();
    let ip = ips(10, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let dns = dns_with(&[ip[0], ip[0], ip[1]]).await;
    let client = Client::new(url_config(port, 3, &dns)).await.unwrap();

    let started = Instant::now();
    let tally = count_sessions(&client, 10_000, 32).await;
    let share = tally.share(&a.addr().to_string());
    println!("10000 sessions in {:?}: {tally:?}, share of a {share:.4}", started.elapsed());
    assert_eq!(tally.failures, 0, "{tally:?}");
    assert!((share - 2.0 / 3.0).abs() <= 0.02, "a got {:.1} %, expected 66.7 ± 2", share * 100.0);
    // Selection decided, not connection setup: one connection per server for all sessions.
    assert_eq!((a.accepted(), b.accepted()), (1, 1));
    // Two names on one address are one server, weighing two.
    let servers = client.servers();
    assert_eq!(servers.len(), 2);
    assert_eq!((servers[0].names.len(), servers[0].weight), (2, 2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_share_spreads_by_weight_not_onto_a_neighbour() {
    // Weights a:1, b:1, c:2 (names 0→a, 1→b, 2→c, 3→c). b dies: its sessions go to a and c
    // 1:2, as their weights say; "the next in the list" would send them all to c.
    let world = World::new();
    let ip = ips(11, 3);
    let (port, mut listeners) = bind_same_port(&ip);
    let c = TestServer::start(listeners.pop().unwrap(), "c", &world);
    let mut b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let a = TestServer::start(listeners.pop().unwrap(), "a", &world);
    let dns = dns_with(&[ip[0], ip[1], ip[2], ip[2]]).await;
    let client = Client::new(url_config(port, 4, &dns)).await.unwrap();

    let sessions: Vec<Client> = (0..3000).map(|_| client.new_session()).collect();
    let first = calls(&sessions).await;
    let on_b = first.iter().filter(|s| *s == "b").count();
    assert!(on_b > 500, "b got only {on_b} of 3000");
    assert_eq!(b.served() as usize, on_b);
    b.kill();
    let second = calls(&sessions).await;

    let mut moved: HashMap<&str, usize> = HashMap::new();
    for (before, after) in first.iter().zip(&second) {
        if before == "b" {
            *moved.entry(after.as_str()).or_default() += 1;
        } else {
            assert_eq!(before, after, "a session whose server works stays on it");
        }
    }
    let to_a = moved.get("a").copied().unwrap_or(0) as f64 / on_b as f64;
    println!("b's {on_b} sessions moved: {moved:?}");
    assert!(!moved.contains_key("b"));
    assert!((0.23..=0.44).contains(&to_a), "a got {:.1} % of b's sessions, expected 33.3", to_a * 100.0);

    // New sessions with b out: a 1/3, c 2/3, nothing lost.
    let tally = count_sessions(&client, 10_000, 32).await;
    assert_eq!(tally.failures, 0, "{tally:?}");
    let share_a = tally.share(&a.addr().to_string());
    assert!((share_a - 1.0 / 3.0).abs() <= 0.02, "a got {:.1} %, expected 33.3 ± 2", share_a * 100.0);
    assert!((tally.share(&c.addr().to_string()) - 2.0 / 3.0).abs() <= 0.02, "{tally:?}");
    let b_health = client.servers().into_iter().find(|s| s.addr == b.addr()).map(|s| s.health);
    assert!(matches!(b_health, Some(Health::Quarantined { .. })), "{b_health:?}");
}

/// One `Who` call in each session, 32 at a time; the server names in session order.
async fn calls(sessions: &[Client]) -> Vec<String> {
    stream::iter(sessions)
        .map(|s| async move { who(s).await.expect("every call is served") })
        .buffered(32)
        .collect()
        .await
}
