//! What `dugong replicate` records in this database, read for server info:
//! each sync's state (`dugong.sync_state`) and how old the oldest change made
//! here and not yet shipped is (`dugong.delta_<n>` rows outside the sync's
//! cursor snapshot, by commit time). The table names follow the replicator's
//! capture schema (crates/replica/src/capture/schema.sql).

use std::time::Duration;

use super::PgStore;
use crate::error::{from_pg, StoreError};
use crate::SyncHealth;

impl PgStore {
    pub(crate) async fn replication(&self) -> Result<Vec<SyncHealth>, StoreError> {
        let ctx = "reading the replication state";
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT to_regclass('dugong.sync_state') IS NOT NULL, to_regclass('dugong.cursor') IS NOT NULL,
                        to_regclass('dugong.captured') IS NOT NULL, current_setting('track_commit_timestamp')::bool",
                &[],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let (state, cursor, captured, commit_ts): (bool, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if !state {
            return Ok(Vec::new());
        }
        let rows = conn
            .query(
                "SELECT sync, state, extract(epoch from now() - last_good_ended)::float8 FROM dugong.sync_state ORDER BY sync",
                &[],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let mut out: Vec<SyncHealth> = rows
            .iter()
            .map(|r| SyncHealth {
                sync: r.get(0),
                state: r.get(1),
                lag: None,
                last_good_age: r.get::<_, Option<f64>>(2).map(seconds),
            })
            .collect();
        if !(cursor && captured && commit_ts) {
            return Ok(out);
        }
        let ids: Vec<i32> = conn
            .query("SELECT id FROM dugong.captured ORDER BY id", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Ok(out);
        }
        let deltas: Vec<String> = ids.iter().map(|i| format!("SELECT dugong_txid FROM dugong.\"delta_{i}\"")).collect();
        let sql = format!(
            "SELECT c.sync, coalesce((SELECT extract(epoch from now() - min(pg_xact_commit_timestamp(p.dugong_txid::xid)))::float8
                                      FROM ({}) p WHERE NOT pg_visible_in_snapshot(p.dugong_txid, c.snapshot)), 0)
             FROM dugong.cursor c",
            deltas.join(" UNION ALL ")
        );
        // A capture being installed or removed meanwhile: the lag is simply unknown.
        let Ok(lags) = conn.query(&sql, &[]).await else {
            return Ok(out);
        };
        for r in lags {
            let sync: String = r.get(0);
            if let Some(s) = out.iter_mut().find(|s| s.sync == sync) {
                s.lag = r.get::<_, Option<f64>>(1).map(seconds);
            }
        }
        Ok(out)
    }
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}
