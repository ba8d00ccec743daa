//! The audit log (`dugong_app.audit_log`) on PostgreSQL. A change records its
//! entry in the same statement as the change itself (a data-modifying CTE),
//! so both commit together and it costs no extra round trip.

use tokio_postgres::types::ToSql;

use super::{micros, PgStore};
use crate::audit::{page, Action, AuditEntry, AuditQuery, NewAudit};
use crate::error::{from_pg, StoreError};
use crate::model::{Micros, Page};

/// `Micros` parameter `$n` as a timestamptz.
fn at(n: usize) -> String {
    format!("('epoch'::timestamptz + ${n}::int8 * interval '1 microsecond')")
}

/// The parameters of an entry written by [`insert_from`]: site, actor, actor
/// kind, peer, resource, key, detail.
pub(super) struct Params {
    values: [String; 7],
}

impl Params {
    pub(super) fn new(site: &str, audit: &NewAudit) -> Params {
        let a = &audit.actor;
        Params {
            values: [
                site.to_string(),
                a.name.clone(),
                a.kind.as_str().to_string(),
                a.peer.clone(),
                audit.resource.clone(),
                audit.key.clone(),
                audit.detail.clone(),
            ],
        }
    }

    pub(super) fn refs(&self) -> impl Iterator<Item = &(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v as &(dyn ToSql + Sync))
    }
}

/// `INSERT INTO dugong_app.audit_log … SELECT … FROM <source>`: one entry per
/// row of `source` (the CTE of the change; none when it changed nothing),
/// with [`Params`] from `$first`, the action and version as SQL expressions
/// over `source`'s columns.
pub(super) fn insert_from(source: &str, first: usize, action: &str, version: &str) -> String {
    let p = |i: usize| format!("${}::text", first + i);
    format!(
        "INSERT INTO dugong_app.audit_log (id, site, actor, actor_kind, peer, action, resource, key, version, detail)
         SELECT gen_random_uuid(), {}, {}, {}, {}, {action}, {}, {}, {version}, {} FROM {source}",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    )
}

/// An action as an SQL literal (the names are ours: lowercase and `_` only).
pub(super) fn literal(action: Action) -> String {
    format!("'{}'", action.as_str())
}

impl PgStore {
    pub(crate) async fn append_audit(&self, audit: &NewAudit) -> Result<(), StoreError> {
        let params = Params::new(&self.site, audit);
        let sql = insert_from("(SELECT $8::int8 AS version) v", 1, &literal(audit.action), "v.version");
        let mut all: Vec<&(dyn ToSql + Sync)> = params.refs().collect();
        all.push(&audit.version);
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing an audit entry", &e))?;
        conn.execute(&stmt, &all).await.map_err(|e| from_pg("writing the audit log", &e))?;
        Ok(())
    }

    pub(crate) async fn audit(&self, q: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        let sql = format!(
            "SELECT id::text, {}, site, actor, actor_kind, peer, action, resource, key, version, detail
             FROM dugong_app.audit_log
             WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
               AND ($3::text IS NULL OR resource = $3) AND ($4::text IS NULL OR key = $4)
               AND ($5::text IS NULL OR site = $5)
               AND ($6::int8 IS NULL OR at >= {}) AND ($7::int8 IS NULL OR at < {})
               AND ($8::int8 IS NULL OR (at, id) < ({}, $9::text::uuid))
             ORDER BY at DESC, id DESC LIMIT $10",
            micros("at"),
            at(6),
            at(7),
            at(8)
        );
        let action = q.action.map(|a| a.as_str().to_string());
        let (after_at, after_id) = match &q.after {
            Some(c) => (Some(c.at.0), Some(c.id.clone())),
            None => (None, None),
        };
        let fetch = i64::from(q.limit) + 1;
        let (since, until) = (q.since.map(|m| m.0), q.until.map(|m| m.0));
        let params: [&(dyn ToSql + Sync); 10] =
            [&q.actor, &action, &q.resource, &q.key, &q.site, &since, &until, &after_at, &after_id, &fetch];
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing an audit read", &e))?;
        let rows = conn.query(&stmt, &params).await.map_err(|e| from_pg("reading the audit log", &e))?;
        let mut items: Vec<AuditEntry> = rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: Micros(r.get(1)),
                site: r.get(2),
                actor: r.get(3),
                actor_kind: r.get(4),
                peer: r.get(5),
                action: r.get(6),
                resource: r.get(7),
                key: r.get(8),
                version: r.get(9),
                detail: r.get(10),
            })
            .collect();
        Ok(page(&mut items, fetch))
    }
}
