//! What `dugong replicate` records in a SQLite file, read for server info: each
//! sync's state (`dugong_sync_state`) and how old the oldest change made here
//! and not yet shipped is (`dugong_delta_<n>` rows past the sync's cursor, by
//! the change time the capture triggers record). The names follow the
//! replicator's SQLite schema (crates/replica/src/engine/sqlite/schema.sql).

use std::time::Duration;

use super::SqliteStore;
use crate::error::{from_sqlite, StoreError};
use crate::model::Micros;
use crate::SyncHealth;

impl SqliteStore {
    pub(crate) async fn replication(&self) -> Result<Vec<SyncHealth>, StoreError> {
        self.run(|c, _| {
            let ctx = "reading the replication state";
            let exists = |name: &str| -> Result<bool, StoreError> {
                c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
                    [name],
                    |r| r.get(0),
                )
                .map_err(|e| from_sqlite(ctx, &e))
            };
            if !exists("dugong_sync_state")? {
                return Ok(Vec::new());
            }
            let now = Micros::now().0;
            let mut out: Vec<SyncHealth> = {
                let mut stmt = c
                    .prepare("SELECT sync, state, last_good_ended FROM dugong_sync_state ORDER BY sync")
                    .map_err(|e| from_sqlite(ctx, &e))?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok(SyncHealth {
                            sync: r.get(0)?,
                            state: r.get(1)?,
                            lag: None,
                            last_good_age: r.get::<_, Option<i64>>(2)?.map(|t| micros(now - t)),
                        })
                    })
                    .map_err(|e| from_sqlite(ctx, &e))?;
                rows.collect::<Result<_, _>>().map_err(|e| from_sqlite(ctx, &e))?
            };
            if !(exists("dugong_cursor")? && exists("dugong_captured")?) {
                return Ok(out);
            }
            let ids: Vec<i64> = {
                let mut stmt =
                    c.prepare("SELECT id FROM dugong_captured ORDER BY id").map_err(|e| from_sqlite(ctx, &e))?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| from_sqlite(ctx, &e))?;
                rows.collect::<Result<_, _>>().map_err(|e| from_sqlite(ctx, &e))?
            };
            if ids.is_empty() {
                return Ok(out);
            }
            let deltas: Vec<String> = ids.iter().map(|i| format!("SELECT seq, at FROM \"dugong_delta_{i}\"")).collect();
            let sql = format!(
                "SELECT c.sync, (SELECT min(p.at) FROM ({}) p WHERE p.seq > c.seq) FROM dugong_cursor c",
                deltas.join(" UNION ALL ")
            );
            // A capture being installed or removed meanwhile: the lag is simply unknown.
            let Ok(mut stmt) = c.prepare(&sql) else { return Ok(out) };
            let Ok(rows) = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))) else {
                return Ok(out);
            };
            for (sync, oldest) in rows.flatten() {
                if let Some(s) = out.iter_mut().find(|s| s.sync == sync) {
                    s.lag = Some(oldest.map(|t| micros(now - t)).unwrap_or_default());
                }
            }
            Ok(out)
        })
        .await
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}
