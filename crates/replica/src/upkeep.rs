//! Keeping the change logs small: purging the change rows every sync has
//! shipped, and vacuuming the logs so polls stop scanning dead rows.
//!
//! A purge after a run that shipped a few changes is cheap and goes with the
//! cursor's advance. After a backlog it is not: deleting 200,000 change rows
//! and vacuuming takes a quarter of a second, which the next burst of changes
//! would wait for. That upkeep runs beside the runs, on a connection of its
//! own, while runs skip their own purge until it has finished.

use crate::prepare::Node;
use dugong_config::Database;
use std::time::Instant;
use tokio::task::JoinHandle;

/// Change rows shipped since a source's change logs were last vacuumed, beyond
/// which they are vacuumed once the source has caught up...
pub(crate) const VACUUM_AFTER_ROWS: u64 = 20_000;
/// ...or, during a long backlog, anyway.
pub(crate) const VACUUM_DURING_BACKLOG: u64 = 500_000;

/// A source's background upkeep, at most one at a time.
#[derive(Debug, Default)]
pub struct Upkeep {
    task: Option<JoinHandle<()>>,
}

impl Upkeep {
    /// An upkeep task is still running: its purge holds the rows it deletes, so
    /// a run must not purge meanwhile (it would wait for them).
    pub fn busy(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until the running upkeep, if any, has finished.
    pub async fn finish(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Starts purging (when `purge`) and vacuuming `node`'s change logs in the
/// background, unless an upkeep is already running. Best effort: a failure
/// only costs speed, and the next caught-up run purges what is left.
pub(crate) fn start(node: &mut Node, purge: bool) {
    if node.upkeep.busy() {
        return;
    }
    let purge_sql = purge.then(|| purge_sql(node));
    let vacuum_sql = vacuum_sql(node);
    let database: Database = node.database.clone();
    let db = node.id;
    node.shipped_since_vacuum = 0;
    if purge {
        node.purge_due = false;
    }
    node.upkeep.task = Some(tokio::spawn(async move {
        let clock = Instant::now();
        let client = match crate::engine::postgres::connect(&database, "dugong replicate (upkeep)").await {
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
            tracing::debug!(db = %db, ms = clock.elapsed().as_millis() as u64, "purged the change logs after a backlog");
        }
        match client.batch_execute(&vacuum_sql).await {
            Ok(()) => tracing::debug!(db = %db, ms = clock.elapsed().as_millis() as u64, "vacuumed the change logs"),
            Err(e) => tracing::debug!(db = %db, error = %crate::describe_pg(&e), "could not vacuum the change logs"),
        }
    }));
}

/// Deletes the change rows every configured sync has shipped. A change older
/// than every cursor's xmin is shipped by all: one comparison decides nearly
/// every row, and only the rest pay for checking each cursor (which halves the
/// purge after a backlog of 200,000 changes).
pub(crate) fn purge_sql(node: &Node) -> String {
    let shipped_by_all = "d.dugong_txid < (SELECT min(pg_snapshot_xmin(c.snapshot)) FROM dugong.cursor c) \
         OR NOT EXISTS (SELECT 1 FROM dugong.cursor c WHERE NOT pg_visible_in_snapshot(d.dugong_txid, c.snapshot))";
    let mut sql = String::new();
    for c in node.captures.values() {
        sql.push_str(&format!("DELETE FROM {} d WHERE {shipped_by_all};\n", c.delta));
    }
    sql.push_str(&format!("DELETE FROM dugong.truncate_log d WHERE {shipped_by_all};\n"));
    sql
}

/// Vacuums the change logs: after a purge they are mostly dead rows that every
/// poll would scan until autovacuum came by, and the emptied pages go back.
fn vacuum_sql(node: &Node) -> String {
    let mut tables: Vec<&str> = node.captures.values().map(|c| c.delta.as_str()).collect();
    tables.push("dugong.truncate_log");
    format!("VACUUM {}", tables.join(", "))
}
