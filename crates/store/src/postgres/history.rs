//! The history of apps, flows and settings on PostgreSQL
//! (`dugong_app.history`): the pieces of a write's statement that record the
//! version it wrote (and, for a record changed for the first time since
//! history began, the version it had), and reading it back.
//!
//! The pieces take their who, where and note from the audit entry's
//! parameters ([`super::audit::Params`], from `$first`): site, actor, actor
//! kind, peer, resource, key, detail.

use tokio_postgres::types::ToSql;

use super::{micros, qualified, PgStore};
use crate::audit::AuditCursor;
use crate::error::{from_pg, StoreError};
use crate::history::{HistoryEntry, HistoryQuery, RECORDED};
use crate::model::{ColumnType, Kind, Micros, Page, Table};

const COLUMNS: &str = "id, resource, key, version, action, at, site, actor, actor_kind, detail, content";

/// A record's fields as a JSON object, over the columns of `alias`: as the
/// table holds them (`stored`), or as a write returned them as text.
fn content(table: &Table, alias: &str, stored: bool) -> String {
    let fields: Vec<String> = table
        .fields
        .iter()
        .map(|c| {
            let value = match (c.ty, stored) {
                (ColumnType::Text, _) => format!("{alias}.{}", c.name),
                (ColumnType::Uuid, _) => format!("{alias}.{}::text", c.name),
                (ColumnType::Json, true) => format!("{alias}.{}", c.name),
                (ColumnType::Json, false) => format!("{alias}.{}::jsonb", c.name),
            };
            format!("'{}', {value}", c.name)
        })
        .collect();
    format!("jsonb_build_object({})", fields.join(", "))
}

/// `old`: the record as it is before the statement (none when new).
pub(super) fn before(table: &Table, key_param: &str) -> String {
    format!(
        "old AS (SELECT {} AS content, o.version, o.updated_at FROM {} o WHERE o.{} = {key_param})",
        content(table, "o", true),
        qualified(table),
        table.key.name
    )
}

/// After `w` wrote (`deleted`: deleted) the record: the version it had, when
/// no history holds it yet (`b`), and the version written (`h`).
pub(super) fn written(table: &Table, first: usize, action: &str, deleted: bool) -> Vec<String> {
    let p = |i: usize| format!("${}::text", first + i);
    let (resource, key) = (p(4), p(5));
    let written = if deleted { "NULL::jsonb".to_string() } else { content(table, "w", false) };
    vec![
        format!(
            "b AS (INSERT INTO dugong_app.history ({COLUMNS})
                   SELECT gen_random_uuid(), {resource}, {key}, old.version, '{RECORDED}', old.updated_at, '', '', '', '',
                          old.content
                   FROM old, w WHERE NOT EXISTS (SELECT 1 FROM dugong_app.history h
                                                 WHERE h.resource = {resource} AND h.key = {key}))"
        ),
        format!(
            "h AS (INSERT INTO dugong_app.history ({COLUMNS})
                   SELECT gen_random_uuid(), {resource}, {key}, w.version, {action}, now(), {}, {}, {}, {}, {written}
                   FROM w)",
            p(0),
            p(1),
            p(2),
            p(6)
        ),
    ]
}

/// When `w` deleted an app: the history of its flows, which go with it (the
/// foreign key's cascade) — the version each had, when no history holds it
/// yet, and its deletion.
pub(super) fn flows_deleted_with_app(first: usize) -> Vec<String> {
    let p = |i: usize| format!("${}::text", first + i);
    let flows = Kind::Flow.table();
    vec![
        format!(
            "fo AS (SELECT f.id::text AS key, f.version, f.updated_at, {} AS content
                    FROM dugong_app.flows f WHERE f.app_id = {}::uuid)",
            content(flows, "f", true),
            p(5)
        ),
        format!(
            "fb AS (INSERT INTO dugong_app.history ({COLUMNS})
                    SELECT gen_random_uuid(), 'flows', fo.key, fo.version, '{RECORDED}', fo.updated_at, '', '', '', '',
                           fo.content
                    FROM fo, w WHERE NOT EXISTS (SELECT 1 FROM dugong_app.history h
                                                 WHERE h.resource = 'flows' AND h.key = fo.key))"
        ),
        format!(
            "fh AS (INSERT INTO dugong_app.history ({COLUMNS})
                    SELECT gen_random_uuid(), 'flows', fo.key, fo.version, 'delete', now(), {}, {}, {},
                           'deleted with its app', NULL
                    FROM fo, w)",
            p(0),
            p(1),
            p(2)
        ),
    ]
}

fn entry(row: &tokio_postgres::Row) -> Result<HistoryEntry, StoreError> {
    HistoryEntry::from_parts(
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        Micros(row.get(5)),
        [row.get(6), row.get(7), row.get(8), row.get(9)],
        row.get::<_, Option<String>>(10).as_deref(),
    )
}

fn select() -> String {
    format!(
        "SELECT id::text, resource, key, version, action, {}, site, actor, actor_kind, detail, content::text
         FROM dugong_app.history",
        micros("at")
    )
}

impl PgStore {
    pub(crate) async fn history(&self, q: &HistoryQuery) -> Result<Page<HistoryEntry>, StoreError> {
        let sql = format!(
            "{} WHERE resource = $1 AND key = $2
               AND ($3::int8 IS NULL OR (at, id) < ('epoch'::timestamptz + $3 * interval '1 microsecond', $4::text::uuid))
             ORDER BY at DESC, id DESC LIMIT $5",
            select()
        );
        let resource = q.kind.as_str();
        let (after_at, after_id) = match &q.after {
            Some(c) => (Some(c.at.0), Some(c.id.clone())),
            None => (None, None),
        };
        let fetch = i64::from(q.limit) + 1;
        let params: [&(dyn ToSql + Sync); 5] = [&resource, &q.key, &after_at, &after_id, &fetch];
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a history read", &e))?;
        let rows = conn.query(&stmt, &params).await.map_err(|e| from_pg("reading the history", &e))?;
        let mut items = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|e| AuditCursor { at: e.at, id: e.id.clone() }.token())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) async fn history_entry(&self, id: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let sql = format!("{} WHERE id = $1::text::uuid", select());
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a history read", &e))?;
        let row = conn.query_opt(&stmt, &[&id]).await.map_err(|e| from_pg("reading the history", &e))?;
        row.as_ref().map(entry).transpose()
    }
}
