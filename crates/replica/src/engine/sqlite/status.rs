//! What `dugong status` reads from a SQLite file, in the shape the shared
//! status code merges and renders (`crate::status`). The file is opened read-only.

use super::capture::{delta_name, delta_table};
use super::{catalog, open};
use crate::record::micros;
use crate::record::{Backlog, DbRead, ReadError, StateRow, Waiting};
use dugong_config::Sync;
use dugong_core::DbId;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::time::SystemTime;

/// Reads everything status needs from file `path`, database `id` of `sync`. Blocking.
pub fn read_db(path: &Path, id: DbId, sync: &Sync) -> Result<DbRead, ReadError> {
    let conn = open::open_read_only(id, path).map_err(|e| ReadError::Unreachable(e.to_string()))?;
    let failed = |e: rusqlite::Error| ReadError::Failed(e.to_string());
    let installed: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'dugong_sync_state')", [], |r| r.get(0))
        .map_err(failed)?;
    // Change times are always known on SQLite (the triggers record them).
    let mut read =
        DbRead { now_us: micros(SystemTime::now()), installed, commit_timestamps: true, ..DbRead::default() };
    if !installed {
        return Ok(read);
    }
    read.state = read_state(&conn, sync).map_err(failed)?;
    if sync.sources.contains(&id) {
        match backlog(&conn, id, sync, read.now_us) {
            Ok(b) => read.backlog = b,
            Err(why) => read.problem = Some(format!("pending changes: {why}")),
        }
    }
    Ok(read)
}

fn read_state(conn: &Connection, sync: &Sync) -> rusqlite::Result<Option<StateRow>> {
    // Columns of later versions, read as NULL from a file an earlier version
    // wrote (status opens files read-only, so it cannot add them).
    let later: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('dugong_sync_state') WHERE name = 'heartbeat_interval_ms')",
        [],
        |r| r.get(0),
    )?;
    let later =
        if later { "heartbeat_interval_ms, standby_pid, standby_host, standby_seen" } else { "NULL, NULL, NULL, NULL" };
    conn.query_row(
        &format!(
            "SELECT state, replicator_pid, replicator_host, last_deletes, last_inserts, last_truncates, last_conflicts,
                last_error, tables, excluded, rows_total, conflicts_total, heartbeat, last_good_started, last_good_ended,
                last_rows_started, last_rows_ended, last_bad_started, last_bad_ended, updated_at, {later}
             FROM dugong_sync_state WHERE sync = ?1"
        ),
        [sync.name.as_str()],
        |r| {
            let excluded: String = r.get(9)?;
            Ok(StateRow {
                state: r.get(0)?,
                pid: r.get(1)?,
                host: r.get(2)?,
                last_deletes: r.get(3)?,
                last_inserts: r.get(4)?,
                last_truncates: r.get(5)?,
                last_conflicts: r.get(6)?,
                last_error: r.get(7)?,
                tables: r.get(8)?,
                excluded: serde_json::from_str(&excluded).unwrap_or_default(),
                rows_total: r.get(10)?,
                conflicts_total: r.get(11)?,
                heartbeat: r.get(12)?,
                last_good_started: r.get(13)?,
                last_good_ended: r.get(14)?,
                last_rows_started: r.get(15)?,
                last_rows_ended: r.get(16)?,
                last_bad_started: r.get(17)?,
                last_bad_ended: r.get(18)?,
                updated_at: r.get(19)?,
                heartbeat_interval_ms: r.get(20)?,
                standby_pid: r.get(21)?,
                standby_host: r.get(22)?,
                standby_seen: r.get(23)?,
            })
        },
    )
    .optional()
}

/// Per target, the change rows of the sync's tables past its position there,
/// and the age of the oldest; and the change logs' size (SQLite's `dbstat`).
/// A position of an earlier version ('*') stands for every target without
/// one of its own.
pub(crate) fn backlog(conn: &Connection, id: DbId, sync: &Sync, now_us: i64) -> Result<Option<Backlog>, String> {
    let positions: Vec<(String, i64)> = {
        let mut stmt =
            conn.prepare("SELECT target, seq FROM dugong_cursor WHERE sync = ?1").map_err(|e| e.to_string())?;
        let rows = stmt.query_map([sync.name.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
    };
    if positions.is_empty() {
        return Ok(None);
    }
    let tables = catalog::select([(id, conn)], sync).map_err(|e| e.to_string())?.tables;
    let mut parts = Vec::new();
    let mut logs = Vec::new();
    for t in &tables {
        let capture: Option<i64> = conn
            .query_row("SELECT id FROM dugong_captured WHERE table_name = ?1", [&t.name.name], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?;
        if let Some(cid) = capture {
            parts.push(format!("SELECT at FROM {} WHERE seq > ?1", delta_name(cid)));
            logs.push(delta_table(cid));
        }
    }
    let count = |seq: i64| -> Result<(i64, Option<i64>), String> {
        if parts.is_empty() {
            return Ok((0, None));
        }
        conn.query_row(&format!("SELECT count(*), min(at) FROM ({})", parts.join(" UNION ALL ")), [seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| e.to_string())
    };
    let mut out: Vec<Waiting> = Vec::new();
    let mut legacy = None;
    for (target, seq) in positions {
        let (rows, oldest) = count(seq)?;
        let oldest_age_us = if rows == 0 { Some(0) } else { oldest.map(|o| (now_us - o).max(0)) };
        match target.parse::<DbId>() {
            Ok(target) => out.push(Waiting { target, rows, oldest_age_us }),
            Err(_) => legacy = Some((rows, oldest_age_us)),
        }
    }
    if let Some((rows, oldest_age_us)) = legacy {
        let own: Vec<DbId> = out.iter().map(|w| w.target).collect();
        for target in sync.databases().into_iter().filter(|t| *t != id && !own.contains(t)) {
            out.push(Waiting { target, rows, oldest_age_us });
        }
    }
    let bytes = if logs.is_empty() {
        0
    } else {
        let names: Vec<String> = logs.iter().map(|l| dugong_core::quote_literal(l)).collect();
        conn.query_row(
            &format!("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({})", names.join(", ")),
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?
    };
    Ok(Some(Backlog { waiting: out, bytes }))
}
