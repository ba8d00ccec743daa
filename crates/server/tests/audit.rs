//! The audit log end to end: every kind of change through REST, gRPC and the
//! console, every user change, and every login, failed login, lockout and
//! logout is recorded with the actor (a token's name or a user), the peer
//! and the version; admin tokens read it over REST, console users on the
//! audit page; other tokens are refused.

mod common;

use common::console::{add_user, login, Session, PASSWORD};
use common::{config, uuid, TestServer};
use dugong_server::{Auth, Token};
use reqwest::StatusCode;
use serde_json::{json, Value};

const WRITER: &str = "writer-token-0123456789abcdef";
const AUDITOR: &str = "auditor-token-0123456789abcdef";

async fn server() -> TestServer {
    let url = common::postgres_url("audit").await;
    let mut cfg = config(url);
    cfg.auth = Auth::new(
        vec![Token::named("ci", WRITER).unwrap(), Token::named("auditor", AUDITOR).unwrap().into_admin()],
        false,
    );
    cfg.console.secure_cookie = false;
    TestServer::start(cfg).await
}

/// Every entry, oldest first, as (actor, action, resource, key).
async fn entries(s: &TestServer, query: &str) -> Vec<(String, String, String, String)> {
    let r = common::http().get(s.url(&format!("/api/v1/audit?page_size=1000{query}"))).bearer_auth(AUDITOR);
    let body: Value = r.send().await.unwrap().json().await.unwrap();
    let mut list: Vec<_> = body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("actor"), text("action"), text("resource"), text("key"))
        })
        .collect();
    list.reverse();
    list
}

fn entry(actor: &str, action: &str, resource: &str, key: &str) -> (String, String, String, String) {
    (actor.into(), action.into(), resource.into(), key.into())
}

