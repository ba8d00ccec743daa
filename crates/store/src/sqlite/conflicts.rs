//! The replicator's conflict log in SQLite (`dugong_conflict_log`), read
//! for the console (see `crate::conflict`).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};

use super::SqliteStore;
use crate::conflict::{kind_of, ConflictCursor, ConflictQuery, ConflictSide, LoggedConflict};
use crate::error::{from_sqlite, StoreError};
use crate::model::{Micros, Page};

const SELECT: &str =
    "SELECT id, coalesce(conflict_id, ''), at, sync, table_name, key, coalesce(kind, ''), winner, loser,
                             winner_changed, loser_changed, winner_row, loser_row, reason, restored_at
                      FROM dugong_conflict_log";

fn conflict(r: &Row<'_>) -> rusqlite::Result<LoggedConflict> {
    let json = |text: Option<String>| {
        text.and_then(|t| serde_json::from_str(&t).ok()).filter(|v: &serde_json::Value| !v.is_null())
    };
    let table: String = r.get(4)?;
    let key: String = r.get(5)?;
    let kind: String = r.get(6)?;
    Ok(LoggedConflict {
        row: r.get(0)?,
        id: r.get(1)?,
        at: Micros(r.get(2)?),
        sync: r.get(3)?,
        kind: kind_of(None, &table),
        table,
        key: serde_json::from_str(&key).unwrap_or_else(|_| vec![key]),
        versions: !kind.is_empty(),
        conflict: kind,
        winner: ConflictSide {
            database: r.get(7)?,
            committed: r.get::<_, Option<i64>>(9)?.map(Micros),
            row: json(r.get(11)?),
        },
        loser: ConflictSide {
            database: r.get(8)?,
            committed: r.get::<_, Option<i64>>(10)?.map(Micros),
            row: json(r.get(12)?),
        },
        reason: r.get(13)?,
        restored_at: r.get::<_, Option<i64>>(14)?.map(Micros),
    })
}

/// Whether the log exists in the shape that has ids and versions.
fn ready(c: &Connection) -> Result<bool, StoreError> {
    let ctx = "looking for the conflict log";
    let columns: i64 = c
        .query_row(
            "SELECT count(*) FROM pragma_table_info('dugong_conflict_log') WHERE name IN ('id', 'conflict_id')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| from_sqlite(ctx, &e))?;
    match columns {
        0 => Ok(false),
        2 => Ok(true),
        _ => Err(StoreError::Database {
            context: "reading the conflict log".into(),
            message: "it was made by an earlier Dugong; start `dugong replicate` once to upgrade it".into(),
        }),
    }
}

impl SqliteStore {
    pub(crate) async fn conflicts(&self, q: &ConflictQuery) -> Result<Page<LoggedConflict>, StoreError> {
        let fetch = i64::from(q.limit) + 1;
        let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
        let (table, key) = match &q.record {
            Some((kind, key)) => (Some(kind.as_str().to_string()), Some(serde_json::json!([key]).to_string())),
            None => (None, None),
        };
        let params = vec![
            text(table),
            text(key),
            q.before.map_or(Value::Null, |c| Value::Integer(c.at.0)),
            q.before.map_or(Value::Null, |c| Value::Integer(c.row)),
            Value::Integer(fetch),
        ];
        let mut items = self
            .run(move |c, _| {
                if !ready(c)? {
                    return Ok(Vec::new());
                }
                let ctx = "reading the conflict log";
                let sql = format!(
                    "{SELECT} WHERE (?1 IS NULL OR (table_name = ?1 AND key = ?2))
                       AND (?3 IS NULL OR at < ?3 OR (at = ?3 AND id < ?4))
                     ORDER BY at DESC, id DESC LIMIT ?5"
                );
                let mut stmt = c.prepare(&sql).map_err(|e| from_sqlite(ctx, &e))?;
                let rows = stmt.query_map(params_from_iter(params), conflict).map_err(|e| from_sqlite(ctx, &e))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(|e| from_sqlite(ctx, &e))
            })
            .await?;
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|c| ConflictCursor { at: c.at, row: c.row }.token())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) async fn logged_conflict(&self, id: &str) -> Result<Option<LoggedConflict>, StoreError> {
        let id = id.to_string();
        self.run(move |c, _| {
            if !ready(c)? {
                return Ok(None);
            }
            c.query_row(&format!("{SELECT} WHERE conflict_id = ?1"), [id], conflict)
                .optional()
                .map_err(|e| from_sqlite("reading the conflict log", &e))
        })
        .await
    }

    pub(crate) async fn mark_conflict_restored(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |c, _| {
            let n = c
                .execute(
                    "UPDATE dugong_conflict_log SET restored_at = ?2 WHERE conflict_id = ?1 AND restored_at IS NULL",
                    (id, Micros::now().0),
                )
                .map_err(|e| from_sqlite("marking the conflict restored", &e))?;
            Ok(n > 0)
        })
        .await
    }
}
