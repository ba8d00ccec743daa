//! The console in a real headless Chromium, against two sites' servers with
//! the real replicator between them: the deployment guide's first check ("will
//! changes made in the console on site 0 show on site 1, and the reverse?"),
//! a stale edit, a wrong password, a change without its CSRF token. Every
//! page is photographed into `target/console-screenshots/`.
//!
//! One browser for the whole binary: the steps run in one test, in order.

mod common;

use std::path::PathBuf;

use common::browser::{screenshot_dir, Browser};
use common::{http, TestServer, TwoSites, DEADLINE, TOKEN};
use dugong_store::{Store, StoreOptions};
use serde_json::{json, Value};

const ADMIN: &str = "admin";
const PASSWORD: &str = "correct horse battery staple";

/// Screenshots of this run.
struct Shots {
    dir: PathBuf,
}

impl Shots {
    async fn take(&self, browser: &Browser, name: &str) {
        let path = browser.screenshot(&self.dir, name).await;
        eprintln!("screenshot {}", path.display());
    }
}

async fn log_in(browser: &Browser, site: &TestServer, name: &str, password: &str) {
    browser.goto(&site.url("/login")).await;
    browser.fill(&browser.find("#name").await, name).await;
    browser.fill(&browser.find("#password").await, password).await;
    browser.click(&browser.find("#login").await).await;
}

/// A flow as site `s`'s REST API returns it.
async fn flow_json(s: &TestServer, id: &str) -> Value {
    http().get(s.url(&format!("/api/v1/flows/{id}"))).send().await.unwrap().json().await.unwrap()
}

/// The id at the end of the browser's current URL path (`/flows/<id>?…`).
async fn id_in_url(browser: &Browser, prefix: &str) -> String {
    let url = browser.url().await;
    let path = url.split_once(prefix).map(|(_, rest)| rest).unwrap_or_else(|| panic!("{url} has no {prefix}"));
    path.split(['?', '/']).next().unwrap().to_string()
}

