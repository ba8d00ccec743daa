//! The tables of a PostgreSQL database as [`CatalogRow`]s, so choosing and
//! checking a sync's tables is the same code on every engine (`crate::plan`).
//! Schemas `dugong` (the replicator's bookkeeping), `dugong_local` (state that
//! never leaves its site), `bucardo` and the system's own are never replicated.
//! Unlogged tables replicate like any table (their triggers fire the same);
//! foreign tables and materialized views are listed so `tables: all` can say
//! why it leaves them out. Temporary tables live in `pg_temp_*` schemas.

use crate::error::{ReplicaError, StatementContext};
use crate::plan::tables::{CatalogRow, Column};
use crate::plan::{self, Selection};
use dugong_config::Sync;
use dugong_core::{DbId, TableName};
use futures_util::future::try_join_all;
use std::collections::HashMap;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// Schemas the replicator never replicates, even with `tables: all`.
pub const SKIPPED_SCHEMAS: &[&str] = &["pg_catalog", "information_schema", "dugong", "dugong_local", "bucardo"];

const CATALOG_SQL: &str = "
SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relispartition,
  coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
  coalesce((SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
  k.conname::text,
  (SELECT array_agg(a.attname::text ORDER BY array_position(k.conkey, a.attnum)) FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum = ANY(k.conkey)),
  coalesce((SELECT bool_and(t.oid < 16384 AND t.typtype = 'b' AND t.typsend::oid <> 0 AND t.typreceive::oid <> 0
                            AND t.typname !~ '^_?reg')
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'p'
WHERE c.relkind IN ('r', 'p', 'f', 'm') AND c.relpersistence IN ('p', 'u')
  AND n.nspname <> ALL($1::text[]) AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2";

pub(crate) async fn read_catalog(client: &Client, db: DbId) -> Result<Vec<CatalogRow>, ReplicaError> {
    let skipped: Vec<String> = SKIPPED_SCHEMAS.iter().map(|s| s.to_string()).collect();
    let rows = client
        .query_typed(CATALOG_SQL, &[(&skipped, Type::TEXT_ARRAY)])
        .await
        .on_db(db, || "reading the table catalog".into())?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let names: Vec<String> = row.get(4);
        let types: Vec<String> = row.get(5);
        let columns = names.into_iter().zip(types).map(|(name, type_sql)| Column { name, type_sql }).collect();
        let key = match (row.get::<_, Option<String>>(6), row.get::<_, Option<Vec<String>>>(7)) {
            (Some(name), Some(cols)) => Some((name, cols)),
            _ => None,
        };
        out.push(CatalogRow {
            name: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            kind: row.get(2),
            partition: row.get(3),
            columns,
            key,
            binary: row.get(8),
        });
    }
    Ok(out)
}

/// Reads the catalogs of a sync's databases at once (`clients` in the sync's
/// order; the first is the reference), and chooses and checks its tables.
pub async fn select(clients: &[(DbId, &Client)], sync: &Sync) -> Result<Selection, ReplicaError> {
    let catalogs =
        try_join_all(clients.iter().map(|(id, client)| async move { Ok((*id, read_catalog(client, *id).await?)) }))
            .await?;
    plan::select(&catalogs, sync)
}

/// The OIDs of the tables [`read_catalog`] lists, by name: read beside the
/// catalog (in the same round trip), before the sync's tables are chosen.
pub(crate) async fn read_oids(client: &Client, db: DbId) -> Result<HashMap<TableName, u32>, ReplicaError> {
    let rows = client
        .query_typed(
            "SELECT n.nspname::text, c.relname::text, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'f', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .on_db(db, || "reading the replicated tables' columns".into())?;
    Ok(rows
        .iter()
        .map(|r| (TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)), r.get::<_, u32>(2)))
        .collect())
}
