//! What `dugong status` reads from a SQLite file, in the shape the shared
//! status code merges and renders (`crate::status`). The file is opened read-only.

use super::capture::delta_name;
use super::{catalog, open};
use crate::record::micros;
use crate::record::{DbRead, Pending, ReadError, StateRow};
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
        match read_pending(&conn, id, sync, read.now_us) {
            Ok(p) => read.pending = p,
            Err(why) => read.problem = Some(format!("pending changes: {why}")),
        }
    }
    Ok(read)
}

fn read_state(conn: &Connection, sync: &Sync) -> rusqlite::Result<Option<StateRow>> {
    conn.query_row(
        "SELECT state, replicator_pid, replicator_host, last_deletes, last_inserts, last_truncates, last_conflicts,
                last_error, tables, excluded, rows_total, conflicts_total, heartbeat, last_good_started, last_good_ended,
                last_rows_started, last_rows_ended, last_bad_started, last_bad_ended, updated_at
         FROM dugong_sync_state WHERE sync = ?1",
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
            })
        },
    )
    .optional()
}

/// Change rows of the sync's tables past its cursor, and the age of the oldest.
fn read_pending(conn: &Connection, id: DbId, sync: &Sync, now_us: i64) -> Result<Option<Pending>, String> {
    let cursor: Option<i64> = conn
        .query_row("SELECT seq FROM dugong_cursor WHERE sync = ?1", [sync.name.as_str()], |r| r.get(0))
        .optional()
        .map_err(|e| e.to_string())?;
    let Some(cursor) = cursor else { return Ok(None) };
    let tables = catalog::select([(id, conn)], sync).map_err(|e| e.to_string())?.tables;
    let mut parts = Vec::new();
    for t in &tables {
        let capture: Option<i64> = conn
            .query_row("SELECT id FROM dugong_captured WHERE table_name = ?1", [&t.name.name], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?;
        if let Some(cid) = capture {
            parts.push(format!("SELECT at FROM {} WHERE seq > ?1", delta_name(cid)));
        }
    }
    if parts.is_empty() {
        return Ok(Some(Pending { count: 0, oldest_age_us: Some(0) }));
    }
    let (count, oldest): (i64, Option<i64>) = conn
        .query_row(&format!("SELECT count(*), min(at) FROM ({})", parts.join(" UNION ALL ")), [cursor], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| e.to_string())?;
    let oldest_age_us = if count == 0 { Some(0) } else { oldest.map(|o| (now_us - o).max(0)) };
    Ok(Some(Pending { count, oldest_age_us }))
}
