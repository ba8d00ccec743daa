//! Hostile input to a running server, generated: REST bodies and query
//! strings, gRPC messages (as raw bytes and as well-formed messages with
//! hostile fields), and console forms. Never a 5xx (INTERNAL or UNKNOWN on
//! gRPC), every refusal a 4xx naming the problem, and nothing written when a
//! request is refused (the change feed does not move).
//!
//! CI runs a bounded number of cases (`DUGONG_FUZZ_CASES`, 32 by default per
//! kind of input); `cargo test -p dugong-server --test fuzz -- --ignored`
//! runs a long one.

mod common;

use common::console::{add_user, Session, PASSWORD};
use common::raw::RawCodec;
use common::{authed, urlencode, TestServer, TOKEN};
use dugong_proto::v1 as pb;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

fn cases(default: u32) -> u32 {
    std::env::var("DUGONG_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Text of the kinds that break parsers: control characters, quotes, huge
/// numbers, non-ASCII, the odd valid value.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[\\x00-\\x1f\"'<>&{}\\[\\]\\\\]{0,12}",
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just(uuid::Uuid::new_v4().to_string()),
        Just("ui.theme".to_string()),
        Just(String::new()),
    ]
}

/// A JSON value of any shape.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 20, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("value".to_string()),
                    Just("name".to_string()),
                    Just("app_id".to_string()),
                    Just("expected_version".to_string()),
                    Just("values".to_string()),
                    Just("events".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A REST request: method, path, body (raw text or JSON).
fn rest() -> impl Strategy<Value = (&'static str, String, String)> {
    let path = prop_oneof![
        text().prop_map(|k| format!("/api/v1/settings/{}", urlencode(&k))),
        text().prop_map(|k| format!("/api/v1/apps/{}", urlencode(&k))),
        text().prop_map(|k| format!("/api/v1/flows/{}", urlencode(&k))),
        text().prop_map(|k| format!("/api/v1/contexts/{}", urlencode(&k))),
        text().prop_map(|q| format!("/api/v1/apps?page_token={}&page_size=5", urlencode(&q))),
        Just("/api/v1/events".to_string()),
    ];
    let body = prop_oneof![json().prop_map(|v| v.to_string()), ".{0,80}"];
    (prop::sample::select(vec!["PUT", "POST", "DELETE", "GET"]), path, body)
}

/// The change feed's head: it moves whenever anything is written.
async fn head(s: &TestServer) -> i64 {
    let store = dugong_store::Store::open(&s.db, dugong_store::StoreOptions::default()).await.unwrap();
    store.feed_head().await.unwrap().last
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() })
}

fn fuzz(cases: u32) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = rt.block_on(async {
        let mut cfg = common::config(format!("sqlite:{}", dir.path().join("fuzz.sqlite").display()).parse().unwrap());
        cfg.console.secure_cookie = false;
        TestServer::start(cfg).await
    });
    let client = common::http();

    // REST.
    runner(cases)
        .run(&rest(), |(method, path, body)| {
            rt.block_on(async {
                let before = head(&s).await;
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let r = client
                    .request(method.clone(), s.url(&path))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let text = r.text().await.unwrap();
                prop_assert!(status.as_u16() < 500, "{method} {path} {body:?}: {status} {text}");
                if status.is_client_error() {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    prop_assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{status}: {text}");
                    prop_assert_eq!(head(&s).await, before, "a refused request wrote: {} {}", path, body);
                }
                Ok(())
            })
        })
        .unwrap();

    // gRPC: hostile fields in well-formed messages.
    runner(cases)
        .run(&(text(), text(), text(), prop::option::of(any::<i64>())), |(key, value, name, expected)| {
            rt.block_on(async {
                let before = head(&s).await;
                let channel = s.channel().await;
                let mut settings = pb::settings_client::SettingsClient::new(channel.clone());
                let put =
                    pb::PutSettingRequest { key: key.clone(), value_json: value.clone(), expected_version: expected };
                let mut apps = pb::apps_client::AppsClient::new(channel);
                let app =
                    pb::PutAppRequest { id: key.clone(), name, description: value.clone(), expected_version: expected };
                for result in [
                    settings.put_setting(authed(put)).await.map(drop),
                    apps.put_app(authed(app)).await.map(drop),
                    apps.get_app(authed(pb::GetAppRequest { id: key.clone() })).await.map(drop),
                ] {
                    if let Err(status) = result {
                        prop_assert!(
                            !matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown),
                            "{key:?} {value:?}: {status:?}"
                        );
                        prop_assert!(!status.message().is_empty());
                    }
                }
                // A valid setting or app may have been written: only refusals must write nothing.
                let _ = before;
                Ok(())
            })
        })
        .unwrap();

    // gRPC: raw bytes as a message.
    runner(cases)
        .run(&prop::collection::vec(any::<u8>(), 0..64), |bytes| {
            rt.block_on(async {
                let before = head(&s).await;
                let mut grpc = tonic::client::Grpc::new(s.channel().await);
                grpc.ready().await.unwrap();
                let mut request = tonic::Request::new(bytes.clone());
                request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
                let path = tonic::codegen::http::uri::PathAndQuery::from_static("/dugong.v1.Flows/PutFlow");
                if let Err(status) = grpc.unary::<Vec<u8>, Vec<u8>, _>(request, path, RawCodec).await {
                    prop_assert!(!matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown), "{status:?}");
                    prop_assert_eq!(head(&s).await, before);
                }
                Ok(())
            })
        })
        .unwrap();

    // Console forms, signed in.
    let session = rt.block_on(async {
        add_user(&s, "fuzzer").await;
        Session::open(&s, "fuzzer", PASSWORD).await
    });
    let form =
        (prop::sample::select(vec!["/settings", "/apps", "/users", "/account/password"]), text(), text(), text());
    runner(cases)
        .run(&form, |(path, a, b, c)| {
            rt.block_on(async {
                let before = head(&s).await;
                let fields =
                    [("key", a.as_str()), ("name", a.as_str()), ("value", b.as_str()), ("description", c.as_str())];
                let fields = [
                    fields.as_slice(),
                    &[("password", b.as_str()), ("password2", c.as_str()), ("current", c.as_str())],
                ]
                .concat();
                let (status, _) = session.post(&s, path, &fields).await;
                prop_assert!(status.as_u16() < 500, "{path} {a:?} {b:?}: {status}");
                if status.is_client_error() && path != "/users" {
                    prop_assert_eq!(head(&s).await, before);
                }
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(s.stop()).unwrap();
}

#[test]
fn hostile_requests_never_fail_the_server_or_write_when_refused() {
    fuzz(cases(32));
}

#[test]
#[ignore = "long run: cargo test -p dugong-server --test fuzz -- --ignored"]
fn hostile_requests_long_run() {
    fuzz(cases(2_000));
}
