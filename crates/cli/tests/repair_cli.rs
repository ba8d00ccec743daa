//! `dugong repair` as operators run it: two replicated sites made to diverge
//! outside the replicator (writes with `session_replication_role = replica`,
//! which capture does not see), in each way rows can differ; a dry run that
//! changes nothing, a repair by commit time, and `--source`.

mod operator;

use dugong_testkit::Cluster;
use operator::{show, ConfigFile};
use tokio_postgres::Client;

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, name text, qty int);
CREATE TABLE pair (a text, b int, v text, PRIMARY KEY (a, b));";

/// A write the replicator never sees: what a manual fix or a restored backup does.
async fn behind_its_back(c: &Client, sql: &str) {
    c.batch_execute(&format!("BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT")).await.expect(sql);
}

async fn rows(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.expect(sql).iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Two replicated sites holding the same rows.
async fn pair(name: &str) -> (Vec<Client>, ConfigFile) {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    let mut clients = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("{name}{i}")).await.unwrap();
        cluster.psql(&db, SCHEMA).await.unwrap();
        clients.push(cluster.connect(&db).await.unwrap());
        dbs.push(db);
    }
    let config = ConfigFile::new(name, cluster, &dbs, "postgres");
    assert_eq!(config.dugong(&["replicate", "--once"]).status.code(), Some(0));
    clients[0]
        .batch_execute(
            "INSERT INTO item SELECT g, 'item ' || g, g FROM generate_series(1, 5000) g;
             INSERT INTO pair VALUES ('x', 1, 'one'), ('x', 2, 'two'), ('y', 1, 'three');",
        )
        .await
        .unwrap();
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(config.dugong(&["compare"]).status.code(), Some(0));
    (clients, config)
}

