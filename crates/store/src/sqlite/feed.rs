//! The change feed in SQLite: the triggers number changes themselves (one
//! writer at a time), so there is nothing to sequence.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::error::{from_sqlite, StoreError};
use crate::feed::{ChangeRow, FeedHead};
use crate::model::{Kind, Micros};

impl SqliteStore {
    pub(crate) async fn sequence_changes(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    pub(crate) async fn feed_head(&self) -> Result<FeedHead, StoreError> {
        self.run(|c, _| {
            c.query_row("SELECT feed_id, last_pos, purged_upto FROM dugong_local_feed WHERE id = 1", [], |r| {
                Ok(FeedHead { feed_id: r.get(0)?, last: r.get(1)?, purged_upto: r.get(2)? })
            })
            .map_err(|e| from_sqlite("reading the change feed's head", &e))
        })
        .await
    }

    pub(crate) async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeRow>, StoreError> {
        self.run(move |c, _| {
            let ctx = "reading changes";
            let mut stmt = c
                .prepare_cached(
                    "SELECT pos, resource, key FROM dugong_local_change WHERE pos > ?1 ORDER BY pos LIMIT ?2",
                )
                .map_err(|e| from_sqlite(ctx, &e))?;
            let rows = stmt
                .query_map((after, i64::from(limit)), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
                })
                .map_err(|e| from_sqlite(ctx, &e))?;
            let mut out = Vec::new();
            for row in rows {
                let (pos, resource, key) = row.map_err(|e| from_sqlite(ctx, &e))?;
                if let Some(kind) = Kind::parse(&resource) {
                    out.push(ChangeRow { pos, kind, key });
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn purge_changes(&self, keep: Duration) -> Result<u64, StoreError> {
        let cutoff = Micros::now().0 - keep.as_micros().min(i64::MAX as u128) as i64;
        self.run(move |c, _| {
            let ctx = "purging old changes";
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| from_sqlite(ctx, &e))?;
            let upto: Option<i64> = tx
                .query_row("SELECT max(pos) FROM dugong_local_change WHERE at < ?1", [cutoff], |r| r.get(0))
                .optional()
                .map_err(|e| from_sqlite(ctx, &e))?
                .flatten();
            let Some(upto) = upto else {
                return Ok(0);
            };
            let removed = tx
                .execute("DELETE FROM dugong_local_change WHERE pos <= ?1", [upto])
                .map_err(|e| from_sqlite(ctx, &e))?;
            tx.execute("UPDATE dugong_local_feed SET purged_upto = max(purged_upto, ?1) WHERE id = 1", [upto])
                .map_err(|e| from_sqlite(ctx, &e))?;
            tx.commit().map_err(|e| from_sqlite(ctx, &e))?;
            Ok(removed as u64)
        })
        .await
    }
}
