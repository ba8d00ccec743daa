//! Replication between SQLite files: every kind of change and value, both
//! directions, no echo, purging, bounded batches, foreign keys, application
//! triggers, uninstall.

mod sqlite_sites;

use dugong_replica::engine::{sqlite, Engine};
use dugong_replica::run::RunLimits;
use sqlite_sites::{prepare, sync_all, sync_all_with, Sites};

const SCHEMA: &str = r#"
CREATE TABLE "Mixed Case Tàble" (
    id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, "Odd ""Column""" TEXT
);
CREATE TABLE composite (region TEXT NOT NULL, seq INTEGER NOT NULL, val TEXT, PRIMARY KEY (region, seq));
CREATE TABLE plain (id TEXT PRIMARY KEY NOT NULL, v TEXT) WITHOUT ROWID;
CREATE TABLE no_key (v TEXT);
"#;

#[test]
fn every_change_and_value_replicates_both_ways_without_echo() {
    let sites = Sites::new(2, SCHEMA);
    let config = sites.config("");
    let mut p = prepare(&config);
    let excluded: Vec<(&str, &str)> = p.plan.excluded.iter().map(|e| (e.table.as_str(), e.reason.as_str())).collect();
    assert_eq!(
        excluded,
        vec![("main.no_key", "no primary key")],
        "the table without a primary key is excluded and listed"
    );
    assert_eq!(p.plan.tables.len(), 3);

    sites.exec(
        0,
        r#"INSERT INTO "Mixed Case Tàble" VALUES
             (1, 9007199254740993, 0.1, 'tab	and
newline \ backslash ''quote'' ünïcödé 🦭', x'00deadbeef00', 'q"uote'),
             (2, NULL, NULL, NULL, NULL, NULL),
             (3, -1, 1e300, '', x'', '');
           INSERT INTO composite VALUES ('eu', 1, 'a'), ('eu', 2, 'b'), ('us', 1, 'c');"#,
    );
    sites.exec(1, "INSERT INTO plain VALUES ('one', '1'), ('two', '2'), ('three', NULL)");
    let outcomes = sync_all(&mut p);
    assert_eq!(outcomes.iter().map(|o| o.inserts).sum::<u64>(), 9);
    let all = r#"SELECT *, typeof(r), typeof(b) FROM "Mixed Case Tàble" ORDER BY id"#;
    assert_eq!(sites.assert_same(all).len(), 3);
    assert_eq!(sites.assert_same("SELECT * FROM composite ORDER BY region, seq").len(), 3);
    assert_eq!(sites.assert_same("SELECT * FROM plain ORDER BY id").len(), 3);
    assert_eq!(
        sites.rows(1, r#"SELECT i, r, b FROM "Mixed Case Tàble" WHERE id = 1"#),
        vec!["Integer(9007199254740993)|Real(0.1)|Blob([0, 222, 173, 190, 239, 0])"],
        "exact values and storage classes survive"
    );

    // Updates, deletes and primary-key changes, from the other side.
    sites.exec(
        1,
        r#"UPDATE "Mixed Case Tàble" SET t = 'changed', "Odd ""Column""" = NULL WHERE id = 1;
           DELETE FROM "Mixed Case Tàble" WHERE id = 2;
           UPDATE "Mixed Case Tàble" SET id = 30 WHERE id = 3;
           UPDATE composite SET seq = 7 WHERE region = 'eu' AND seq = 2;
           UPDATE composite SET region = 'ap' WHERE region = 'us';"#,
    );
    sites.exec(0, "UPDATE plain SET v = 'zwei' WHERE id = 'two'; DELETE FROM plain WHERE id = 'three';");
    sync_all(&mut p);
    assert_eq!(
        sites.assert_same(r#"SELECT id, t, "Odd ""Column""" FROM "Mixed Case Tàble" ORDER BY id"#),
        vec![r#"Integer(1)|Text("changed")|Null"#, r#"Integer(30)|Text("")|Text("")"#]
    );
    assert_eq!(
        sites.assert_same("SELECT region, seq FROM composite ORDER BY region, seq"),
        vec![r#"Text("ap")|Integer(1)"#, r#"Text("eu")|Integer(1)"#, r#"Text("eu")|Integer(7)"#]
    );
    assert_eq!(sites.assert_same("SELECT * FROM plain ORDER BY id").len(), 2);

    // No echo: nothing the replicator applied is pending again, and the change
    // logs are purged.
    let again = sqlite_sites::run_once(&mut p, RunLimits::default()).unwrap();
    assert!(again.empty, "applied rows must not come back as changes");
    assert_eq!(sites.change_rows(0), 0, "change logs purged on site 0");
    assert_eq!(sites.change_rows(1), 0, "change logs purged on site 1");
}

#[test]
fn a_row_is_replicated_once_and_deleting_it_replicates_too() {
    let sites = Sites::new(3, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(2, "INSERT INTO t VALUES (1, 'x')");
    let runs = sync_all(&mut p);
    assert_eq!(runs.len(), 1, "one run ships it");
    assert_eq!((runs[0].inserts, runs[0].deletes), (1, 0));
    for i in 0..3 {
        assert_eq!(sites.count(i, "SELECT count(*) FROM t"), 1);
        assert_eq!(sites.change_rows(i), 0);
    }
    sites.exec(1, "DELETE FROM t");
    let runs = sync_all(&mut p);
    assert_eq!(runs[0].deletes, 2, "deleted on the two other sites");
    for i in 0..3 {
        assert_eq!(sites.count(i, "SELECT count(*) FROM t"), 0);
    }
}

#[test]
fn a_backlog_ships_in_bounded_batches() {
    let sites = Sites::new(2, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(0, "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100) INSERT INTO t SELECT n, 'v' FROM g");
    let runs = sync_all_with(&mut p, RunLimits { batch_rows: 30, ..Default::default() });
    assert_eq!(runs.len(), 4, "100 changes in batches of 30");
    assert!(runs[0].more && !runs[3].more);
    assert_eq!(sites.count(1, "SELECT count(*) FROM t"), 100);
    assert_eq!(sites.change_rows(0), 0);
}

/// The application server's schema has `flows.app_id REFERENCES apps ON DELETE
/// CASCADE`: apply order must not matter, and a cascade must not be applied twice.
#[test]
fn foreign_keys_and_cascades_replicate_as_their_rows() {
    let schema = "CREATE TABLE apps (id TEXT PRIMARY KEY NOT NULL, name TEXT);
        CREATE TABLE flows (id TEXT PRIMARY KEY NOT NULL, app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE);";
    let sites = Sites::new(2, schema);
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(0, "INSERT INTO apps VALUES ('a', 'A'); INSERT INTO flows VALUES ('f1', 'a'), ('f2', 'a');");
    sync_all(&mut p);
    assert_eq!(sites.count(1, "SELECT count(*) FROM flows"), 2);
    // The cascade deletes the flows on site 1; its triggers capture them too.
    sites.exec(1, "DELETE FROM apps WHERE id = 'a'");
    let runs = sync_all(&mut p);
    assert_eq!(runs[0].deletes, 3, "the app and both flows, each once");
    assert_eq!(sites.count(0, "SELECT count(*) FROM apps") + sites.count(0, "SELECT count(*) FROM flows"), 0);
    assert_eq!(sites.count(0, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

/// Other triggers of the application (a change feed) fire for replicated rows.
#[test]
fn application_triggers_fire_for_replicated_rows() {
    let schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE dugong_local_feed (pos INTEGER PRIMARY KEY, op TEXT, key INTEGER);
        CREATE TRIGGER feed_ins AFTER INSERT ON t BEGIN INSERT INTO dugong_local_feed (op, key) VALUES ('insert', NEW.id); END;
        CREATE TRIGGER feed_upd AFTER UPDATE ON t BEGIN INSERT INTO dugong_local_feed (op, key) VALUES ('update', NEW.id); END;";
    let sites = Sites::new(2, schema);
    let config = sites.config("");
    let mut p = prepare(&config);
    assert_eq!(p.plan.tables.len(), 1, "dugong_local_* tables are never replicated");
    assert!(p.plan.excluded.is_empty(), "and not listed as excluded either");
    sites.exec(0, "INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b' WHERE id = 1;");
    sync_all(&mut p);
    assert_eq!(
        sites.rows(1, "SELECT op, key FROM dugong_local_feed ORDER BY pos"),
        vec![r#"Text("insert")|Integer(1)"#],
        "the feed on site 1 saw the replicated row"
    );
    sites.exec(1, "UPDATE t SET v = 'c' WHERE id = 1");
    sync_all(&mut p);
    let feed0 = sites.rows(0, "SELECT op FROM dugong_local_feed ORDER BY pos");
    assert_eq!(feed0.last().map(String::as_str), Some(r#"Text("update")"#), "an upsert shows as an update");
    assert_eq!(sites.rows(0, "SELECT v FROM t"), vec![r#"Text("c")"#]);
}

#[test]
fn uninstall_removes_triggers_and_dugong_tables_only() {
    let schema =
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE dugong_local_x (id INTEGER PRIMARY KEY);";
    let sites = Sites::new(2, schema);
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(0, "INSERT INTO t VALUES (1, 'a')");
    sync_all(&mut p);
    drop(p);
    for i in 0..2 {
        let mut conn = sqlite::open::open(dugong_core::DbId(i as u32), &sites.paths[i]).unwrap();
        let u = sqlite::uninstall(&mut conn, dugong_core::DbId(i as u32)).unwrap();
        assert!(u.schema_dropped);
        assert_eq!(u.tables, vec!["main.t"]);
        let left: Vec<String> = sites.rows(i, "SELECT name FROM sqlite_schema WHERE name LIKE 'dugong%' ORDER BY 1");
        assert_eq!(left, vec![r#"Text("dugong_local_x")"#], "only the application's tables stay");
        assert_eq!(sites.count(i, "SELECT count(*) FROM t"), 1);
        let again = sqlite::uninstall(&mut conn, dugong_core::DbId(i as u32)).unwrap();
        assert!(!again.schema_dropped, "a second uninstall finds nothing");
    }
    // Writes after uninstall are not captured anywhere: no trigger is left to
    // fire, and no change log or counter comes back.
    sites.exec(0, "INSERT INTO t VALUES (2, 'b')");
    assert_eq!(sites.count(0, "SELECT count(*) FROM t"), 2);
    assert_eq!(
        sites.rows(
            0,
            "SELECT type || ' ' || name FROM sqlite_schema WHERE type = 'trigger' OR name LIKE 'dugong%' ORDER BY 1"
        ),
        vec![r#"Text("table dugong_local_x")"#],
        "nothing captures the write"
    );
}

#[test]
fn onetimecopy_2_fills_empty_files_from_the_one_with_rows() {
    let sites =
        Sites::new(2, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE TABLE u (id INTEGER PRIMARY KEY);");
    // Written before the replicator ever ran: not captured.
    sites.exec(0, "INSERT INTO t VALUES (1, x'01'), (2, NULL); INSERT INTO u VALUES (1);");
    sites.exec(1, "INSERT INTO u VALUES (1);");
    let mut p = prepare(&sites.config(r#", "onetimecopy": 2"#));
    sqlite_sites::block_on(p.engine.initial_copy(&p.plan, false, &Default::default(), &[])).unwrap();
    assert_eq!(sites.assert_same("SELECT * FROM t ORDER BY id").len(), 2);
    assert_eq!(sites.count(1, "SELECT count(*) FROM u"), 1, "tables with rows everywhere are left alone");
    assert_eq!(sites.change_rows(1), 0, "copied rows are not captured");
    drop(p);

    // Rows on both sides of an empty-somewhere table: refused, naming them.
    let sites = Sites::new(3, "CREATE TABLE t (id INTEGER PRIMARY KEY);");
    sites.exec(0, "INSERT INTO t VALUES (1)");
    sites.exec(1, "INSERT INTO t VALUES (2)");
    let mut p = prepare(&sites.config(r#", "onetimecopy": 2"#));
    let err = sqlite_sites::block_on(p.engine.initial_copy(&p.plan, false, &Default::default(), &[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("table main.t is empty somewhere and has rows on db0 and db1"), "{err}");
    assert_eq!(sites.count(2, "SELECT count(*) FROM t"), 0, "nothing copied");
}
