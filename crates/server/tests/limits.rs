//! The listeners under a hostile network: an allowlist checked before a byte
//! is read, per-peer connection limits, silent and slow connections closed
//! at their deadlines while the server keeps answering, the wrong protocol on
//! a port told so, and idle connections closed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{config, TestServer, DEADLINE};
use dugong_server::ServerConfig;
use dugong_testkit::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A SQLite server with `tweak` applied; its temporary directory is kept by
/// the returned guard.
async fn server(tweak: impl FnOnce(&mut ServerConfig)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("site.sqlite").display()).parse().unwrap();
    let mut cfg = config(db);
    tweak(&mut cfg);
    (TestServer::start(cfg).await, dir)
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// What the server sends before it closes the connection (`None` if it does
/// not close it within the deadline).
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// `GET /healthz` over plain HTTP/1 on `stream`: the status line.
async fn healthz(mut stream: TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let text = until_closed(&mut stream).await.unwrap_or_default();
    text.lines().next().unwrap_or_default().to_string()
}

/// The sum of `dugong_connections_refused_total` samples with `reason`.
async fn refused(s: &TestServer, reason: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", s.metrics)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("dugong_connections_refused_total") && l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Lets the test process hold many sockets (both ends of every connection).
fn more_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[tokio::test]
async fn the_allowlist_refuses_other_addresses_before_reading() {
    let (s, _dir) = server(|c| c.net.allow = vec!["127.0.0.1/32".parse().unwrap()]).await;
    assert_eq!(healthz(connect_from([127, 0, 0, 1], s.http).await).await, "HTTP/1.1 200 OK");
    let mut outsider = connect_from([127, 0, 0, 2], s.http).await;
    let _ = outsider.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(until_closed(&mut outsider).await.as_deref(), Some(""), "closed without an answer");
    let mut grpc = connect_from([127, 0, 0, 2], s.grpc).await;
    assert_eq!(until_closed(&mut grpc).await.as_deref(), Some(""));
    assert!(refused(&s, "not_allowed").await >= 2.0);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn six_hundred_silent_connections_are_closed_while_requests_are_served() {
    more_files();
    let (s, _dir) = server(|c| {
        c.net.handshake_timeout = Duration::from_secs(2);
        c.net.max_connections_per_peer = 1_000;
    })
    .await;
    let before = refused(&s, "handshake_timeout").await;
    let mut silent = Vec::new();
    for i in 0..600 {
        let to = if i % 2 == 0 { s.http } else { s.grpc };
        silent.push(TcpStream::connect(to).await.unwrap());
    }
    // All 600 are open and saying nothing; the server still answers.
    let info = common::http().get(s.url("/api/v1/info")).send().await.unwrap();
    assert_eq!(info.status(), reqwest::StatusCode::OK);
    let mut grpc = dugong_proto::v1::info_client::InfoClient::new(s.channel().await);
    assert!(grpc.server_info(dugong_proto::v1::ServerInfoRequest {}).await.is_ok());

    let closed = futures_util::future::join_all(silent.iter_mut().map(until_closed)).await;
    assert!(closed.iter().all(|c| c.as_deref() == Some("")), "every silent connection is closed, unanswered");
    wait_for("the closes to be counted", DEADLINE, || async {
        (refused(&s, "handshake_timeout").await - before >= 600.0).then_some(())
    })
    .await;
    // And it still answers afterwards.
    assert_eq!(common::http().get(s.url("/healthz")).send().await.unwrap().status(), reqwest::StatusCode::OK);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn one_peer_cannot_take_every_connection() {
    // Addresses of their own, so the start-up probe from 127.0.0.1 plays no part.
    let (s, _dir) = server(|c| c.net.max_connections_per_peer = 5).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from([127, 0, 0, 3], s.http).await);
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 3], 0))).unwrap();
    // The sixth is refused at once: reset while connecting, or closed unanswered.
    if let Ok(mut sixth) = socket.connect(s.http).await {
        assert_eq!(until_closed(&mut sixth).await.as_deref(), Some(""), "the sixth is closed at once");
    }
    assert_eq!(healthz(connect_from([127, 0, 0, 4], s.http).await).await, "HTTP/1.1 200 OK", "another peer gets in");
    drop(held);
    wait_for("a place to free up", DEADLINE, || async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 3], 0))).ok()?;
        let line = healthz(socket.connect(s.http).await.ok()?).await;
        (line == "HTTP/1.1 200 OK").then_some(())
    })
    .await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn slow_headers_are_cut_and_http_on_the_grpc_port_is_told_so() {
    let (s, _dir) = server(|c| c.net.header_timeout = Duration::from_secs(1)).await;
    let mut slow = TcpStream::connect(s.http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = until_closed(&mut slow).await.expect("closed at the header deadline");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    let mut wrong = TcpStream::connect(s.grpc).await.unwrap();
    wrong.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut wrong).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("This port speaks gRPC"), "{answer}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn idle_grpc_connections_are_told_to_go() {
    let (s, _dir) = server(|c| c.net.idle_timeout = Duration::from_millis(500)).await;
    let tcp = TcpStream::connect(s.grpc).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let request = hyper::Request::post(format!("http://{}/grpc.health.v1.Health/Check", s.grpc))
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    // No request in flight: the server says goodbye and the connection ends.
    let ended = tokio::time::timeout(DEADLINE, driver).await;
    assert!(ended.is_ok(), "the idle connection was not closed");
    s.stop().await.unwrap();
}
