//! The smaller findings of the security review, each held here: a malformed
//! protobuf message is INVALID_ARGUMENT; integers beyond 64 bits are refused
//! (and those within kept exactly); a write whose commit could not be
//! confirmed says its outcome is unknown; a role without the grants it needs
//! stops the server at start naming them; reads need a token when the server
//! listens beyond loopback.

mod common;

use std::net::SocketAddr;

use common::raw::RawCodec;
use common::{authed, config, TestServer, DEADLINE, TOKEN};
use dugong_proto::v1 as pb;
use dugong_store::DbUrl;
use dugong_testkit::{Cluster, FaultProxy};
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;

/// Sends `body` as the message of `path`, bytes as they are.
async fn raw_grpc(s: &TestServer, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(s.channel().await);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary::<Vec<u8>, Vec<u8>, _>(request, path, RawCodec).await.unwrap_err()
}

#[tokio::test]
async fn malformed_messages_are_invalid_arguments() {
    let s = TestServer::sqlite().await;
    // Field 1 with wire type 7, which does not exist; then a length that runs past the end.
    for bytes in [vec![0x0f, 0x01], vec![0x0a, 0x40, b'x'], vec![0xff; 11]] {
        let status = raw_grpc(&s, "/dugong.v1.Settings/PutSetting", bytes.clone()).await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bytes:?}: {status:?}");
        assert!(status.message().contains("not a valid protobuf message"), "{status:?}");
    }
    let mut settings = pb::settings_client::SettingsClient::new(s.channel().await);
    let page = settings.list_settings(authed(pb::ListSettingsRequest::default())).await.unwrap().into_inner();
    assert!(page.settings.is_empty(), "nothing was written");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn integers_beyond_64_bits_are_refused_and_the_rest_kept_exactly() {
    let s = TestServer::postgres("bigints").await;
    let put = |key: &str, body: String| {
        common::http()
            .put(s.url(&format!("/api/v1/settings/{key}")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = put("big", r#"{"value": {"n": 123456789012345678901234567890}}"#.into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(text.contains("does not fit in 64 bits") && text.contains("write it as a string"), "{text}");
    let r = put("edge", format!(r#"{{"value": [{}, {}]}}"#, u64::MAX, i64::MIN)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got: serde_json::Value =
        common::http().get(s.url("/api/v1/settings/edge")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["value"], json!([u64::MAX, i64::MIN]), "kept exactly");

    let mut settings = pb::settings_client::SettingsClient::new(s.channel().await);
    let request =
        pb::PutSettingRequest { key: "g".into(), value_json: "18446744073709551616".into(), ..Default::default() };
    let status = settings.put_setting(authed(request)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("value_json: the integer at line 1 column 1"), "{status:?}");
    assert_eq!(common::http().get(s.url("/api/v1/settings/big")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_reported_as_of_unknown_outcome() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("unknown").await.unwrap();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], cluster.port()))).await.unwrap();
    let url: DbUrl =
        format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable", proxy.addr().port()).parse().unwrap();
    let s = TestServer::start(config(url)).await;
    proxy.lose_answer_to(b"lost-over-rest");
    let r = common::http().put(s.url("/api/v1/settings/lost-over-rest")).bearer_auth(TOKEN).json(&json!({"value": 1}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "outcome_unknown", "{body}");
    assert!(body["error"].as_str().unwrap().contains("may or may not have been committed"), "{body}");

    proxy.lose_answer_to(b"lost-over-grpc");
    let mut settings = pb::settings_client::SettingsClient::new(s.channel().await);
    let request = pb::PutSettingRequest { key: "lost-over-grpc".into(), value_json: "1".into(), ..Default::default() };
    let status = settings.put_setting(authed(request)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
    // Both did commit: a client that reads first sees them.
    let admin = cluster.connect(&db).await.unwrap();
    let n: i64 = admin
        .query_one("SELECT count(*) FROM dugong_app.settings WHERE key LIKE 'lost-over-%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_role_without_its_grants_is_stopped_at_start() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("grants").await.unwrap();
    let owner: DbUrl = cluster.url(&db).parse().unwrap();
    let store = dugong_store::Store::open(&owner, dugong_store::StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    cluster
        .psql(
            &db,
            "DROP ROLE IF EXISTS app_reader; CREATE ROLE app_reader LOGIN;
             GRANT USAGE ON SCHEMA dugong_app, dugong_local TO app_reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA dugong_app, dugong_local TO app_reader;",
        )
        .await
        .unwrap();
    let url: DbUrl = format!("postgres://app_reader@127.0.0.1:{}/{db}", cluster.port()).parse().unwrap();
    let s = TestServer::spawn(config(url)).await;
    let ended = tokio::time::timeout(DEADLINE, s.stop()).await.expect("run returns");
    let err = ended.expect_err("the server refuses to start").to_string();
    assert!(err.contains("role app_reader lacks privileges"), "{err}");
    assert!(err.contains("GRANT INSERT ON dugong_app.apps TO app_reader"), "{err}");
}

#[tokio::test]
async fn reads_need_a_token_when_listening_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let db: DbUrl = format!("sqlite:{}", dir.path().join("s.sqlite").display()).parse().unwrap();
    // 0.0.0.0 is every interface; the test still only talks to 127.0.0.1.
    let http = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = http.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let listeners = dugong_server::Listeners { grpc, http, metrics: None };
    let stopped = stop.clone();
    let task = tokio::spawn(dugong_server::run(listeners, config(db), async move { stopped.cancelled().await }));
    let url = format!("http://127.0.0.1:{port}/api/v1/settings");
    let status = dugong_testkit::wait_for("the server", DEADLINE, || async {
        Some(common::http().get(&url).send().await.ok()?.status())
    })
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "reads need a token beyond loopback");
    let r = common::http().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Health and the OpenAPI document stay open.
    let health = common::http().get(format!("http://127.0.0.1:{port}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    stop.cancel();
    task.await.unwrap().unwrap();
}
