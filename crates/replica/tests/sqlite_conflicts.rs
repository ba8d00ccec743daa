//! Conflicts between SQLite files, under each strategy, with the conflict
//! log: both versions listed, a losing version restored.

mod sqlite_sites;

use dugong_replica::conflicts::{self, ListOptions};
use dugong_replica::record::conflict::{ConflictKind, RestoreWrite};
use dugong_replica::run::RunLimits;
use dugong_replica::ReplicaError;
use sqlite_sites::{block_on, prepare, sync_all, Sites};

const SCHEMA: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);";

/// Writes `v` for key 1 on `site`, then lets the clock move on: change times
/// come from the triggers, with SQLite's millisecond resolution.
fn write(sites: &Sites, site: usize, v: &str) {
    sites.exec(site, &format!("INSERT INTO t VALUES (1, '{v}') ON CONFLICT (id) DO UPDATE SET v = excluded.v"));
    later();
}

/// Waits until SQLite's clock has certainly moved to a later millisecond.
fn later() {
    let before = std::time::Instant::now();
    while before.elapsed() < std::time::Duration::from_millis(3) {
        std::hint::spin_loop();
    }
}

fn log(sites: &Sites, i: usize) -> Vec<String> {
    sites.rows(
        i,
        "SELECT table_name, key, kind, winner, loser, reason, winner_changed > loser_changed, winner_row, loser_row
         FROM dugong_conflict_log ORDER BY id",
    )
}

