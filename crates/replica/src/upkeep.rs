//! Keeping the change logs small: purging the change rows every sync has
//! shipped, and vacuuming the logs so polls stop scanning dead rows.
//!
//! A purge after a run that shipped a few changes is cheap and goes with the
//! cursor's advance. After a bigger run, and above all after a backlog, it is
//! not: deleting 200,000 change rows and vacuuming takes a quarter of a second,
//! which the next changes would wait for. That upkeep runs beside the runs, on
//! a connection of its own, while runs skip their own purge until it has
//! finished.

use crate::prepare::Node;
use dugong_config::Database;
use std::time::Instant;
use tokio::task::JoinHandle;

/// Change rows shipped since a source's change logs were last vacuumed, beyond
/// which they are vacuumed once the source has caught up...
pub(crate) const VACUUM_AFTER_ROWS: u64 = 20_000;
/// ...or, during a long backlog, anyway.
pub(crate) const VACUUM_DURING_BACKLOG: u64 = 500_000;

/// Change rows a caught-up run purges along with its cursor's advance; after
/// bigger runs the purge goes to the background.
pub(crate) const INLINE_PURGE_ROWS: u64 = 2_000;

/// When the change rows a run shipped are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purge {
    /// In the transaction that advances the cursor: cheap, the log is small.
    Inline,
    /// Beside the runs, on a connection of its own.
    Background,
    /// Not yet: the source has a backlog (a purge would scan all of it), or
    /// an upkeep is running. A later caught-up run starts it.
    Later,
}

/// A source's change-log upkeep: what waits to be done, and the background
/// task doing it (at most one at a time).
#[derive(Debug, Default)]
pub struct Upkeep {
    task: Option<JoinHandle<()>>,
    /// Shipped change rows wait to be purged.
    purge_due: bool,
    /// A backlog was shipped since the last vacuum: give its pages back.
    backlog: bool,
    /// Change rows shipped since the change logs were last vacuumed.
    shipped_since_vacuum: u64,
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

    /// How the rows shipped up to a run that shipped `shipped` change rows are
    /// purged, before its cursor advances.
    pub(crate) fn purge_after(&self, caught_up: bool, shipped: u64) -> Purge {
        if !caught_up || self.busy() {
            Purge::Later
        } else if self.purge_due || shipped > INLINE_PURGE_ROWS {
            Purge::Background
        } else {
            Purge::Inline
        }
    }
}

/// Records a run's advance on `node` and starts the upkeep it calls for.
pub(crate) fn after_run(node: &mut Node, purge: Purge, caught_up: bool, shipped: u64) {
    let upkeep = &mut node.upkeep;
    upkeep.shipped_since_vacuum += shipped;
    upkeep.backlog |= !caught_up;
    match purge {
        Purge::Inline => {}
        Purge::Background => start(node, true),
        Purge::Later => {
            upkeep.purge_due = true;
            if upkeep.shipped_since_vacuum >= VACUUM_DURING_BACKLOG {
                start(node, false);
            }
        }
    }
}

/// With nothing pending: starts what the last runs left to do.
pub(crate) fn when_idle(node: &mut Node) {
    let upkeep = &node.upkeep;
    if upkeep.purge_due || upkeep.shipped_since_vacuum >= VACUUM_AFTER_ROWS {
        let purge = upkeep.purge_due;
        start(node, purge);
    }
}

/// Starts purging (when `purge`) and vacuuming `node`'s change logs in the
/// background, unless an upkeep is already running. Best effort: a failure
/// only costs speed, and the next caught-up run purges what is left.
fn start(node: &mut Node, purge: bool) {
    if node.upkeep.busy() {
        return;
    }
    let purge_sql = purge.then(|| purge_sql(node));
    // Giving emptied pages back to the system needs a moment's exclusive lock
    // on the change logs, which the application's writes also take: VACUUM
    // retries it for seconds while they write. Only a backlog leaves enough
    // behind to be worth it.
    let vacuum_sql = vacuum_sql(node, node.upkeep.backlog);
    let database: Database = node.database.clone();
    let db = node.id;
    let upkeep = &mut node.upkeep;
    upkeep.shipped_since_vacuum = 0;
    upkeep.backlog = false;
    if purge {
        upkeep.purge_due = false;
    }
    upkeep.task = Some(tokio::spawn(async move {
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
            tracing::debug!(db = %db, ms = clock.elapsed().as_millis() as u64, "purged the change logs");
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
/// poll would scan until autovacuum came by. With `give_back`, the emptied
/// pages at the end go back to the system.
fn vacuum_sql(node: &Node, give_back: bool) -> String {
    let mut tables: Vec<&str> = node.captures.values().map(|c| c.delta.as_str()).collect();
    tables.push("dugong.truncate_log");
    let options = if give_back { "" } else { "(TRUNCATE false) " };
    format!("VACUUM {options}{}", tables.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_purge_inline_big_ones_and_backlogs_in_the_background() {
        let upkeep = Upkeep::default();
        assert_eq!(upkeep.purge_after(true, 10), Purge::Inline);
        assert_eq!(upkeep.purge_after(true, INLINE_PURGE_ROWS + 1), Purge::Background);
        assert_eq!(upkeep.purge_after(false, 10), Purge::Later, "a backlog is purged once shipped");
        let after_backlog = Upkeep { purge_due: true, ..Default::default() };
        assert_eq!(after_backlog.purge_after(true, 10), Purge::Background);
    }
}
