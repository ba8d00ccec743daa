//! `compare` on real PostgreSQL: identical tables of every kind of column,
//! missing, extra and changed rows named by key, a large table streamed, a
//! schema difference, an unreachable database.

use dugong_config::Config;
use dugong_replica::compare::{self, render_text, TableComparison};
use dugong_testkit::{free_port, Cluster};
use std::path::Path;

/// Column order differs on disk between the two databases on purpose: rows
/// are compared by column name.
const SCHEMA: [&str; 2] = [
    r#"CREATE TABLE mixed (id uuid PRIMARY KEY, n numeric(12,3), doc jsonb, raw bytea, at timestamptz, tags text[], t text, f float8);
       CREATE TABLE composite (region text, seq int, val text, PRIMARY KEY (region, seq));
       CREATE TABLE t (id int PRIMARY KEY, v text);"#,
    r#"CREATE TABLE mixed (id uuid PRIMARY KEY, t text, f float8, tags text[], at timestamptz, raw bytea, doc jsonb, n numeric(12,3));
       CREATE TABLE composite (region text, seq int, val text, PRIMARY KEY (region, seq));
       CREATE TABLE t (id int PRIMARY KEY, v text);"#,
];

const ROWS: &str = r#"
INSERT INTO mixed (id, n, doc, raw, at, tags, t, f) VALUES
  ('00000000-0000-0000-0000-000000000001', 123456789.125, '{"a": [1, {"b": null}]}', '\xdeadbeef', '2026-11-27 12:00:00.123456+02', '{x,"y z",NULL}', 'tab	and
newline', 0.1),
  ('00000000-0000-0000-0000-000000000002', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ('00000000-0000-0000-0000-000000000003', 0, '{}', '', 'infinity', '{}', '', 'NaN');
INSERT INTO composite VALUES ('eu', 1, 'a'), ('eu', 2, NULL), ('us', 1, '');
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;"#;

async fn sites(prefix: &str) -> (Vec<String>, Config) {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for (i, schema) in SCHEMA.iter().enumerate() {
        let db = cluster.create_database(&format!("{prefix}_{i}")).await.expect("create database");
        cluster.psql(&db, schema).await.expect("schema");
        cluster.psql(&db, ROWS).await.expect("rows");
        dbs.push(db);
    }
    let config = config(&dbs, cluster.port());
    (dbs, config)
}

fn config(dbs: &[String], port1: u16) -> Config {
    let port0 = Cluster::shared().port();
    let json = format!(
        r#"{{"databases": [
            {{"id": 0, "dbname": "{}", "host": "127.0.0.1 port={port0}", "user": "postgres", "pass": ""}},
            {{"id": 1, "dbname": "{}", "host": "127.0.0.1 port={port1}", "user": "postgres", "pass": ""}}],
           "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
        dbs[0], dbs[1]
    );
    Config::from_str(&json, Path::new("compare-test.json")).expect("valid config")
}

fn table<'a>(report: &'a compare::CompareReport, name: &str) -> &'a TableComparison {
    report.syncs[0].tables.iter().find(|t| t.table == name).unwrap_or_else(|| panic!("no {name} in {report:#?}"))
}

#[tokio::test]
async fn identical_tables_of_every_type_compare_identical() {
    let (_dbs, config) = sites("cmp_same").await;
    let report = compare::compare(&config, None, 10).await.expect("compare");
    assert!(report.identical && !report.errors, "{report:#?}");
    assert_eq!(
        render_text(&report),
        "public.composite: identical (3 rows)\npublic.mixed: identical (3 rows)\npublic.t: identical (100 rows)\n"
    );
}

