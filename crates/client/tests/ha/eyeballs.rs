//! Happy Eyeballs between servers: a first choice that does not answer holds a call up for the
//! connect stagger, not the connect timeout; the attempt on it goes on alone until its timeout and
//! quarantines it, so later sessions skip it without waiting at all.

use std::time::{Duration, Instant};

use dugong_client::{Client, Health};
use dugong_testkit::wait_for;

use crate::server::{bind_same_port, ips, BlackHole, TestServer, World};
use crate::{list_config, who};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_first_choice_costs_the_stagger_not_the_connect_timeout() {
    let world = World::new();
    let ip = ips(73, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let b = TestServer::start(listeners.pop().unwrap(), "b", &world);
    let hole = BlackHole::start(listeners.pop().unwrap());
    let stagger = Duration::from_millis(250);
    let connect_timeout = Duration::from_secs(3);
    let mut raced = Vec::new();
    for seed in 0..8 {
        let config = list_config(&[hole.addr(), b.addr()])
            .with_seed(seed)
            .with_connect_timeout(connect_timeout)
            .with_connect_stagger(stagger);
        let client = Client::new(config).await.unwrap();
        let dials_before = hole.accepted();
        let started = Instant::now();
        assert_eq!(who(&client).await.unwrap(), "b");
        let took = started.elapsed();
        if hole.accepted() == dials_before {
            assert!(took < stagger, "b drawn first, and still {took:?}");
            continue;
        }
        // The hole was drawn first: b was raced after the stagger and won.
        assert!(took >= stagger && took < stagger + Duration::from_millis(500), "took {took:?}");
        raced.push(took);
        // The attempt on the hole goes on by itself and ends in its quarantine at the timeout.
        let hole_addr = hole.addr();
        wait_for("the black hole quarantined", connect_timeout * 2, || async {
            let health = client.servers().into_iter().find(|s| s.addr == hole_addr)?.health;
            matches!(health, Health::Quarantined { .. }).then_some(())
        })
        .await;
        // From then on no session waits for it, and it is not dialled again.
        for _ in 0..20 {
            let started = Instant::now();
            assert_eq!(who(&client.new_session()).await.unwrap(), "b");
            assert!(started.elapsed() < stagger, "took {:?}", started.elapsed());
        }
        assert_eq!(hole.accepted(), dials_before + 1, "the black hole was dialled twice");
    }
    println!("calls whose first choice was the black hole took {raced:?}");
    assert!(!raced.is_empty(), "no seed drew the black hole first");
}
