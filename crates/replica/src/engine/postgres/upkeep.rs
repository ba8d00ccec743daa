//! Carrying out the change-log upkeep policy (`crate::upkeep`) on PostgreSQL:
//! purges with the cursor's advance or on a connection of their own beside
//! the runs, and vacuums of the change logs.

use super::capture::Capture;
use super::connect;
use super::node::Node;
use super::snapshot::Snapshot;
use crate::error::{ReplicaError, StatementContext};
use crate::upkeep::{Purge, INLINE_PURGE_ROWS};
use dugong_config::Database;
use dugong_core::{quote_literal, TableName};
use std::collections::HashMap;
use std::time::Instant;

/// How many change rows that `cursor` has shipped wait in the change logs of
/// `captures`, counted only up to just past what a run purges inline. Shipped
/// means visible in the cursor, not merely below its xmin: transaction ids
/// are the whole server's, so a long transaction in another database holds the
/// cursor's xmin back, and rows shipped above it would go uncounted and be
/// purged by the first small run after all.
pub async fn shipped_waiting(
    client: &tokio_postgres::Client,
    db: dugong_core::DbId,
    captures: &HashMap<TableName, Capture>,
    cursor: &Snapshot,
) -> Result<u64, ReplicaError> {
    if captures.is_empty() {
        return Ok(0);
    }
    let parts: Vec<String> = captures
        .values()
        .map(|c| {
            format!(
                "(SELECT 1 FROM {} WHERE dugong_txid < pg_snapshot_xmax($1::text::pg_snapshot)
                   AND pg_visible_in_snapshot(dugong_txid, $1::text::pg_snapshot) LIMIT {})",
                c.delta,
                INLINE_PURGE_ROWS + 1
            )
        })
        .collect();
    let sql = format!("SELECT count(*) FROM ({}) s", parts.join(" UNION ALL "));
    let row = client
        .query_typed(&sql, &[(&cursor.to_string(), tokio_postgres::types::Type::TEXT)])
        .await
        .on_db(db, || "counting shipped change rows not purged yet".into())?;
    Ok(row.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
}

/// Records a run's advance on `node` and starts the upkeep it calls for.
pub(crate) fn after_run(node: &mut Node, purge: Purge, caught_up: bool, shipped: u64) {
    if let Some(purge) = node.upkeep.after_run(purge, caught_up, shipped) {
        start(node, purge);
    }
}

/// With nothing pending: starts, in a lull, what the last runs left to do.
pub(crate) fn when_idle(node: &mut Node) {
    if let Some(purge) = node.upkeep.when_idle() {
        start(node, purge);
    }
}

/// Before the replicator stops: starts what waits, lull or not, and waits for
/// it (`--once` leaves the change logs as a daemon would, in time).
pub(crate) async fn finish(node: &mut Node) {
    if let Some(task) = node.upkeep_task.take() {
        let _ = task.await;
    }
    if node.upkeep.due() {
        start(node, true);
        if let Some(task) = node.upkeep_task.take() {
            let _ = task.await;
        }
    }
}

/// Starts purging (when `purge`) and vacuuming `node`'s change logs in the
/// background, unless an upkeep is already running. Best effort: a failure
/// only costs speed, and the next caught-up run purges what is left.
fn start(node: &mut Node, purge: bool) {
    if node.upkeep_busy() {
        return;
    }
    let purge_sql = purge.then(|| purge_sql(node));
    let give_back = node.upkeep.start(purge);
    let vacuum_sql = vacuum_sql(node, give_back);
    let left_sql = give_back.then(|| left_behind_sql(node));
    let database: Database = node.database.clone();
    let db = node.id;
    node.upkeep_task = Some(tokio::spawn(async move {
        let clock = Instant::now();
        let client = match connect::connect(&database, "dugong replicate (upkeep)").await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(db = %db, error = %e, "could not connect to purge the change logs");
                return;
            }
        };
        if let Some(sql) = purge_sql {
            // One implicit transaction: the statements of a simple query.
            if let Err(e) = client.batch_execute(&sql).await {
                tracing::debug!(db = %db, error = %crate::describe_pg(&e), "could not purge the change logs");
                return;
            }
            tracing::debug!(db = %db, ms = clock.elapsed().as_millis() as u64, "purged the change logs");
        }
        if let Err(e) = client.batch_execute(&vacuum_sql).await {
            tracing::debug!(db = %db, error = %crate::describe_pg(&e), "could not vacuum the change logs");
            return;
        }
        tracing::debug!(db = %db, ms = clock.elapsed().as_millis() as u64, "vacuumed the change logs");
        if let Some(sql) = left_sql {
            give_back_what_is_left(&client, db, &sql).await;
        }
    }));
}