#[test]
fn latest_change_wins_per_row_and_is_logged_everywhere() {
    let sites = Sites::new(2, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (2, 'base');");
    let mut p = prepare(&sites.config(""));
    write(&sites, 0, "old on 0");
    write(&sites, 1, "new on 1");
    // Row 2: site 1 first, then site 0 — decided per row, not per table.
    sites.exec(1, "UPDATE t SET v = 'old on 1' WHERE id = 2");
    later();
    sites.exec(0, "UPDATE t SET v = 'new on 0' WHERE id = 2");
    let runs = sync_all(&mut p);
    assert_eq!(runs[0].conflicts.len(), 2);
    assert_eq!(
        sites.assert_same("SELECT id, v FROM t ORDER BY id"),
        vec![r#"Integer(1)|Text("new on 1")"#, r#"Integer(2)|Text("new on 0")"#]
    );
    for i in 0..2 {
        let mut entries = log(&sites, i);
        entries.sort();
        assert_eq!(
            entries,
            vec![
                concat!(
                    r#"Text("t")|Text("[\"1\"]")|Text("update/update")|Text("db1")|Text("db0")|Text("later commit")|Integer(1)"#,
                    r#"|Text("{\"id\":1,\"v\":\"new on 1\"}")|Text("{\"id\":1,\"v\":\"old on 0\"}")"#
                ),
                concat!(
                    r#"Text("t")|Text("[\"2\"]")|Text("update/update")|Text("db0")|Text("db1")|Text("later commit")|Integer(1)"#,
                    r#"|Text("{\"id\":2,\"v\":\"new on 0\"}")|Text("{\"id\":2,\"v\":\"old on 1\"}")"#
                ),
            ]
        );
    }
    assert_eq!(sites.count(0, "SELECT conflicts_total FROM dugong_sync_state"), 2);
}

#[test]
fn a_priority_list_wins_whatever_the_times() {
    let sites = Sites::new(2, SCHEMA);
    let mut p = prepare(&sites.config(r#", "conflict_strategy": [0, 1]"#));
    write(&sites, 1, "first on 1");
    write(&sites, 0, "earlier on 0? no, later on 0");
    write(&sites, 1, "latest on 1");
    let runs = sync_all(&mut p);
    assert_eq!(runs[0].conflicts.len(), 1);
    assert_eq!(sites.assert_same("SELECT v FROM t"), vec![r#"Text("earlier on 0? no, later on 0")"#]);
    assert_eq!(log(&sites, 1).len(), 1);
}

#[test]
fn abort_applies_nothing_and_keeps_the_changes() {
    let sites =
        Sites::new(2, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u (id INTEGER PRIMARY KEY);");
    let mut p = prepare(&sites.config(r#", "conflict_strategy": "abort""#));
    sites.exec(0, "INSERT INTO u VALUES (1)");
    write(&sites, 0, "zero");
    write(&sites, 1, "one");
    let err = sqlite_sites::run_once(&mut p, RunLimits::default()).unwrap_err();
    assert!(matches!(err, ReplicaError::ConflictAbort { count: 1, .. }), "{err}");
    assert!(err.to_string().contains("main.t"), "{err}");
    assert_eq!(sites.count(1, "SELECT count(*) FROM u"), 0, "nothing applied, not even other tables");
    assert_eq!(sites.rows(0, "SELECT v FROM t"), vec![r#"Text("zero")"#]);
    assert!(sites.change_rows(0) > 0 && sites.change_rows(1) > 0, "the changes are kept");
    // Making the rows equal by hand (site 1 takes site 0's value) does not
    // settle it: both files' changes of the key are still pending.
    sites.exec(1, "UPDATE t SET v = 'zero'");
    let again = sqlite_sites::run_once(&mut p, RunLimits::default()).unwrap_err();
    assert!(matches!(again, ReplicaError::ConflictAbort { .. }), "the conflict stays until resolved by config");
    // A strategy in the configuration settles it, and the sync moves on.
    drop(p);
    let mut p = prepare(&sites.config(""));
    assert_eq!(sync_all(&mut p)[0].conflicts.len(), 1);
    assert_eq!(sites.assert_same("SELECT v FROM t"), vec![r#"Text("zero")"#]);
    assert_eq!(sites.count(1, "SELECT count(*) FROM u"), 1, "the other tables' changes ship too");
}

#[test]
fn a_losing_version_is_listed_and_restored_with_its_blobs_and_reals() {
    let sites = Sites::new(
        2,
        "CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT, b BLOB, x REAL); INSERT INTO r VALUES (1, 'seed', NULL, 0);",
    );
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(0, "UPDATE r SET v = 'mine', b = x'00ff10', x = 0.1 WHERE id = 1");
    later();
    sites.exec(1, "UPDATE r SET v = 'theirs' WHERE id = 1");
    sync_all(&mut p);
    assert_eq!(sites.assert_same("SELECT v FROM r"), vec![r#"Text("theirs")"#]);
    let list = block_on(conflicts::list(&config, &ListOptions { limit: 10, ..ListOptions::default() })).unwrap();
    assert_eq!(list.conflicts.len(), 1, "{list:#?}");
    let c = &list.conflicts[0];
    assert_eq!(
        (c.kind, c.table.as_str(), c.loser.database.as_str()),
        (Some(ConflictKind::UpdateUpdate), "main.r", "db0")
    );
    assert_eq!(c.loser.row.get(), r#"{"id":1,"v":"mine","b":{"blob":"00ff10"},"x":0.1}"#);
    assert_eq!(c.winner.row.get(), r#"{"id":1,"v":"theirs","b":null,"x":0.0}"#);

    let restored = block_on(conflicts::restore(&config, None, c.id.as_deref().unwrap(), false)).unwrap();
    assert_eq!(restored.write, RestoreWrite::Updated);
    assert_eq!(sync_all(&mut p).iter().map(|o| o.conflicts.len()).sum::<usize>(), 0);
    assert_eq!(sites.assert_same("SELECT v, b, x FROM r"), vec![r#"Text("mine")|Blob([0, 255, 16])|Real(0.1)"#]);
    assert_eq!(sites.count(1, "SELECT count(*) FROM dugong_conflict_log WHERE restored_at IS NOT NULL"), 1);
    let again = block_on(conflicts::restore(&config, None, c.id.as_deref().unwrap(), false)).unwrap_err();
    assert!(again.to_string().contains("already holds the losing version"), "{again}");
}

/// A parent deleted in one file while a child was written for it in the
/// other: both files end with the orphaned child, and the orphan is logged
/// once, in every file, as a foreign-key conflict naming both rows.
#[test]
fn a_child_written_for_a_parent_deleted_elsewhere_is_logged_as_a_foreign_key_conflict() {
    use dugong_replica::engine::Engine;
    let sites = Sites::new(
        2,
        "CREATE TABLE parent (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent (id));
         INSERT INTO parent VALUES (1, 'one'), (2, 'two');",
    );
    let config = sites.config("");
    let mut p = prepare(&config);
    sites.exec(0, "DELETE FROM parent WHERE id = 1");
    sites.exec(1, "INSERT INTO child VALUES (7, 1), (8, 2)");
    sync_all(&mut p);
    sites.assert_same("SELECT id, parent FROM child ORDER BY id");
    assert_eq!(sites.count(1, "SELECT count(*) FROM parent WHERE id = 1"), 0);

    for _ in 0..2 {
        let found = block_on(p.engine.check_orphans(&p.plan)).expect("look for orphans");
        assert_eq!(found.iter().map(|o| o.key.clone()).collect::<Vec<_>>(), vec![vec!["7".to_string()]]);
    }
    for i in 0..2 {
        assert_eq!(
            sites.count(i, "SELECT count(*) FROM dugong_conflict_log WHERE kind = 'foreign key'"),
            1,
            "file {i}"
        );
    }
    let list = block_on(conflicts::list(&config, &ListOptions { limit: 10, ..ListOptions::default() })).unwrap();
    let c = &list.conflicts[0];
    assert_eq!(
        (c.kind, c.table.as_str(), c.key.clone()),
        (Some(ConflictKind::ForeignKey), "main.child", vec!["7".to_string()])
    );
    assert!(c.reason.contains("main.parent (1)"), "{}", c.reason);
    assert_eq!(c.winner.row.get(), r#"{"id":7,"parent":1}"#);
}
