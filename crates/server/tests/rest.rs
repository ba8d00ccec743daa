//! The REST API end to end, on PostgreSQL and on SQLite: every resource,
//! optimistic concurrency, idempotent events, tokens, and every kind of bad
//! input refused with a 4xx that names it while nothing is written.

mod common;

use common::{http, send, uuid, TestServer, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get(s: &TestServer, path: &str) -> (StatusCode, Value) {
    send(s, reqwest::Method::GET, path, None).await
}

async fn put(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    send(s, reqwest::Method::PUT, path, Some(body)).await
}

async fn delete(s: &TestServer, path: &str) -> (StatusCode, Value) {
    send(s, reqwest::Method::DELETE, path, None).await
}

async fn every_resource_round_trips(s: &TestServer) {
    let (status, info) = get(s, "/api/v1/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["site"], "s0");
    assert_eq!(info["database_reachable"], true);

    // Settings: the shape the issue names.
    let (status, created) = put(s, "/api/v1/settings/ui.theme", json!({"value": {"dark": true, "size": 12}})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["version"].as_i64(), &created["value"]), (Some(1), &json!({"dark": true, "size": 12})));
    let (status, replaced) = put(s, "/api/v1/settings/ui.theme", json!({"value": "light"})).await;
    assert_eq!((status, replaced["version"].as_i64()), (StatusCode::OK, Some(2)));
    let (_, got) = get(s, "/api/v1/settings/ui.theme").await;
    assert_eq!((got["value"].as_str(), got["version"].as_i64()), (Some("light"), Some(2)));

    // Apps and their flows.
    let app = uuid();
    let (status, body) = put(s, &format!("/api/v1/apps/{app}"), json!({"name": "Journal", "description": "EHR"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let flows: Vec<String> = (0..3).map(|_| uuid()).collect();
    for (i, f) in flows.iter().enumerate() {
        let body = json!({"app_id": app, "name": format!("flow {i}"), "script": "open(\"x\")\n"});
        assert_eq!(put(s, &format!("/api/v1/flows/{f}"), body).await.0, StatusCode::CREATED);
    }
    put(s, &format!("/api/v1/apps/{}", uuid()), json!({"name": "other"})).await;
    let (_, page) = get(s, &format!("/api/v1/flows?app_id={app}&page_size=2")).await;
    assert_eq!(page["flows"].as_array().unwrap().len(), 2, "{page}");
    let token = page["next_page_token"].as_str().unwrap().to_string();
    let (_, rest) = get(s, &format!("/api/v1/flows?app_id={app}&page_size=2&page_token={token}")).await;
    assert_eq!(rest["flows"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_page_token"], "");
    let (_, apps) = get(s, "/api/v1/apps").await;
    assert_eq!(apps["apps"].as_array().unwrap().len(), 2);

    // Contexts.
    let (status, ctx) = put(s, "/api/v1/contexts/alice", json!({"values": {"patient": "0101-1234"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{ctx}");
    assert_eq!(get(s, "/api/v1/contexts/alice").await.1["values"]["patient"], "0101-1234");

    // Deletes; deleting the app takes its flows along.
    let (status, gone) = delete(s, &format!("/api/v1/apps/{app}")).await;
    assert_eq!((status, gone["version"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(get(s, &format!("/api/v1/flows/{}", flows[0])).await.0, StatusCode::NOT_FOUND);
    assert_eq!(delete(s, "/api/v1/contexts/alice").await.0, StatusCode::OK);
    let (status, body) = get(s, "/api/v1/contexts/alice").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

async fn versions_guard_writes(s: &TestServer) {
    let path = "/api/v1/settings/limit";
    assert_eq!(put(s, path, json!({"value": 1, "expected_version": 0})).await.0, StatusCode::CREATED);
    let (status, body) = put(s, path, json!({"value": 2, "expected_version": 0})).await;
    assert_eq!((status, body["current_version"].as_i64()), (StatusCode::CONFLICT, Some(1)), "{body}");
    assert_eq!(put(s, path, json!({"value": 2, "expected_version": 1})).await.0, StatusCode::OK);
    // A writer that read version 1 loses, and its value is not written.
    let (status, body) = put(s, path, json!({"value": 3, "expected_version": 1})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("expected version 1, the current version is 2"), "{body}");
    assert_eq!(get(s, path).await.1["value"], 2);
    assert_eq!(delete(s, &format!("{path}?expected_version=1")).await.0, StatusCode::CONFLICT);
    assert_eq!(delete(s, &format!("{path}?expected_version=2")).await.0, StatusCode::OK);
}

async fn retried_event_posts_store_nothing_twice(s: &TestServer) {
    let events: Vec<Value> = (0..4)
        .map(|i| json!({"id": uuid(), "kind": "flow.run", "user": "alice", "occurred_at": "2024-05-01T12:00:00Z", "payload": {"i": i}}))
        .collect();
    let (status, first) = send(s, reqwest::Method::POST, "/api/v1/events", Some(json!({"events": events[..2]}))).await;
    assert_eq!((status, &first), (StatusCode::OK, &json!({"accepted": 2, "duplicates": 0})));
    // The client did not hear back and retries everything, now with two more.
    let (_, retry) = send(s, reqwest::Method::POST, "/api/v1/events", Some(json!({"events": events}))).await;
    assert_eq!(retry, json!({"accepted": 2, "duplicates": 2}));
    let (_, listed) = get(s, "/api/v1/events").await;
    let listed = listed["events"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|e| e["site"] == "s0" && e["occurred_at"] == "2024-05-01T12:00:00Z"), "{listed:?}");
}

#[tokio::test]
async fn rest_end_to_end_on_postgres() {
    let s = TestServer::postgres("rest_e2e").await;
    every_resource_round_trips(&s).await;
    versions_guard_writes(&s).await;
    retried_event_posts_store_nothing_twice(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn rest_end_to_end_on_sqlite() {
    let s = TestServer::sqlite().await;
    every_resource_round_trips(&s).await;
    versions_guard_writes(&s).await;
    retried_event_posts_store_nothing_twice(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn writes_without_a_valid_token_are_refused() {
    let s = TestServer::sqlite().await;
    let url = s.url("/api/v1/settings/k");
    let body = json!({"value": 1});
    let none = http().put(&url).json(&body).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = http().put(&url).bearer_auth("not-the-token-0123456789").json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let basic = http().put(&url).header("authorization", format!("Basic {TOKEN}")).json(&body).send().await.unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    for r in [
        http().delete(&url).send().await.unwrap(),
        http().post(s.url("/api/v1/events")).json(&json!({"events": []})).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Nothing was written; reads need no token.
    assert_eq!(http().get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_problem_and_writes_nothing() {
    let s = TestServer::postgres("rest_bad_input").await;
    let app = uuid();
    let cases: Vec<(&str, String, Option<&str>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            "/api/v1/settings/k".into(),
            Some("{\"value\": 1,"),
            StatusCode::BAD_REQUEST,
            "invalid JSON body: EOF",
        ),
        (
            "unknown field",
            "/api/v1/settings/k".into(),
            Some("{\"valeu\": 1}"),
            StatusCode::BAD_REQUEST,
            "unknown field `valeu`",
        ),
        ("missing field", "/api/v1/settings/k".into(), Some("{}"), StatusCode::BAD_REQUEST, "missing field `value`"),
        (
            "wrong type",
            "/api/v1/settings/k".into(),
            Some("{\"value\": 1, \"expected_version\": \"one\"}"),
            StatusCode::BAD_REQUEST,
            "at expected_version: invalid type: string",
        ),
        (
            "wrong type in a map",
            "/api/v1/contexts/alice".into(),
            Some("{\"values\": {\"patient\": 42}}"),
            StatusCode::BAD_REQUEST,
            "at values.patient: invalid type: integer",
        ),
        (
            "trailing data",
            "/api/v1/settings/k".into(),
            Some("{\"value\": 1} {}"),
            StatusCode::BAD_REQUEST,
            "trailing characters",
        ),
        (
            "bad key",
            "/api/v1/settings/a%2Fb".into(),
            Some("{\"value\": 1}"),
            StatusCode::BAD_REQUEST,
            "key: may contain only",
        ),
        (
            "bad uuid",
            "/api/v1/apps/not-a-uuid".into(),
            Some("{\"name\": \"x\"}"),
            StatusCode::BAD_REQUEST,
            "id: not a UUID",
        ),
        (
            "oversized value",
            "/api/v1/settings/k".into(),
            None,
            StatusCode::BAD_REQUEST,
            "value: 70002 bytes of JSON; at most 65536",
        ),
        (
            "negative version",
            "/api/v1/settings/k".into(),
            Some("{\"value\": 1, \"expected_version\": -1}"),
            StatusCode::BAD_REQUEST,
            "expected_version: must be 0",
        ),
        (
            "flow of a missing app",
            format!("/api/v1/flows/{}", uuid()),
            None,
            StatusCode::BAD_REQUEST,
            "app_id: no app with this id",
        ),
        (
            "empty name",
            format!("/api/v1/apps/{app}"),
            Some("{\"name\": \"  \"}"),
            StatusCode::BAD_REQUEST,
            "name: missing",
        ),
    ];
    for (what, path, body, status, needle) in cases {
        let body = match (what, body) {
            ("oversized value", _) => json!({"value": "x".repeat(70_000)}).to_string(),
            ("flow of a missing app", _) => json!({"app_id": uuid(), "name": "f"}).to_string(),
            (_, Some(b)) => b.to_string(),
            (_, None) => unreachable!(),
        };
        let r = http()
            .put(s.url(&path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{what}");
        let answer: Value = r.json().await.unwrap();
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{what}: {message:?} does not contain {needle:?}");
        assert_eq!(answer["code"], "invalid_argument", "{what}");
    }
    // Not JSON at all, and too big for the server.
    let r = http().put(s.url("/api/v1/settings/k")).bearer_auth(TOKEN).body("value=1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"value": "x".repeat(3 * 1024 * 1024)});
    let r = http().put(s.url("/api/v1/settings/k")).bearer_auth(TOKEN).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("larger than 2097152 bytes"));
    // Bad events are named by their index; none of the batch is stored.
    let batch = json!({"events": [{"id": uuid(), "kind": "ok"}, {"id": "nope", "kind": "bad"}]});
    let r = http().post(s.url("/api/v1/events")).bearer_auth(TOKEN).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("events[1].id: not a UUID"));
    let batch = json!({"events": [{"id": uuid(), "kind": "k", "occurred_at": "yesterday"}]});
    let r = http().post(s.url("/api/v1/events")).bearer_auth(TOKEN).json(&batch).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("events[0].occurred_at: not an RFC 3339"));
    // Bad query strings.
    let r = http().get(s.url("/api/v1/apps?page_size=5000")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("page_size: at most 1000"));
    let r = http().get(s.url("/api/v1/apps?colour=red")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("unknown field `colour`"));
    // Nothing of the above was written.
    for path in ["/api/v1/settings", "/api/v1/apps", "/api/v1/flows", "/api/v1/contexts", "/api/v1/events"] {
        let (_, page) = get(&s, path).await;
        let items = page.as_object().unwrap().values().find_map(|v| v.as_array()).unwrap();
        assert!(items.is_empty(), "{path}: {page}");
    }
    // Unknown routes and methods say so.
    let r = http().get(s.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("no_route"));
    let r = http().post(s.url("/api/v1/settings/k")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await.unwrap();
}