/// How many more times a give-back vacuum goes over a change log it emptied
/// that still holds pages.
const GIVE_BACK_RETRIES: usize = 3;

/// Vacuums again the change logs a give-back vacuum emptied but could not
/// shrink to nothing. A vacuum does not wait for a page a poll has pinned at
/// that moment: it leaves that page's dead rows, and the truncation stops
/// there, keeping every page below it. Going over the few pages left, once
/// the poll has moved on, gives them back.
async fn give_back_what_is_left(client: &tokio_postgres::Client, db: dugong_core::DbId, left_sql: &str) {
    for _ in 0..GIVE_BACK_RETRIES {
        let tables: Vec<String> = match client.query(left_sql, &[]).await {
            Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
            Err(e) => {
                tracing::debug!(db = %db, error = %crate::describe_pg(&e), "could not size the change logs");
                return;
            }
        };
        if tables.is_empty() {
            return;
        }
        if let Err(e) = client.batch_execute(&format!("VACUUM {}", tables.join(", "))).await {
            tracing::debug!(db = %db, error = %crate::describe_pg(&e), "could not vacuum the change logs again");
            return;
        }
        tracing::debug!(db = %db, logs = tables.len(), "vacuumed again the change logs left with pages");
    }
}

/// Deletes the change rows every configured sync has shipped. A change older
/// than every cursor's xmin is shipped by all: one comparison decides nearly
/// every row, and only the rest pay for checking each cursor (which halves the
/// purge after a backlog of 200,000 changes).
///
/// A table some sync holds is never purged: its change rows are what ships
/// when the hold is lifted.
pub(crate) fn purge_sql(node: &Node) -> String {
    purge_statements(node).iter().map(|sql| format!("{sql};\n")).collect()
}

/// How many statements [`purge_statements`] makes: one per change log, and
/// the truncates'.
pub(crate) fn purge_count(node: &Node) -> usize {
    node.captures.len() + 1
}

/// The statements of [`purge_sql`], one per change log and the truncates'.
pub(crate) fn purge_statements(node: &Node) -> Vec<String> {
    let shipped_by_all = "(d.dugong_txid < (SELECT min(pg_snapshot_xmin(c.snapshot)) FROM dugong.cursor c) \
         OR NOT EXISTS (SELECT 1 FROM dugong.cursor c WHERE NOT pg_visible_in_snapshot(d.dugong_txid, c.snapshot)))";
    let mut statements: Vec<String> = node
        .captures
        .iter()
        .map(|(table, c)| {
            format!(
                "DELETE FROM {} d WHERE {shipped_by_all}
               AND NOT EXISTS (SELECT 1 FROM dugong.held h WHERE h.table_schema = {} AND h.table_name = {})",
                c.delta,
                quote_literal(&table.schema),
                quote_literal(&table.name)
            )
        })
        .collect();
    statements.push(format!(
        "DELETE FROM dugong.truncate_log d WHERE {shipped_by_all}
           AND NOT EXISTS (SELECT 1 FROM dugong.held h JOIN dugong.captured t
                             ON t.table_schema = h.table_schema AND t.table_name = h.table_name
                           WHERE t.id = d.table_id)"
    ));
    statements
}

/// The change logs (as names to vacuum) that hold pages but no rows: what a
/// give-back vacuum left behind.
fn left_behind_sql(node: &Node) -> String {
    change_logs(node)
        .iter()
        .map(|t| {
            format!(
                "SELECT {} WHERE pg_relation_size({}::regclass) > 0 AND NOT EXISTS (SELECT 1 FROM {t})",
                quote_literal(t),
                quote_literal(t)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Vacuums the change logs: after a purge they are mostly dead rows that every
/// poll would scan until autovacuum came by. With `give_back`, the emptied
/// pages at the end go back to the system.
fn vacuum_sql(node: &Node, give_back: bool) -> String {
    let options = if give_back { "" } else { "(TRUNCATE false) " };
    format!("VACUUM {options}{}", change_logs(node).join(", "))
}

/// `node`'s change logs, as names to vacuum: one per captured table, and the
/// truncates'.
fn change_logs(node: &Node) -> Vec<&str> {
    let mut tables: Vec<&str> = node.captures.values().map(|c| c.delta.as_str()).collect();
    tables.push("dugong.truncate_log");
    tables
}
