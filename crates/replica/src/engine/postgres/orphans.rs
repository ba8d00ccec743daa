//! Looking for foreign-key orphans on PostgreSQL: rows of a replicated table
//! whose parent, in another replicated table, is gone. Runs apply rows with
//! `session_replication_role = replica`, which skips foreign-key checks (rows
//! of related tables arrive in any order), so a parent deleted on one site
//! while a child was inserted for it on another leaves the child orphaned on
//! every site. The daemon looks now and then; each orphan is logged once as a
//! conflict of kind foreign key.

use super::node::Postgres;
use super::record;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::SyncPlan;
use crate::record::conflict::Orphan;
use dugong_core::{quote_ident, DbId, TableName};
use serde_json::value::RawValue;

/// At most this many orphans per foreign key and database are logged per look.
const PER_KEY: i64 = 100;

/// A foreign key between two replicated tables.
struct ForeignKey {
    child: TableName,
    child_columns: Vec<String>,
    parent: TableName,
    parent_columns: Vec<String>,
}

/// Looks for orphans on every database and logs the new ones as conflicts on
/// every database. Returns the orphans found.
pub async fn check(plan: &SyncPlan, pg: &Postgres) -> Result<Vec<Orphan>, ReplicaError> {
    let mut found: Vec<Orphan> = Vec::new();
    for node in &pg.nodes {
        for fk in foreign_keys(plan, &node.client, node.id).await? {
            let key = &plan.tables.iter().find(|t| t.name == fk.child).expect("a replicated table").key;
            let key_text: Vec<String> = key.iter().map(|c| format!("c.{}::text", quote_ident(&c.name))).collect();
            let fk_text: Vec<String> = fk.child_columns.iter().map(|c| format!("c.{}::text", quote_ident(c))).collect();
            let not_null: Vec<String> =
                fk.child_columns.iter().map(|c| format!("c.{} IS NOT NULL", quote_ident(c))).collect();
            let matches: Vec<String> = fk
                .child_columns
                .iter()
                .zip(&fk.parent_columns)
                .map(|(c, p)| format!("p.{} = c.{}", quote_ident(p), quote_ident(c)))
                .collect();
            let sql = format!(
                "SELECT to_jsonb(c)::text, ARRAY[{}], ARRAY[{}] FROM {} c
                 WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {}) LIMIT {PER_KEY}",
                key_text.join(", "),
                fk_text.join(", "),
                fk.child.quoted(),
                not_null.join(" AND "),
                fk.parent.quoted(),
                matches.join(" AND ")
            );
            let rows =
                node.client.query(&sql, &[]).await.on_db(node.id, || format!("looking for orphans in {}", fk.child))?;
            for r in rows {
                let key: Vec<String> = r.get(1);
                if found.iter().any(|o| o.table == fk.child && o.key == key) {
                    continue;
                }
                let row = RawValue::from_string(r.get::<_, String>(0)).ok();
                found.push(Orphan {
                    db: node.id,
                    table: fk.child.clone(),
                    key,
                    row,
                    parent: fk.parent.clone(),
                    parent_key: r.get(2),
                });
            }
        }
    }
    if !found.is_empty() {
        let conflicts: Vec<_> = found.iter().map(|o| o.conflict(plan.name())).collect();
        record::log_conflicts(plan, pg, &conflicts).await?;
    }
    Ok(found)
}

/// The foreign keys between replicated tables on one database.
async fn foreign_keys(
    plan: &SyncPlan,
    client: &tokio_postgres::Client,
    db: DbId,
) -> Result<Vec<ForeignKey>, ReplicaError> {
    let rows = client
        .query(
            "SELECT cn.nspname::text, cc.relname::text, pn.nspname::text, pc.relname::text,
                    (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
                    (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord)
                       JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n)
             FROM pg_constraint c
             JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
             JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE c.contype = 'f'",
            &[],
        )
        .await
        .on_db(db, || "reading the foreign keys".into())?;
    let replicated = |t: &TableName| plan.tables.iter().any(|table| table.name == *t);
    Ok(rows
        .iter()
        .map(|r| ForeignKey {
            child: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            parent: TableName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
            child_columns: r.get(4),
            parent_columns: r.get(5),
        })
        .filter(|fk| replicated(&fk.child) && replicated(&fk.parent))
        .collect())
}
