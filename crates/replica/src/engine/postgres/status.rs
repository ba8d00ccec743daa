//! What `dugong status` reads from one PostgreSQL database, in the shape the
//! shared status code merges and renders (`crate::status`): its clock, whether
//! Dugong is installed, the sync's stored state, and (on a source) the changes
//! the sync has not shipped yet and how old the oldest one is.

use super::capture::delta_name;
use super::catalog;
use crate::error::describe_pg;
use crate::record::{Backlog, DbRead, ReadError, StateRow, Waiting};
use dugong_config::Sync;
use dugong_core::DbId;
use tokio_postgres::types::Type;
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
        match backlog(client, id, sync, Some(read.commit_timestamps)).await {
            Ok(b) => read.backlog = b,
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
    // The heartbeats beside the state: the active replicator's (newer than
    // the state's own when runs are long or failing) and the one standing by.
    // A database whose state an earlier version wrote has none.
    let heartbeats: Vec<(String, i32, String, i64, Option<i32>)> = match client
        .query(
            &format!("SELECT role, pid, host, {}, interval_ms FROM dugong.heartbeat WHERE sync = $1", micros("at")),
            &[&sync.name.as_str()],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect(),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Vec::new(),
        Err(e) => return Err(e),
    };
    let sql = format!(
        "SELECT state, replicator_pid, replicator_host, last_deletes, last_inserts, last_truncates, last_conflicts,
                last_error, tables, excluded, rows_total, conflicts_total, {times}
         FROM dugong.sync_state s WHERE sync = $1"
    );
    let Some(r) = client.query_opt(&sql, &[&sync.name.as_str()]).await? else {
        return Ok(None);
    };
    let mut state = StateRow {
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
        ..StateRow::default()
    };
    for (role, pid, host, at, interval_ms) in heartbeats {
        match role.as_str() {
            // A clean stop took it away; one newer than the state's heartbeat
            // speaks for the running replicator.
            "active" if state.heartbeat.is_none_or(|h| at > h) => {
                (state.pid, state.host, state.heartbeat) = (Some(pid), Some(host), Some(at));
                state.heartbeat_interval_ms = interval_ms.map(i64::from);
            }
            "active" => state.heartbeat_interval_ms = interval_ms.map(i64::from),
            _ => (state.standby_pid, state.standby_host, state.standby_seen) = (Some(pid), Some(host), Some(at)),
        }
    }
    Ok(Some(state))
}

/// Counts, per target, the change rows of the sync's tables that its position
/// there does not cover, and the age of the oldest by commit time; and the
/// change logs' size. `None` when the sync has no position here (it was
/// never prepared on this database). A position of an earlier version ('*')
/// stands for every target without one of its own. `commit_timestamps`:
/// whether the server tracks them, or `None` to read it with the rest.
///
/// Two round trips: what the count needs (positions, catalog, change logs
/// and the setting) is read in one, the count and the size in the next —
/// typed statements, sent together, none prepared first.
pub async fn backlog(
    client: &Client,
    id: DbId,
    sync: &Sync,
    commit_timestamps: Option<bool>,
) -> Result<Option<Backlog>, ReadError> {
    let name = sync.name.as_str();
    let (positions, selection, captured, setting) = futures_util::join!(
        async { client.query_typed("SELECT target FROM dugong.cursor WHERE sync = $1", &[(&name, Type::TEXT)]).await },
        async { catalog::select(&[(id, client)], sync).await },
        client.query_typed("SELECT id, table_schema, table_name FROM dugong.captured", &[]),
        async {
            match commit_timestamps {
                Some(known) => Ok(known),
                None => client
                    .query_typed_one("SELECT current_setting('track_commit_timestamp')::bool", &[])
                    .await
                    .map(|r| r.get(0)),
            }
        },
    );
    if positions.map_err(classify)?.is_empty() {
        return Ok(None);
    }
    let tables = selection
        .map_err(|e| {
            if e.is_unreachable() {
                ReadError::Unreachable(e.to_string())
            } else {
                ReadError::Failed(e.to_string())
            }
        })?
        .tables;
    let commit_timestamps = setting.map_err(classify)?;
    let ids: Vec<i32> = captured
        .map_err(classify)?
        .iter()
        .filter(|r| {
            let (schema, name): (&str, &str) = (r.get(1), r.get(2));
            tables.iter().any(|t| t.name.schema == schema && t.name.name == name)
        })
        .map(|r| r.get(0))
        .collect();
    // Each change log's window for a position, off its transaction-id index.
    let window = "dugong_txid >= pg_snapshot_xmin(c.snapshot) AND NOT pg_visible_in_snapshot(dugong_txid, c.snapshot)";
    let mut parts: Vec<String> =
        ids.iter().map(|i| format!("SELECT dugong_txid FROM {} WHERE {window}", delta_name(*i))).collect();
    parts.push(format!("SELECT dugong_txid FROM dugong.truncate_log WHERE table_id = ANY($2) AND {window}"));
    let age = if commit_timestamps {
        micros("now()") + " - " + &micros("min(pg_xact_commit_timestamp(p.dugong_txid::xid))")
    } else {
        "NULL::int8".into()
    };
    let sql = format!(
        "SELECT c.target, count(p.dugong_txid), {age}
         FROM dugong.cursor c LEFT JOIN LATERAL ({}) p ON true
         WHERE c.sync = $1 GROUP BY c.target",
        parts.join(" UNION ALL ")
    );
    let mut logs: Vec<String> = ids.iter().map(|i| delta_name(*i)).collect();
    logs.push("dugong.truncate_log".into());
    let (rows, bytes) = futures_util::join!(
        async { client.query_typed(&sql, &[(&name, Type::TEXT), (&ids, Type::INT4_ARRAY)]).await },
        async {
            client
                .query_typed_one(
                    "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::int8 FROM unnest($1::text[]) t",
                    &[(&logs, Type::TEXT_ARRAY)],
                )
                .await
        },
    );
    let rows = rows.map_err(classify)?;
    let bytes: i64 = bytes.map_err(classify)?.get(0);
    let mut waiting = Vec::new();
    let mut legacy = None;
    for row in rows {
        let target: String = row.get(0);
        let rows_waiting: i64 = row.get(1);
        let oldest_age_us = if rows_waiting == 0 { Some(0) } else { row.get::<_, Option<i64>>(2) };
        match target.parse::<DbId>() {
            Ok(target) => waiting.push(Waiting { target, rows: rows_waiting, oldest_age_us }),
            Err(_) => legacy = Some((rows_waiting, oldest_age_us)),
        }
    }
    if let Some((rows_waiting, oldest_age_us)) = legacy {
        let own: Vec<DbId> = waiting.iter().map(|w| w.target).collect();
        for target in sync.databases().into_iter().filter(|t| *t != id && !own.contains(t)) {
            waiting.push(Waiting { target, rows: rows_waiting, oldest_age_us });
        }
    }
    Ok(Some(Backlog { waiting, bytes }))
}
