//! Keeping the change logs small: purging the change rows every sync has
//! shipped, and vacuuming the logs so polls stop scanning dead rows.
//!
//! A purge after a run that shipped a few changes is cheap and goes with the
//! cursor's advance. After bigger runs, and above all after a backlog, it is
//! not: deleting 200,000 change rows and vacuuming them takes a quarter of a
//! second of the source's CPU, which the next burst of changes needs. Reads
//! find their window through the change log's transaction-id index, so shipped
//! rows cost little while they wait: that purge waits for a lull (or until it
//! is overdue), then runs beside the runs, on a connection of its own, while
//! runs skip their own purges. A replicator that starts and finds many shipped
//! rows still waiting (its predecessor stopped before the lull) leaves them
//! for a lull the same way.

use crate::capture::Capture;
use crate::error::{ReplicaError, StatementContext};
use crate::prepare::Node;
use crate::snapshot::Snapshot;
use dugong_config::Database;
use dugong_core::TableName;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Change rows shipped since a source's change logs were last vacuumed, beyond
/// which they are vacuumed in a lull...
const VACUUM_AFTER_ROWS: u64 = 20_000;
/// ...or, during a long backlog, anyway.
const VACUUM_DURING_BACKLOG: u64 = 500_000;

/// The most change rows a run purges along with its cursor's advance.
const INLINE_PURGE_ROWS: u64 = 2_000;
/// How long a source must have shipped nothing before a waiting purge starts...
const QUIET_BEFORE_PURGE: Duration = Duration::from_secs(1);
/// ...unless it has waited this long...
const PURGE_WAITS_AT_MOST: Duration = Duration::from_secs(30);
/// ...or this many shipped change rows wait.
const PURGE_ANYWAY_ROWS: u64 = 1_000_000;

/// When the change rows a run shipped are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purge {
    /// In the transaction that advances the cursor: cheap, the log is small.
    Inline,
    /// Now, beside the runs, on a connection of its own: it is overdue.
    Background,
    /// In a lull: the run was big or bounded, or earlier rows already wait.
    Later,
}

/// A source's change-log upkeep: what waits to be done, and the background
/// task doing it (at most one at a time).
#[derive(Debug, Default)]
pub struct Upkeep {
    task: Option<JoinHandle<()>>,
    /// Since when shipped change rows wait for a purge.
    due_since: Option<Instant>,
    /// How many wait.
    unpurged: u64,
    /// When this source last shipped changes.
    last_shipped: Option<Instant>,
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
        if self.busy() {
            Purge::Later
        } else if self.due_since.is_none() && caught_up && shipped <= INLINE_PURGE_ROWS {
            Purge::Inline
        } else if self.overdue(shipped) {
            Purge::Background
        } else {
            Purge::Later
        }
    }

    fn overdue(&self, more: u64) -> bool {
        self.unpurged + more >= PURGE_ANYWAY_ROWS || self.due_since.is_some_and(|t| t.elapsed() >= PURGE_WAITS_AT_MOST)
    }

    fn quiet(&self) -> bool {
        self.last_shipped.is_none_or(|t| t.elapsed() >= QUIET_BEFORE_PURGE)
    }

    /// The upkeep of a source whose replicator starts while `waiting` change
    /// rows it had shipped are not purged yet (it stopped before the lull):
    /// more than a run purges inline wait for a lull again, instead of going
    /// with the first small run's cursor advance and holding it up.
    pub(crate) fn resumed(waiting: u64) -> Upkeep {
        if waiting <= INLINE_PURGE_ROWS {
            return Upkeep::default();
        }
        Upkeep { due_since: Some(Instant::now()), unpurged: waiting, backlog: true, ..Default::default() }
    }
}

/// How many change rows that `cursor` has shipped wait in the change logs of
/// `captures`, counted only up to just past what a run purges inline.
pub(crate) async fn shipped_waiting(
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
                "(SELECT 1 FROM {} WHERE dugong_txid < pg_snapshot_xmin($1::text::pg_snapshot) LIMIT {})",
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
    let upkeep = &mut node.upkeep;
    upkeep.shipped_since_vacuum += shipped;
    upkeep.backlog |= !caught_up;
    if shipped > 0 {
        upkeep.last_shipped = Some(Instant::now());
    }
    match purge {
        Purge::Inline => {}
        Purge::Background => {
            upkeep.unpurged += shipped;
            start(node, true);
        }
        Purge::Later => {
            upkeep.unpurged += shipped;
            upkeep.due_since.get_or_insert_with(Instant::now);
            if upkeep.shipped_since_vacuum >= VACUUM_DURING_BACKLOG {
                start(node, false);
            }
        }
    }
}

/// With nothing pending: starts, in a lull, what the last runs left to do.
pub(crate) fn when_idle(node: &mut Node) {
    let upkeep = &node.upkeep;
    let due = upkeep.due_since.is_some();
    if due && (upkeep.quiet() || upkeep.overdue(0)) {
        start(node, true);
    } else if !due && upkeep.shipped_since_vacuum >= VACUUM_AFTER_ROWS && upkeep.quiet() {
        start(node, false);
    }
}

/// Before the replicator stops: starts what waits, lull or not, and waits for
/// it (`--once` leaves the change logs as a daemon would, in time).
pub(crate) async fn finish(node: &mut Node) {
    node.upkeep.finish().await;
    if node.upkeep.due_since.is_some() {
        start(node, true);
        node.upkeep.finish().await;
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
        upkeep.due_since = None;
        upkeep.unpurged = 0;
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
    fn small_runs_purge_inline_and_the_rest_waits_for_a_lull_unless_overdue() {
        let upkeep = Upkeep::default();
        assert_eq!(upkeep.purge_after(true, 10), Purge::Inline);
        assert_eq!(upkeep.purge_after(true, INLINE_PURGE_ROWS + 1), Purge::Later);
        assert_eq!(upkeep.purge_after(false, 10), Purge::Later, "a backlog is purged once shipped");
        assert_eq!(upkeep.purge_after(false, PURGE_ANYWAY_ROWS), Purge::Background, "too many rows wait");
        let waiting = Upkeep { due_since: Some(Instant::now()), unpurged: 200_000, ..Default::default() };
        assert_eq!(waiting.purge_after(true, 10), Purge::Later, "rows already wait: no inline purge of them all");
        assert!(!waiting.overdue(0));
        let long_waiting =
            Upkeep { due_since: Instant::now().checked_sub(PURGE_WAITS_AT_MOST), unpurged: 10, ..Default::default() };
        assert_eq!(long_waiting.purge_after(true, 10), Purge::Background, "waited too long for a lull");
    }

    #[test]
    fn a_restart_with_many_shipped_rows_waiting_leaves_them_for_a_lull() {
        assert_eq!(Upkeep::resumed(0).purge_after(true, 10), Purge::Inline);
        assert_eq!(Upkeep::resumed(INLINE_PURGE_ROWS).purge_after(true, 10), Purge::Inline);
        let resumed = Upkeep::resumed(200_000);
        assert_eq!(resumed.purge_after(true, 10), Purge::Later, "not with the first small run");
        assert!(resumed.backlog, "their pages are given back after the purge");
    }

    #[test]
    fn a_lull_is_a_second_without_shipping() {
        assert!(Upkeep::default().quiet());
        let busy = Upkeep { last_shipped: Some(Instant::now()), ..Default::default() };
        assert!(!busy.quiet());
        let quiet = Upkeep { last_shipped: Instant::now().checked_sub(QUIET_BEFORE_PURGE), ..Default::default() };
        assert!(quiet.quiet());
    }
}