#[tokio::test]
async fn missing_extra_and_changed_rows_are_named_by_key() {
    let (dbs, config) = sites("cmp_diff").await;
    let cluster = Cluster::shared();
    cluster
        .psql(
            &dbs[1],
            "DELETE FROM t WHERE id IN (7, 8);
             UPDATE t SET v = 'changed' WHERE id = 50;
             INSERT INTO t VALUES (1000, 'extra');
             UPDATE composite SET val = 'a' WHERE region = 'eu' AND seq = 2;
             UPDATE mixed SET tags = '{x,\"y z\"}' WHERE t IS NOT NULL AND t <> '';",
        )
        .await
        .unwrap();
    let report = compare::compare(&config, Some("sync0"), 10).await.expect("compare");
    assert!(!report.identical && !report.errors);
    let t = table(&report, "public.t");
    assert!(!t.identical);
    assert_eq!(t.rows.iter().map(|r| r.rows).collect::<Vec<_>>(), vec![100, 99]);
    assert_eq!(
        t.missing.iter().map(|m| (m.database.as_str(), m.keys)).collect::<Vec<_>>(),
        vec![("db0", 1), ("db1", 2)]
    );
    assert_eq!((t.differing, t.different_keys), (1, 4));
    let mut keys: Vec<(String, Vec<String>, usize)> =
        t.keys.iter().map(|k| (k.key.join(","), k.missing_on.clone(), k.differs.len())).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("1000".into(), vec!["db0".into()], 0),
            ("50".into(), vec![], 2),
            ("7".into(), vec!["db1".into()], 0),
            ("8".into(), vec!["db1".into()], 0),
        ]
    );
    let c = table(&report, "public.composite");
    assert_eq!(c.keys.len(), 1);
    assert_eq!(c.keys[0].key, vec!["eu", "2"]);
    assert_eq!(table(&report, "public.mixed").differing, 1, "a NULL array element dropped is a difference");
    let text = render_text(&report);
    assert!(text.contains("public.t: DIFFERENT — db0 100 rows, db1 99 rows; 1 key missing on db0, 2 keys missing on db1, 1 key differs\n"), "{text}");
    assert!(text.contains("  (id)=(7): missing on db1\n"), "{text}");
    assert!(text.contains("  (id)=(50): values differ (db0 ≠ db1)\n"), "{text}");
    assert!(text.contains("  (region, seq)=(eu, 2): values differ (db0 ≠ db1)\n"), "{text}");
    assert!(!text.contains("changed") && !text.contains("extra"), "never other column values: {text}");

    let limited = compare::compare(&config, None, 1).await.expect("compare");
    let t = table(&limited, "public.t");
    assert_eq!((t.keys.len(), t.different_keys), (1, 4));
    assert!(render_text(&limited).contains("  … and 3 more keys\n"));
}

#[tokio::test]
async fn a_large_table_is_streamed_and_compared() {
    let (dbs, config) = sites("cmp_large").await;
    let cluster = Cluster::shared();
    let big = "CREATE TABLE big (id bigint PRIMARY KEY, payload text, at timestamptz);
               INSERT INTO big SELECT g, repeat(md5(g::text), 4), '2026-01-01'::timestamptz + g * interval '1 second'
               FROM generate_series(1, 50000) g;";
    cluster.psql(&dbs[0], big).await.unwrap();
    cluster.psql(&dbs[1], big).await.unwrap();
    let report = compare::compare(&config, None, 10).await.expect("compare");
    assert!(table(&report, "public.big").identical, "{report:#?}");
    cluster.psql(&dbs[1], "DELETE FROM big WHERE id = 49999; UPDATE big SET payload = 'x' WHERE id = 3").await.unwrap();
    let report = compare::compare(&config, None, 10).await.expect("compare");
    let t = table(&report, "public.big");
    assert_eq!(t.rows.iter().map(|r| r.rows).collect::<Vec<_>>(), vec![50000, 49999]);
    assert_eq!((t.different_keys, t.differing), (2, 1));
    let mut keys: Vec<String> = t.keys.iter().map(|k| k.key[0].clone()).collect();
    keys.sort();
    assert_eq!(keys, vec!["3", "49999"]);
}

#[tokio::test]
async fn a_schema_difference_is_reported_per_table() {
    let (dbs, config) = sites("cmp_schema").await;
    Cluster::shared().psql(&dbs[1], "ALTER TABLE t ADD COLUMN extra int").await.unwrap();
    let report = compare::compare(&config, None, 10).await.expect("compare");
    assert!(!report.identical && !report.errors);
    let t = table(&report, "public.t");
    assert!(!t.identical);
    let problem = t.problem.as_deref().unwrap_or_default();
    assert!(problem.contains("column \"extra\" exists on db1"), "{problem}");
    assert!(table(&report, "public.composite").identical);
}

#[tokio::test]
async fn an_unreachable_database_is_an_error() {
    let (dbs, _) = sites("cmp_down").await;
    let dead = free_port();
    let report = compare::compare(&config(&dbs, dead), None, 10).await.expect("compare");
    assert!(report.errors && report.unreachable());
    let error = report.syncs[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("db1 is unreachable") && error.contains(&dead.to_string()), "{error}");
    assert!(render_text(&report).starts_with("sync0: cannot compare: db1 is unreachable"));
    assert!(compare::compare(&config(&dbs, dead), Some("nope"), 10).await.is_err());
}
