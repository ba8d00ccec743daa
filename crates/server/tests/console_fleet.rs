//! The console as an operator of a real fleet uses it, in a real headless
//! Chromium against two sites with the real replicator between them (site
//! 0's database on a cluster of its own, so the test can stop it): hundreds
//! of apps paged, searched and sorted; a duplicate name refused; an app's
//! history and a restore; the banner while the replicator is stopped; a
//! cross-site conflict on the Conflicts page with both versions, restored;
//! dark mode and a 360-pixel screen; and the status page, the banner and the
//! other pages while site 0's database is down. Every step is photographed
//! into `target/console-screenshots/`.
//!
//! One browser for the binary: the steps run in one test, in order.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::browser::{screenshot_dir, Browser};
use common::{http, TestServer, TwoSites, DEADLINE, TOKEN};
use dugong_replica::daemon::DaemonOptions;
use dugong_store::{Actor, ActorKind, Expect, Input, Store, StoreOptions};
use dugong_testkit::{wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

const ADMIN: &str = "admin";
const PASSWORD: &str = "correct horse battery staple";
/// Apps made before the browser opens; every tenth is a "Billing" app.
const APPS: usize = 230;

async fn shot(browser: &Browser, name: &str) {
    let path = browser.screenshot(&screenshot_dir(), &format!("fleet-{name}")).await;
    eprintln!("screenshot {}", path.display());
}

async fn log_in(browser: &Browser, site: &TestServer) {
    browser.goto(&site.url("/login")).await;
    browser.fill(&browser.find("#name").await, ADMIN).await;
    browser.fill(&browser.find("#password").await, PASSWORD).await;
    browser.click(&browser.find("#login").await).await;
    browser.find("nav.sections").await;
}

/// The texts of the first cells of a table's rows.
async fn first_cells(browser: &Browser, table: &str) -> Vec<String> {
    let script = format!(
        "return Array.from(document.querySelectorAll('{table} tbody tr td:first-child')).map(c => c.innerText);"
    );
    let v = browser.script(&script, vec![]).await;
    v.as_array().unwrap().iter().map(|c| c.as_str().unwrap_or_default().to_string()).collect()
}

async fn text_of(browser: &Browser, css: &str) -> String {
    browser.text(&browser.find(css).await).await
}

/// A setting as site `s`'s REST API returns it.
async fn setting(s: &TestServer, key: &str) -> Value {
    http().get(s.url(&format!("/api/v1/settings/{key}"))).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

async fn put_setting(s: &TestServer, key: &str, value: &str) {
    let r = http()
        .put(s.url(&format!("/api/v1/settings/{key}")))
        .bearer_auth(TOKEN)
        .json(&json!({ "value": value }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn an_operator_finds_every_record_sees_what_changed_and_both_sites_in_an_outage() {
    let cluster =
        Arc::new(tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default())).await.unwrap().unwrap());
    let options = DaemonOptions { heartbeat: Duration::from_millis(300), ..DaemonOptions::default() };
    let sites = TwoSites::start_on("fleet", [&cluster, Cluster::shared()], options, |c| {
        c.console.sample_every = Duration::from_millis(200);
    })
    .await;

    // Hundreds of apps on site 0, made by an operator (so they have history).
    let store0 = Store::open(&sites.dbs[0], StoreOptions::default()).await.unwrap();
    let operator = Actor::new("seed", ActorKind::Cli, "");
    let mut billing = Vec::new();
    for i in 0..APPS {
        let id = uuid::Uuid::new_v4().to_string();
        let name = if i % 10 == 0 { format!("Billing {i:03}") } else { format!("app {i:03}") };
        store0.put_as(&operator, &Input::app(&id, &name, "").unwrap(), Expect::Absent).await.unwrap();
        if i % 10 == 0 {
            billing.push((id, name));
        }
    }
    let hash = dugong_server::console::password::hash(PASSWORD).unwrap();
    store0.put_console_user(ADMIN, &hash).await.unwrap();
    let store1 = Store::open(&sites.dbs[1], StoreOptions::default()).await.unwrap();
    wait_for("the admin to reach site 1", DEADLINE, || async {
        store1.console_user(ADMIN).await.ok().flatten().map(|_| ())
    })
    .await;

    let browser = Browser::start().await;
    let [s0, s1] = [&sites.sites[0], &sites.sites[1]];
    log_in(&browser, s1).await;
    log_in(&browser, s0).await;

    // Paging: 50 a page, Next to the end and Previous back, in name order.
    browser.goto(&s0.url("/apps")).await;
    assert_eq!(text_of(&browser, "#count").await, format!("50 shown of {APPS} apps"));
    let above = browser
        .script(
            "const n = document.querySelector('nav.pager'); \
             return n.compareDocumentPosition(document.getElementById('apps')) & Node.DOCUMENT_POSITION_FOLLOWING \
             ? n.innerText : '';",
            vec![],
        )
        .await;
    assert!(
        above.as_str().unwrap_or_default().starts_with("50 shown of"),
        "the count and Next above the list too: {above}"
    );
    shot(&browser, "apps").await;
    let mut forward = first_cells(&browser, "#apps").await;
    let mut pages = 1;
    while let Some(next) = browser.try_find("#next").await {
        browser.click(&next).await;
        pages += 1;
        browser.wait_for_text(&format!("shown of {APPS} apps"), false).await;
        forward.extend(first_cells(&browser, "#apps").await);
    }
    assert_eq!((pages, forward.len()), (5, APPS), "every app once, on five pages");
    let mut sorted = forward.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(forward, sorted, "by name, ignoring case");
    let mut backward = first_cells(&browser, "#apps").await;
    while let Some(previous) = browser.try_find("#previous").await {
        browser.click(&previous).await;
        browser.wait_for_text(&format!("shown of {APPS} apps"), false).await;
        let mut page = first_cells(&browser, "#apps").await;
        page.extend(backward);
        backward = page;
    }
    assert_eq!(backward, forward, "Previous retraces Next");

    // Search, by a field labelled "Search"; then by last change.
    let label = browser.script("return document.querySelector('label[for=q]').innerText;", vec![]).await;
    assert_eq!(label, "Search");
    browser.fill(&browser.find("#q").await, "billing").await;
    browser.click(&browser.find("form.search button").await).await;
    browser.wait_for_text("23 shown of 23 apps matching “billing”", false).await;
    shot(&browser, "apps-search").await;
    let (renamed_id, _) = &billing[3];
    store0.put_as(&operator, &Input::app(renamed_id, "Billing renamed", "").unwrap(), Expect::Any).await.unwrap();
    browser.script("document.getElementById('sort').value = 'changed';", vec![]).await;
    browser.click(&browser.find("form.search button").await).await;
    browser.wait_for_text("Billing renamed", false).await;
    assert_eq!(first_cells(&browser, "#apps").await[0], "Billing renamed", "last change first");

    // A duplicate name is refused on the form, with what was typed kept.
    browser.goto(&s0.url("/apps/new")).await;
    browser.fill(&browser.find("#name").await, "BILLING 000").await;
    browser.click(&browser.find("#save").await).await;
    browser.wait_for_text("is taken", false).await;
    assert!(text_of(&browser, "#notice").await.contains("app name \"BILLING 000\" is taken"));
    assert_eq!(browser.value(&browser.find("#name").await).await, "BILLING 000");
    shot(&browser, "app-duplicate").await;

    // History: two saves, then version 1 restored as version 4.
    let (app_id, app_name) = &billing[0];
    browser.goto(&s0.url(&format!("/apps/{app_id}"))).await;
    for text in ["second words", "third words"] {
        browser.fill(&browser.find("#description").await, text).await;
        browser.click(&browser.find("#save").await).await;
        browser.find("#notice").await;
    }
    browser.wait_for_text("Saved: version 3.", false).await;
    let versions = first_cells(&browser, "#history").await;
    assert_eq!(versions, vec!["version 3", "version 2", "version 1"]);
    let who =
        browser.script("return document.querySelector('#history tbody tr td:nth-child(3)').innerText;", vec![]).await;
    assert!(who.as_str().unwrap().contains("admin user on site 0"), "{who}");
    shot(&browser, "app-history").await;
    browser.click(&browser.find("#history tbody tr:last-child a").await).await;
    browser.wait_for_text("Restore this version", false).await;
    shot(&browser, "app-version").await;
    browser.click(&browser.find("#restore").await).await;
    browser.wait_for_text("Saved: version 4.", false).await;
    assert_eq!(browser.value(&browser.find("#description").await).await, "");
    assert_eq!(browser.value(&browser.find("#name").await).await, *app_name);
    assert!(browser.page_text().await.contains("restored version 1"), "the note of the restore");

    // The replicator stops: the banner warns, on both sites.
    let reports = sites.stop_replicator().await;
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
    for s in [s0, s1] {
        browser.goto(&s.url("/status")).await;
        browser.wait_for_text("WARNING: sync0: replicator stopped", true).await;
    }
    assert!(browser.page_text().await.contains("STOPPED"));
    shot(&browser, "status-replicator-stopped").await;

    // A conflict: the same setting written on both sites while the
    // replicator is away, site 1 a little later; site 1's wins everywhere.
    put_setting(s0, "fleet.mode", "written on site 0").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    put_setting(s1, "fleet.mode", "written on site 1").await;
    sites.start_replicator();
    for s in [s0, s1] {
        wait_for("the later write on both sites", DEADLINE, || async {
            (setting(s, "fleet.mode").await["value"] == "written on site 1").then_some(())
        })
        .await;
    }
    browser.goto(&s0.url("/settings/fleet.mode")).await;
    browser.click(&browser.find("#record-conflicts").await).await;
    browser.find("#conflicts").await;
    shot(&browser, "conflicts").await;
    browser.click(&browser.find("#conflicts a.both").await).await;
    browser.find("#both").await;
    let winner = text_of(&browser, "#winner").await;
    let loser = text_of(&browser, "#loser").await;
    assert!(winner.contains("Won: db1 (site 1)") && winner.contains("written on site 1"), "{winner}");
    assert!(loser.contains("Lost: db0 (site 0)") && loser.contains("written on site 0"), "{loser}");
    assert!(text_of(&browser, "#reason").await.contains("later commit"));
    shot(&browser, "conflict").await;
    // Someone changes the setting after the conflict: a restore says so first.
    put_setting(s0, "fleet.mode", "changed after the conflict").await;
    browser.click(&browser.find("#restore").await).await;
    browser.wait_for_text("The record changed since the conflict", false).await;
    assert_eq!(setting(s0, "fleet.mode").await["value"], "changed after the conflict", "nothing was written");
    assert_eq!(text_of(&browser, "#restore").await, "Restore the losing version anyway");
    browser.click(&browser.find("#restore").await).await;
    browser.wait_for_text("Restored: the record is now at version 3.", false).await;
    for s in [s0, s1] {
        wait_for("the losing version on both sites", DEADLINE, || async {
            (setting(s, "fleet.mode").await["value"] == "written on site 0").then_some(())
        })
        .await;
    }
    // Site 1's console knows it was restored (from the history, which replicated).
    let conflict_path =
        browser.url().await.split_once("/conflicts/").map(|(_, id)| id.split('?').next().unwrap().to_string());
    browser.goto(&s1.url(&format!("/conflicts/{}", conflict_path.unwrap()))).await;
    browser.wait_for_text("The losing version was restored as version 3", true).await;

    // Times in the reader's own zone with their age (the console's script).
    let time = browser.script("return document.querySelector('time').innerText;", vec![]).await;
    assert!(time.as_str().unwrap().contains(" ago)"), "{time}");

    // Dark mode, as the browser asks for it.
    browser.prefer_dark(true).await;
    browser.goto(&s0.url("/conflicts")).await;
    let ground = browser.script("return getComputedStyle(document.body).backgroundColor;", vec![]).await;
    assert_eq!(ground, "rgb(17, 23, 29)", "a dark ground");
    shot(&browser, "conflicts-dark").await;
    browser.prefer_dark(false).await;

    // A 360-pixel screen: nothing wider than the window.
    browser.resize(360, 740).await;
    for path in ["/apps", "/status", "/conflicts", &format!("/apps/{app_id}")] {
        browser.goto(&s0.url(path)).await;
        browser.find("main").await;
        let fits = browser
            .script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth;", vec![])
            .await;
        assert_eq!(fits, true, "{path} is wider than 360 px");
    }
    shot(&browser, "apps-360").await;
    browser.resize(1280, 800).await;

    // Site 0's database stops. Its status page still tells the story.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop()).await.unwrap().unwrap();
    browser.goto(&s0.url("/status")).await;
    browser.wait_for_text("This site's database is unreachable", true).await;
    assert!(text_of(&browser, "#replication").await.starts_with("DEGRADED: this site's database is unreachable"));
    assert!(text_of(&browser, "#database").await.contains("UNREACHABLE since"));
    assert!(text_of(&browser, "#stale-state").await.contains("What the replicator last reported"));
    assert!(text_of(&browser, "#syncs").await.contains("sync0"));
    browser.find("#chart").await;
    shot(&browser, "status-database-down").await;
    // The other pages and the login say so plainly.
    browser.goto(&s0.url("/apps")).await;
    browser.wait_for_text("The site's database is down", false).await;
    browser.goto(&s0.url("/login")).await;
    browser.wait_for_text("nobody can log in here until it is back", false).await;
    // Site 1 sees a site unreachable: degraded there too.
    browser.goto(&s1.url("/status")).await;
    browser.wait_for_text("DEGRADED", true).await;
    shot(&browser, "status-other-site-down").await;

    // Back again.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart()).await.unwrap().unwrap();
    browser.goto(&s0.url("/status")).await;
    browser.wait_for_text("replication: sync0 Good", true).await;
    browser.goto(&s1.url("/status")).await;
    browser.wait_for_text("replication: sync0 Good", true).await;

    drop(browser);
    sites.stop().await;
}
