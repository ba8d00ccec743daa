//! The gRPC API end to end, on PostgreSQL and on SQLite: every service,
//! optimistic concurrency, idempotent events, tokens, bad input, server info
//! and the standard health service.

mod common;

use std::collections::HashMap;

use common::{authed, uuid, TestServer};
use dugong_proto::v1 as pb;
use pb::apps_client::AppsClient;
use pb::contexts_client::ContextsClient;
use pb::events_client::EventsClient;
use pb::flows_client::FlowsClient;
use pb::info_client::InfoClient;
use pb::settings_client::SettingsClient;
use tonic::{Code, Request};

async fn every_service_round_trips(s: &TestServer) {
    let ch = s.channel().await;
    let (mut apps, mut flows) = (AppsClient::new(ch.clone()), FlowsClient::new(ch.clone()));
    let (mut settings, mut contexts) = (SettingsClient::new(ch.clone()), ContextsClient::new(ch.clone()));

    let info = InfoClient::new(ch.clone()).server_info(pb::ServerInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (info.site.as_str(), info.database_reachable, info.schema_version),
        ("s0", true, dugong_store::migrate::latest() as u32)
    );
    assert_eq!(info.engine, s.db.engine());

    let id = uuid();
    let put = pb::PutAppRequest {
        id: id.clone(),
        name: "Journal".into(),
        description: "EHR".into(),
        expected_version: Some(0),
    };
    let app = apps.put_app(authed(put)).await.unwrap().into_inner();
    assert_eq!((app.version, app.name.as_str()), (1, "Journal"));
    assert!(app.updated_at.is_some());
    let got = apps.get_app(pb::GetAppRequest { id: id.to_uppercase() }).await.unwrap().into_inner();
    assert_eq!(got, app, "ids are case-insensitive UUIDs");

    let flow_id = uuid();
    let put = pb::PutFlowRequest {
        id: flow_id.clone(),
        app_id: id.clone(),
        name: "login".into(),
        script: "type(user)\n".into(),
        expected_version: None,
    };
    flows.put_flow(authed(put)).await.unwrap();
    let listed = flows.list_flows(pb::ListFlowsRequest { app_id: id.clone(), ..Default::default() }).await.unwrap();
    let listed = listed.into_inner();
    assert_eq!(listed.flows.len(), 1);
    assert_eq!((listed.flows[0].script.as_str(), listed.next_page_token.as_str()), ("type(user)\n", ""));

    for i in 0..3 {
        let put = pb::PutSettingRequest {
            key: format!("k{i}"),
            value_json: format!("{{\"n\": {i}}}"),
            expected_version: None,
        };
        settings.put_setting(authed(put)).await.unwrap();
    }
    let page =
        settings.list_settings(pb::ListSettingsRequest { page_size: 2, page_token: String::new() }).await.unwrap();
    let page = page.into_inner();
    assert_eq!(page.settings.len(), 2);
    let rest = settings.list_settings(pb::ListSettingsRequest { page_size: 2, page_token: page.next_page_token }).await;
    assert_eq!(rest.unwrap().into_inner().settings[0].key, "k2");
    let k1 = settings.get_setting(pb::GetSettingRequest { key: "k1".into() }).await.unwrap().into_inner();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&k1.value_json).unwrap(), serde_json::json!({"n": 1}));

    let values: HashMap<String, String> = [("patient".to_string(), "0101-1234".to_string())].into();
    let put = pb::PutContextRequest { user: "alice".into(), values: values.clone(), expected_version: None };
    contexts.put_context(authed(put)).await.unwrap();
    let ctx = contexts.get_context(pb::GetContextRequest { user: "alice".into() }).await.unwrap().into_inner();
    assert_eq!(ctx.values, values);

    let deleted = apps.delete_app(authed(pb::DeleteAppRequest { id: id.clone(), expected_version: Some(1) })).await;
    assert_eq!(deleted.unwrap().into_inner().version, 1);
    let gone = flows.get_flow(pb::GetFlowRequest { id: flow_id }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

async fn versions_guard_writes(s: &TestServer) {
    let mut settings = SettingsClient::new(s.channel().await);
    let put = |v: i64, expected: Option<i64>| pb::PutSettingRequest {
        key: "x".into(),
        value_json: v.to_string(),
        expected_version: expected,
    };
    settings.put_setting(authed(put(1, Some(0)))).await.unwrap();
    let err = settings.put_setting(authed(put(2, Some(0)))).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.metadata().get("dugong-current-version").unwrap(), "1");
    settings.put_setting(authed(put(2, Some(1)))).await.unwrap();
    let err = settings.put_setting(authed(put(3, Some(1)))).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("the current version is 2"));
    let now = settings.get_setting(pb::GetSettingRequest { key: "x".into() }).await.unwrap().into_inner();
    assert_eq!((now.value_json.as_str(), now.version), ("2", 2));
    let err =
        settings.delete_setting(authed(pb::DeleteSettingRequest { key: "x".into(), expected_version: Some(1) })).await;
    assert_eq!(err.unwrap_err().code(), Code::Aborted);
}

