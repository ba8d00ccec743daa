//! The replicator's conflict log on PostgreSQL (`dugong.conflict_log`),
//! read for the console (see `crate::conflict`).

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{micros, PgStore};
use crate::conflict::{kind_of, ConflictCursor, ConflictQuery, ConflictSide, LoggedConflict};
use crate::error::{from_pg, StoreError};
use crate::model::{Micros, Page};

fn select() -> String {
    format!(
        "SELECT id, coalesce(conflict_id, ''), {}, sync, table_schema, table_name, key, coalesce(kind, ''),
                winner, loser, {}, {}, winner_row::text, loser_row::text, reason, {}
         FROM dugong.conflict_log",
        micros("at"),
        micros("winner_committed"),
        micros("loser_committed"),
        micros("restored_at")
    )
}

fn conflict(r: &Row) -> LoggedConflict {
    let json = |text: Option<String>| {
        text.and_then(|t| serde_json::from_str(&t).ok()).filter(|v: &serde_json::Value| !v.is_null())
    };
    let side = |database: String, committed: Option<i64>, row: Option<String>| ConflictSide {
        database,
        committed: committed.map(Micros),
        row: json(row),
    };
    let (schema, table): (String, String) = (r.get(4), r.get(5));
    let kind: String = r.get(7);
    LoggedConflict {
        row: r.get(0),
        id: r.get(1),
        at: Micros(r.get(2)),
        sync: r.get(3),
        kind: kind_of(Some(&schema), &table),
        table: format!("{schema}.{table}"),
        key: r.get(6),
        versions: !kind.is_empty(),
        conflict: kind,
        winner: side(r.get(8), r.get(10), r.get(12)),
        loser: side(r.get(9), r.get(11), r.get(13)),
        reason: r.get(14),
        restored_at: r.get::<_, Option<i64>>(15).map(Micros),
    }
}

impl PgStore {
    /// Whether the log exists here in the shape that has ids and versions.
    async fn conflict_log_ready(&self, conn: &deadpool_postgres::Object) -> Result<bool, StoreError> {
        let ctx = "looking for the conflict log";
        let row = conn
            .query_one(
                "SELECT to_regclass('dugong.conflict_log') IS NOT NULL,
                        EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('dugong.conflict_log')
                                AND attname = 'conflict_id' AND NOT attisdropped)",
                &[],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
            (false, _) => Ok(false),
            (true, true) => Ok(true),
            (true, false) => Err(StoreError::Database {
                context: "reading the conflict log".into(),
                message: "it was made by an earlier Dugong; start `dugong replicate` once to upgrade it".into(),
            }),
        }
    }

    pub(crate) async fn conflicts(&self, q: &ConflictQuery) -> Result<Page<LoggedConflict>, StoreError> {
        let conn = self.conn().await?;
        if !self.conflict_log_ready(&conn).await? {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let sql = format!(
            "{} WHERE ($1::text IS NULL OR (table_schema = 'dugong_app' AND table_name = $1 AND key = ARRAY[$2::text]))
               AND ($3::int8 IS NULL OR (at, id) < ('epoch'::timestamptz + $3 * interval '1 microsecond', $4::int8))
             ORDER BY at DESC, id DESC LIMIT $5",
            select()
        );
        let (table, key) = match &q.record {
            Some((kind, key)) => (Some(kind.as_str()), Some(key.clone())),
            None => (None, None),
        };
        let (at, row) = (q.before.map(|c| c.at.0), q.before.map(|c| c.row));
        let fetch = i64::from(q.limit) + 1;
        let params: [&(dyn ToSql + Sync); 5] = [&table, &key, &at, &row, &fetch];
        let rows = conn.query(&sql, &params).await.map_err(|e| from_pg("reading the conflict log", &e))?;
        let mut items: Vec<LoggedConflict> = rows.iter().map(conflict).collect();
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|c| ConflictCursor { at: c.at, row: c.row }.token())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) async fn logged_conflict(&self, id: &str) -> Result<Option<LoggedConflict>, StoreError> {
        let conn = self.conn().await?;
        if !self.conflict_log_ready(&conn).await? {
            return Ok(None);
        }
        let sql = format!("{} WHERE conflict_id = $1", select());
        let row = conn.query_opt(&sql, &[&id]).await.map_err(|e| from_pg("reading the conflict log", &e))?;
        Ok(row.as_ref().map(conflict))
    }

    pub(crate) async fn mark_conflict_restored(&self, id: &str) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE dugong.conflict_log SET restored_at = now() WHERE conflict_id = $1 AND restored_at IS NULL",
                &[&id],
            )
            .await
            .map_err(|e| from_pg("marking the conflict restored", &e))?;
        Ok(n > 0)
    }
}
