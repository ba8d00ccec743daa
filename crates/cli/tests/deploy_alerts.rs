//! End to end: a real Prometheus loads `deploy/prometheus/alerts.yml`,
//! scrapes a real replicator between two PostgreSQL servers, and fires
//! DugongDatabaseUnreachable when one site's PostgreSQL stops — then
//! resolves it when the server is back. Slow (the rule waits a minute before
//! firing), so ignored by default:
//!
//!   cargo test -p dugong --test deploy_alerts -- --ignored

use dugong_testkit::{free_port, wait_for, Cluster, ClusterOptions};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The alerts Prometheus holds now, as (name, db, state).
async fn alerts(client: &reqwest::Client, port: u16) -> Option<Vec<(String, String, String)>> {
    let body: Value =
        client.get(format!("http://127.0.0.1:{port}/api/v1/alerts")).send().await.ok()?.json().await.ok()?;
    let list = body["data"]["alerts"].as_array()?;
    Some(
        list.iter()
            .map(|a| {
                let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
                (label("alertname"), label("db"), a["state"].as_str().unwrap_or_default().to_string())
            })
            .collect(),
    )
}

/// The value of an instant query, when it has exactly one.
async fn query(client: &reqwest::Client, port: u16, q: &str) -> Option<f64> {
    let url =
        reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{port}/api/v1/query"), &[("query", q)]).ok()?;
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    let result = body["data"]["result"].as_array()?;
    (result.len() == 1).then_some(())?;
    result[0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
#[ignore = "a minute and a half: run with --ignored"]
async fn prometheus_fires_database_unreachable_when_a_sites_postgresql_stops() {
    let sites =
        [Cluster::start(ClusterOptions::default()).unwrap(), Cluster::start(ClusterOptions::default()).unwrap()];
    let dir = tempfile::tempdir().unwrap();
    // Each site's own server: its `postgres` database holds the table.
    let db = |id: usize, site: &Cluster| {
        format!(r#"{{"id": {id}, "url": "postgres://postgres@127.0.0.1:{}/postgres"}}"#, site.port())
    };
    for site in &sites {
        site.psql("postgres", "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, v text)").await.unwrap();
    }
    let config = dir.path().join("bucardo.json");
    let json = format!(
        r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "targets": [], "tables": "items", "onetimecopy": 0}}]}}"#,
        db(0, &sites[0]),
        db(1, &sites[1])
    );
    std::fs::write(&config, json).unwrap();
    let replicator_port = free_port();
    let log = std::fs::File::create(dir.path().join("replicate.log")).unwrap();
    let _replicator = Running(
        Command::new(env!("CARGO_BIN_EXE_dugong"))
            .args([
                "replicate",
                "--max-backoff",
                "2s",
                "--metrics",
                &format!("127.0.0.1:{replicator_port}"),
                "--config",
            ])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/alerts.yml").canonicalize().unwrap();
    let prometheus_yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_yml,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: dugong-replicate\n    static_configs:\n      - targets: [\"127.0.0.1:{replicator_port}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prometheus_yml.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/test.sh installs Debian's prometheus package)"),
    );
    let client = reqwest::Client::new();
    // Both databases up, as Prometheus sees the replicator.
    for db in ["db0", "db1"] {
        let q = format!("dugong_replica_database_up{{db=\"{db}\"}}");
        wait_for(&format!("{db} up in Prometheus"), Duration::from_secs(60), || async {
            query(&client, prometheus_port, &q).await.filter(|v| *v == 1.0)
        })
        .await;
    }
    assert!(!alerts(&client, prometheus_port).await.unwrap().iter().any(|a| a.0 == "DugongDatabaseUnreachable"));

    sites[1].stop().unwrap();
    let firing = wait_for("DugongDatabaseUnreachable firing for db1", Duration::from_secs(150), || async {
        let now = alerts(&client, prometheus_port).await?;
        now.iter().any(|a| a.0 == "DugongDatabaseUnreachable" && a.1 == "db1" && a.2 == "firing").then_some(now)
    })
    .await;
    assert!(!firing.iter().any(|a| a.0 == "DugongDatabaseUnreachable" && a.1 == "db0"), "db0 is up: {firing:?}");

    sites[1].restart().unwrap();
    wait_for("DugongDatabaseUnreachable resolved", Duration::from_secs(120), || async {
        let now = alerts(&client, prometheus_port).await?;
        (!now.iter().any(|a| a.0 == "DugongDatabaseUnreachable")).then_some(())
    })
    .await;
}