#[tokio::test]
async fn repair_settles_every_kind_of_difference_by_commit_time_and_logs_it() {
    let (c, config) = pair("repair_kinds").await;
    // Updated on db1 first, then differently on db0: db0's commit is later.
    behind_its_back(&c[1], "UPDATE item SET name = 'older on db1' WHERE id = 1").await;
    behind_its_back(&c[0], "UPDATE item SET name = 'newer on db0' WHERE id = 1").await;
    // The reverse for id 2.
    behind_its_back(&c[0], "UPDATE item SET qty = -2 WHERE id = 2").await;
    behind_its_back(&c[1], "UPDATE item SET qty = 222 WHERE id = 2").await;
    // Missing on db1; only on db1; a composite key missing on db0.
    behind_its_back(&c[1], "DELETE FROM item WHERE id = 3").await;
    behind_its_back(&c[1], "INSERT INTO item VALUES (9001, 'only on db1', 1)").await;
    behind_its_back(&c[0], "DELETE FROM pair WHERE a = 'y' AND b = 1").await;
    let out = config.dugong(&["compare"]);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));

    let out = config.dugong(&["repair", "--dry-run"]);
    assert_eq!(out.status.code(), Some(5), "a dry run that finds work exits 5: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("public.item: 4 keys differed; db0 would take 1 missing rows, 1 newer versions; db1 would take 1 missing rows, 1 newer versions"), "{text}");
    assert!(text.contains("(id)=(1): db0's version to db1 (dugong repair: later commit)"), "{text}");
    assert!(text.contains("public.pair: 1 keys differed; db0 would take 1 missing rows"), "{text}");
    assert!(text.contains("dry run: 5 keys would be repaired; nothing was written"), "{text}");
    assert_eq!(config.dugong(&["compare"]).status.code(), Some(5), "the dry run wrote nothing");

    let out = config.dugong(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("repaired 5 keys"), "{}", show(&out));
    let out = config.dugong(&["compare"]);
    assert_eq!(out.status.code(), Some(0), "identical after the repair: {}", show(&out));
    for site in &c {
        assert_eq!(rows(site, "SELECT name FROM item WHERE id = 1").await, vec!["newer on db0"]);
        assert_eq!(rows(site, "SELECT qty::text FROM item WHERE id = 2").await, vec!["222"]);
        assert_eq!(
            rows(site, "SELECT name FROM item WHERE id IN (3, 9001) ORDER BY id").await,
            vec!["item 3", "only on db1"]
        );
        assert_eq!(rows(site, "SELECT v FROM pair WHERE a = 'y'").await, vec!["three"]);
    }
    // Nothing echoed: the change logs hold nothing to ship.
    let status = config.dugong(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("pending changes 0 (db0 0, db1 0)"), "{}", show(&status));
    // Every change is in the conflict log, like a conflict.
    let out = config.dugong(&["conflicts", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let logged = list["conflicts"].as_array().unwrap();
    assert_eq!(logged.len(), 5, "{list}");
    assert!(logged.iter().all(|c| c["reason"].as_str().unwrap().starts_with("dugong repair: ")), "{list}");
    let one = logged.iter().find(|c| c["key"][0] == "1" && c["table"] == "public.item").unwrap();
    assert_eq!((one["winner"]["database"].as_str(), one["loser"]["database"].as_str()), (Some("db0"), Some("db1")));
    assert_eq!(one["loser"]["row"]["name"], "older on db1");
    // And a second repair finds nothing.
    let out = config.dugong(&["repair", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[tokio::test]
async fn with_a_source_its_rows_win_and_rows_it_lacks_are_deleted() {
    let (c, config) = pair("repair_source").await;
    behind_its_back(&c[0], "UPDATE item SET name = 'newer, but db0 is not the source' WHERE id = 10").await;
    behind_its_back(&c[0], "INSERT INTO item VALUES (9002, 'only on db0', 1)").await;
    behind_its_back(&c[1], "DELETE FROM item WHERE id = 11").await;
    let out = config.dugong(&["repair", "--source", "db1", "--table", "item"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db0 took 1 newer versions, 2 deletions"), "{text}");
    assert_eq!(config.dugong(&["compare"]).status.code(), Some(0));
    for site in &c {
        assert_eq!(rows(site, "SELECT name FROM item WHERE id = 10").await, vec!["item 10"]);
        assert!(rows(site, "SELECT name FROM item WHERE id IN (11, 9002)").await.is_empty());
    }
    let out = config.dugong(&["repair", "--source", "7"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source db7: sync0 has no database db7"), "{}", show(&out));
}

/// `dugong_replica_rows_differing` of `table` on the replicator's `/metrics`.
async fn differing(metrics: &str, table: &str) -> Option<u64> {
    let text = reqwest::get(format!("http://{metrics}/metrics")).await.ok()?.text().await.ok()?;
    let series = format!("dugong_replica_rows_differing{{sync=\"sync0\",table=\"{table}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn the_replicators_consistency_check_counts_rows_known_to_differ_until_repaired() {
    let (c, config) = pair("repair_metric").await;
    let metrics = format!("127.0.0.1:{}", dugong_testkit::free_port());
    let _replicator = config.spawn(&[
        "replicate",
        "--metrics",
        &metrics,
        "--consistency-interval",
        "100ms",
        "--consistency-chunk",
        "2000",
    ]);
    let deadline = std::time::Duration::from_secs(60);
    dugong_testkit::wait_for("the first check of public.item", deadline, || differing(&metrics, "public.item")).await;
    behind_its_back(&c[1], "UPDATE item SET name = 'fixed by hand' WHERE id IN (10, 4000)").await;
    behind_its_back(&c[0], "DELETE FROM item WHERE id = 2500").await;
    // Ordinary writes meanwhile are replication, not divergence.
    c[0].batch_execute("UPDATE item SET qty = qty + 1 WHERE id BETWEEN 100 AND 200").await.unwrap();
    dugong_testkit::wait_for("three rows known to differ", deadline, || async {
        (differing(&metrics, "public.item").await == Some(3)).then_some(())
    })
    .await;
    let out = config.dugong(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    dugong_testkit::wait_for("the count back at zero", deadline, || async {
        (differing(&metrics, "public.item").await == Some(0)).then_some(())
    })
    .await;
}

/// The incident of a replicator started on sites that already differ: rows
/// written on one site before capture was first installed are never
/// replicated, and status used to say Good. The consistency check finds them,
/// status names the table, the rows and what to run (exit 4), and once
/// `dugong repair` settled them a whole pass clears the finding.
#[tokio::test]
async fn rows_written_before_capture_existed_are_reported_by_status_until_repaired() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    let mut c = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("repair_before{i}")).await.unwrap();
        cluster.psql(&db, SCHEMA).await.unwrap();
        c.push(cluster.connect(&db).await.unwrap());
        dbs.push(db);
    }
    // Site 0 had rows before any replicator ran; onetimecopy is 0.
    c[0].batch_execute("INSERT INTO item SELECT g, 'early ' || g, g FROM generate_series(1, 3) g").await.unwrap();
    let config = operator::ConfigFile::new("repair_before", cluster, &dbs, "postgres");
    let replicator = config.spawn(&["replicate", "--consistency-interval", "100ms"]);
    let status = || async {
        let out = config.dugong(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((out.status.code(), json["syncs"][0].clone()))
    };
    let deadline = std::time::Duration::from_secs(60);
    let (code, sync) = dugong_testkit::wait_for("status to report the rows only site 0 has", deadline, || async {
        status().await.filter(|(_, s)| s["differing"].as_array().is_some_and(|d| !d.is_empty()))
    })
    .await;
    assert_eq!(code, Some(4), "{sync:#}");
    assert_eq!(sync["healthy"], false, "{sync:#}");
    assert_eq!(sync["differing"][0]["table"], "public.item", "{sync:#}");
    assert_eq!(sync["differing"][0]["rows"], 3, "{sync:#}");
    let advice: Vec<&str> = sync["advice"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(
        advice.iter().any(|a| a.starts_with("3 rows of public.item differ")
            && a.contains("dugong repair --sync sync0 --table public.item")),
        "{advice:?}"
    );
    let text = config.dugong(&["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("sync0: rows differing: public.item 3 (since "),
        "{}",
        show(&text)
    );

    let out = config.dugong(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (_, sync) = dugong_testkit::wait_for("status Good again after the repair", deadline, || async {
        status().await.filter(|(code, s)| *code == Some(0) && s["differing"].as_array().is_some_and(|d| d.is_empty()))
    })
    .await;
    assert_eq!(sync["healthy"], true, "{sync:#}");
    assert_eq!(rows(&c[1], "SELECT name FROM item ORDER BY id").await, ["early 1", "early 2", "early 3"]);
    drop(replicator);
}
