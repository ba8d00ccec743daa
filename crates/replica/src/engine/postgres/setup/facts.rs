//! What setup reads of a site before deciding anything: version, commit
//! timestamps, the role's privileges, the tables there with their rows, and
//! whether the site was set up before.

use super::super::catalog::{read_catalog, SKIPPED_SCHEMAS};
use crate::error::{ReplicaError, StatementContext};
use crate::setup::checks::{Facts, TableAccess, ROWS_SHOWN};
use dugong_core::{DbId, SyncName, TableName};
use tokio_postgres::Client;

/// The table that records, on each site, that setup set it up for a sync.
pub(crate) const SETUP_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS dugong.setup (
    sync       text PRIMARY KEY,
    origin     text NOT NULL,
    tables     int,
    rows       bigint,
    set_up_at  timestamptz NOT NULL DEFAULT now()
)";

/// Reads everything setup judges of database `id`.
pub(crate) async fn read(client: &Client, id: DbId, sync: &SyncName) -> Result<Facts, ReplicaError> {
    let ctx = || "reading the server's settings and the role's privileges".to_string();
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,
                    current_setting('track_commit_timestamp')::bool, current_user::text, current_database()::text,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    has_database_privilege(current_database(), 'CREATE')",
            &[],
        )
        .await
        .on_db(id, ctx)?;
    let replica_role = match client.batch_execute("BEGIN; SET LOCAL session_replication_role = replica; ROLLBACK").await
    {
        Ok(()) => true,
        Err(e) if e.code().map(|c| c.code()) == Some("42501") => {
            let _ = client.batch_execute("ROLLBACK").await;
            false
        }
        Err(e) => return Err(e).on_db(id, ctx),
    };
    let catalog = read_catalog(client, id).await?;
    let access = read_access(client, id).await?;
    let mut with_rows = Vec::new();
    for a in access.iter().filter(|a| a.select) {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM (SELECT FROM {} LIMIT {ROWS_SHOWN}) s", a.name.quoted()), &[])
            .await
            .on_db(id, || format!("looking into {}", a.name))?
            .get(0);
        if n > 0 {
            with_rows.push((a.name.clone(), n));
        }
    }
    let ctx = || "reading the setup record".to_string();
    let recorded: bool =
        client.query_one("SELECT to_regclass('dugong.setup') IS NOT NULL", &[]).await.on_db(id, ctx)?.get(0);
    let set_up_from = match recorded {
        true => client
            .query_opt("SELECT origin FROM dugong.setup WHERE sync = $1", &[&sync.as_str()])
            .await
            .on_db(id, ctx)?
            .map(|r| r.get(0)),
        false => None,
    };
    Ok(Facts {
        id,
        version: row.get(0),
        version_num: row.get(1),
        commit_timestamps: row.get(2),
        role: row.get(3),
        database: row.get(4),
        superuser: row.get::<_, Option<bool>>(5).unwrap_or(false),
        can_create: row.get(6),
        replica_role,
        catalog,
        access,
        with_rows,
        set_up_from,
    })
}

/// The role's privileges on every table setup would touch.
async fn read_access(client: &Client, id: DbId) -> Result<Vec<TableAccess>, ReplicaError> {
    let skipped: Vec<String> = SKIPPED_SCHEMAS.iter().map(|s| s.to_string()).collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                    has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'TRIGGER'),
                    has_table_privilege(c.oid, 'INSERT'), has_table_privilege(c.oid, 'DELETE')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u') AND NOT c.relispartition
               AND n.nspname <> ALL($1::text[]) AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1, 2",
            &[&skipped],
        )
        .await
        .on_db(id, || "reading the role's table privileges".into())?;
    Ok(rows
        .into_iter()
        .map(|r| TableAccess {
            name: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            select: r.get(2),
            trigger: r.get(3),
            insert: r.get(4),
            delete: r.get(5),
        })
        .collect())
}
