//! Events in SQLite: one transaction per post, each insert skipping a known id.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, TransactionBehavior};

use super::SqliteStore;
use crate::error::{from_sqlite, StoreError};
use crate::event::{Event, EventInput, Posted};
use crate::model::{Micros, Page};

const INSERT: &str = "INSERT INTO events (id, kind, user_id, app_id, occurred_at, received_at, site, payload)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING";

impl SqliteStore {
    pub(crate) async fn post_events(&self, events: &[EventInput]) -> Result<Posted, StoreError> {
        let events = events.to_vec();
        self.run(move |c, site| {
            let ctx = "storing events";
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| from_sqlite(ctx, &e))?;
            let now = Micros::now().0;
            let mut accepted = 0u32;
            {
                let mut stmt = tx.prepare_cached(INSERT).map_err(|e| from_sqlite(ctx, &e))?;
                for e in &events {
                    let params = [
                        Value::Text(e.id.clone()),
                        Value::Text(e.kind.clone()),
                        e.user.clone().map_or(Value::Null, Value::Text),
                        e.app_id.clone().map_or(Value::Null, Value::Text),
                        e.occurred_at.map_or(Value::Null, |m| Value::Integer(m.0)),
                        Value::Integer(now),
                        Value::Text(site.to_string()),
                        Value::Text(e.payload.clone()),
                    ];
                    accepted += stmt.execute(params_from_iter(params)).map_err(|e| from_sqlite(ctx, &e))? as u32;
                }
            }
            tx.commit().map_err(|e| from_sqlite(ctx, &e))?;
            Ok(Posted { accepted, duplicates: events.len() as u32 - accepted })
        })
        .await
    }

    pub(crate) async fn list_events(&self, after: Option<&str>, limit: u32) -> Result<Page<Event>, StoreError> {
        let after = after.map_or(Value::Null, |a| Value::Text(a.to_string()));
        let fetch = i64::from(limit) + 1;
        let mut items = self
            .run(move |c, _| {
                let ctx = "listing events";
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, kind, user_id, app_id, occurred_at, payload, site, received_at FROM events
                         WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
                    )
                    .map_err(|e| from_sqlite(ctx, &e))?;
                let rows = stmt
                    .query_map(params_from_iter([after, Value::Integer(fetch)]), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, i64>(7)?,
                        ))
                    })
                    .map_err(|e| from_sqlite(ctx, &e))?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, kind, user, app_id, occurred, payload, site, received) =
                        row.map_err(|e| from_sqlite(ctx, &e))?;
                    let payload = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
                        kind: "events",
                        key: id.clone(),
                        reason: e.to_string(),
                    })?;
                    out.push(Event {
                        id,
                        kind,
                        user,
                        app_id,
                        occurred_at: occurred.map(Micros),
                        payload,
                        site,
                        received_at: Micros(received),
                    });
                }
                Ok(out)
            })
            .await?;
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
