//! Events on PostgreSQL: a whole post is one `INSERT … SELECT FROM unnest(…)
//! ON CONFLICT (id) DO NOTHING`, so known ids (a retried post) store nothing.

use super::{micros, PgStore};
use crate::error::{from_pg, StoreError};
use crate::event::{Event, EventInput, Posted};
use crate::model::{Micros, Page};

const INSERT: &str = "
INSERT INTO dugong_app.events (id, kind, user_id, app_id, occurred_at, site, payload)
SELECT e.id::uuid, e.kind, e.user_id, e.app_id::uuid,
       'epoch'::timestamptz + e.occurred_us * interval '1 microsecond', $7, e.payload::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[])
     AS e(id, kind, user_id, app_id, occurred_us, payload)
ON CONFLICT (id) DO NOTHING";

impl PgStore {
    pub(crate) async fn post_events(&self, events: &[EventInput]) -> Result<Posted, StoreError> {
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let users: Vec<Option<&str>> = events.iter().map(|e| e.user.as_deref()).collect();
        let apps: Vec<Option<&str>> = events.iter().map(|e| e.app_id.as_deref()).collect();
        let times: Vec<Option<i64>> = events.iter().map(|e| e.occurred_at.map(|m| m.0)).collect();
        let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(INSERT).await.map_err(|e| from_pg("preparing the event insert", &e))?;
        let stored = conn
            .execute(&stmt, &[&ids, &kinds, &users, &apps, &times, &payloads, &self.site])
            .await
            .map_err(|e| from_pg("storing events", &e))?;
        let accepted = stored as u32;
        Ok(Posted { accepted, duplicates: events.len() as u32 - accepted })
    }

    pub(crate) async fn list_events(&self, after: Option<&str>, limit: u32) -> Result<Page<Event>, StoreError> {
        let sql = format!(
            "SELECT id::text, kind, user_id, app_id::text, {}, payload::text, site, {}
             FROM dugong_app.events WHERE ($1::text IS NULL OR id > $1::text::uuid) ORDER BY id LIMIT $2",
            micros("occurred_at"),
            micros("received_at")
        );
        let fetch = i64::from(limit) + 1;
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing the event list", &e))?;
        let rows = conn.query(&stmt, &[&after, &fetch]).await.map_err(|e| from_pg("listing events", &e))?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.get(0);
            let payload: String = r.get(5);
            let payload = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
                kind: "events",
                key: id.clone(),
                reason: e.to_string(),
            })?;
            items.push(Event {
                id,
                kind: r.get(1),
                user: r.get(2),
                app_id: r.get(3),
                occurred_at: r.get::<_, Option<i64>>(4).map(Micros),
                payload,
                site: r.get(6),
                received_at: Micros(r.get(7)),
            });
        }
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
