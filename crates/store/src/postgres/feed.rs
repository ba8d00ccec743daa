//! The change feed on PostgreSQL (see `crate::feed`).
//!
//! Triggers log changed keys into `dugong_local.change` without a position.
//! [`PgStore::sequence_changes`] then numbers the committed ones: it locks the
//! feed's single row, so sequencers (every server of the site runs one) take
//! turns, and reads the unnumbered rows in a statement that starts after the
//! lock is held, so it sees every earlier sequencer's commit. Each turn hands
//! out the next block of numbers and commits it at once: readers always see a
//! gap-free prefix of positions, and a position never appears behind one
//! already read.

use std::time::Duration;

use super::PgStore;
use crate::error::{from_pg, StoreError};
use crate::feed::{ChangeRow, FeedHead};
use crate::model::Kind;

/// Most changes numbered in one turn.
const SEQUENCE_BATCH: i64 = 10_000;

impl PgStore {
    pub(crate) async fn sequence_changes(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let waiting: bool = conn
            .query_one("SELECT EXISTS (SELECT 1 FROM dugong_local.change WHERE pos IS NULL)", &[])
            .await
            .map_err(|e| from_pg("looking for new changes", &e))?
            .get(0);
        if !waiting {
            return Ok(0);
        }
        let ctx = "numbering changes";
        let tx = conn.transaction().await.map_err(|e| from_pg(ctx, &e))?;
        let base: i64 = tx
            .query_one("SELECT last_pos FROM dugong_local.feed WHERE id = 1 FOR UPDATE", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?
            .get(0);
        let numbered = tx
            .execute(
                "WITH todo AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM dugong_local.change
                               WHERE pos IS NULL ORDER BY id LIMIT $2)
                 UPDATE dugong_local.change c SET pos = $1 + todo.n FROM todo WHERE c.id = todo.id",
                &[&base, &SEQUENCE_BATCH],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        tx.execute("UPDATE dugong_local.feed SET last_pos = $1 WHERE id = 1", &[&(base + numbered as i64)])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        tx.commit().await.map_err(|e| from_pg(ctx, &e))?;
        Ok(numbered)
    }

    pub(crate) async fn feed_head(&self) -> Result<FeedHead, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one("SELECT feed_id::text, last_pos, purged_upto FROM dugong_local.feed WHERE id = 1", &[])
            .await
            .map_err(|e| from_pg("reading the change feed's head", &e))?;
        Ok(FeedHead { feed_id: row.get(0), last: row.get(1), purged_upto: row.get(2) })
    }

    pub(crate) async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeRow>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT pos, resource, key FROM dugong_local.change WHERE pos > $1 ORDER BY pos LIMIT $2")
            .await
            .map_err(|e| from_pg("preparing the change read", &e))?;
        let rows = conn.query(&stmt, &[&after, &i64::from(limit)]).await.map_err(|e| from_pg("reading changes", &e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let resource: String = r.get(1);
            // A resource this build does not know (written by a newer one) is skipped.
            if let Some(kind) = Kind::parse(&resource) {
                out.push(ChangeRow { pos: r.get(0), kind, key: r.get(2) });
            }
        }
        Ok(out)
    }

    pub(crate) async fn purge_changes(&self, keep: Duration) -> Result<u64, StoreError> {
        let ctx = "purging old changes";
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(|e| from_pg(ctx, &e))?;
        tx.execute("SELECT 1 FROM dugong_local.feed WHERE id = 1 FOR UPDATE", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let upto: Option<i64> = tx
            .query_one(
                "SELECT max(pos) FROM dugong_local.change WHERE pos IS NOT NULL AND at < now() - make_interval(secs => $1)",
                &[&keep.as_secs_f64()],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?
            .get(0);
        let Some(upto) = upto else {
            return Ok(0);
        };
        let removed = tx
            .execute("DELETE FROM dugong_local.change WHERE pos <= $1", &[&upto])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        tx.execute("UPDATE dugong_local.feed SET purged_upto = greatest(purged_upto, $1) WHERE id = 1", &[&upto])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        tx.commit().await.map_err(|e| from_pg(ctx, &e))?;
        Ok(removed)
    }
}
