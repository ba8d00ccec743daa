//! What `dugong status` reads from one PostgreSQL database, in the shape the
//! shared status code merges and renders (`crate::status`): its clock, whether
//! Dugong is installed, the sync's stored state, and (on a source) the changes
//! the sync has not shipped yet and how old the oldest one is.

use super::capture::delta_name;
use super::catalog;
use crate::error::describe_pg;
use crate::record::{DbRead, Pending, ReadError, StateRow};
use dugong_config::Sync;
use dugong_core::DbId;
use tokio_postgres::Client;

/// A timestamp column as microseconds since the epoch.
fn micros(column: &str) -> String {
    format!("(extract(epoch from {column}) * 1000000)::int8")
}

fn classify(err: tokio_postgres::Error) -> ReadError {
    if err.is_closed() || err.as_db_error().is_none() {
        ReadError::Unreachable(describe_pg(&err))
    } else {
        ReadError::Failed(describe_pg(&err))
    }
}

/// Reads everything status needs from database `id` of `sync`.
pub async fn read_db(client: &Client, id: DbId, sync: &Sync) -> Result<DbRead, ReadError> {
    let row = client
        .query_one(
            &format!(
                "SELECT {}, to_regclass('dugong.sync_state') IS NOT NULL, current_setting('track_commit_timestamp')::bool",
                micros("now()")
            ),
            &[],
        )
        .await
        .map_err(classify)?;
    let mut read =
        DbRead { now_us: row.get(0), installed: row.get(1), commit_timestamps: row.get(2), ..DbRead::default() };
    if !read.installed {
        return Ok(read);
    }
    read.state = read_state(client, sync).await.map_err(classify)?;
    if sync.sources.contains(&id) {
        match read_pending(client, id, sync, read.commit_timestamps).await {
            Ok(p) => read.pending = p,
            Err(ReadError::Failed(why)) => read.problem = Some(format!("pending changes: {why}")),
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

async fn read_state(client: &Client, sync: &Sync) -> Result<Option<StateRow>, tokio_postgres::Error> {
    let times = [
        "heartbeat",
        "last_good_started",
        "last_good_ended",
        "last_rows_started",
        "last_rows_ended",
        "last_bad_started",
        "last_bad_ended",
        "updated_at",
    ]
    .map(micros)
    .join(", ");
    let sql = format!(
        "SELECT state, replicator_pid, replicator_host, last_deletes, last_inserts, last_truncates, last_conflicts,
                last_error, tables, excluded, rows_total, conflicts_total, {times}
         FROM dugong.sync_state WHERE sync = $1"
    );
    let Some(r) = client.query_opt(&sql, &[&sync.name.as_str()]).await? else {
        return Ok(None);
    };
    Ok(Some(StateRow {
        state: r.get(0),
        pid: r.get(1),
        host: r.get(2),
        last_deletes: r.get(3),
        last_inserts: r.get(4),
        last_truncates: r.get(5),
        last_conflicts: r.get(6),
        last_error: r.get(7),
        tables: r.get(8),
        excluded: r.get(9),
        rows_total: r.get(10),
        conflicts_total: r.get(11),
        heartbeat: r.get(12),
        last_good_started: r.get(13),
        last_good_ended: r.get(14),
        last_rows_started: r.get(15),
        last_rows_ended: r.get(16),
        last_bad_started: r.get(17),
        last_bad_ended: r.get(18),
        updated_at: r.get(19),
    }))
}

/// Counts the change rows of the sync's tables that its cursor does not cover,
/// and the age of the oldest by commit time. `None` when the sync has no cursor
/// here (it was never prepared on this database).
async fn read_pending(
    client: &Client,
    id: DbId,
    sync: &Sync,
    commit_timestamps: bool,
) -> Result<Option<Pending>, ReadError> {
    let cursor = client
        .query_opt("SELECT 1 FROM dugong.cursor WHERE sync = $1", &[&sync.name.as_str()])
        .await
        .map_err(classify)?;
    if cursor.is_none() {
        return Ok(None);
    }
    let selection = catalog::select(&[(id, client)], sync).await.map_err(|e| {
        if e.is_unreachable() {
            ReadError::Unreachable(e.to_string())
        } else {
            ReadError::Failed(e.to_string())
        }
    })?;
    let tables = selection.tables;
    let captured =
        client.query("SELECT id, table_schema, table_name FROM dugong.captured", &[]).await.map_err(classify)?;
    let ids: Vec<i32> = captured
        .iter()
        .filter(|r| {
            let (schema, name): (&str, &str) = (r.get(1), r.get(2));
            tables.iter().any(|t| t.name.schema == schema && t.name.name == name)
        })
        .map(|r| r.get(0))
        .collect();
    let mut parts: Vec<String> = ids.iter().map(|i| format!("SELECT dugong_txid FROM {}", delta_name(*i))).collect();
    parts.push("SELECT dugong_txid FROM dugong.truncate_log WHERE table_id = ANY($2)".into());
    let age = if commit_timestamps {
        micros("now()") + " - " + &micros("min(pg_xact_commit_timestamp(p.dugong_txid::xid))")
    } else {
        "NULL::int8".into()
    };
    let sql = format!(
        "SELECT count(*), {age} FROM ({}) p, dugong.cursor c
         WHERE c.sync = $1 AND NOT pg_visible_in_snapshot(p.dugong_txid, c.snapshot)",
        parts.join(" UNION ALL ")
    );
    let row = client.query_one(&sql, &[&sync.name.as_str(), &ids]).await.map_err(classify)?;
    let count: i64 = row.get(0);
    let oldest_age_us: Option<i64> = if count == 0 { Some(0) } else { row.get(1) };
    Ok(Some(Pending { count, oldest_age_us }))
}
