//! Watch: changes arrive on both engines, a reconnect with the last position
//! gets everything after it, positions that can't resume get a reset, a
//! shutdown tells watchers to reconnect — and a change made through another
//! site arrives after the real replicator carried it over.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{authed, config, postgres_url, uuid, TestServer, DEADLINE, TOKEN};
use dugong_proto::v1 as pb;
use dugong_replica::daemon::{self, DaemonOptions};
use pb::watch_client::WatchClient;
use pb::watch_event::Event;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

async fn open(s: &TestServer, position: &str, resources: Vec<pb::Resource>) -> Streaming<pb::WatchEvent> {
    let request =
        pb::WatchRequest { position: position.into(), resources: resources.into_iter().map(|r| r as i32).collect() };
    WatchClient::new(s.channel().await).watch(request).await.expect("watch").into_inner()
}

async fn next(stream: &mut Streaming<pb::WatchEvent>) -> Event {
    let message = tokio::time::timeout(DEADLINE, stream.message()).await.expect("a watch event in time");
    message.expect("stream ok").expect("stream open").event.expect("an event")
}

async fn started(stream: &mut Streaming<pb::WatchEvent>) -> String {
    match next(stream).await {
        Event::Started(s) => s.position,
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn change(stream: &mut Streaming<pb::WatchEvent>) -> pb::Change {
    match next(stream).await {
        Event::Change(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

async fn put_setting(s: &TestServer, key: &str, value: serde_json::Value) {
    let r = common::http()
        .put(s.url(&format!("/api/v1/settings/{key}")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"value": value}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn setting(c: &pb::Change) -> (&str, &str) {
    match &c.record {
        Some(pb::change::Record::Setting(s)) => (s.key.as_str(), s.value_json.as_str()),
        other => panic!("expected a setting, got {other:?}"),
    }
}

async fn changes_arrive_and_resume(s: &TestServer) {
    let mut stream = open(s, "", vec![]).await;
    started(&mut stream).await;
    put_setting(s, "a", serde_json::json!(1)).await;
    let first = change(&mut stream).await;
    assert_eq!((first.resource(), first.key.as_str(), first.deleted), (pb::Resource::Settings, "a", false));
    assert_eq!(setting(&first), ("a", "1"));
    drop(stream);

    // Changes made while the client was away arrive when it resumes.
    put_setting(s, "b", serde_json::json!(2)).await;
    let app = uuid();
    let mut apps = pb::apps_client::AppsClient::new(s.channel().await);
    apps.put_app(authed(pb::PutAppRequest { id: app.clone(), name: "n".into(), ..Default::default() })).await.unwrap();
    apps.delete_app(authed(pb::DeleteAppRequest { id: app.clone(), expected_version: None })).await.unwrap();
    let mut resumed = open(s, &first.position, vec![]).await;
    assert_eq!(started(&mut resumed).await, first.position);
    let b = change(&mut resumed).await;
    assert_eq!(setting(&b), ("b", "2"));
    let gone = change(&mut resumed).await;
    assert_eq!(
        (gone.resource(), gone.key.as_str(), gone.deleted, gone.record.is_none()),
        (pb::Resource::Apps, app.as_str(), true, true)
    );

    // A filter keeps only the kinds asked for.
    let mut contexts_only = open(s, &first.position, vec![pb::Resource::Contexts]).await;
    started(&mut contexts_only).await;
    let mut ctx = pb::contexts_client::ContextsClient::new(s.channel().await);
    ctx.put_context(authed(pb::PutContextRequest { user: "u".into(), ..Default::default() })).await.unwrap();
    let c = change(&mut contexts_only).await;
    assert_eq!((c.resource(), c.key.as_str()), (pb::Resource::Contexts, "u"));
}

#[tokio::test]
async fn watch_on_postgres() {
    let s = TestServer::postgres("watch_pg").await;
    changes_arrive_and_resume(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn watch_on_sqlite() {
    let s = TestServer::sqlite().await;
    changes_arrive_and_resume(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn positions_that_cannot_resume_get_a_reset() {
    let mut cfg = config(postgres_url("watch_reset").await);
    cfg.watch_retention = Duration::from_millis(1);
    let s = TestServer::start(cfg).await;
    let mut stream = open(&s, "", vec![]).await;
    let start = started(&mut stream).await;
    put_setting(&s, "old", serde_json::json!(1)).await;
    put_setting(&s, "new", serde_json::json!(1)).await;
    change(&mut stream).await;
    drop(stream);
    // The feed task purges changes older than the retention.
    let head = dugong_testkit::wait_for("the changes to be purged", DEADLINE, || async {
        let mut s2 = open(&s, &start, vec![]).await;
        started(&mut s2).await;
        match next(&mut s2).await {
            Event::Reset(r) => Some(r),
            _ => None,
        }
    })
    .await;
    // Purged before the watch started, or while it caught up: either way a reset.
    assert!(head.reason.contains("re-read everything"), "{}", head.reason);

    let other = TestServer::sqlite().await;
    let mut foreign = open(&other, &start, vec![]).await;
    started(&mut foreign).await;
    match next(&mut foreign).await {
        Event::Reset(r) => assert!(r.reason.contains("another database"), "{}", r.reason),
        e => panic!("{e:?}"),
    }
    let err = WatchClient::new(s.channel().await)
        .watch(pb::WatchRequest { position: "garbage".into(), resources: vec![] })
        .await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::InvalidArgument);
    s.stop().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test]
async fn a_shutdown_tells_watchers_to_reconnect() {
    let s = TestServer::sqlite().await;
    let mut stream = open(&s, "", vec![]).await;
    started(&mut stream).await;
    let sse = common::http().get(s.url("/api/v1/watch?resources=settings")).send().await.unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    s.begin_shutdown();
    match next(&mut stream).await {
        Event::GoingAway(g) => assert!(g.reason.contains("reconnect"), "{}", g.reason),
        e => panic!("{e:?}"),
    }
    let end = tokio::time::timeout(DEADLINE, stream.message()).await.unwrap();
    assert_eq!(end.unwrap_err().code(), tonic::Code::Unavailable);
    let text = tokio::time::timeout(DEADLINE, sse.text()).await.unwrap().unwrap();
    assert!(text.contains("event: started") && text.contains("event: going_away"), "{text}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_watch_outlives_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(format!("sqlite:{}", dir.path().join("s.sqlite").display()).parse().unwrap());
    cfg.request_timeout = Duration::from_millis(200);
    let s = TestServer::start(cfg).await;
    let mut stream = open(&s, "", vec![]).await;
    started(&mut stream).await;
    // Time passing is the point here: the stream must outlive the unary timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    put_setting(&s, "late", serde_json::json!(1)).await;
    assert_eq!(change(&mut stream).await.key, "late");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn server_sent_events_carry_changes() {
    let s = TestServer::sqlite().await;
    let mut sse = common::http().get(s.url("/api/v1/watch")).send().await.unwrap();
    put_setting(&s, "k", serde_json::json!({"x": 1})).await;
    let mut text = String::new();
    while !text.contains("event: change") {
        let chunk = tokio::time::timeout(DEADLINE, sse.chunk()).await.unwrap().unwrap().expect("more");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"resource\":\"settings\"") && text.contains("\"value\":{\"x\":1}"), "{text}");
    s.stop().await.unwrap();
}

/// Two sites, each a database of the shared cluster with its own server, and
/// `dugong replicate` between them: a change written through site 0's server
/// reaches a watcher of site 1's server, and the other way round.
#[tokio::test]
async fn a_watch_sees_changes_replicated_from_another_site() {
    let (db0, db1) = (postgres_url("xsite_s0").await, postgres_url("xsite_s1").await);
    let mut cfg0 = config(db0.clone());
    cfg0.site = "site0".into();
    let mut cfg1 = config(db1.clone());
    cfg1.site = "site1".into();
    let (s0, s1) = (TestServer::start(cfg0).await, TestServer::start(cfg1).await);

    let json = {
        let db = |id: u32, url: &dugong_store::DbUrl| {
            let dugong_store::DbUrl::Postgres { config, .. } = url else { panic!() };
            format!(
                r#"{{"id": {id}, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}"#,
                config.get_dbname().unwrap(),
                dugong_testkit::Cluster::shared().port()
            )
        };
        format!(
            r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
            db(0, &db0),
            db(1, &db1)
        )
    };
    let replica_config = Arc::new(dugong_config::Config::from_str(&json, std::path::Path::new("test.json")).unwrap());
    let stop = CancellationToken::new();
    let replicator = tokio::spawn(daemon::run(replica_config, DaemonOptions::default(), stop.clone()));
    // Changes are captured from the replicator's first start on (onetimecopy 0):
    // wait until it has run once on both databases.
    for url in [&db0, &db1] {
        let dugong_store::DbUrl::Postgres { config, .. } = url else { panic!() };
        let client = dugong_testkit::Cluster::shared().connect(config.get_dbname().unwrap()).await.unwrap();
        dugong_testkit::wait_for("the replicator's first good run", DEADLINE, || async {
            let row = client.query_opt("SELECT state FROM dugong.sync_state WHERE state = 'Good'", &[]).await.ok()?;
            row.map(|_| ())
        })
        .await;
    }

    let mut on1 = open(&s1, "", vec![]).await;
    started(&mut on1).await;
    let mut on0 = open(&s0, "", vec![]).await;
    started(&mut on0).await;

    put_setting(&s0, "shared", serde_json::json!("written on site 0")).await;
    let c = change(&mut on0).await;
    assert_eq!(setting(&c), ("shared", "\"written on site 0\""), "site 0 sees its own write");
    let c = change(&mut on1).await;
    assert_eq!(setting(&c), ("shared", "\"written on site 0\""), "site 1 sees it after replication");

    let mut ctx = pb::contexts_client::ContextsClient::new(s1.channel().await);
    let values = [("patient".to_string(), "0101-1234".to_string())].into();
    ctx.put_context(authed(pb::PutContextRequest { user: "alice".into(), values, expected_version: Some(0) }))
        .await
        .unwrap();
    let c = change(&mut on0).await;
    assert_eq!((c.resource(), c.key.as_str()), (pb::Resource::Contexts, "alice"), "and back from site 1 to site 0");

    // An app updated on site 0 keeps its flows on site 1: the replicator
    // applies the update as delete + insert, and the flows' ON DELETE CASCADE
    // must not fire for it (session_replication_role = replica).
    let (app, flow) = (uuid(), uuid());
    let mut apps0 = pb::apps_client::AppsClient::new(s0.channel().await);
    let put_app = |name: &str| pb::PutAppRequest { id: app.clone(), name: name.into(), ..Default::default() };
    apps0.put_app(authed(put_app("v1"))).await.unwrap();
    let mut flows0 = pb::flows_client::FlowsClient::new(s0.channel().await);
    let put_flow = pb::PutFlowRequest { id: flow.clone(), app_id: app.clone(), name: "f".into(), ..Default::default() };
    flows0.put_flow(authed(put_flow)).await.unwrap();
    // (Site 1's watcher also saw its own context write; skip to the flow.)
    while change(&mut on1).await.key != flow {}
    apps0.put_app(authed(put_app("v2"))).await.unwrap();
    loop {
        if let Some(pb::change::Record::App(a)) = change(&mut on1).await.record {
            if a.version == 2 {
                assert_eq!(a.name, "v2");
                break;
            }
        }
    }
    let mut flows1 = pb::flows_client::FlowsClient::new(s1.channel().await);
    let kept = flows1.get_flow(pb::GetFlowRequest { id: flow.clone() }).await.expect("the flow survives on site 1");
    assert_eq!(kept.into_inner().app_id, app);

    // Site 1's info shows the sync the replicator records there.
    let info =
        pb::info_client::InfoClient::new(s1.channel().await).server_info(pb::ServerInfoRequest {}).await.unwrap();
    let info = info.into_inner();
    assert_eq!(info.site, "site1");
    assert_eq!(info.replication.first().map(|s| s.sync.as_str()), Some("sync0"), "{info:?}");

    stop.cancel();
    let reports = replicator.await.unwrap();
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
    s0.stop().await.unwrap();
    s1.stop().await.unwrap();
}

/// The same story between two SQLite sites — the embedded setup of the demo:
/// each server keeps its file open and writes it while `dugong replicate`
/// carries changes between the files. A change written through site 0 reaches
/// a watcher of site 1 (the server's feed triggers fire for replicated rows),
/// and the server's site-local `dugong_local_*` tables stay local.
#[tokio::test]
async fn a_watch_sees_changes_replicated_between_sqlite_sites() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("site0.sqlite"), dir.path().join("site1.sqlite")];
    let url = |i: usize| -> dugong_store::DbUrl { format!("sqlite:{}", paths[i].display()).parse().unwrap() };
    let mut cfg0 = config(url(0));
    cfg0.site = "site0".into();
    let mut cfg1 = config(url(1));
    cfg1.site = "site1".into();
    let (s0, s1) = (TestServer::start(cfg0).await, TestServer::start(cfg1).await);

    let json = format!(
        r#"{{"databases": [{{"id": 0, "url": "sqlite:{}"}}, {{"id": 1, "url": "sqlite:{}"}}],
            "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
        paths[0].display(),
        paths[1].display()
    );
    let replica_config = Arc::new(dugong_config::Config::from_str(&json, std::path::Path::new("test.json")).unwrap());
    let stop = CancellationToken::new();
    let replicator = tokio::spawn(daemon::run(replica_config, DaemonOptions::default(), stop.clone()));
    for path in &paths {
        dugong_testkit::wait_for("the replicator's first good run", DEADLINE, || async {
            let c = rusqlite::Connection::open(path).ok()?;
            let good: i64 =
                c.query_row("SELECT count(*) FROM dugong_sync_state WHERE state = 'Good'", [], |r| r.get(0)).ok()?;
            (good == 1).then_some(())
        })
        .await;
    }
    let c = rusqlite::Connection::open(&paths[0]).unwrap();
    let captured: Vec<String> = c
        .prepare("SELECT table_name FROM dugong_captured ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        captured,
        ["apps", "audit_log", "console_users", "contexts", "events", "flows", "history", "settings"],
        "application tables (console users, the audit log and the history too) replicate; dugong_local_* stay site-local"
    );

    let mut on1 = open(&s1, "", vec![]).await;
    started(&mut on1).await;
    let mut on0 = open(&s0, "", vec![]).await;
    started(&mut on0).await;

    put_setting(&s0, "shared", serde_json::json!("written on site 0")).await;
    let c = change(&mut on0).await;
    assert_eq!(setting(&c), ("shared", "\"written on site 0\""), "site 0 sees its own write");
    let c = change(&mut on1).await;
    assert_eq!(setting(&c), ("shared", "\"written on site 0\""), "site 1 sees it after replication");
    let r = common::http().get(s1.url("/api/v1/settings/shared")).send().await.unwrap();
    assert_eq!(r.status(), 200, "and serves it through its API");

    let mut ctx = pb::contexts_client::ContextsClient::new(s1.channel().await);
    let values = [("patient".to_string(), "0101-1234".to_string())].into();
    ctx.put_context(authed(pb::PutContextRequest { user: "alice".into(), values, expected_version: Some(0) }))
        .await
        .unwrap();
    let c = change(&mut on0).await;
    assert_eq!((c.resource(), c.key.as_str()), (pb::Resource::Contexts, "alice"), "and back from site 1 to site 0");

    // An app written through site 0 shows on site 1 with its flow; updating the
    // app keeps the flow (the replicator's connections have foreign keys off,
    // and apply an update in place).
    let (app, flow) = (uuid(), uuid());
    let mut apps0 = pb::apps_client::AppsClient::new(s0.channel().await);
    let put_app = |name: &str| pb::PutAppRequest { id: app.clone(), name: name.into(), ..Default::default() };
    apps0.put_app(authed(put_app("v1"))).await.unwrap();
    let mut flows0 = pb::flows_client::FlowsClient::new(s0.channel().await);
    let put_flow = pb::PutFlowRequest { id: flow.clone(), app_id: app.clone(), name: "f".into(), ..Default::default() };
    flows0.put_flow(authed(put_flow)).await.unwrap();
    while change(&mut on1).await.key != flow {}
    let mut apps1 = pb::apps_client::AppsClient::new(s1.channel().await);
    let got = apps1.get_app(pb::GetAppRequest { id: app.clone() }).await.expect("the app is on site 1");
    assert_eq!(got.into_inner().name, "v1");
    apps0.put_app(authed(put_app("v2"))).await.unwrap();
    loop {
        if let Some(pb::change::Record::App(a)) = change(&mut on1).await.record {
            if a.version == 2 {
                assert_eq!(a.name, "v2");
                break;
            }
        }
    }
    let mut flows1 = pb::flows_client::FlowsClient::new(s1.channel().await);
    let kept = flows1.get_flow(pb::GetFlowRequest { id: flow.clone() }).await.expect("the flow survives on site 1");
    assert_eq!(kept.into_inner().app_id, app);

    // Site 1's info shows the sync the replicator records in its file.
    let info =
        pb::info_client::InfoClient::new(s1.channel().await).server_info(pb::ServerInfoRequest {}).await.unwrap();
    let info = info.into_inner();
    assert_eq!(info.site, "site1");
    assert_eq!(
        info.replication.first().map(|s| (s.sync.as_str(), s.state.as_str())),
        Some(("sync0", "Good")),
        "{info:?}"
    );

    stop.cancel();
    let reports = replicator.await.unwrap();
    assert!(reports.iter().all(|r| r.good), "{reports:?}");
    s0.stop().await.unwrap();
    s1.stop().await.unwrap();
}
