//! The audit log (`audit_log`) in SQLite. A change records its entry in the
//! same transaction as the change itself.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::SqliteStore;
use crate::audit::{new_id, page, AuditEntry, AuditQuery, NewAudit};
use crate::error::{from_sqlite, StoreError};
use crate::model::{Micros, Page};

/// Writes `audit` (recorded by `site`) on `conn`, inside the caller's
/// transaction when there is one.
pub(super) fn insert(conn: &Connection, site: &str, audit: &NewAudit) -> Result<(), StoreError> {
    let a = &audit.actor;
    conn.prepare_cached(
        "INSERT INTO audit_log (id, at, site, actor, actor_kind, peer, action, resource, key, version, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut stmt| {
        stmt.execute((
            new_id(),
            Micros::now().0,
            site,
            &a.name,
            a.kind.as_str(),
            &a.peer,
            audit.action.as_str(),
            &audit.resource,
            &audit.key,
            audit.version,
            &audit.detail,
        ))
    })
    .map_err(|e| from_sqlite("writing the audit log", &e))?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn append_audit(&self, audit: &NewAudit) -> Result<(), StoreError> {
        let audit = audit.clone();
        self.run(move |c, site| insert(c, site, &audit)).await
    }

    pub(crate) async fn audit(&self, q: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        let int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
        let fetch = i64::from(q.limit) + 1;
        let params = vec![
            text(&q.actor),
            text(&q.action.map(|a| a.as_str().to_string())),
            text(&q.resource),
            text(&q.key),
            text(&q.site),
            int(q.since.map(|m| m.0)),
            int(q.until.map(|m| m.0)),
            int(q.after.as_ref().map(|c| c.at.0)),
            text(&q.after.as_ref().map(|c| c.id.clone())),
            Value::Integer(fetch),
        ];
        self.run(move |c, _| {
            let ctx = "reading the audit log";
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, at, site, actor, actor_kind, peer, action, resource, key, version, detail
                     FROM audit_log
                     WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2)
                       AND (?3 IS NULL OR resource = ?3) AND (?4 IS NULL OR key = ?4)
                       AND (?5 IS NULL OR site = ?5)
                       AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7)
                       AND (?8 IS NULL OR at < ?8 OR (at = ?8 AND id < ?9))
                     ORDER BY at DESC, id DESC LIMIT ?10",
                )
                .map_err(|e| from_sqlite(ctx, &e))?;
            let rows = stmt
                .query_map(params_from_iter(params), |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at: Micros(r.get(1)?),
                        site: r.get(2)?,
                        actor: r.get(3)?,
                        actor_kind: r.get(4)?,
                        peer: r.get(5)?,
                        action: r.get(6)?,
                        resource: r.get(7)?,
                        key: r.get(8)?,
                        version: r.get(9)?,
                        detail: r.get(10)?,
                    })
                })
                .map_err(|e| from_sqlite(ctx, &e))?;
            let mut items = rows.collect::<Result<Vec<_>, _>>().map_err(|e| from_sqlite(ctx, &e))?;
            Ok(page(&mut items, fetch))
        })
        .await
    }
}
