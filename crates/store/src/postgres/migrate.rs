//! Schema steps on PostgreSQL, recorded in `dugong_local.schema_migrations`.

use super::PgStore;
use crate::error::{from_pg, StoreError};
use crate::migrate::{applied_by, latest, pending};

/// Serializes migrations of servers starting together (a transaction-scoped
/// advisory lock; the replicator's install lock is another number).
const MIGRATE_LOCK: i64 = 0x6475_676f_6e73; // "dugons"

const BOOKKEEPING: &str = "
CREATE SCHEMA IF NOT EXISTS dugong_local;
COMMENT ON SCHEMA dugong_local IS 'Dugong: state of this site only (change feed, migrations); never replicated.';
CREATE TABLE IF NOT EXISTS dugong_local.schema_migrations (
    version    int8 PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL
)";

impl PgStore {
    pub(crate) async fn migrate(&self) -> Result<i64, StoreError> {
        let ctx = "migrating the schema";
        let mut conn = self.conn().await?;
        // A schema already current needs no DDL: a role with only the data
        // privileges (not the schema's owner) can run a migrated database.
        let exists: bool = conn
            .query_one("SELECT to_regclass('dugong_local.schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?
            .get(0);
        let current = match exists {
            true => Some(
                conn.query_one("SELECT coalesce(max(version), 0) FROM dugong_local.schema_migrations", &[])
                    .await
                    .map_err(|e| from_pg(ctx, &e))?
                    .get::<_, i64>(0),
            ),
            false => None,
        };
        if current == Some(latest()) {
            return Ok(latest());
        }
        let tx = conn.transaction().await.map_err(|e| from_pg(ctx, &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await.map_err(|e| from_pg(ctx, &e))?;
        tx.batch_execute(BOOKKEEPING).await.map_err(|e| from_pg("creating dugong_local.schema_migrations", &e))?;
        let current: i64 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM dugong_local.schema_migrations", &[])
            .await
            .map_err(|e| from_pg(ctx, &e))?
            .get(0);
        let steps = pending(current)?;
        for step in steps {
            tracing::info!(version = step.version, name = step.name, db = %self.display, "applying schema step");
            tx.batch_execute(step.postgres)
                .await
                .map_err(|e| from_pg(&format!("applying schema step {} ({})", step.version, step.name), &e))?;
            tx.execute(
                "INSERT INTO dugong_local.schema_migrations (version, name, applied_by) VALUES ($1, $2, $3)",
                &[&step.version, &step.name, &applied_by()],
            )
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        }
        tx.commit().await.map_err(|e| from_pg(ctx, &e))?;
        Ok(if steps.is_empty() { current } else { latest() })
    }

    pub(crate) async fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one("SELECT coalesce(max(version), 0) FROM dugong_local.schema_migrations", &[])
            .await
            .map_err(|e| from_pg("reading the schema version", &e))?;
        Ok(row.get(0))
    }
}
