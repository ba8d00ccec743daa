//! The history of apps, flows and settings in SQLite (`history`), written
//! inside the write's transaction (see `crate::history`), and read back.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};

use super::SqliteStore;
use crate::audit::{new_id, Actor, AuditCursor};
use crate::error::{from_sqlite, StoreError};
use crate::history::{HistoryEntry, HistoryQuery, RECORDED};
use crate::model::{Kind, Micros, Page, Record};

const INSERT: &str =
    "INSERT INTO history (id, resource, key, version, action, at, site, actor, actor_kind, detail, content)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// A version written.
pub(super) struct Version<'a> {
    pub action: &'a str,
    pub version: i64,
    /// The record as written; `None` for a deletion.
    pub record: Option<&'a Record>,
}

/// Records `before`, the version a record has just before its first change
/// since history began (nothing when the history holds the record already).
pub(super) fn baseline(c: &Connection, before: &Record) -> Result<(), StoreError> {
    let ctx = "writing the history";
    let (resource, key) = (before.kind().as_str(), before.key());
    let known: bool = c
        .query_row("SELECT EXISTS (SELECT 1 FROM history WHERE resource = ?1 AND key = ?2)", (resource, key), |r| {
            r.get(0)
        })
        .map_err(|e| from_sqlite(ctx, &e))?;
    if known {
        return Ok(());
    }
    let row = (
        new_id(),
        resource,
        key,
        before.version(),
        RECORDED,
        before.updated_at().0,
        "",
        "",
        "",
        "",
        Some(crate::history::content(before)),
    );
    c.prepare_cached(INSERT).and_then(|mut s| s.execute(row)).map_err(|e| from_sqlite(ctx, &e))?;
    Ok(())
}

/// Records a version `who` wrote on this site.
pub(super) fn version(
    c: &Connection,
    site: &str,
    who: &Actor,
    kind: Kind,
    key: &str,
    v: &Version,
    detail: &str,
) -> Result<(), StoreError> {
    let at = v.record.map_or_else(Micros::now, Record::updated_at);
    let row = (
        new_id(),
        kind.as_str(),
        key,
        v.version,
        v.action,
        at.0,
        site,
        &who.name,
        who.kind.as_str(),
        detail,
        v.record.map(crate::history::content),
    );
    c.prepare_cached(INSERT).and_then(|mut s| s.execute(row)).map_err(|e| from_sqlite("writing the history", &e))?;
    Ok(())
}

const SELECT: &str =
    "SELECT id, resource, key, version, action, at, site, actor, actor_kind, detail, content FROM history";

/// The columns of a history row, as read.
type Parts = (String, String, String, i64, String, i64, [String; 4], Option<String>);

fn entry(r: &Row<'_>) -> rusqlite::Result<Parts> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
        r.get(10)?,
    ))
}

fn to_entry((id, resource, key, version, action, at, who, content): Parts) -> Result<HistoryEntry, StoreError> {
    HistoryEntry::from_parts(id, resource, key, version, action, Micros(at), who, content.as_deref())
}

impl SqliteStore {
    pub(crate) async fn history(&self, q: &HistoryQuery) -> Result<Page<HistoryEntry>, StoreError> {
        let fetch = i64::from(q.limit) + 1;
        let params = vec![
            Value::Text(q.kind.as_str().to_string()),
            Value::Text(q.key.clone()),
            q.after.as_ref().map_or(Value::Null, |c| Value::Integer(c.at.0)),
            q.after.as_ref().map_or(Value::Null, |c| Value::Text(c.id.clone())),
            Value::Integer(fetch),
        ];
        let sql = format!(
            "{SELECT} WHERE resource = ?1 AND key = ?2 AND (?3 IS NULL OR at < ?3 OR (at = ?3 AND id < ?4))
             ORDER BY at DESC, id DESC LIMIT ?5"
        );
        let rows: Vec<Parts> = self
            .run(move |c, _| {
                let ctx = "reading the history";
                let mut stmt = c.prepare_cached(&sql).map_err(|e| from_sqlite(ctx, &e))?;
                let rows = stmt.query_map(params_from_iter(params), entry).map_err(|e| from_sqlite(ctx, &e))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(|e| from_sqlite(ctx, &e))
            })
            .await?;
        let mut items = rows.into_iter().map(to_entry).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|e| AuditCursor { at: e.at, id: e.id.clone() }.token())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) async fn history_entry(&self, id: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let id = id.to_string();
        let row: Option<Parts> = self
            .run(move |c, _| {
                c.query_row(&format!("{SELECT} WHERE id = ?1"), [id], entry)
                    .optional()
                    .map_err(|e| from_sqlite("reading the history", &e))
            })
            .await?;
        row.map(to_entry).transpose()
    }
}