#[tokio::test]
async fn every_kind_of_change_is_recorded_and_only_admins_read_it() {
    let s = server().await;
    let put = |path: String, body: Value| common::http().put(s.url(&path)).bearer_auth(WRITER).json(&body).send();
    let delete = |path: String| common::http().delete(s.url(&path)).bearer_auth(WRITER).send();
    let (app, flow) = (uuid(), uuid());
    assert!(put(format!("/api/v1/apps/{app}"), json!({"name": "Journal"})).await.unwrap().status().is_success());
    assert!(put(format!("/api/v1/apps/{app}"), json!({"name": "Journal 2"})).await.unwrap().status().is_success());
    let body = json!({"app_id": app, "name": "f", "script": "x"});
    assert!(put(format!("/api/v1/flows/{flow}"), body).await.unwrap().status().is_success());
    assert!(put("/api/v1/settings/theme".into(), json!({"value": 1})).await.unwrap().status().is_success());
    assert!(put("/api/v1/contexts/alice".into(), json!({"values": {}})).await.unwrap().status().is_success());
    assert!(delete(format!("/api/v1/flows/{flow}")).await.unwrap().status().is_success());
    assert!(delete("/api/v1/settings/theme".into()).await.unwrap().status().is_success());
    assert!(delete("/api/v1/contexts/alice".into()).await.unwrap().status().is_success());
    assert!(delete(format!("/api/v1/apps/{app}")).await.unwrap().status().is_success());
    // A refused write records nothing.
    let stale = put(format!("/api/v1/apps/{}", uuid()), json!({"name": "x", "expected_version": 3})).await.unwrap();
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);

    // gRPC: the token's name too.
    let mut settings = dugong_proto::v1::settings_client::SettingsClient::new(s.channel().await);
    let mut request = tonic::Request::new(dugong_proto::v1::PutSettingRequest {
        key: "grpc".into(),
        value_json: "true".into(),
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", format!("Bearer {WRITER}").parse().unwrap());
    settings.put_setting(request).await.unwrap();

    let seen = entries(&s, "&actor=ci").await;
    assert_eq!(
        seen,
        [
            entry("ci", "create", "apps", &app),
            entry("ci", "update", "apps", &app),
            entry("ci", "create", "flows", &flow),
            entry("ci", "create", "settings", "theme"),
            entry("ci", "create", "contexts", "alice"),
            entry("ci", "delete", "flows", &flow),
            entry("ci", "delete", "settings", "theme"),
            entry("ci", "delete", "contexts", "alice"),
            entry("ci", "delete", "apps", &app),
            entry("ci", "create", "settings", "grpc"),
        ]
    );
    let full: Value = common::http()
        .get(s.url("/api/v1/audit?page_size=1&resource=settings&action=create"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest = &full["entries"][0];
    assert_eq!((newest["key"].as_str(), newest["peer"].as_str()), (Some("grpc"), Some("127.0.0.1")), "{full}");
    assert_eq!((newest["site"].as_str(), newest["version"].as_i64()), (Some("s0"), Some(1)));
    assert!(!full["next_page_token"].as_str().unwrap().is_empty(), "more pages");

    // Only admin tokens read it; a bad filter is named.
    let r = common::http().get(s.url("/api/v1/audit")).bearer_auth(WRITER).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(common::http().get(s.url("/api/v1/audit")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let r = common::http().get(s.url("/api/v1/audit?action=drop")).bearer_auth(AUDITOR).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("`drop` is not an action"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn console_logins_and_user_changes_are_recorded() {
    let s = server().await;
    add_user(&s, "root").await;
    add_user(&s, "viewer").await;
    // A failed login of a real user, one of a made-up name (recorded without
    // the name: it may be a password typed in the wrong field), five more to
    // a lockout, then a good login.
    assert_eq!(login(&s, "root", "wrong password", None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(&s, "hunter2-typed-as-name", PASSWORD, None).await.status(), StatusCode::UNAUTHORIZED);
    let admin = Session::open(&s, "root", PASSWORD).await;

    // A setting through the console, then a user's life.
    assert_eq!(admin.post(&s, "/settings", &[("key", "k"), ("value", "1")]).await.0, StatusCode::SEE_OTHER);
    let pw = [("name", "bob"), ("password", PASSWORD), ("password2", PASSWORD)];
    assert_eq!(admin.post(&s, "/users", &pw).await.0, StatusCode::SEE_OTHER);
    let reset = [("password", "another long password"), ("password2", "another long password")];
    assert_eq!(admin.post(&s, "/users/bob/password", &reset).await.0, StatusCode::SEE_OTHER);
    assert_eq!(admin.post(&s, "/users/bob/disable", &[]).await.0, StatusCode::SEE_OTHER);
    assert_eq!(admin.post(&s, "/users/bob/enable", &[]).await.0, StatusCode::SEE_OTHER);
    assert_eq!(admin.post(&s, "/users/bob/sessions/end", &[]).await.0, StatusCode::SEE_OTHER);
    assert_eq!(admin.post(&s, "/users/bob/delete", &[]).await.0, StatusCode::SEE_OTHER);
    // Refused: yourself.
    assert_eq!(admin.post(&s, "/users/root/delete", &[]).await.0, StatusCode::BAD_REQUEST);
    for _ in 0..5 {
        login(&s, "root", "wrong again", None).await;
    }
    assert_eq!(admin.post(&s, "/logout", &[]).await.0, StatusCode::SEE_OTHER);

    let seen = entries(&s, "").await;
    assert_eq!(
        seen,
        [
            entry("root", "login_failed", "console", "root"),
            entry("", "login_failed", "console", ""),
            entry("root", "login", "console", "root"),
            entry("root", "create", "settings", "k"),
            entry("root", "create", "users", "bob"),
            entry("root", "password_reset", "users", "bob"),
            entry("root", "disable", "users", "bob"),
            entry("root", "enable", "users", "bob"),
            entry("root", "end_sessions", "users", "bob"),
            entry("root", "delete", "users", "bob"),
            entry("root", "login_failed", "console", "root"),
            entry("root", "login_failed", "console", "root"),
            entry("root", "login_failed", "console", "root"),
            entry("root", "login_failed", "console", "root"),
            entry("root", "login_failed", "console", "root"),
            entry("root", "lockout", "console", "root"),
            entry("root", "logout", "console", "root"),
        ]
    );
    assert!(!seen.iter().any(|e| e.3.contains("hunter2")), "a name that is no user is not kept");

    // The console's page shows it, filtered (root is locked out by now).
    let again = Session::open(&s, "viewer", PASSWORD).await;
    let (status, page) = again.get(&s, "/audit?action=lockout").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"audit\"") && page.contains("<td class=\"bad\">lockout</td>"), "{page}");
    assert!(!page.contains("<td class=\"good\">password_reset</td>"), "filtered");
    s.stop().await.unwrap();
}
