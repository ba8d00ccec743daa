//! Change capture on SQLite: a change log per table, filled by row triggers.
//!
//! `dugong_delta_<id>(seq, at, k0, k1, …)` gets the changed key, a sequence
//! number from `dugong_counter` and the change time. Inserts and deletes log
//! their key; updates log the new key, and the old one too when the primary key
//! changed (shipped as the old key's deletion). Every trigger is
//! `WHEN NOT EXISTS (SELECT 1 FROM dugong_applying)`: the replicator's apply
//! transactions hold a row there, so what it applies is not captured again,
//! while the application's own triggers (a change feed) still fire.
//!
//! The key columns of a change log have no declared type, so values keep their
//! storage class (`1` and `'1'` stay apart). The time is computed with
//! `julianday`, which every SQLite version has, because the triggers run in
//! whatever SQLite library the writing application links.

use crate::capture::{Install, Uninstalled};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::TableInfo;
use dugong_core::{quote_ident, DbId, TableName};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;

const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The current time in microseconds since the Unix epoch, in SQL.
pub(super) const NOW_US: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

/// `dugong_delta_<id>`, quoted.
pub fn delta_name(id: i64) -> String {
    quote_ident(&delta_table(id))
}

/// The change log's table name, unquoted (as the catalog and `dbstat` name it).
pub fn delta_table(id: i64) -> String {
    format!("dugong_delta_{id}")
}

fn trigger_name(id: i64, op: &str) -> String {
    quote_ident(&format!("dugong_capture_{id}_{op}"))
}

/// Creates Dugong's tables if missing. Own transaction.
pub fn install_schema(conn: &mut Connection, db: DbId) -> Result<(), ReplicaError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .on_db(db, || "starting the install transaction".into())?;
    tx.execute_batch(SCHEMA_SQL).on_db(db, || "installing Dugong's tables".into())?;
    upgrade_cursor(&tx, db)?;
    upgrade_sync_state(&tx, db)?;
    super::conflicts::upgrade_log(&tx, db)?;
    tx.commit().on_db(db, || "committing the install".into())
}

/// Columns `dugong_sync_state` gained since earlier versions.
fn upgrade_sync_state(tx: &rusqlite::Transaction<'_>, db: DbId) -> Result<(), ReplicaError> {
    let ctx = || "upgrading dugong_sync_state".to_string();
    for (column, decl) in [
        ("heartbeat_interval_ms", "INTEGER"),
        ("standby_pid", "INTEGER"),
        ("standby_host", "TEXT"),
        ("standby_seen", "INTEGER"),
    ] {
        let present: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('dugong_sync_state') WHERE name = ?1)",
                [column],
                |r| r.get(0),
            )
            .on_db(db, ctx)?;
        if !present {
            tx.execute_batch(&format!("ALTER TABLE dugong_sync_state ADD COLUMN {column} {decl}")).on_db(db, ctx)?;
        }
    }
    Ok(())
}

/// An earlier version kept one cursor per sync (`sync` its primary key): the
/// table is rebuilt with a target column, each old cursor becoming the '*'
/// row its targets' positions start from.
fn upgrade_cursor(tx: &rusqlite::Transaction<'_>, db: DbId) -> Result<(), ReplicaError> {
    let ctx = || "upgrading dugong_cursor".to_string();
    let has_target: bool = tx
        .query_row("SELECT EXISTS (SELECT 1 FROM pragma_table_info('dugong_cursor') WHERE name = 'target')", [], |r| {
            r.get(0)
        })
        .on_db(db, ctx)?;
    if has_target {
        return Ok(());
    }
    tx.execute_batch(
        "ALTER TABLE dugong_cursor RENAME TO dugong_cursor_v1;
         CREATE TABLE dugong_cursor (
             sync TEXT NOT NULL, target TEXT NOT NULL DEFAULT '*', seq INTEGER NOT NULL, updated_at INTEGER NOT NULL,
             PRIMARY KEY (sync, target));
         INSERT INTO dugong_cursor (sync, target, seq, updated_at) SELECT sync, '*', seq, updated_at FROM dugong_cursor_v1;
         DROP TABLE dugong_cursor_v1;",
    )
    .on_db(db, ctx)
}

/// What `install` set up on one file.
#[derive(Debug, Default)]
pub struct Installed {
    /// The capture id of each of the sync's tables.
    pub captures: HashMap<TableName, i64>,
    /// Change logs of the held tables: not shipped, never purged while held.
    pub held: HashMap<TableName, i64>,
    /// Replicated tables a hold was written down for earlier: their change
    /// logs ship whole in the next run, which lifts the hold.
    pub released: Vec<TableName>,
}

