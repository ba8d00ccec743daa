//! `grpcs://`: every server's certificate is checked against the CA given with `--ca` and the DNS
//! name the client used for it — `0.ha.test`, `1.ha.test` under `grpcs://ha.test --servers 2` —
//! or its IP address; and an API token never goes in cleartext beyond loopback.

use dugong_client::cli::count_sessions;
use dugong_client::{CallError, Client, ClientConfig, ConfigError, Token};
use dugong_testkit::TestDns;

use crate::pki::Ca;
use crate::server::{bind_same_port, ips, TestServer, World};
use crate::{quick, who};

/// Two TLS servers: `a` with a certificate for `0.ha.test`, `b` for `1.ha.test`.
struct Sites {
    a: TestServer,
    b: TestServer,
    port: u16,
    ip: Vec<std::net::Ipv4Addr>,
    ca: Ca,
    dir: tempfile::TempDir,
}

fn sites(net: u8) -> Sites {
    let world = World::new();
    let ip = ips(net, 2);
    let (port, mut listeners) = bind_same_port(&ip);
    let ca = Ca::new("sites");
    let b = TestServer::start_tls(listeners.pop().unwrap(), "b", &world, ca.server(&["1.ha.test"]));
    let a = TestServer::start_tls(listeners.pop().unwrap(), "a", &world, ca.server(&["0.ha.test", "10.9.8.7"]));
    Sites { a, b, port, ip, ca, dir: tempfile::tempdir().unwrap() }
}

fn grpcs(port: u16, dns: &TestDns) -> ClientConfig {
    quick(ClientConfig::url(&format!("grpcs://ha.test:{port}"), Some(2)).unwrap().with_dns(dns.addr()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_is_checked_against_its_own_numbered_name() {
    let s = sites(80);
    let dns = TestDns::start().await.unwrap();
    dns.set("0.ha.test", &[s.ip[0]]);
    dns.set("1.ha.test", &[s.ip[1]]);
    let ca = s.ca.write(s.dir.path(), "ca.pem");
    let config = grpcs(s.port, &dns).with_ca(&ca).with_token(Token::new("secret-0123456789").unwrap());
    let client = Client::new(config).await.unwrap();
    let tally = count_sessions(&client, 200, 16).await;
    assert_eq!(tally.failures, 0, "{tally:?}");
    assert_eq!(tally.servers.len(), 2, "both servers took sessions over TLS: {tally:?}");
    assert_eq!((s.a.accepted(), s.b.accepted()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_or_from_another_ca_is_refused() {
    let s = sites(81);
    let dns = TestDns::start().await.unwrap();
    // 0.ha.test now points at b, whose certificate names only 1.ha.test.
    dns.set("0.ha.test", &[s.ip[1]]);
    dns.set("1.ha.test", &[s.ip[0]]);
    let ca = s.ca.write(s.dir.path(), "ca.pem");
    let client = Client::new(grpcs(s.port, &dns).with_ca(&ca)).await.unwrap();
    let err = who(&client).await.expect_err("no certificate names the name used");
    let text = err.to_string();
    assert!(matches!(err, CallError::AllServersDown { .. }), "{err:?}");
    assert!(text.matches("not valid for name").count() == 2, "{text}");
    assert!(text.contains("0.ha.test") && text.contains("1.ha.test"), "{text}");

    // The right names, but the CA of someone else.
    dns.set("0.ha.test", &[s.ip[0]]);
    dns.set("1.ha.test", &[s.ip[1]]);
    let stranger = Ca::new("stranger").write(s.dir.path(), "stranger.pem");
    let client = Client::new(grpcs(s.port, &dns).with_ca(&stranger)).await.unwrap();
    let text = who(&client).await.expect_err("a stranger's CA").to_string();
    assert!(text.matches("UnknownIssuer").count() == 2, "{text}");

    // Without --ca the system's CAs are used, and they do not know the test CA.
    match Client::new(grpcs(s.port, &dns)).await {
        Ok(client) => {
            let text = who(&client).await.expect_err("the system does not trust the test CA").to_string();
            assert!(text.contains("UnknownIssuer"), "{text}");
        }
        Err(e) => assert!(matches!(e, ConfigError::NoSystemRoots(_)), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_given_by_address_must_have_its_address_in_the_certificate() {
    let world = World::new();
    let ip = ips(82, 2);
    let (_, mut listeners) = bind_same_port(&ip);
    let ca = Ca::new("ip");
    let named = TestServer::start_tls(listeners.pop().unwrap(), "named", &world, ca.server(&["0.ha.test"]));
    let by_ip = ip[0].to_string();
    let ip_server = TestServer::start_tls(listeners.pop().unwrap(), "by-ip", &world, ca.server(&[by_ip.as_str()]));
    let dir = tempfile::tempdir().unwrap();
    let ca = ca.write(dir.path(), "ca.pem");
    let config =
        |addr: std::net::SocketAddr| quick(ClientConfig::servers([format!("grpcs://{addr}")]).unwrap().with_ca(&ca));
    let client = Client::new(config(ip_server.addr())).await.unwrap();
    assert_eq!(who(&client).await.unwrap(), "by-ip");
    let client = Client::new(config(named.addr())).await.unwrap();
    let text = who(&client).await.expect_err("the certificate does not name the address").to_string();
    assert!(text.contains("not valid for name"), "{text}");
}

#[tokio::test]
async fn a_token_is_never_sent_in_cleartext_beyond_loopback() {
    // 198.18.0.0/15 is for benchmarks: nothing is sent there, the client refuses before dialling.
    let token = Token::new("secret-0123456789").unwrap();
    let remote = ClientConfig::servers(["198.18.0.7:8001"]).unwrap().with_token(token.clone());
    let err = Client::new(remote.clone()).await.err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, ConfigError::CleartextToken { .. }), "{err:?}");
    assert!(text.contains("198.18.0.7:8001") && text.contains("grpcs://") && text.contains("--insecure"), "{text}");
    // Also when a name resolves there.
    let dns = TestDns::start().await.unwrap();
    dns.set("0.ha.test", &["198.18.0.8".parse::<std::net::Ipv4Addr>().unwrap()]);
    let named =
        ClientConfig::url("grpc://ha.test:8001", Some(1)).unwrap().with_dns(dns.addr()).with_token(token.clone());
    let err = Client::new(named).await.err().expect("refused");
    assert!(err.to_string().contains("198.18.0.8:8001 (0.ha.test)"), "{err}");
    // --insecure says the network is trusted; TLS needs no such word; no token, nothing to hide.
    Client::new(remote.with_insecure(true)).await.expect("allowed with --insecure");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("guard").write(dir.path(), "ca.pem");
    let tls = ClientConfig::servers(["grpcs://198.18.0.7:8001"]).unwrap().with_ca(ca).with_token(token);
    Client::new(tls).await.expect("a token may travel over TLS anywhere");
    Client::new(ClientConfig::servers(["198.18.0.7:8001"]).unwrap()).await.expect("no token");
}
