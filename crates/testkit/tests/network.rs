//! Test networks: namespaces joined by veth links that tests cut and heal, PostgreSQL and
//! programs inside them, and nothing left behind. These need root and iproute2, as CI has;
//! without them they fail saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use dugong_testkit::{wait_for, Cluster, ClusterOptions, Namespace, TestNetwork};

/// Every network namespace on the machine.
fn all_namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A listener inside `ns` on its address, answering each connection with "hello".
fn serve_hello(ns: &Namespace) -> SocketAddr {
    let listener = ns.run_inside(|| TcpListener::bind((ns.address(), 0))).expect("bind inside the namespace");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"hello");
        }
    });
    addr
}

/// `SELECT count(*) FROM t` over TCP from inside `from`, with `config`'s user and database.
async fn query_over_network(
    from: &Namespace,
    server: SocketAddr,
    config: &tokio_postgres::Config,
) -> Result<i64, Box<dyn std::error::Error>> {
    let stream = from.connect(server, Duration::from_secs(2))?;
    stream.set_nonblocking(true)?;
    let (client, connection) = config.connect_raw(tokio::net::TcpStream::from_std(stream)?, NoTls).await?;
    tokio::spawn(connection);
    Ok(client.query_one("SELECT count(*) FROM t", &[]).await?.get(0))
}

fn greeting(from: &Namespace, addr: SocketAddr) -> std::io::Result<String> {
    let mut conn = from.connect(addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    Ok(text)
}

#[tokio::test]
async fn namespaces_talk_over_their_links_until_one_is_cut() {
    let net = TestNetwork::new().expect("network namespaces (root and iproute2)");
    let a = net.add("a").unwrap();
    let b = net.add("b").unwrap();
    assert_eq!(a.address().to_string(), "198.18.0.1");
    assert_eq!(b.address().to_string(), "198.18.0.2");
    assert!(a.name().starts_with(&format!("dg{}n", std::process::id())), "{}", a.name());
    assert_eq!(net.namespaces().len(), 3, "the hub and two members");

    let addr = serve_hello(&a);
    assert_eq!(greeting(&b, addr).unwrap(), "hello");

    a.cut().unwrap();
    let started = Instant::now();
    let err = greeting(&b, addr).expect_err("a cut link carries nothing");
    assert!(started.elapsed() >= Duration::from_millis(500), "a cut drops packets, it does not refuse: {err}");
    // The namespace's own traffic goes on.
    assert_eq!(greeting(&a, addr).unwrap(), "hello");

    a.heal().unwrap();
    wait_for("the healed link to carry traffic", Duration::from_secs(10), || async {
        greeting(&b, addr).ok().filter(|g| g == "hello")
    })
    .await;
}

#[test]
fn member_labels_are_checked() {
    let net = TestNetwork::new().expect("network namespaces (root and iproute2)");
    net.add("dc0").unwrap();
    let err = net.add("DC-0").unwrap_err().to_string();
    assert!(err.contains("label of its own"), "{err}");
    let err = net.add("hub").unwrap_err().to_string();
    assert!(err.contains("label of its own"), "{err}");
}

#[tokio::test]
async fn a_cluster_in_a_namespace_serves_its_network_and_this_process_whatever_the_link() {
    let net = TestNetwork::new().expect("network namespaces (root and iproute2)");
    let dc = net.add("dc").unwrap();
    let other = net.add("other").unwrap();
    let cluster = Cluster::start_in(&dc, ClusterOptions::default()).unwrap();
    assert_eq!(cluster.host(), dc.address().to_string());
    assert!(cluster.url("x").starts_with(&format!("postgres://postgres@{}:", dc.address())));
    let db = cluster.create_database("netns").await.unwrap();
    cluster.psql(&db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)").await.unwrap();
    let server: SocketAddr = (dc.address(), cluster.port()).into();
    let answer = query_over_network(&other, server, &cluster.pg_config(&db)).await;
    assert_eq!(answer.expect("the network's other namespaces reach the server"), 1);

    dc.cut().unwrap();
    assert!(other.connect(server, Duration::from_secs(1)).is_err(), "cut off");
    let client = cluster.connect(&db).await.expect("this process still reaches it over its socket");
    assert_eq!(client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get::<_, i64>(0), 1);
    drop(client);

    // A crash and a restart keep it in its namespace.
    cluster.kill9().unwrap();
    cluster.restart().unwrap();
    dc.heal().unwrap();
    let back = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match other.connect(server, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    back.await.unwrap().expect("the restarted server listens on the healed network");
    cluster.connect(&db).await.unwrap();
}

#[test]
fn programs_run_inside_and_dropping_the_network_ends_them_and_deletes_it() {
    let net = TestNetwork::new().expect("network namespaces (root and iproute2)");
    let dc = net.add("dc").unwrap();
    let out = dc.command("ip").args(["-4", "-o", "address", "show", "dev", "eth0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("198.18.0.1/24"), "{out:?}");
    let mut child = dc.command("sleep").arg("600").spawn().unwrap();
    let names = net.namespaces();
    assert!(names.iter().all(|n| all_namespaces().contains(n.as_str())));

    drop(dc);
    drop(net);
    let listed = all_namespaces();
    for name in &names {
        assert!(!listed.contains(name.as_str()), "{name} left behind: {listed}");
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the process left inside was ended");
}

/// Set in the child process of `the_watchdog_deletes_the_network_of_a_killed_test_process`.
const CHILD_ENV: &str = "DUGONG_TESTKIT_NETWORK_CHILD";

/// Does nothing in a normal run. As the child of the test below, makes a network with a
/// process inside, reports it, and aborts: no destructor runs, the watchdog must clean up.
#[test]
fn network_watchdog_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let net = TestNetwork::new().unwrap();
    let dc = net.add("dc").unwrap();
    let child = dc.command("sleep").arg("600").stdout(Stdio::null()).spawn().unwrap();
    println!("NETWORK {} {}", child.id(), net.namespaces().join(" "));
    std::process::abort();
}

#[test]
fn the_watchdog_deletes_the_network_of_a_killed_test_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "network_watchdog_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(Result::unwrap)
        .find_map(|line| Some(line.split_once("NETWORK ")?.1.to_owned()))
        .expect("child reported its network");
    assert!(!child.wait().unwrap().success(), "child should have aborted");
    let mut words = line.split(' ');
    let pid: i32 = words.next().unwrap().parse().unwrap();
    let names: Vec<String> = words.map(str::to_owned).collect();
    assert_eq!(names.len(), 2, "{line}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = all_namespaces();
        let left: Vec<&String> = names.iter().filter(|n| listed.contains(n.as_str())).collect();
        let alive = runs(pid);
        if left.is_empty() && !alive {
            break;
        }
        assert!(Instant::now() < deadline, "{left:?} or process {pid} outlived the test process");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` runs and is not a zombie, from `/proc`.
fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 1..].split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}