/// App names, and one app's flow names, are unique ignoring case: a taken
/// one is ALREADY_EXISTS naming it, and nothing is written.
async fn taken_names_are_refused(s: &TestServer) {
    let ch = s.channel().await;
    let (mut apps, mut flows) = (AppsClient::new(ch.clone()), FlowsClient::new(ch));
    let app = |id: &str, name: &str| pb::PutAppRequest { id: id.into(), name: name.into(), ..Default::default() };
    let first = uuid();
    apps.put_app(authed(app(&first, "Billing"))).await.unwrap();
    let second = uuid();
    let err = apps.put_app(authed(app(&second, "BILLING"))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("\"BILLING\" is taken"), "{}", err.message());
    let gone = apps.get_app(pb::GetAppRequest { id: second.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "nothing written");
    apps.put_app(authed(app(&first, "billing"))).await.expect("an app may change the case of its own name");

    let flow = |id: &str, app_id: &str| pb::PutFlowRequest {
        id: id.into(),
        app_id: app_id.into(),
        name: "Login".into(),
        ..Default::default()
    };
    flows.put_flow(authed(flow(&uuid(), &first))).await.unwrap();
    let err = flows.put_flow(authed(flow(&uuid(), &first))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    apps.put_app(authed(app(&second, "Other"))).await.unwrap();
    flows.put_flow(authed(flow(&uuid(), &second))).await.expect("another app's flow may share the name");
}

async fn retried_event_posts_store_nothing_twice(s: &TestServer) {
    let mut events = EventsClient::new(s.channel().await);
    let batch: Vec<pb::Event> = (0..3)
        .map(|i| pb::Event {
            id: uuid(),
            kind: "flow.run".into(),
            user: "bob".into(),
            occurred_at: Some(prost_types::Timestamp { seconds: 1_714_564_800, nanos: 5_000 }),
            payload_json: format!("{{\"i\": {i}}}"),
            ..Default::default()
        })
        .collect();
    let first = events.post_events(authed(pb::PostEventsRequest { events: batch.clone() })).await.unwrap().into_inner();
    assert_eq!((first.accepted, first.duplicates), (3, 0));
    let retry = events.post_events(authed(pb::PostEventsRequest { events: batch })).await.unwrap().into_inner();
    assert_eq!((retry.accepted, retry.duplicates), (0, 3));
    let listed = events.list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.events.len(), 3);
    let e = &listed.events[0];
    assert_eq!((e.site.as_str(), e.occurred_at.unwrap().nanos), ("s0", 5_000));
}

#[tokio::test]
async fn grpc_end_to_end_on_postgres() {
    let s = TestServer::postgres("grpc_e2e").await;
    every_service_round_trips(&s).await;
    versions_guard_writes(&s).await;
    taken_names_are_refused(&s).await;
    retried_event_posts_store_nothing_twice(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_end_to_end_on_sqlite() {
    let s = TestServer::sqlite().await;
    every_service_round_trips(&s).await;
    versions_guard_writes(&s).await;
    taken_names_are_refused(&s).await;
    retried_event_posts_store_nothing_twice(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn writes_need_a_token_and_bad_input_is_named() {
    let s = TestServer::sqlite().await;
    let ch = s.channel().await;
    let mut settings = SettingsClient::new(ch.clone());
    let put = pb::PutSettingRequest { key: "k".into(), value_json: "1".into(), expected_version: None };
    let err = settings.put_setting(Request::new(put.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut wrong = Request::new(put.clone());
    wrong.metadata_mut().insert("authorization", "Bearer wrong-token-0123456789".parse().unwrap());
    assert_eq!(settings.put_setting(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    let err = EventsClient::new(ch.clone()).post_events(pb::PostEventsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let bad = |key: &str, json: &str| pb::PutSettingRequest {
        key: key.into(),
        value_json: json.into(),
        expected_version: None,
    };
    for (request, needle) in [
        (bad("k", "{not json"), "value_json: not JSON"),
        (bad("k", ""), "value_json: missing"),
        (bad("a b", "1"), "key: may contain only"),
        (bad("k", &format!("\"{}\"", "x".repeat(70_000))), "value: 70002 bytes of JSON"),
    ] {
        let err = settings.put_setting(authed(request)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}");
        assert!(err.message().contains(needle), "{} lacks {needle}", err.message());
    }
    let err = AppsClient::new(ch.clone()).get_app(pb::GetAppRequest { id: "x".into() }).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "id: not a UUID (like 0b3e5a04-7c51-4e1c-9f6a-2d1f0c8b9e77)")
    );
    let events = pb::PostEventsRequest {
        events: vec![pb::Event { id: uuid(), kind: "k".into(), payload_json: "{".into(), ..Default::default() }],
    };
    let err = EventsClient::new(ch.clone()).post_events(authed(events)).await.unwrap_err();
    assert!(err.message().starts_with("events[0].payload_json: not JSON"), "{}", err.message());
    let huge = pb::PutFlowRequest {
        id: uuid(),
        app_id: uuid(),
        name: "f".into(),
        script: "x".repeat(3 << 20),
        expected_version: None,
    };
    let err = FlowsClient::new(ch.clone()).put_flow(authed(huge)).await.unwrap_err();
    assert!(matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument), "{err:?}");
    // Nothing written.
    let listed = settings.list_settings(pb::ListSettingsRequest::default()).await.unwrap().into_inner();
    assert!(listed.settings.is_empty());
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_standard_health_service_reports_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let s = TestServer::sqlite().await;
    let mut health = HealthClient::new(s.channel().await);
    for service in ["", "dugong.v1.Apps", "dugong.v1.Watch"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    s.stop().await.unwrap();
}
