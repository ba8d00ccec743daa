//! The conflict log on real PostgreSQL: both versions of every kind of
//! conflict, listed from any reachable database, restored as a new change
//! that replicates, refused when the row changed since, purged after its
//! retention, and logs of earlier versions upgraded in place.

mod common;

use common::{prepare, sync_all, Sites};
use dugong_config::Config;
use dugong_replica::conflicts::{self, ConflictsError, ListOptions};
use dugong_replica::engine::Engine;
use dugong_replica::record::conflict::{ConflictKind, LoggedConflict, RestoreError, RestoreWrite};
use std::path::Path;
use std::time::Duration;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text, b bytea, n numeric(10,2));
                      INSERT INTO t SELECT g, 'seed', NULL, 0 FROM generate_series(1, 5) g;";

fn all() -> ListOptions {
    ListOptions { limit: 100, ..ListOptions::default() }
}

async fn list(config: &Config, options: &ListOptions) -> Vec<LoggedConflict> {
    let list = conflicts::list(config, options).await.expect("list conflicts");
    assert!(list.unreadable.is_empty(), "{:?}", list.unreadable);
    list.conflicts
}

fn by_key<'a>(list: &'a [LoggedConflict], key: &str) -> &'a LoggedConflict {
    list.iter().find(|c| c.key == [key]).unwrap_or_else(|| panic!("no conflict on key {key} in {list:#?}"))
}

/// A field of a version, as JSON.
fn field(c: &LoggedConflict, side: &str, name: &str) -> serde_json::Value {
    let row = if side == "winner" { &c.winner.row } else { &c.loser.row };
    let json: serde_json::Value = serde_json::from_str(row.get()).expect("a version is JSON");
    json[name].clone()
}

/// The sites' configuration with db0 on a port where nothing listens.
fn config_without_db0(sites: &Sites) -> Config {
    let json = sites.master_master_json().replacen(
        &format!("port={}", sites.cluster.port()),
        &format!("port={}", dugong_testkit::free_port()),
        1,
    );
    Config::from_str(&json, Path::new("test.json")).expect("valid config")
}

#[tokio::test]
async fn every_conflict_keeps_both_versions_and_is_listed_from_any_database() {
    let sites = Sites::new("clog_kinds", 2, SCHEMA).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    // update/update: db1 writes last and wins.
    sites.client(0).batch_execute("UPDATE t SET v = 'zero' WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'one', b = '\\xdead', n = 1.5 WHERE id = 1").await.unwrap();
    // insert/insert of a new key.
    sites.client(0).batch_execute("INSERT INTO t VALUES (10, 'ins0', NULL, 0)").await.unwrap();
    sites.client(1).batch_execute("INSERT INTO t VALUES (10, 'ins1', NULL, 0)").await.unwrap();
    // update/delete: the later delete wins, the update is the losing version.
    sites.client(0).batch_execute("UPDATE t SET v = 'updated' WHERE id = 2").await.unwrap();
    sites.client(1).batch_execute("DELETE FROM t WHERE id = 2").await.unwrap();
    // delete/update: the later update wins over the delete.
    sites.client(1).batch_execute("DELETE FROM t WHERE id = 3").await.unwrap();
    sites.client(0).batch_execute("UPDATE t SET v = 'back' WHERE id = 3").await.unwrap();
    let outcomes = sync_all(&mut p).await;
    assert_eq!(outcomes.iter().map(|o| o.conflicts.len()).sum::<usize>(), 4);

    let logged = list(&config, &all()).await;
    assert_eq!(logged.len(), 4, "{logged:#?}");
    let c = by_key(&logged, "1");
    assert_eq!(
        (c.kind, c.winner.database.as_str(), c.loser.database.as_str()),
        (Some(ConflictKind::UpdateUpdate), "db1", "db0")
    );
    assert_eq!((field(c, "winner", "v"), field(c, "loser", "v")), ("one".into(), "zero".into()));
    assert_eq!((field(c, "winner", "b"), field(c, "winner", "n")), ("\\xdead".into(), serde_json::json!(1.50)));
    assert!(c.winner.committed > c.loser.committed && c.loser.committed.is_some(), "{c:#?}");
    assert_eq!((c.reason.as_str(), c.table.as_str(), c.sync.as_str()), ("later commit", "public.t", "sync0"));
    assert!(c.versions_recorded && c.restored_at.is_none());
    let c = by_key(&logged, "10");
    assert_eq!(c.kind, Some(ConflictKind::InsertInsert));
    assert_eq!((field(c, "winner", "v"), field(c, "loser", "v")), ("ins1".into(), "ins0".into()));
    let c = by_key(&logged, "2");
    assert_eq!(
        (c.kind, c.winner.row.get(), c.winner.database.as_str()),
        (Some(ConflictKind::UpdateDelete), "null", "db1")
    );
    assert_eq!(field(c, "loser", "v"), "updated");
    let c = by_key(&logged, "3");
    assert_eq!(
        (c.kind, c.loser.row.get(), c.winner.database.as_str()),
        (Some(ConflictKind::UpdateDelete), "null", "db0")
    );
    assert_eq!(field(c, "winner", "v"), "back");

    // Filters: by table (bare or qualified), by age, by count.
    let only = |table: &str| ListOptions { table: Some(table.into()), ..all() };
    assert_eq!(list(&config, &only("t")).await.len(), 4);
    assert_eq!(list(&config, &only("public.t")).await.len(), 4);
    assert_eq!(list(&config, &only("other.t")).await.len(), 0);
    assert_eq!(list(&config, &ListOptions { since: Some(Duration::from_secs(3600)), ..all() }).await.len(), 4);
    let two = conflicts::list(&config, &ListOptions { limit: 2, ..all() }).await.unwrap();
    assert_eq!((two.conflicts.len(), two.more), (2, true));
    let unknown = conflicts::list(&config, &ListOptions { sync: Some("nope".into()), ..all() }).await;
    assert!(matches!(unknown, Err(ConflictsError::Replica(_))), "an unknown sync is a configuration error");

    // Every database that took part in a run logs its conflicts under the same
    // ids: with db0 down, db1 answers the same, and says db0 did not answer
    // (a database that was down for a while lacks what was logged meanwhile).
    let partial = conflicts::list(&config_without_db0(&sites), &all()).await.expect("list conflicts");
    assert!(partial.unreachable && partial.unreadable[0].contains("db0"), "{:?}", partial.unreadable);
    let from_db1 = partial.conflicts;
    let ids = |l: &[LoggedConflict]| {
        let mut ids: Vec<String> = l.iter().map(|c| c.id.clone().expect("an id")).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&from_db1), ids(&logged));
}

