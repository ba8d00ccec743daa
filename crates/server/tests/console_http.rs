//! The console's guards over plain HTTP (no browser): CSRF, origin checks,
//! the limit on failed logins, sessions, headers and escaping.

mod common;

use common::console::{client_from, Session};
use common::{http, TestServer, TOKEN};
use reqwest::header::{HeaderMap, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE, X_FRAME_OPTIONS};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "a long enough password";

/// A client that follows no redirects (so each answer can be checked).
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn with_admin(s: &TestServer) {
    let store = dugong_store::Store::open(&s.db, dugong_store::StoreOptions::default()).await.unwrap();
    let hash = dugong_server::console::password::hash(PASSWORD).unwrap();
    store.put_console_user("admin", &hash).await.unwrap();
}

async fn login(s: &TestServer, user: &str, password: &str) -> reqwest::Response {
    client()
        .post(s.url("/login"))
        .form(&[("name", user), ("password", password), ("next", "/apps")])
        .send()
        .await
        .unwrap()
}

/// A session: the `Cookie` header value and the CSRF token of its pages.
async fn session(s: &TestServer) -> (String, String) {
    let r = login(s, "admin", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-dugong_session_s0="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client().get(s.url("/apps/new")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).expect("a CSRF field").split('"').next().unwrap().to_string();
    (cookie, csrf)
}

async fn apps(s: &TestServer) -> Vec<Value> {
    let v: Value = http().get(s.url("/api/v1/apps")).send().await.unwrap().json().await.unwrap();
    v["apps"].as_array().cloned().expect("a list of apps")
}

#[tokio::test]
async fn changes_need_the_session_csrf_token_and_this_origin() {
    let s = TestServer::sqlite().await;
    with_admin(&s).await;
    let (cookie, csrf) = session(&s).await;
    let post = |form: Vec<(&'static str, String)>, headers: HeaderMap| {
        client().post(s.url("/apps")).header("cookie", &cookie).headers(headers).form(&form).send()
    };
    let name = |n: &str| ("name", n.to_string());

    let r = post(vec![name("no token")], HeaderMap::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(vec![name("wrong token"), ("csrf", format!("{csrf}x"))], HeaderMap::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut cross = HeaderMap::new();
    cross.insert("origin", "http://evil.example".parse().unwrap());
    let r = post(vec![name("cross origin"), ("csrf", csrf.clone())], cross).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client().post(s.url("/apps")).form(&[("name", "no session"), ("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "no session: to the login page");
    assert!(apps(&s).await.is_empty(), "nothing was written");

    // The token in a form field or a header is accepted.
    let r = post(vec![name("with token"), ("csrf", csrf.clone())], HeaderMap::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut h = HeaderMap::new();
    h.insert("x-csrf-token", csrf.parse().unwrap());
    let r = post(vec![name("with header")], h).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(apps(&s).await.len(), 2);

    // Logging out ends the session on the server: the old cookie is useless.
    let r = client().post(s.url("/logout")).header("cookie", &cookie).form(&[("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let r = client().get(s.url("/apps")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/login"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn failed_logins_are_refused_then_limited_per_user_and_address() {
    let s = TestServer::sqlite().await;
    with_admin(&s).await;
    let r = login(&s, "admin", "wrong password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("Wrong user name or password."));
    let r = login(&s, "nobody", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "an unknown user is refused alike");
    for _ in 0..4 {
        assert_eq!(login(&s, "admin", "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Five failures: even the right password waits now.
    let r = login(&s, "admin", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.unwrap().contains("Too many failed logins"));
    // Another user from the same address is not held up.
    assert_eq!(login(&s, "nobody", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn pages_escape_data_and_forbid_inline_script_and_framing() {
    let s = TestServer::sqlite().await;
    with_admin(&s).await;
    let id = common::uuid();
    let evil = "<script>alert(1)</script>\"'&";
    let app = json!({"name": evil, "description": evil});
    let r = http().put(s.url(&format!("/api/v1/apps/{id}"))).bearer_auth(TOKEN).json(&app).send().await.unwrap();
    assert!(r.status().is_success());
    let (cookie, _) = session(&s).await;
    for path in ["/apps".to_string(), format!("/apps/{id}"), "/login".into(), "/status".into(), "/settings".into()] {
        let r = client().get(s.url(&path)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.headers()[X_FRAME_OPTIONS], "DENY");
        let body = r.text().await.unwrap();
        assert!(!body.contains("<script>alert"), "{path} shows data unescaped");
        assert!(!body.contains("<script>") && !body.contains("style="), "{path}: no inline script or style");
    }
    let body = client().get(s.url("/apps")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    // maud escapes text and attribute values (always double-quoted): a single quote can stay.
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"), "{body}");
    // The assets are in the binary.
    for asset in ["/console/assets/console.css", "/console/assets/console.js", "/console/site.css"] {
        assert_eq!(client().get(s.url(asset)).send().await.unwrap().status(), StatusCode::OK, "{asset}");
    }
    // `/` leads to the console.
    let r = client().get(s.url("/")).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/apps");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn settings_are_checked_as_json_before_they_are_saved() {
    let s = TestServer::sqlite().await;
    with_admin(&s).await;
    let (cookie, csrf) = session(&s).await;
    let post = |form: Vec<(&'static str, &'static str)>| {
        let mut form: Vec<(&str, &str)> = form;
        form.push(("csrf", &csrf));
        client().post(s.url("/settings")).header("cookie", &cookie).form(&form).send()
    };
    let r = post(vec![("key", "bad"), ("value", "{not json")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("not valid JSON"), "{page}");
    assert!(page.contains(r#"<input id="key" name="key" value="bad""#), "the form keeps the typed key: {page}");
    let r = http().get(s.url("/api/v1/settings/bad")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing saved");
    let r = post(vec![("key", "good"), ("value", "{\"a\": [1, 2]}")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let v: Value = http().get(s.url("/api/v1/settings/good")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["value"], json!({"a": [1, 2]}));
    s.stop().await.unwrap();
}

/// The `/history/<id>` link of the oldest entry of `version` on a page (a
/// deletion is listed before the content it deleted).
fn version_link(page: &str, version: i64) -> String {
    let marker = format!(">version {version}</a>");
    let before = &page[..page.rfind(&marker).unwrap_or_else(|| panic!("no version {version} in {page}"))];
    let href = before.rsplit("href=\"").next().unwrap();
    href.split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn restores_refuse_a_stale_page_and_bad_list_queries_are_named() {
    let s = TestServer::sqlite().await;
    with_admin(&s).await;
    let session = Session::open(&s, "admin", PASSWORD).await;
    let (status, to) = session.post(&s, "/apps", &[("name", "Ledger"), ("description", "one")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let app = to.trim_start_matches("/apps/").split('?').next().unwrap().to_string();
    for (version, text) in [("1", "two"), ("2", "three")] {
        let (status, _) = session
            .post(&s, &format!("/apps/{app}"), &[("name", "Ledger"), ("description", text), ("version", version)])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    let (_, page) = session.get(&s, &format!("/apps/{app}")).await;
    let first = version_link(&page, 1);
    // The page was made at version 2; the app is at 3 now: nothing is written.
    let (status, _) = session.post(&s, &format!("{first}/restore"), &[("version", "2")]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let r = client_from(None)
        .post(s.url(&format!("{first}/restore")))
        .header("cookie", &session.cookie)
        .form(&[("version", "2"), ("csrf", &session.csrf)])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("changed (now version 3) after you opened this page"));
    let (status, to) = session.post(&s, &format!("{first}/restore"), &[("version", "3")]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, format!("/apps/{app}?saved=4").as_str()));
    let (_, page) = session.get(&s, &format!("/apps/{app}")).await;
    assert!(page.contains("restored version 1 of "), "the note of the restore");

    // A taken name, in any case, is refused on the form.
    let (status, _) = session.post(&s, "/apps", &[("name", "LEDGER")]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Bad list queries and ids are named, not served as errors of the server.
    for (path, needle) in [
        ("/apps?sort=size", "sort: &quot;size&quot; is not an order"),
        ("/apps?after=garbage", "after: not a position in this list"),
        ("/settings?size=100000", "size: &quot;100000&quot; is not a page size"),
        ("/history?kind=contexts&key=x", "kind: one of apps, flows, settings"),
        ("/conflicts/not-hex!", "not a conflict id"),
    ] {
        let (status, page) = session.get(&s, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(page.contains(needle), "{path}: {page}");
    }
    let (status, _) = session.get(&s, "/conflicts/abcd1234abcd1234").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = session.get(&s, "/conflicts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No conflicts logged."), "a site that never replicated has none");
    // A deleted app's page offers its history, so the deletion can be undone.
    let (_, page) = session.get(&s, &format!("/apps/{app}")).await;
    let version = page.split("name=\"version\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, _) = session.post(&s, &format!("/apps/{app}/delete"), &[("version", &version)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, page) = session.get(&s, &format!("/apps/{app}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let last = version_link(&page, 4);
    let (status, to) = session.post(&s, &format!("{last}/restore"), &[("version", "0")]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, format!("/apps/{app}?saved=1").as_str()));
    s.stop().await.unwrap();
}
