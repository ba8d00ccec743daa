//! Console accounts across sites and under attack: a password changed on one
//! site ends the user's sessions on the other (the user row replicates with
//! its new session epoch); a disabled user cannot log in; failed logins from
//! ever-changing addresses still lock the account; `next` never leaves the
//! site.

mod common;

use std::net::IpAddr;

use common::console::{add_user, client_from, login, Session, PASSWORD};
use common::{TestServer, TwoSites, DEADLINE};
use dugong_testkit::wait_for;
use reqwest::header::LOCATION;
use reqwest::StatusCode;

#[tokio::test]
async fn a_password_change_ends_the_sessions_on_the_other_site() {
    let sites = TwoSites::start("pwsites", |c| c.console.secure_cookie = false).await;
    let [s0, s1] = &sites.sites;
    add_user(s0, "root").await;
    add_user(s0, "alice").await;
    // Users replicate: alice logs in on site 1 once her row has arrived.
    wait_for("alice to reach site 1", DEADLINE, || async {
        (login(s1, "alice", PASSWORD, None).await.status() == StatusCode::SEE_OTHER).then_some(())
    })
    .await;
    let alice_on_1 = Session::open(s1, "alice", PASSWORD).await;
    assert!(alice_on_1.alive(s1).await);

    let root_on_0 = Session::open(s0, "root", PASSWORD).await;
    let reset = [("password", "a brand new password"), ("password2", "a brand new password")];
    assert_eq!(root_on_0.post(s0, "/users/alice/password", &reset).await.0, StatusCode::SEE_OTHER);
    wait_for("alice's session on site 1 to end", DEADLINE, || async { (!alice_on_1.alive(s1).await).then_some(()) })
        .await;
    assert_eq!(login(s1, "alice", PASSWORD, None).await.status(), StatusCode::UNAUTHORIZED, "the old password");
    assert_eq!(login(s1, "alice", "a brand new password", None).await.status(), StatusCode::SEE_OTHER);
    sites.stop().await;
}

#[tokio::test]
async fn disabled_users_cannot_log_in_and_sessions_can_be_revoked() {
    let mut cfg = common::config(common::postgres_url("disabled").await);
    cfg.console.secure_cookie = false;
    let s = TestServer::start(cfg).await;
    add_user(&s, "root").await;
    add_user(&s, "bob").await;
    let root = Session::open(&s, "root", PASSWORD).await;
    let bob = Session::open(&s, "bob", PASSWORD).await;
    let (_, page) = root.get(&s, "/users").await;
    assert!(page.contains("id=\"sessions\""), "{page}");
    assert_eq!(root.post(&s, "/users/bob/disable", &[]).await.0, StatusCode::SEE_OTHER);
    assert!(!bob.alive(&s).await, "disabling ends the session");
    assert_eq!(login(&s, "bob", PASSWORD, None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(root.post(&s, "/users/bob/enable", &[]).await.0, StatusCode::SEE_OTHER);
    let bob = Session::open(&s, "bob", PASSWORD).await;

    // Revoking one session from the list.
    let store = dugong_store::Store::open(&s.db, dugong_store::StoreOptions::default()).await.unwrap();
    let bobs = store.console_sessions().await.unwrap().into_iter().find(|x| x.user == "bob").unwrap();
    let (_, page) = root.get(&s, "/users").await;
    assert!(page.contains(&format!("action=\"/sessions/{}/revoke\"", bobs.token_hash)), "{page}");
    let path = format!("/sessions/{}/revoke", bobs.token_hash);
    assert_eq!(root.post(&s, &path, &[("user", "bob")]).await.0, StatusCode::SEE_OTHER);
    assert!(!bob.alive(&s).await);
    assert!(root.alive(&s).await, "only that session");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn rotating_addresses_does_not_get_around_the_login_limit() {
    let mut cfg = common::config(common::postgres_url("rotation").await);
    cfg.console.secure_cookie = false;
    let s = TestServer::start(cfg).await;
    add_user(&s, "admin").await;
    // Five failures, each from another loopback address.
    for i in 0..5u8 {
        let from: IpAddr = [127, 0, 1, 10 + i].into();
        assert_eq!(login(&s, "admin", "a wrong password", Some(from)).await.status(), StatusCode::UNAUTHORIZED);
    }
    // A sixth address, with the right password: the account waits.
    let r = login(&s, "admin", PASSWORD, Some([127, 0, 1, 99].into())).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.unwrap().contains("Too many failed logins"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn after_login_the_browser_stays_on_this_site() {
    let mut cfg = common::config(common::postgres_url("next").await);
    cfg.console.secure_cookie = false;
    let s = TestServer::start(cfg).await;
    add_user(&s, "admin").await;
    for (next, expected) in [
        ("/settings", "/settings"),
        ("/\t/evil.example", "/apps"),
        ("/\n/evil.example", "/apps"),
        ("//evil.example", "/apps"),
        ("/\\evil.example", "/apps"),
        ("https://evil.example/", "/apps"),
    ] {
        let r = client_from(None)
            .post(s.url("/login"))
            .form(&[("name", "admin"), ("password", PASSWORD), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(r.headers()[LOCATION], expected, "{next:?}");
    }
    s.stop().await.unwrap();
}