/// Installs (or confirms) the capture `what` asks for, writes its holds down,
/// and starts its positions at the current sequence when they have none.
pub fn install(conn: &mut Connection, db: DbId, what: &Install<'_>) -> Result<Installed, ReplicaError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .on_db(db, || "starting the install transaction".into())?;
    let mut installed = Installed::default();
    for table in what.tables {
        installed.captures.insert(table.name.clone(), install_table(&tx, db, table)?);
    }
    for (table, reason) in &what.held {
        installed.held.insert(table.name.clone(), install_table(&tx, db, table)?);
        tx.execute(
            &format!(
                "INSERT INTO dugong_held (sync, table_name, reason, since) VALUES (?1, ?2, ?3, {NOW_US})
                 ON CONFLICT (sync, table_name) DO UPDATE SET reason = excluded.reason"
            ),
            [what.sync.as_str(), &table.name.name, reason],
        )
        .on_db(db, || format!("holding {}", table.name))?;
    }
    if what.source {
        let mut stmt = tx
            .prepare("SELECT table_name FROM dugong_held WHERE sync = ?1")
            .on_db(db, || "reading the holds".into())?;
        let names =
            stmt.query_map([what.sync.as_str()], |r| r.get::<_, String>(0)).on_db(db, || "reading the holds".into())?;
        for name in names {
            let name = name.on_db(db, || "reading the holds".into())?;
            if let Some(t) = what.tables.iter().find(|t| t.name.name == name) {
                installed.released.push(t.name.clone());
            }
        }
    }
    if what.source {
        // Each target's position starts where the sync's single cursor of an
        // earlier version was, or now; then that cursor has served.
        let sync = what.sync.as_str();
        let ctx = || format!("starting the positions of {sync}");
        for target in &what.targets {
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO dugong_cursor (sync, target, seq, updated_at)
                     SELECT ?1, ?2, coalesce((SELECT seq FROM dugong_cursor WHERE sync = ?1 AND target = '*'), seq), {NOW_US}
                     FROM dugong_counter"
                ),
                [sync, &target.to_string()],
            )
            .on_db(db, ctx)?;
        }
        if !what.targets.is_empty() {
            tx.execute("DELETE FROM dugong_cursor WHERE sync = ?1 AND target = '*'", [sync]).on_db(db, ctx)?;
        }
    }
    tx.commit().on_db(db, || "committing the install".into())?;
    Ok(installed)
}

