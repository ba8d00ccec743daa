//! Schema steps in SQLite, recorded in `dugong_local_schema_migrations`.

use rusqlite::TransactionBehavior;

use super::SqliteStore;
use crate::error::{from_sqlite, StoreError};
use crate::migrate::{applied_by, latest, pending};
use crate::model::Micros;

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS dugong_local_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    applied_by TEXT NOT NULL
)";

impl SqliteStore {
    pub(crate) async fn migrate(&self) -> Result<i64, StoreError> {
        self.run(|c, _| {
            let ctx = "migrating the schema";
            // IMMEDIATE: the write lock first, so two processes can't both migrate.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| from_sqlite(ctx, &e))?;
            tx.execute_batch(BOOKKEEPING).map_err(|e| from_sqlite(ctx, &e))?;
            let current: i64 = tx
                .query_row("SELECT coalesce(max(version), 0) FROM dugong_local_schema_migrations", [], |r| r.get(0))
                .map_err(|e| from_sqlite(ctx, &e))?;
            let steps = pending(current)?;
            for step in steps {
                tracing::info!(version = step.version, name = step.name, "applying schema step");
                tx.execute_batch(step.sqlite).map_err(|e| {
                    from_sqlite(&format!("applying schema step {} ({})", step.version, step.name), &e)
                })?;
                tx.execute(
                    "INSERT INTO dugong_local_schema_migrations (version, name, applied_at, applied_by) VALUES (?1, ?2, ?3, ?4)",
                    (step.version, step.name, Micros::now().0, applied_by()),
                )
                .map_err(|e| from_sqlite(ctx, &e))?;
            }
            tx.commit().map_err(|e| from_sqlite(ctx, &e))?;
            Ok(if steps.is_empty() { current } else { latest() })
        })
        .await
    }

    pub(crate) async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|c, _| {
            c.query_row("SELECT coalesce(max(version), 0) FROM dugong_local_schema_migrations", [], |r| r.get(0))
                .map_err(|e| from_sqlite("reading the schema version", &e))
        })
        .await
    }
}
