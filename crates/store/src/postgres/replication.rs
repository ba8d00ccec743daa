//! What `dugong replicate` records in this database (see
//! `crate::replication`): `dugong.sync_state`, `dugong.heartbeat`, and per
//! sync and target the change-log rows (`dugong.delta_<n>`) outside the
//! target's cursor snapshot, with the commit time of the oldest. The names
//! follow the replicator's schema (crates/replica/src/engine/postgres/schema.sql).

use super::PgStore;
use crate::error::{from_pg, StoreError};
use crate::replication::{seconds, Backlog, Heartbeat, SyncHealth};

/// Seconds since `column`, by the database's clock.
fn age(column: &str) -> String {
    format!("extract(epoch from now() - {column})::float8")
}

impl PgStore {
    pub(crate) async fn replication(&self) -> Result<Vec<SyncHealth>, StoreError> {
        let ctx = "reading the replication state";
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT to_regclass('dugong.sync_state') IS NOT NULL, to_regclass('dugong.cursor') IS NOT NULL,
                        to_regclass('dugong.captured') IS NOT NULL, current_setting('track_commit_timestamp')::bool,
                        to_regclass('dugong.heartbeat') IS NOT NULL,
                        EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('dugong.cursor')
                                AND attname = 'target' AND NOT attisdropped)",
                &[],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let (state, cursor, captured, commit_ts, heartbeat, targets): (bool, bool, bool, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        if !state {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT sync, state, {}, {}, last_error, conflicts_total, replicator_pid, replicator_host, {}
             FROM dugong.sync_state ORDER BY sync",
            age("last_good_ended"),
            age("last_bad_ended"),
            age("heartbeat")
        );
        let rows = conn.query(&sql, &[]).await.map_err(|e| from_pg(ctx, &e))?;
        let mut out: Vec<SyncHealth> = rows
            .iter()
            .map(|r| {
                // No pid with a heartbeat: the replicator recorded a clean stop.
                let replicator = r.get::<_, Option<f64>>(8).map(|age| {
                    let pid = r.get::<_, Option<i32>>(6);
                    Heartbeat {
                        pid: pid.map_or(0, i64::from),
                        host: r.get::<_, Option<String>>(7).unwrap_or_default(),
                        age: seconds(age),
                        interval: None,
                        stopped: pid.is_none(),
                    }
                });
                SyncHealth {
                    sync: r.get(0),
                    state: r.get(1),
                    last_good_age: r.get::<_, Option<f64>>(2).map(seconds),
                    last_bad_age: r.get::<_, Option<f64>>(3).map(seconds),
                    last_error: r.get(4),
                    conflicts_total: r.get(5),
                    replicator,
                    ..SyncHealth::default()
                }
            })
            .collect();
        if heartbeat {
            // The heartbeats beside the state: the active replicator's (newer
            // than the state's own while runs are long or failing) and the one
            // standing by; a clean stop removes the active one.
            let sql = format!("SELECT sync, role, pid, host, {}, interval_ms FROM dugong.heartbeat", age("at"));
            for r in conn.query(&sql, &[]).await.map_err(|e| from_pg(ctx, &e))? {
                let sync: String = r.get(0);
                let Some(s) = out.iter_mut().find(|s| s.sync == sync) else { continue };
                let beat = Heartbeat {
                    pid: r.get::<_, i32>(2).into(),
                    host: r.get(3),
                    age: seconds(r.get(4)),
                    interval: r.get::<_, Option<i32>>(5).map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
                    stopped: false,
                };
                match r.get::<_, String>(1).as_str() {
                    "active" => {
                        let newer = s.replicator.as_ref().is_none_or(|old| beat.age < old.age);
                        match &mut s.replicator {
                            Some(old) if !newer => old.interval = beat.interval,
                            _ => s.replicator = Some(beat),
                        }
                    }
                    _ => s.standby = Some(beat),
                }
            }
        }
        if !(cursor && captured) {
            return Ok(out);
        }
        let ids: Vec<i32> = conn
            .query("SELECT id FROM dugong.captured ORDER BY id", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Each change log's window for a position, off its transaction-id index.
        let window =
            "dugong_txid >= pg_snapshot_xmin(c.snapshot) AND NOT pg_visible_in_snapshot(dugong_txid, c.snapshot)";
        let mut parts: Vec<String> =
            ids.iter().map(|i| format!("SELECT dugong_txid FROM dugong.\"delta_{i}\" WHERE {window}")).collect();
        parts.push(format!("SELECT dugong_txid FROM dugong.truncate_log WHERE {window}"));
        let lag = if commit_ts {
            "extract(epoch from now() - min(pg_xact_commit_timestamp(p.dugong_txid::xid)))::float8"
        } else {
            "NULL::float8"
        };
        let target = if targets { "c.target" } else { "'*'::text" };
        let sql = format!(
            "SELECT c.sync, {target}, count(p.dugong_txid), {lag}
             FROM dugong.cursor c LEFT JOIN LATERAL ({}) p ON true
             GROUP BY 1, 2 ORDER BY 1, 2",
            parts.join(" UNION ALL ")
        );
        // A capture being installed or removed meanwhile: the backlog is simply unknown.
        let Ok(rows) = conn.query(&sql, &[]).await else {
            return Ok(out);
        };
        for r in rows {
            let sync: String = r.get(0);
            if let Some(s) = out.iter_mut().find(|s| s.sync == sync) {
                let rows: i64 = r.get(2);
                let lag = match rows {
                    0 if commit_ts => Some(std::time::Duration::ZERO),
                    _ => r.get::<_, Option<f64>>(3).map(seconds),
                };
                s.backlog.push(Backlog { target: r.get(1), rows, lag });
            }
        }
        for s in &mut out {
            s.settle_lag();
        }
        Ok(out)
    }
}
