//! The conflict log on SQLite (`dugong_conflict_log`): both versions of each
//! conflicted row read in the run (`json_object` over the row's columns, on
//! the file that held it, in its run transaction), the upgrade of logs made by
//! earlier versions, the retention purge, and what `dugong conflicts` reads
//! back. Restoring a losing version is `restore`.
//!
//! JSON cannot hold a blob: a blob value is written as `{"blob": "<hex>"}`,
//! which no other value produces, so a restore can tell it from text.

use super::catalog::quoted;
use super::node::Files;
use super::value::SqliteKey;
use super::Sqlite;
use crate::apply::TableConflict;
use crate::engine::Engine;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{Column, SyncPlan};
use crate::record::conflict::{
    json_null, utc, version_from_text, versions_wanted, ConflictKind, LogFilter, LogShape, LoggedConflict, RowVersion,
    RunConflict, Side,
};
use crate::record::micros;
use dugong_core::{quote_ident, quote_literal, DbId, TableName};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::SystemTime;

/// Columns the log gained after its first version, with their types.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("conflict_id", "TEXT"),
    ("kind", "TEXT"),
    ("winner_row", "TEXT"),
    ("loser_row", "TEXT"),
    ("restored_at", "INTEGER"),
];

/// Adds the columns a log made by an earlier version lacks (its rows stay,
/// with NULL there: no id, kind or versions were recorded then), and the
/// index on conflict ids. Inside the install transaction.
pub(super) fn upgrade_log(conn: &Connection, db: DbId) -> Result<(), ReplicaError> {
    let ctx = || "upgrading the conflict log".to_string();
    let present: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('dugong_conflict_log')").on_db(db, ctx)?;
        let rows = stmt.query_map([], |r| r.get(0)).on_db(db, ctx)?;
        rows.collect::<Result<_, _>>().on_db(db, ctx)?
    };
    for (name, type_sql) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE dugong_conflict_log ADD COLUMN {name} {type_sql}"))
                .on_db(db, ctx)?;
        }
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS dugong_conflict_log_conflict_id ON dugong_conflict_log (conflict_id)",
    )
    .on_db(db, ctx)
}

/// A row of `columns` as a JSON object, in SQL (over the unqualified columns
/// of the table in the FROM clause). Built from pieces of at most 60 columns
/// merged with `json_patch`, so no table is too wide for a function call.
pub(super) fn row_json(columns: &[Column]) -> String {
    let pieces: Vec<String> = columns
        .chunks(60)
        .map(|chunk| {
            let args: Vec<String> = chunk
                .iter()
                .map(|c| {
                    let col = quote_ident(&c.name);
                    format!(
                        "{}, CASE typeof({col}) WHEN 'blob' THEN json_object('blob', lower(hex({col}))) ELSE {col} END",
                        quote_literal(&c.name)
                    )
                })
                .collect();
            format!("json_object({})", args.join(", "))
        })
        .collect();
    match pieces.len() {
        0 => "json_object()".into(),
        _ => pieces.into_iter().reduce(|a, b| format!("json_patch({a}, {b})")).expect("at least one piece"),
    }
}

/// `k1 IS ?1 AND …` over the key columns.
pub(super) fn key_match(key: &[Column]) -> String {
    let parts: Vec<String> =
        key.iter().enumerate().map(|(i, c)| format!("{} IS ?{}", quote_ident(&c.name), i + 1)).collect();
    parts.join(" AND ")
}

/// Reads both versions of every conflicted row: per source and table one
/// statement, run for each key, in the files' run transactions (before the apply).
pub fn versions(
    files: &Files,
    plan: &SyncPlan,
    conflicts: Vec<TableConflict<SqliteKey>>,
) -> Result<Vec<RunConflict>, ReplicaError> {
    let wanted = versions_wanted(&conflicts);
    let mut rows: HashMap<(DbId, usize, &SqliteKey), Box<RawValue>> = HashMap::new();
    for ((db, ti), keys) in &wanted {
        let table = &plan.tables[*ti];
        let node = files.node(*db);
        let ctx = || format!("reading both versions of conflicted rows of {}", table.name);
        let sql =
            format!("SELECT {} FROM {} WHERE {}", row_json(&table.columns), quoted(&table.name), key_match(&table.key));
        let mut stmt = node.conn.prepare_cached(&sql).on_db(*db, ctx)?;
        for key in keys {
            let json: Option<String> =
                stmt.query_row(params_from_iter(key.iter()), |r| r.get(0)).optional().on_db(*db, ctx)?;
            if let Some(json) = json {
                let json = RawValue::from_string(json)
                    .map_err(|e| ReplicaError::Protocol { db: *db, message: format!("a row as JSON: {e}") })?;
                rows.insert((*db, *ti, key), json);
            }
        }
    }
    Ok(conflicts
        .iter()
        .map(|c| {
            let take = |db: DbId| -> RowVersion { rows.get(&(db, c.table, &c.record.key)).cloned() };
            RunConflict::new(plan, c, Sqlite::key_text(&c.record.key), take(c.record.winner), take(c.record.loser))
        })
        .collect())
}

