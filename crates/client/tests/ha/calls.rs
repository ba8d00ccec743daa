//! The `dugong client` command as a library, and configuration errors as a user meets them.
//! (`info` and the data commands need the real application server: `tests/real_server.rs`.)

use std::process::ExitCode;

use clap::Parser;
use dugong_client::cli::{run_args, Args, Failure};

use crate::dns_with;
use crate::server::{bind_same_port, ips, TestServer, World};

#[derive(Parser)]
struct Dugong {
    #[command(flatten)]
    args: Args,
}

fn parse(argv: &[&str]) -> Args {
    let mut full = vec!["dugong-client"];
    full.extend_from_slice(argv);
    Dugong::try_parse_from(full).unwrap_or_else(|e| panic!("{e}")).args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_against_real_servers() {
    let world = World::new();
    let ip = ips(60, 2);
    let (port, listeners) = bind_same_port(&ip);
    let _servers: Vec<_> =
        listeners.into_iter().zip(["a", "b"]).map(|(l, n)| TestServer::start(l, n, &world)).collect();
    let dns = dns_with(&ip).await;
    let (url, dns) = (format!("grpc://ha.test:{port}"), dns.addr().to_string());
    let common = ["--url", &url, "--servers", "2", "--dns", &dns, "--reconnect-delay", "5"];
    let sessions = parse(&[&common[..], &["sessions", "--count", "200", "--json"]].concat());
    assert_eq!(run_args(sessions).await.unwrap(), ExitCode::SUCCESS);
}

#[tokio::test]
async fn configuration_errors_are_refused_with_a_clear_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["--url", "grpc://ha.test:8001", "--servers", "0", "info"], "--servers must be at least 1"),
        (&["--url", "http://ha.test:8001", "--servers", "2", "info"], "unsupported scheme \"http\""),
        (&["--server", "127.0.0.1:1", "--reconnect-delay", "0", "info"], "--reconnect-delay must be greater than zero"),
        (
            &["--server", "127.0.0.1:1", "--connect-timeout", "0s", "info"],
            "--connect-timeout must be greater than zero",
        ),
        (&["info"], "no servers configured"),
    ];
    for (argv, expected) in cases {
        let err = run_args(parse(argv)).await.expect_err("a configuration error");
        assert!(err.to_string().contains(expected), "{argv:?}: {err}");
        assert_eq!(Failure::of(&err).code(), 2, "{argv:?}: {err}");
    }
}
