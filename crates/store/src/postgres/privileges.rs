//! The table privileges a server needs, checked at start so that a missing
//! GRANT stops the server with a message naming it instead of failing the
//! first request that needs it.

use super::PgStore;
use crate::error::{from_pg, StoreError};

/// Every table the server touches and what it does there.
const NEEDED: &[(&str, &str)] = &[
    ("dugong_app.apps", "SELECT, INSERT, UPDATE, DELETE"),
    ("dugong_app.flows", "SELECT, INSERT, UPDATE, DELETE"),
    ("dugong_app.settings", "SELECT, INSERT, UPDATE, DELETE"),
    ("dugong_app.contexts", "SELECT, INSERT, UPDATE, DELETE"),
    ("dugong_app.events", "SELECT, INSERT"),
    ("dugong_app.console_users", "SELECT, INSERT, UPDATE, DELETE"),
    ("dugong_app.audit_log", "SELECT, INSERT"),
    ("dugong_app.history", "SELECT, INSERT"),
    ("dugong_local.schema_migrations", "SELECT"),
    // `SELECT … FOR UPDATE` locks the feed's row, which needs UPDATE.
    ("dugong_local.feed", "SELECT, UPDATE"),
    ("dugong_local.change", "SELECT, UPDATE, DELETE"),
    ("dugong_local.console_sessions", "SELECT, INSERT, DELETE"),
];

impl PgStore {
    /// Fails with [`StoreError::MissingPrivileges`] naming every grant the
    /// connected role lacks.
    pub(crate) async fn check_privileges(&self) -> Result<(), StoreError> {
        let ctx = "checking the role's privileges";
        let conn = self.conn().await?;
        let mut missing = Vec::new();
        let role: String = conn.query_one("SELECT current_user::text", &[]).await.map_err(|e| from_pg(ctx, &e))?.get(0);
        for schema in ["dugong_app", "dugong_local"] {
            let row = conn
                .query_one("SELECT has_schema_privilege($1, 'USAGE')", &[&schema])
                .await
                .map_err(|e| from_pg(ctx, &e))?;
            if !row.get::<_, bool>(0) {
                missing.push(format!("GRANT USAGE ON SCHEMA {schema} TO {role}"));
            }
        }
        for (table, privileges) in NEEDED {
            for privilege in privileges.split(", ") {
                let row = conn
                    .query_one("SELECT has_table_privilege($1, $2)", &[table, &privilege])
                    .await
                    .map_err(|e| from_pg(ctx, &e))?;
                if !row.get::<_, bool>(0) {
                    missing.push(format!("GRANT {privilege} ON {table} TO {role}"));
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::MissingPrivileges { role, missing })
        }
    }
}