/// Deletes the sync's conflicts older than its retention in every file.
pub fn purge(files: &Files, plan: &SyncPlan) -> Result<u64, ReplicaError> {
    let oldest = micros(SystemTime::now()) - plan.sync.conflict_retention.as_micros().min(i64::MAX as u128) as i64;
    let mut first = None;
    for node in &files.nodes {
        let n = node
            .conn
            .execute(
                "DELETE FROM dugong_conflict_log WHERE sync = ?1 AND at < ?2",
                rusqlite::params![plan.name().as_str(), oldest],
            )
            .on_db(node.id, || "purging old conflicts".into())?;
        first.get_or_insert(n as u64);
    }
    Ok(first.unwrap_or(0))
}

/// Whether the file has a conflict log, and of which shape.
pub fn log_shape(conn: &Connection) -> rusqlite::Result<LogShape> {
    let (exists, current): (bool, bool) = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'dugong_conflict_log'),
                EXISTS (SELECT 1 FROM pragma_table_info('dugong_conflict_log') WHERE name = 'conflict_id')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(match (exists, current) {
        (false, _) => LogShape::Missing,
        (true, false) => LogShape::Old,
        (true, true) => LogShape::Current,
    })
}

/// The conflicts `filter` asks for, newest first.
pub fn read_log(conn: &Connection, filter: &LogFilter) -> rusqlite::Result<Vec<LoggedConflict>> {
    let (schema, name) = match filter.table_parts() {
        Some((schema, name)) => (schema, Some(name)),
        None => (None, None),
    };
    if schema.is_some_and(|s| s != super::catalog::MAIN) {
        return Ok(Vec::new());
    }
    let since = filter.since.map(|d| micros(SystemTime::now()) - d.as_micros().min(i64::MAX as u128) as i64);
    let prefix = filter.id_prefix.as_ref().map(|p| format!("{}%", p.replace(['%', '_'], "")));
    let mut stmt = conn.prepare(
        "SELECT conflict_id, at, sync, table_name, key, kind, winner, loser, winner_changed, loser_changed,
                winner_row, loser_row, reason, restored_at
         FROM dugong_conflict_log
         WHERE sync = ?1 AND (?2 IS NULL OR table_name = ?2) AND (?3 IS NULL OR at >= ?3)
           AND (?4 IS NULL OR conflict_id LIKE ?4)
         ORDER BY at DESC, id DESC LIMIT ?5",
    )?;
    let limit = filter.limit.min(i64::MAX as usize) as i64;
    let rows = stmt.query_map(rusqlite::params![filter.sync, name, since, prefix, limit], |r| {
        let key_json: String = r.get(4)?;
        let side = |database: String, changed: Option<i64>, row: Option<String>| Side {
            database,
            committed: changed.map(utc),
            row: version_from_text(row).ok().flatten().unwrap_or_else(json_null),
        };
        let kind: Option<String> = r.get(5)?;
        let table: String = r.get(3)?;
        Ok(LoggedConflict {
            id: r.get(0)?,
            at: utc(r.get(1)?),
            sync: r.get(2)?,
            table: format!("{}.{table}", super::catalog::MAIN),
            table_name: TableName::new(super::catalog::MAIN, table),
            key: serde_json::from_str(&key_json).unwrap_or_else(|_| vec![key_json.clone()]),
            versions_recorded: kind.is_some(),
            kind: kind.as_deref().and_then(ConflictKind::parse),
            winner: side(r.get(6)?, r.get(8)?, r.get(10)?),
            loser: side(r.get(7)?, r.get(9)?, r.get(11)?),
            reason: r.get(12)?,
            restored_at: r.get::<_, Option<i64>>(13)?.map(utc),
        })
    })?;
    rows.collect()
}

/// Marks conflict `id` restored in this file's log. Returns whether it was there.
pub fn mark_restored(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE dugong_conflict_log SET restored_at = ?2 WHERE conflict_id = ?1 AND restored_at IS NULL",
        rusqlite::params![id, micros(SystemTime::now())],
    )?;
    Ok(n > 0)
}