fn install_table(tx: &rusqlite::Transaction<'_>, db: DbId, table: &TableInfo) -> Result<i64, ReplicaError> {
    let ctx = || format!("installing capture on {}", table.name);
    let key_names: Vec<&str> = table.key.iter().map(|c| c.name.as_str()).collect();
    let key_json = serde_json::to_string(&key_names).unwrap_or_default();
    let existing: Option<(i64, String)> = tx
        .query_row("SELECT id, key_columns FROM dugong_captured WHERE table_name = ?1", [&table.name.name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .on_db(db, ctx)?;
    let id = match existing {
        Some((id, cols)) if cols == key_json => id,
        Some((id, cols)) => {
            // The primary key changed since capture was installed: changes of the
            // old key's shape cannot be shipped any more.
            let delta = delta_name(id);
            let pending: i64 =
                tx.query_row(&format!("SELECT count(*) FROM {delta}"), [], |r| r.get(0)).on_db(db, ctx)?;
            if pending > 0 {
                return Err(ReplicaError::SchemaMismatch(format!(
                    "table {}: its primary key changed to ({}) on {db} while {pending} changes of the old key {cols} wait to be shipped; restore the key, let them ship, then change it",
                    table.name,
                    key_names.join(", ")
                )));
            }
            drop_capture(tx, db, id, &table.name.name)?;
            tx.execute("UPDATE dugong_captured SET key_columns = ?2 WHERE id = ?1", rusqlite::params![id, key_json])
                .on_db(db, ctx)?;
            id
        }
        None => tx
            .query_row(
                &format!("INSERT INTO dugong_captured (table_name, key_columns, installed_at) VALUES (?1, ?2, {NOW_US}) RETURNING id"),
                [&table.name.name, &key_json],
                |r| r.get(0),
            )
            .on_db(db, ctx)?,
    };
    tx.execute_batch(&capture_sql(id, table)).on_db(db, ctx)?;
    Ok(id)
}

/// The change log and the three triggers of one table, each created only when missing.
fn capture_sql(id: i64, table: &TableInfo) -> String {
    let delta = delta_name(id);
    let qt = quote_ident(&table.name.name);
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
    let keys: Vec<String> = table.key.iter().map(|c| quote_ident(&c.name)).collect();
    let of = |row: &str| keys.iter().map(|k| format!("{row}.{k}")).collect::<Vec<_>>().join(", ");
    let changed = keys.iter().map(|k| format!("OLD.{k} IS NOT NEW.{k}")).collect::<Vec<_>>().join(" OR ");
    let log = |row: &str, when: &str| {
        format!(
            "UPDATE dugong_counter SET seq = seq + 1 WHERE id = 1{when};
    INSERT INTO {delta} (seq, at, {k}) SELECT seq, {NOW_US}, {v} FROM dugong_counter WHERE id = 1{when};",
            k = kcols.join(", "),
            v = of(row),
        )
    };
    let not_applying = "WHEN NOT EXISTS (SELECT 1 FROM dugong_applying)";
    format!(
        "CREATE TABLE IF NOT EXISTS {delta} (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, {kdefs});
CREATE TRIGGER IF NOT EXISTS {ins} AFTER INSERT ON {qt} {not_applying}
BEGIN
    {log_new}
END;
CREATE TRIGGER IF NOT EXISTS {upd} AFTER UPDATE ON {qt} {not_applying}
BEGIN
    {log_old}
    {log_new}
END;
CREATE TRIGGER IF NOT EXISTS {del} AFTER DELETE ON {qt} {not_applying}
BEGIN
    {log_deleted}
END;",
        kdefs = kcols.join(", "),
        ins = trigger_name(id, "insert"),
        upd = trigger_name(id, "update"),
        del = trigger_name(id, "delete"),
        log_new = log("NEW", ""),
        log_old = log("OLD", &format!(" AND ({changed})")),
        log_deleted = log("OLD", ""),
    )
}

fn drop_capture(tx: &rusqlite::Transaction<'_>, db: DbId, id: i64, table: &str) -> Result<(), ReplicaError> {
    tx.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS {}; DROP TRIGGER IF EXISTS {}; DROP TRIGGER IF EXISTS {}; DROP TABLE IF EXISTS {};",
        trigger_name(id, "insert"),
        trigger_name(id, "update"),
        trigger_name(id, "delete"),
        delta_name(id)
    ))
    .on_db(db, || format!("removing capture from {table}"))
}

/// Removes the triggers of every captured table and every `dugong_*` table of
/// the replicator (never the application's, nor the server's `dugong_local_*`).
pub fn uninstall(conn: &mut Connection, db: DbId) -> Result<Uninstalled, ReplicaError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .on_db(db, || "starting the uninstall transaction".into())?;
    let installed: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'dugong_captured')",
            [],
            |r| r.get(0),
        )
        .on_db(db, || "looking for Dugong's tables".into())?;
    if !installed {
        return Ok(Uninstalled::default());
    }
    let captured: Vec<(i64, String)> = {
        let mut stmt = tx
            .prepare("SELECT id, table_name FROM dugong_captured ORDER BY table_name")
            .on_db(db, || "listing captured tables".into())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).on_db(db, || "listing captured tables".into())?;
        rows.collect::<Result<_, _>>().on_db(db, || "listing captured tables".into())?
    };
    let mut out = Uninstalled::default();
    for (id, table) in &captured {
        drop_capture(&tx, db, *id, table)?;
        out.tables.push(TableName::new("main", table.clone()).display_name());
    }
    // Change logs of tables that were dropped meanwhile, and the bookkeeping.
    let leftovers: Vec<String> = {
        let mut stmt = tx
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'dugong\\_%' ESCAPE '\\'
                 AND name NOT LIKE 'dugong\\_local\\_%' ESCAPE '\\'",
            )
            .on_db(db, || "listing Dugong's tables".into())?;
        let rows = stmt.query_map([], |r| r.get(0)).on_db(db, || "listing Dugong's tables".into())?;
        rows.collect::<Result<_, _>>().on_db(db, || "listing Dugong's tables".into())?
    };
    for name in leftovers {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(&name)))
            .on_db(db, || format!("dropping {name}"))?;
    }
    tx.commit().on_db(db, || "committing the uninstall".into())?;
    out.schema_dropped = true;
    Ok(out)
}
