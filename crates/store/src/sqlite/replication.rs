//! What `dugong replicate` records in a SQLite file (see
//! `crate::replication`): `dugong_sync_state` (with the heartbeats of the
//! active replicator and the one standing by), and per sync and target the
//! `dugong_delta_<n>` rows past the target's cursor, with the change time the
//! capture triggers record. The names follow the replicator's SQLite schema
//! (crates/replica/src/engine/sqlite/schema.sql).

use std::time::Duration;

use rusqlite::Connection;

use super::SqliteStore;
use crate::error::{from_sqlite, StoreError};
use crate::model::Micros;
use crate::replication::{Backlog, Heartbeat, SyncHealth};

const CTX: &str = "reading the replication state";

fn has_table(c: &Connection, name: &str) -> Result<bool, StoreError> {
    c.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)", [name], |r| r.get(0))
        .map_err(|e| from_sqlite(CTX, &e))
}

/// `column` of `table`, or NULL in files an earlier replicator made.
fn column_or_null(c: &Connection, table: &str, column: &str) -> Result<String, StoreError> {
    let present: bool = c
        .query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1)"),
            [column],
            |r| r.get(0),
        )
        .map_err(|e| from_sqlite(CTX, &e))?;
    Ok(if present { column.to_string() } else { "NULL".to_string() })
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

impl SqliteStore {
    pub(crate) async fn replication(&self) -> Result<Vec<SyncHealth>, StoreError> {
        self.run(|c, _| {
            if !has_table(c, "dugong_sync_state")? {
                return Ok(Vec::new());
            }
            let now = Micros::now().0;
            let extra: Vec<String> = ["heartbeat_interval_ms", "standby_pid", "standby_host", "standby_seen"]
                .iter()
                .map(|col| column_or_null(c, "dugong_sync_state", col))
                .collect::<Result<_, _>>()?;
            let sql = format!(
                "SELECT sync, state, last_good_ended, last_bad_ended, last_error, conflicts_total,
                        replicator_pid, replicator_host, heartbeat, {}
                 FROM dugong_sync_state ORDER BY sync",
                extra.join(", ")
            );
            let mut out: Vec<SyncHealth> = {
                let mut stmt = c.prepare(&sql).map_err(|e| from_sqlite(CTX, &e))?;
                let rows = stmt
                    .query_map([], |r| {
                        let ago = |at: Option<i64>| at.map(|t| micros(now - t));
                        let interval = r.get::<_, Option<i64>>(9)?.map(|ms| Duration::from_millis(ms.max(0) as u64));
                        // No pid with a heartbeat: the replicator recorded a clean stop.
                        let pid = r.get::<_, Option<i64>>(6)?;
                        let replicator = match r.get::<_, Option<i64>>(8)? {
                            Some(at) => Some(Heartbeat {
                                pid: pid.unwrap_or(0),
                                host: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                                age: micros(now - at),
                                interval,
                                stopped: pid.is_none(),
                            }),
                            None => None,
                        };
                        let standby = match (r.get::<_, Option<i64>>(10)?, r.get::<_, Option<i64>>(12)?) {
                            (Some(pid), Some(at)) => Some(Heartbeat {
                                pid,
                                host: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                                age: micros(now - at),
                                interval,
                                stopped: false,
                            }),
                            _ => None,
                        };
                        Ok(SyncHealth {
                            sync: r.get(0)?,
                            state: r.get(1)?,
                            last_good_age: ago(r.get(2)?),
                            last_bad_age: ago(r.get(3)?),
                            last_error: r.get(4)?,
                            conflicts_total: r.get(5)?,
                            replicator,
                            standby,
                            ..SyncHealth::default()
                        })
                    })
                    .map_err(|e| from_sqlite(CTX, &e))?;
                rows.collect::<Result<_, _>>().map_err(|e| from_sqlite(CTX, &e))?
            };
            if !(has_table(c, "dugong_cursor")? && has_table(c, "dugong_captured")?) {
                return Ok(out);
            }
            let ids: Vec<i64> = {
                let mut stmt =
                    c.prepare("SELECT id FROM dugong_captured ORDER BY id").map_err(|e| from_sqlite(CTX, &e))?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| from_sqlite(CTX, &e))?;
                rows.collect::<Result<_, _>>().map_err(|e| from_sqlite(CTX, &e))?
            };
            if ids.is_empty() {
                return Ok(out);
            }
            let deltas: Vec<String> = ids.iter().map(|i| format!("SELECT seq, at FROM \"dugong_delta_{i}\"")).collect();
            let target = match column_or_null(c, "dugong_cursor", "target")?.as_str() {
                "NULL" => "'*'".to_string(),
                column => format!("c.{column}"),
            };
            let sql = format!(
                "SELECT c.sync, {target}, count(p.seq), min(p.at)
                 FROM dugong_cursor c LEFT JOIN ({}) p ON p.seq > c.seq GROUP BY 1, 2 ORDER BY 1, 2",
                deltas.join(" UNION ALL ")
            );
            // A capture being installed or removed meanwhile: the backlog is simply unknown.
            let Ok(mut stmt) = c.prepare(&sql) else { return Ok(out) };
            let Ok(rows) = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
            }) else {
                return Ok(out);
            };
            for (sync, target, rows, oldest) in rows.flatten() {
                if let Some(s) = out.iter_mut().find(|s| s.sync == sync) {
                    let lag = Some(oldest.map(|t| micros(now - t)).unwrap_or_default());
                    s.backlog.push(Backlog { target, rows, lag });
                }
            }
            for s in &mut out {
                s.settle_lag();
            }
            Ok(out)
        })
        .await
    }
}
