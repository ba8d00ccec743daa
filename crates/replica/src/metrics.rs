//! Metric names of the replicator, in one place. Labels stay low-cardinality:
//! `sync`, `db`, `result`, `table` (the replicated tables of a sync).

pub const ROWS_APPLIED: &str = "dugong_replica_rows_applied_total";
pub const ROWS_DELETED: &str = "dugong_replica_rows_deleted_total";
pub const RUNS: &str = "dugong_replica_runs_total";
pub const CONFLICTS: &str = "dugong_replica_conflicts_total";
pub const LAG_SECONDS: &str = "dugong_replica_lag_seconds";
pub const PENDING_ROWS: &str = "dugong_replica_pending_rows";
pub const CHANGE_LOG_BYTES: &str = "dugong_replica_change_log_bytes";
pub const CHANGE_LOG_ROWS: &str = "dugong_replica_change_log_rows";
pub const BACKLOG_ALERT_BYTES: &str = "dugong_replica_backlog_alert_bytes";
pub const HEARTBEAT_SECONDS: &str = "dugong_replica_heartbeat_timestamp_seconds";
pub const ACTIVE: &str = "dugong_replica_active";
pub const LAST_GOOD_SECONDS: &str = "dugong_replica_last_good_timestamp_seconds";
pub const RUN_DURATION_SECONDS: &str = "dugong_replica_run_duration_seconds";
pub const DATABASE_UP: &str = "dugong_replica_database_up";
pub const SYNC_GOOD: &str = "dugong_replica_sync_good";
/// Rows the background consistency check knows to differ between the
/// databases of a sync (`consistency`), per table.
pub const ROWS_DIFFERING: &str = "dugong_replica_rows_differing";
/// Rows the background consistency check compared, per sync.
pub const ROWS_CHECKED: &str = "dugong_replica_consistency_rows_checked_total";

/// Runs sent across a WAN without waiting for their commits there, not
/// confirmed yet.
pub const RUNS_IN_FLIGHT: &str = "dugong_replica_runs_in_flight";
/// Runs in flight that failed on their far database, after which everything
/// since the last confirmed run was shipped again.
pub const RUNS_SHIPPED_AGAIN: &str = "dugong_replica_runs_shipped_again_total";

/// 1 while the doorbell of a source database rings (a logical-decoding
/// stream says when its change logs were written), 0 while the replicator
/// polls them on its own.
pub const DOORBELL: &str = "dugong_replica_doorbell";

/// Buckets for run durations: a caught-up run takes milliseconds, a backlog
/// batch up to seconds.
pub const RUN_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    metrics::describe_counter!(ROWS_APPLIED, "Rows copied from a source to the other databases of a sync");
    metrics::describe_counter!(ROWS_DELETED, "Rows deleted on databases written by a sync (changed or deleted keys)");
    metrics::describe_counter!(RUNS, "Sync runs that moved data or failed, by result");
    metrics::describe_gauge!(
        RUNS_IN_FLIGHT,
        "Runs whose commits on a far database (across a WAN) were sent without waiting and are not confirmed yet"
    );
    metrics::describe_counter!(
        RUNS_SHIPPED_AGAIN,
        "Runs in flight that did not commit on their far database (written meanwhile, or the link dropped); everything since the last confirmed run was shipped again"
    );
    metrics::describe_counter!(CONFLICTS, "Conflicts decided (same key changed on several sources), by table");
    metrics::describe_gauge!(
        LAG_SECONDS,
        "Age of the oldest change not yet applied to the database (by commit time, else since it was first seen waiting); 0 only when nothing waits"
    );
    metrics::describe_gauge!(PENDING_ROWS, "Change rows of the sync's other databases not yet applied to the database");
    metrics::describe_gauge!(
        CHANGE_LOG_BYTES,
        "Size of the database's change logs: changes not yet delivered everywhere, and delivered ones awaiting a purge"
    );
    metrics::describe_gauge!(
        CHANGE_LOG_ROWS,
        "Change rows the database's change logs keep for the sync's database that has applied the least of them"
    );
    metrics::describe_gauge!(
        BACKLOG_ALERT_BYTES,
        "The sync's backlog_alert: change logs larger than this make it unhealthy (nothing is dropped)"
    );
    metrics::describe_gauge!(
        HEARTBEAT_SECONDS,
        "Unix time of the replicator's last heartbeat written to the sync's databases"
    );
    metrics::describe_gauge!(ACTIVE, "1 when this replicator runs the sync, 0 when it stands by for another");
    metrics::describe_gauge!(LAST_GOOD_SECONDS, "Unix time of the last good run");
    metrics::describe_histogram!(RUN_DURATION_SECONDS, "Duration of runs that moved data");
    metrics::describe_gauge!(DATABASE_UP, "1 when the replicator reaches the database, 0 when not");
    metrics::describe_gauge!(
        DOORBELL,
        "1 when the database's doorbell rings (commits that wrote its change logs wake the replicator at once), 0 when the replicator polls them (the log says why)"
    );
    metrics::describe_gauge!(SYNC_GOOD, "1 when the sync's last run was good, 0 when bad");
    metrics::describe_gauge!(
        ROWS_DIFFERING,
        "Rows known to differ between the sync's databases (found by the background consistency check, not explained by changes in flight); dugong repair settles them"
    );
    metrics::describe_counter!(
        ROWS_CHECKED,
        "Rows the background consistency check compared across the sync's databases"
    );
}