#[tokio::test]
async fn console_changes_show_on_the_other_site_and_conflicts_lose_nothing() {
    let sites = TwoSites::start("console", |_| {}).await;
    let [s0, s1] = &sites.sites;
    let shots = Shots { dir: screenshot_dir() };

    // The admin is made on site 0 only; the replicator brings it to site 1.
    let store = Store::open(&sites.dbs[0], StoreOptions::default()).await.unwrap();
    let hash = dugong_server::console::password::hash(PASSWORD).unwrap();
    store.put_console_user(ADMIN, &hash).await.unwrap();

    let browser = Browser::start().await;

    // Strangers are sent to the login page; a wrong password is refused.
    browser.goto(&s0.url("/apps")).await;
    browser.find("#password").await;
    assert!(browser.url().await.contains("/login?next=%2Fapps"), "{}", browser.url().await);
    shots.take(&browser, "login").await;
    log_in(&browser, s0, ADMIN, "not the password").await;
    browser.wait_for_text("Wrong user name or password.", false).await;
    assert!(browser.url().await.ends_with("/login"), "still on the login page");
    assert!(browser.cookie("__Host-dugong_session_0").await.is_none(), "no session after a wrong password");
    shots.take(&browser, "login-refused").await;

    // Log in on site 0: an HttpOnly, SameSite=Strict, Secure cookie.
    log_in(&browser, s0, ADMIN, PASSWORD).await;
    browser.find("#new-app").await;
    let cookie = browser.cookie("__Host-dugong_session_0").await.expect("the session cookie");
    assert_eq!((cookie["httpOnly"].as_bool(), cookie["secure"].as_bool()), (Some(true), Some(true)), "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(browser.text(&browser.find("#site-id").await).await, "0", "the banner names the site");

    // Create an app and a flow on site 0.
    browser.click(&browser.find("#new-app").await).await;
    browser.fill(&browser.find("#name").await, "Billing <desk>").await;
    browser.fill(&browser.find("#description").await, "Invoices & reminders").await;
    shots.take(&browser, "app-new").await;
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("Saved: version 1.", false).await;
    let app_id = id_in_url(&browser, "/apps/").await;
    browser.click(&browser.find("#new-flow").await).await;
    browser.fill(&browser.find("#name").await, "open-invoice").await;
    let script = browser.find("#script").await;
    browser.fill(&script, "click \"Invoices\"\nwait 2s\ntype {patient}").await;
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("Saved: version 1.", false).await;
    let flow_id = id_in_url(&browser, "/flows/").await;
    assert_eq!(flow_json(s0, &flow_id).await["script"], "click \"Invoices\"\nwait 2s\ntype {patient}");
    let gutter = browser.script("return document.querySelector('.gutter').textContent;", vec![]).await;
    assert_eq!(gutter, "1\n2\n3\n", "line numbers");
    shots.take(&browser, "flow-editor").await;

    // Site 1's console shows them, after replication; the admin made on
    // site 0 logs in there too (once the replicator brought the user over).
    let store1 = Store::open(&sites.dbs[1], StoreOptions::default()).await.unwrap();
    dugong_testkit::wait_for("the admin to reach site 1", DEADLINE, || async {
        store1.console_user(ADMIN).await.ok().flatten().map(|_| ())
    })
    .await;
    log_in(&browser, s1, ADMIN, PASSWORD).await;
    browser.find("#new-app").await;
    assert_eq!(browser.text(&browser.find("#site-id").await).await, "1");
    browser.wait_for_text("Billing <desk>", true).await;
    shots.take(&browser, "apps").await;
    browser.goto(&s1.url(&format!("/apps/{app_id}"))).await;
    browser.wait_for_text("open-invoice", true).await;
    shots.take(&browser, "app").await;

    // Edit on site 1, see it on site 0. Tab indents in the editor.
    browser.goto(&s1.url(&format!("/flows/{flow_id}"))).await;
    let script = browser.find("#script").await;
    assert_eq!(browser.value(&script).await, "click \"Invoices\"\nwait 2s\ntype {patient}");
    browser.click(&script).await;
    browser
        .script(
            "const a = document.getElementById('script'); a.setSelectionRange(a.value.length, a.value.length);",
            vec![],
        )
        .await;
    browser.type_into(&script, "\n\u{E004}save").await; // U+E004: the Tab key
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("Saved: version 2.", false).await;
    let edited = "click \"Invoices\"\nwait 2s\ntype {patient}\n    save";
    assert_eq!(flow_json(s1, &flow_id).await["script"], edited, "Tab inserted an indent, not a focus change");
    browser.goto(&s0.url(&format!("/flows/{flow_id}"))).await;
    browser.wait_for_text("Version 2,", true).await;
    assert_eq!(browser.value(&browser.find("#script").await).await, edited);

    // A stale edit: site 0's editor is open at version 2 when someone saves
    // version 3 on site 1; saving shows the conflict and keeps both texts.
    let theirs = "click \"Reminders\"";
    let put = json!({"app_id": app_id, "name": "open-invoice", "script": theirs, "expected_version": 2});
    let r = http().put(s1.url(&format!("/api/v1/flows/{flow_id}"))).bearer_auth(TOKEN).json(&put).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    dugong_testkit::wait_for("version 3 to reach site 0", DEADLINE, || async {
        (flow_json(s0, &flow_id).await["version"] == 3).then_some(())
    })
    .await;
    let mine = "click \"Invoices\"\nprint";
    browser.fill(&browser.find("#script").await, mine).await;
    browser.click(&browser.find("#save").await).await;
    browser.find("#conflict").await;
    let notice = browser.text(&browser.find("#notice").await).await;
    assert!(notice.contains("Someone else saved this flow first (it is now at version 3)"), "{notice}");
    assert_eq!(browser.value(&browser.find("#script").await).await, mine, "my text is kept");
    assert_eq!(browser.text(&browser.find("#their-script").await).await, theirs, "theirs is shown");
    assert_eq!(flow_json(s0, &flow_id).await["script"], theirs, "nothing was overwritten");
    shots.take(&browser, "flow-conflict").await;
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("Saved: version 4.", false).await;
    assert_eq!(flow_json(s0, &flow_id).await["script"], mine);

    // A change without the CSRF token is refused, and nothing is written.
    browser.goto(&s0.url(&format!("/apps/{app_id}"))).await;
    browser.fill(&browser.find("#name").await, "Renamed without a token").await;
    browser.script("document.querySelector('form.record input[name=csrf]').remove();", vec![]).await;
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("no valid security (CSRF) token", false).await;
    shots.take(&browser, "csrf-refused").await;
    let app: Value = http().get(s0.url(&format!("/api/v1/apps/{app_id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((app["name"].as_str(), app["version"].as_i64()), (Some("Billing <desk>"), Some(1)), "{app}");

    // Settings: JSON checked while typed and before saving.
    browser.goto(&s0.url("/settings")).await;
    browser.fill(&browser.find("#key").await, "ui.theme").await;
    browser.fill(&browser.find("#value").await, "{\"dark\": tru").await;
    browser.wait_for_text("Not valid JSON", false).await;
    browser.click(&browser.find("#save").await).await;
    // The server's refusal page is at /settings too: only its words tell a sent form apart.
    assert!(browser.url().await.ends_with("/settings"), "an invalid value is not sent");
    assert!(!browser.page_text().await.contains("nothing was saved"), "an invalid value is not sent");
    shots.take(&browser, "settings-invalid").await;
    browser.fill(&browser.find("#value").await, "{\"dark\": true, \"accent\": \"teal\"}").await;
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("Saved: version 1.", false).await;
    shots.take(&browser, "setting").await;
    browser.goto(&s0.url("/settings")).await;
    browser.wait_for_text("ui.theme", false).await;
    shots.take(&browser, "settings").await;

    // Contexts: read-only, here as clients set them on site 1.
    let ctx = json!({"values": {"patient": "0101-1234", "room": "<b>7</b>"}});
    let r = http().put(s1.url("/api/v1/contexts/alice")).bearer_auth(TOKEN).json(&ctx).send().await.unwrap();
    assert!(r.status().is_success());
    browser.goto(&s0.url("/contexts")).await;
    browser.wait_for_text("alice", true).await;
    shots.take(&browser, "contexts").await;
    browser.goto(&s0.url("/contexts/alice")).await;
    browser.wait_for_text("<b>7</b>", false).await;
    shots.take(&browser, "context").await;

    // Status: the replicator's sync as site 1 records it, and recent events.
    let events = json!({"events": [{"id": uuid::Uuid::new_v4().to_string(), "kind": "flow.started", "user": "alice", "payload": {}}]});
    let r = http().post(s1.url("/api/v1/events")).bearer_auth(TOKEN).json(&events).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    browser.goto(&s1.url("/status")).await;
    browser.wait_for_text("sync0", true).await;
    browser.wait_for_text("flow.started", true).await;
    let health = browser.text(&browser.find("#replication").await).await;
    assert!(health.starts_with("replication: sync0"), "{health}");
    shots.take(&browser, "status").await;

    // A narrow window still shows who and where.
    browser.resize(480, 900).await;
    browser.goto(&s1.url(&format!("/flows/{flow_id}"))).await;
    browser.find("#script").await;
    shots.take(&browser, "flow-editor-narrow").await;
    browser.resize(1280, 800).await;

    // Logging out ends the session on the server.
    browser.click(&browser.find("form.logout button").await).await;
    browser.find("#password").await;
    browser.goto(&s1.url("/apps")).await;
    browser.find("#password").await;

    drop(browser);
    sites.stop().await;
}
