//! A server's life: it refuses to start unsafe or on a database it doesn't
//! understand, readiness follows its database going down and coming back, a
//! shutdown lets calls in flight finish, and metrics describe it all.

mod common;

use std::sync::Arc;

use common::{config, http, postgres_url, TestServer, DEADLINE, TOKEN};
use dugong_server::{Auth, ConfigError, Listeners, ServerError};
use dugong_store::DbUrl;
use dugong_testkit::{wait_for, Cluster, ClusterOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn listeners() -> Listeners {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    Listeners { grpc: bind().await.unwrap(), http: bind().await.unwrap(), metrics: None }
}

fn sqlite_url(dir: &tempfile::TempDir) -> DbUrl {
    format!("sqlite:{}", dir.path().join("s.sqlite").display()).parse().unwrap()
}

#[tokio::test]
async fn no_tokens_refuses_to_start_unless_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(sqlite_url(&dir));
    cfg.auth = Auth::new(Vec::new(), false);
    let err = dugong_server::run(listeners().await, cfg.clone(), async {}).await.unwrap_err();
    assert!(matches!(err, ServerError::Config(ConfigError::NoTokens)), "{err}");
    assert!(err.to_string().contains("DUGONG_API_TOKENS"), "{err}");

    cfg.auth = Auth::new(Vec::new(), true);
    let s = TestServer::start(cfg).await;
    let r = http().put(s.url("/api/v1/settings/k")).json(&json!({"value": 1})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "insecure mode takes writes without a token");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_dugong_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(sqlite_url(&dir))).await;
    s.stop().await.unwrap();
    let conn = rusqlite_open(&dir);
    conn.execute("INSERT INTO dugong_local_schema_migrations VALUES (99, 'future', 0, 'dugong 9')", []).unwrap();
    let err = dugong_server::run(listeners().await, config(sqlite_url(&dir)), async {}).await.unwrap_err();
    let message = err.to_string();
    let known = dugong_store::migrate::latest();
    assert!(message.contains(&format!("schema is at version 99, newer than this dugong knows ({known})")), "{message}");
}

fn rusqlite_open(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("s.sqlite")).unwrap()
}

async fn ready(s: &TestServer) -> StatusCode {
    http().get(s.url("/readyz")).send().await.map(|r| r.status()).unwrap_or(StatusCode::BAD_GATEWAY)
}

#[tokio::test]
async fn readiness_follows_the_database_down_and_back() {
    let cluster =
        Arc::new(tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default())).await.unwrap().unwrap());
    let db = cluster.create_database("readiness").await.unwrap();
    let s = TestServer::start(config(cluster.url(&db).parse().unwrap())).await;
    assert_eq!(ready(&s).await, StatusCode::OK);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop()).await.unwrap().unwrap();
    wait_for("readyz to fail", DEADLINE, || async {
        (ready(&s).await == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let body: Value = http().get(s.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["ready"], false);
    let r = http().get(s.url("/api/v1/settings/k")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "reads say the database is unavailable");
    // gRPC health follows at the health task's next check.
    wait_for("gRPC health to turn NOT_SERVING", DEADLINE, || async {
        (grpc_health(&s).await == tonic_health::pb::health_check_response::ServingStatus::NotServing).then_some(())
    })
    .await;
    let info: Value = http().get(s.url("/api/v1/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["database_reachable"], false);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart()).await.unwrap().unwrap();
    wait_for("readyz to pass again", DEADLINE, || async { (ready(&s).await == StatusCode::OK).then_some(()) }).await;
    let r = http().put(s.url("/api/v1/settings/k")).bearer_auth(TOKEN).json(&json!({"value": 1})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "writes work again");
    wait_for("gRPC health to serve again", DEADLINE, || async {
        (grpc_health(&s).await == tonic_health::pb::health_check_response::ServingStatus::Serving).then_some(())
    })
    .await;
    s.stop().await.unwrap();
}

async fn grpc_health(s: &TestServer) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let mut client = HealthClient::new(s.channel().await);
    client.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status()
}

/// A write blocked on a row lock when shutdown begins still completes, and
/// the server stops once it has.
#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish() {
    let url = postgres_url("drain").await;
    let s = TestServer::start(config(url.clone())).await;
    let r = http().put(s.url("/api/v1/settings/k")).bearer_auth(TOKEN).json(&json!({"value": 1})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let DbUrl::Postgres { config: pg, .. } = &url else { panic!() };
    let mut blocker = Cluster::shared().connect(pg.get_dbname().unwrap()).await.unwrap();
    let tx = blocker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM dugong_app.settings WHERE key = 'k' FOR UPDATE", &[]).await.unwrap();

    let write = tokio::spawn({
        let url = s.url("/api/v1/settings/k");
        async move { http().put(url).bearer_auth(TOKEN).json(&json!({"value": 2})).send().await }
    });
    // Wait until the write is really waiting on the lock.
    let probe = Cluster::shared().connect(pg.get_dbname().unwrap()).await.unwrap();
    wait_for("the write to wait on the row lock", DEADLINE, || async {
        let n: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    s.begin_shutdown();
    wait_for("readiness to fail while draining", DEADLINE, || async {
        (ready(&s).await != StatusCode::OK).then_some(())
    })
    .await;
    tx.commit().await.unwrap();
    let response = tokio::time::timeout(DEADLINE, write).await.unwrap().unwrap().expect("the write completes");
    assert_eq!(response.status(), StatusCode::OK);
    s.stop().await.unwrap();
    let v: Value = probe
        .query_one("SELECT value::text FROM dugong_app.settings WHERE key = 'k'", &[])
        .await
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .unwrap();
    assert_eq!(v, json!(2));
}

#[tokio::test]
async fn metrics_count_calls_watches_and_the_database() {
    let s = TestServer::sqlite().await;
    http().get(s.url("/api/v1/settings/none")).send().await.unwrap();
    let mut settings = dugong_proto::v1::settings_client::SettingsClient::new(s.channel().await);
    let _ = settings.get_setting(dugong_proto::v1::GetSettingRequest { key: "none".into() }).await;
    let watch = dugong_proto::v1::watch_client::WatchClient::new(s.channel().await)
        .watch(dugong_proto::v1::WatchRequest::default())
        .await
        .unwrap();
    let url = format!("http://{}/metrics", s.metrics);
    let text = wait_for("metrics to show it all", DEADLINE, || async {
        let text = http().get(&url).send().await.ok()?.text().await.ok()?;
        let all = [
            "dugong_api_requests_total{api=\"http\",method=\"GET\",route=\"/api/v1/settings/{key}\",status=\"404\"}",
            "dugong_api_requests_total{api=\"grpc\",method=\"GetSetting\",route=\"/dugong.v1.Settings/GetSetting\",status=\"NotFound\"}",
            "dugong_api_request_duration_seconds_bucket{api=\"grpc\",method=\"GetSetting\",route=\"/dugong.v1.Settings/GetSetting\",status=\"NotFound\",le=\"0.005\"}",
            "dugong_watches_open",
            "dugong_db_up 1",
            "dugong_db_pool_connections{state=\"idle\"}",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ];
        all.iter().all(|m| text.contains(m)).then_some(text)
    })
    .await;
    assert!(!text.contains(TOKEN));
    drop(watch);
    s.stop().await.unwrap();
}