#[tokio::test]
async fn a_restored_losing_version_replicates_to_the_other_site() {
    let sites = Sites::new("clog_restore", 2, SCHEMA).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites.client(0).batch_execute("UPDATE t SET v = 'mine', b = '\\x0102', n = 2.25 WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'theirs' WHERE id = 1").await.unwrap();
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT v FROM t WHERE id = 1").await, vec!["theirs"]);
    let id = list(&config, &all()).await[0].id.clone().expect("an id");

    // A unique prefix of the id is enough.
    let restored = conflicts::restore(&config, None, &id[..6], false).await.expect("restore");
    assert_eq!((restored.write, restored.database.as_str()), (RestoreWrite::Updated, "db0"));
    assert!(restored.unmarked.is_empty(), "{:?}", restored.unmarked);
    assert_eq!(sites.rows(0, "SELECT v, b, n FROM t WHERE id = 1").await, vec!["mine|\\x0102|2.25"]);
    // An ordinary write: captured, and shipped by the next run without a conflict.
    let outcomes = sync_all(&mut p).await;
    assert_eq!(outcomes.iter().map(|o| o.conflicts.len()).sum::<usize>(), 0);
    assert_eq!(sites.assert_same("SELECT v, b, n FROM t WHERE id = 1").await, vec!["mine|\\x0102|2.25"]);
    let c = &list(&config, &all()).await[0];
    assert!(c.restored_at.is_some(), "marked restored: {c:#?}");
    assert_eq!(
        sites.rows(1, "SELECT count(*) FROM dugong.conflict_log WHERE restored_at IS NOT NULL").await,
        vec!["1"]
    );

    // Twice is refused: the row holds the losing version already.
    match conflicts::restore(&config, Some("sync0"), &id, false).await {
        Err(ConflictsError::Restore { source: e @ RestoreError::ChangedSince { .. }, .. }) => {
            assert!(e.to_string().contains("already holds the losing version"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_row_changed_since_the_conflict_is_only_overwritten_with_force() {
    let sites = Sites::new("clog_force", 2, SCHEMA).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites.client(0).batch_execute("UPDATE t SET v = 'lost' WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'won' WHERE id = 1").await.unwrap();
    sync_all(&mut p).await;
    sites.client(1).batch_execute("UPDATE t SET v = 'newer' WHERE id = 1").await.unwrap();
    sync_all(&mut p).await;
    let id = list(&config, &all()).await[0].id.clone().expect("an id");
    let refused = conflicts::restore(&config, None, &id, false).await.expect_err("changed since");
    let text = refused.to_string();
    assert!(text.contains("public.t (1) changed on db0 since the conflict") && text.contains("--force"), "{text}");
    assert_eq!(sites.assert_same("SELECT v FROM t WHERE id = 1").await, vec!["newer"]);

    conflicts::restore(&config, None, &id, true).await.expect("forced restore");
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT v FROM t WHERE id = 1").await, vec!["lost"]);
}

#[tokio::test]
async fn restoring_a_deletion_deletes_and_restoring_over_a_deletion_inserts() {
    let sites = Sites::new("clog_deletes", 2, SCHEMA).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    // Key 1: db0 deleted, db1 updated later (wins). Key 2: db0 updated, db1 deleted later (wins).
    sites.client(0).batch_execute("DELETE FROM t WHERE id = 1; UPDATE t SET v = 'keep me' WHERE id = 2").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'updated' WHERE id = 1; DELETE FROM t WHERE id = 2").await.unwrap();
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT id, v FROM t WHERE id <= 2").await, vec!["1|updated"]);
    let logged = list(&config, &all()).await;
    for (key, write) in [("1", RestoreWrite::Deleted), ("2", RestoreWrite::Inserted)] {
        let id = by_key(&logged, key).id.clone().expect("an id");
        let restored = conflicts::restore(&config, None, &id, false).await.expect("restore");
        assert_eq!(restored.write, write, "key {key}");
    }
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT id, v FROM t WHERE id <= 2").await, vec!["2|keep me"]);
}

#[tokio::test]
async fn ids_that_name_no_restorable_conflict_are_refused_with_the_reason() {
    let sites = Sites::new("clog_ids", 2, SCHEMA).await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites.client(0).batch_execute("DELETE FROM t WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("DELETE FROM t WHERE id = 1").await.unwrap();
    sync_all(&mut p).await;
    let c = &list(&config, &all()).await[0];
    assert_eq!(c.kind, Some(ConflictKind::DeleteDelete));
    let id = c.id.clone().expect("an id");
    let err = conflicts::restore(&config, None, &id, false).await.expect_err("nothing to restore");
    assert!(
        matches!(err, ConflictsError::NotRestorable { .. }) && err.to_string().contains("both sides deleted"),
        "{err}"
    );
    let err = conflicts::restore(&config, None, "zz", false).await.expect_err("not an id");
    assert!(matches!(err, ConflictsError::BadId(_)), "{err}");
    let other = if id.starts_with('0') { "ffffffff" } else { "00000000" };
    let err = conflicts::restore(&config, None, other, false).await.expect_err("unknown");
    assert!(err.to_string().contains(&format!("no conflict with id {other} in the conflict log of sync0")), "{err}");
}

#[tokio::test]
async fn conflicts_past_their_retention_are_purged_on_every_database() {
    let sites = Sites::new("clog_purge", 2, SCHEMA).await;
    let config = sites.config(r#"{"sources": [0, 1], "tables": "all", "onetimecopy": 0, "conflict_retention": "2h"}"#);
    let mut p = prepare(&config).await;
    for id in [1, 2] {
        sites.client(0).batch_execute(&format!("UPDATE t SET v = 'a' WHERE id = {id}")).await.unwrap();
        sites.client(1).batch_execute(&format!("UPDATE t SET v = 'b' WHERE id = {id}")).await.unwrap();
    }
    sync_all(&mut p).await;
    // Key 1's conflict was logged three hours ago, key 2's just now.
    for i in 0..2 {
        sites
            .client(i)
            .batch_execute("UPDATE dugong.conflict_log SET at = now() - interval '3 hours' WHERE key = '{1}'")
            .await
            .unwrap();
    }
    assert_eq!(p.engine.purge_conflicts(&p.plan).await.expect("purge"), 1);
    for i in 0..2 {
        assert_eq!(sites.rows(i, "SELECT key::text FROM dugong.conflict_log").await, vec!["{2}"], "site {i}");
    }
    // The default keeps 30 days.
    let config = sites.master_master();
    drop(p);
    let mut p = prepare(&config).await;
    for i in 0..2 {
        sites.client(i).batch_execute("UPDATE dugong.conflict_log SET at = now() - interval '29 days'").await.unwrap();
    }
    assert_eq!(p.engine.purge_conflicts(&p.plan).await.expect("purge"), 0);
    for i in 0..2 {
        sites.client(i).batch_execute("UPDATE dugong.conflict_log SET at = now() - interval '31 days'").await.unwrap();
    }
    assert_eq!(p.engine.purge_conflicts(&p.plan).await.expect("purge"), 1);
}

#[tokio::test]
async fn a_conflict_log_of_an_earlier_version_is_upgraded_keeping_its_rows() {
    let sites = Sites::new("clog_upgrade", 2, SCHEMA).await;
    for i in 0..2 {
        sites
            .client(i)
            .batch_execute(
                "CREATE SCHEMA dugong;
                 CREATE TABLE dugong.conflict_log (
                     id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), sync text NOT NULL,
                     table_schema text NOT NULL, table_name text NOT NULL, key text[] NOT NULL,
                     winner text NOT NULL, loser text NOT NULL, winner_committed timestamptz,
                     loser_committed timestamptz, reason text NOT NULL);
                 INSERT INTO dugong.conflict_log (sync, table_schema, table_name, key, winner, loser, reason)
                 VALUES ('sync0', 'public', 't', '{4}', 'db0', 'db1', 'changed on both');",
            )
            .await
            .unwrap();
    }
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    sites.client(0).batch_execute("UPDATE t SET v = 'a' WHERE id = 5").await.unwrap();
    sites.client(1).batch_execute("UPDATE t SET v = 'b' WHERE id = 5").await.unwrap();
    sync_all(&mut p).await;
    let logged = list(&config, &all()).await;
    assert_eq!(logged.len(), 2, "the old row is kept: {logged:#?}");
    let old = by_key(&logged, "4");
    assert!(old.id.is_none() && old.kind.is_none() && !old.versions_recorded, "{old:#?}");
    assert_eq!(old.reason, "changed on both");
    assert!(by_key(&logged, "5").versions_recorded);
}

#[tokio::test]
async fn keys_of_any_text_are_logged_and_restored_exactly() {
    let sites = Sites::new("clog_keys", 2, "CREATE TABLE k (a text, b text, v text, PRIMARY KEY (a, b))").await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    let insert = |v: &str| format!(r#"INSERT INTO k VALUES ('q"uo\te', 'NULL, {{x}}', '{v}')"#);
    sites.client(0).batch_execute(&insert("first")).await.unwrap();
    sites.client(1).batch_execute(&insert("second")).await.unwrap();
    sync_all(&mut p).await;
    let c = &list(&config, &all()).await[0];
    assert_eq!(c.key, vec![r#"q"uo\te"#.to_string(), "NULL, {x}".to_string()]);
    assert_eq!(c.kind, Some(ConflictKind::InsertInsert));
    conflicts::restore(&config, None, c.id.as_deref().unwrap(), false).await.expect("restore");
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT a, b, v FROM k").await, vec![r#"q"uo\te|NULL, {x}|first"#]);
}

/// Runs apply rows without foreign-key checks (related rows arrive in any
/// order), so a parent deleted on one site while a child was written for it
/// on the other leaves the child orphaned on both. The daemon finds it and
/// logs it once, as a foreign-key conflict naming both rows; restore refuses
/// it with the reason.
#[tokio::test]
async fn a_child_written_for_a_parent_deleted_elsewhere_is_logged_as_a_foreign_key_conflict() {
    let sites = Sites::new(
        "clog_orphan",
        2,
        "CREATE TABLE parent (id int PRIMARY KEY, v text);
         CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent (id));
         INSERT INTO parent VALUES (1, 'one'), (2, 'two');",
    )
    .await;
    let config = sites.master_master();
    drop(prepare(&config).await);
    sites.client(0).batch_execute("DELETE FROM parent WHERE id = 1").await.unwrap();
    sites.client(1).batch_execute("INSERT INTO child VALUES (7, 1), (8, 2)").await.unwrap();
    let options = dugong_replica::daemon::DaemonOptions { once: true, ..Default::default() };
    for _ in 0..2 {
        let reports =
            dugong_replica::daemon::run(std::sync::Arc::new(config.clone()), options.clone(), Default::default()).await;
        assert!(reports.iter().all(|r| r.good), "{reports:?}");
    }
    sites.assert_same("SELECT * FROM child ORDER BY id").await;
    assert_eq!(sites.rows(0, "SELECT count(*) FROM parent WHERE id = 1").await, vec!["0"]);

    let list = list(&config, &all()).await;
    assert_eq!(list.len(), 1, "logged once however often it is found: {list:#?}");
    let c = by_key(&list, "7");
    assert_eq!(c.kind, Some(ConflictKind::ForeignKey));
    assert_eq!(c.table, "public.child");
    assert!(c.reason.contains("public.parent (1)"), "{}", c.reason);
    assert_eq!(field(c, "winner", "parent"), serde_json::json!(1));
    let id = c.id.clone().unwrap();
    let e = conflicts::restore(&config, None, &id, false).await.expect_err("not restorable");
    assert!(e.to_string().contains("repair them by hand"), "{e}");
}
