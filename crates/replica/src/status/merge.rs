//! Merging what each database said into one status per sync: the newest
//! stored state wins, counters take their maximum, and reachability, pending
//! changes and lag are kept per database.

use super::{DatabaseStatus, ReplicatorStatus, RunTimes, StandbyStatus, StatusReport, SyncStatus, STANDBY_SEEN};
use crate::engine::postgres::COMMIT_TIMESTAMP_ADVICE;
use crate::record::{DbRead, ReadError, Replicator, StateRow};
use chrono::{DateTime, Utc};
use dugong_config::Sync;
use dugong_core::DbId;
use std::time::Duration;

const MICROS: f64 = 1_000_000.0;

fn at(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn seconds(us: i64) -> f64 {
    us as f64 / MICROS
}

fn run_times(started: Option<i64>, ended: Option<i64>, now_us: i64) -> Option<RunTimes> {
    let ended = ended?;
    Some(RunTimes {
        started: started.map(at),
        ended: at(ended),
        seconds_ago: seconds(now_us - ended).max(0.0),
        duration_seconds: started.map(|s| seconds(ended - s).max(0.0)),
    })
}

/// Fills in what waits for database `target`: the changes of every other
/// source not yet delivered there, by what each source said.
fn incoming(sync: &Sync, target: DbId, reads: &[(DbId, Result<DbRead, ReadError>)], db: &mut DatabaseStatus) {
    let (mut rows, mut oldest_us) = (0i64, Some(0i64));
    let mut unknown = Vec::new();
    for (source, read) in reads.iter().filter(|(id, _)| *id != target && sync.sources.contains(id)) {
        let w = match read {
            Ok(r) => r.backlog.as_ref().and_then(|b| b.waiting.iter().find(|w| w.target == target)),
            Err(ReadError::Unreachable(_)) => {
                unknown.push(format!("{source} unreachable"));
                continue;
            }
            Err(ReadError::Failed(_)) => None,
        };
        let Some(w) = w else {
            unknown.push(format!("nothing recorded on {source}"));
            continue;
        };
        rows += w.rows;
        match (w.oldest_age_us, oldest_us) {
            (Some(age), Some(o)) => oldest_us = Some(o.max(age)),
            (None, _) => {
                oldest_us = None;
                unknown.push(format!("track_commit_timestamp is off on {source}"));
            }
            _ => {}
        }
    }
    if unknown.is_empty() {
        db.pending = Some(rows);
        db.lag_seconds = oldest_us.map(|us| seconds(us).max(0.0));
    } else {
        db.unknown = Some(unknown.join(", "));
    }
}

/// One sync's status from the reads of its databases (in the sync's order),
/// and the newest database clock seen.
pub(super) fn sync_status(sync: &Sync, reads: Vec<(DbId, Result<DbRead, ReadError>)>) -> (SyncStatus, Option<i64>) {
    let mut databases = Vec::with_capacity(reads.len());
    let mut newest: Option<(&StateRow, i64)> = None;
    let mut standby: Option<(&StateRow, i64)> = None;
    let (mut rows_total, mut conflicts_total) = (0i64, 0i64);
    let mut clock: Option<i64> = None;
    for (id, read) in &reads {
        let source = sync.sources.contains(id);
        let mut db = DatabaseStatus {
            name: id.to_string(),
            id: id.0,
            role: if source { "source" } else { "target" },
            reachable: true,
            error: None,
            installed: false,
            pending: None,
            lag_seconds: None,
            unknown: None,
            commit_timestamps: None,
            change_log_rows: None,
            change_log_bytes: None,
            change_log_for: Vec::new(),
        };
        match read {
            Ok(r) => {
                clock = clock.max(Some(r.now_us));
                if let Some(s) = &r.state {
                    if newest.is_none_or(|(n, _)| s.updated_at > n.updated_at) {
                        newest = Some((s, r.now_us));
                    }
                    // A standby leaves its mark only on the database where it
                    // found the sync claimed, which need not hold the newest
                    // state: the latest mark anywhere.
                    if s.standby_seen.is_some() && standby.is_none_or(|(n, _)| s.standby_seen > n.standby_seen) {
                        standby = Some((s, r.now_us));
                    }
                    rows_total = rows_total.max(s.rows_total);
                    conflicts_total = conflicts_total.max(s.conflicts_total);
                }
                db.installed = r.installed;
                db.error = r.problem.clone();
                db.commit_timestamps = Some(r.commit_timestamps);
                if let Some(b) = &r.backlog {
                    (db.change_log_rows, db.change_log_bytes) = (Some(b.rows()), Some(b.bytes));
                    db.change_log_for = b.waiting.iter().filter(|w| w.rows > 0).map(|w| w.target.to_string()).collect();
                }
            }
            Err(ReadError::Unreachable(why)) => {
                db.reachable = false;
                db.error = Some(why.clone());
            }
            Err(ReadError::Failed(why)) => db.error = Some(why.clone()),
        }
        databases.push(db);
    }
    for db in databases.iter_mut() {
        incoming(sync, DbId(db.id), &reads, db);
    }
    let all_reachable = databases.iter().all(|d| d.reachable);
    let all_readable = databases.iter().all(|d| d.error.is_none());
    let stored = newest.map(|(s, _)| s.state.clone());
    let state = match (&stored, all_reachable) {
        (_, false) => "Bad".to_string(),
        (Some(s), true) => s.clone(),
        (None, true) => "No records found".to_string(),
    };
    let known: Vec<&DatabaseStatus> = databases.iter().filter(|d| d.pending.is_some()).collect();
    let pending = (!known.is_empty()).then(|| known.iter().filter_map(|d| d.pending).sum());
    // The oldest change waiting anywhere that can be told; unknown only when
    // no database's can.
    let lag_seconds = databases.iter().filter_map(|d| d.lag_seconds).reduce(f64::max);
    let all_sources: Vec<&DatabaseStatus> = databases.iter().filter(|d| d.role == "source").collect();
    let sources: Vec<&DatabaseStatus> = all_sources.iter().copied().filter(|d| d.reachable).collect();
    let off: Vec<&str> =
        sources.iter().filter(|d| d.commit_timestamps == Some(false)).map(|d| d.name.as_str()).collect();
    let commit_timestamps = (!sources.is_empty()).then_some(off.is_empty());
    let mut advice = Vec::new();
    if !off.is_empty() {
        advice.push(format!("{}: {COMMIT_TIMESTAMP_ADVICE}", off.join(", ")));
    }
    let over_alert = backlog_advice(sync, &databases);
    let backlog_ok = over_alert.is_empty();
    advice.extend(over_alert);
    let replicator = newest.map(|(s, now)| {
        let age = s.heartbeat.map(|h| seconds(now - h).max(0.0));
        let interval = s.heartbeat_interval_ms.map(|ms| Duration::from_millis(ms.max(0) as u64));
        let (standby_row, standby_now) = standby.unwrap_or((s, now));
        let standby_age = standby_row.standby_seen.map(|t| seconds(standby_now - t).max(0.0));
        let standing_by = standby_age.is_some_and(|a| a <= STANDBY_SEEN.as_secs_f64());
        ReplicatorStatus {
            pid: s.pid,
            host: s.host.clone(),
            heartbeat: s.heartbeat.map(at),
            heartbeat_seconds_ago: age,
            heartbeat_interval_seconds: interval.map(|i| i.as_secs_f64()),
            running: s.pid.is_some() && age.is_some_and(|a| Replicator::alive(Duration::from_secs_f64(a), interval)),
            standby: standing_by.then(|| StandbyStatus {
                pid: standby_row.standby_pid,
                host: standby_row.standby_host.clone(),
                seen_seconds_ago: standby_age.unwrap_or_default(),
            }),
        }
    });
    let mut row = newest.map(|(s, _)| s.clone()).unwrap_or_default();
    if last_run_was_empty(&row) {
        // Bucardo's Last I/D are the counts of the last run: an empty run,
        // recorded as a good run after the last one that moved rows, is 0/0.
        (row.last_deletes, row.last_inserts, row.last_truncates, row.last_conflicts) = (0, 0, 0, 0);
    }
    let now = newest.map(|(_, n)| n).unwrap_or(0);
    let status = SyncStatus {
        name: sync.name.to_string(),
        healthy: all_reachable && all_readable && backlog_ok && state == "Good",
        state,
        stored_state: stored,
        last_good: run_times(row.last_good_started, row.last_good_ended, now),
        last_rows: run_times(row.last_rows_started, row.last_rows_ended, now),
        last_bad: run_times(row.last_bad_started, row.last_bad_ended, now),
        last_deletes: row.last_deletes,
        last_inserts: row.last_inserts,
        last_truncates: row.last_truncates,
        last_conflicts: row.last_conflicts,
        last_error: row.last_error,
        tables: row.tables,
        excluded: row.excluded,
        rows_total,
        conflicts_total,
        conflict_strategy: sync.conflict_strategy.to_string(),
        onetimecopy: sync.onetimecopy.as_number(),
        source_database: sync.databases().first().map(ToString::to_string).unwrap_or_default(),
        pending,
        lag_seconds,
        commit_timestamps,
        replicator,
        databases,
        advice,
        backlog_alert_bytes: sync.backlog_alert,
        differing: Vec::new(),
    };
    (status, clock)
}

/// What to do about each source whose change logs grew past the sync's
/// `backlog_alert` while keeping changes some database has not applied:
/// nothing is ever dropped, so the operator decides. (Logs whose changes
/// were all applied give their pages back at the next purge.)
fn backlog_advice(sync: &Sync, databases: &[DatabaseStatus]) -> Vec<String> {
    let alert = i64::try_from(sync.backlog_alert).unwrap_or(i64::MAX);
    databases
        .iter()
        .filter(|d| d.change_log_bytes.is_some_and(|b| b > alert) && d.change_log_rows.is_some_and(|r| r > 0))
        .map(|d| {
            format!(
                "{}'s change logs hold {} ({} rows) for {}, over backlog_alert ({}): nothing is dropped; if a database stays away longer than {}'s disk allows, see \"A site away for long\" in docs/operations.md",
                d.name,
                pretty_bytes(d.change_log_bytes.unwrap_or(0)),
                d.change_log_rows.map_or("?".into(), |r| r.to_string()),
                d.change_log_for.join(", "),
                pretty_bytes(alert),
                d.name
            )
        })
        .collect()
}

/// A size in bytes as `12.3 MiB`.
pub(crate) fn pretty_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The last good run ended after the last run that moved rows: it moved none.
fn last_run_was_empty(row: &StateRow) -> bool {
    match (row.last_good_ended, row.last_rows_ended) {
        (Some(good), Some(rows)) => good > rows,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The whole report: the replicator pid is the running one with the newest
/// heartbeat; the check time is the newest database clock seen.
pub(super) fn report(syncs: Vec<(SyncStatus, Option<i64>)>) -> StatusReport {
    let clock = syncs.iter().filter_map(|(_, c)| *c).max();
    let syncs: Vec<SyncStatus> = syncs.into_iter().map(|(s, _)| s).collect();
    let replicator_pid = syncs
        .iter()
        .filter_map(|s| s.replicator.as_ref())
        .filter(|r| r.running)
        .max_by(|a, b| a.heartbeat.cmp(&b.heartbeat))
        .and_then(|r| r.pid);
    StatusReport {
        replicator_pid,
        checked_at: clock.map(at).unwrap_or_else(Utc::now),
        healthy: syncs.iter().all(|s| s.healthy),
        syncs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dugong_config::{OneTimeCopy, TableSelection, DEFAULT_CONFLICT_RETENTION};
    use dugong_core::{ConflictStrategy, SyncName};

    fn read(good_ended: i64, rows_ended: Option<i64>) -> DbRead {
        let state = StateRow {
            state: "Good".into(),
            last_good_ended: Some(good_ended),
            last_rows_ended: rows_ended,
            last_deletes: 2,
            last_inserts: 5,
            last_conflicts: 1,
            ..StateRow::default()
        };
        DbRead { now_us: good_ended, installed: true, state: Some(state), ..DbRead::default() }
    }

    fn counts(read: DbRead) -> (i64, i64, i64) {
        let sync = Sync {
            name: SyncName("sync0".into()),
            index: 0,
            sources: vec![DbId(0)],
            targets: vec![],
            tables: TableSelection::All,
            onetimecopy: OneTimeCopy::None,
            conflict_strategy: ConflictStrategy::Latest,
            conflict_retention: DEFAULT_CONFLICT_RETENTION,
            backlog_alert: dugong_config::DEFAULT_BACKLOG_ALERT,
        };
        let (s, _) = sync_status(&sync, vec![(DbId(0), Ok(read))]);
        (s.last_deletes, s.last_inserts, s.last_conflicts)
    }

    #[test]
    fn last_counts_are_zero_after_an_empty_run() {
        assert_eq!(counts(read(1_000, Some(1_000))), (2, 5, 1), "the last run moved rows");
        assert_eq!(counts(read(2_000, Some(1_000))), (0, 0, 0), "an empty run came after it");
        assert_eq!(counts(read(2_000, None)), (0, 0, 0), "no run ever moved rows");
    }

    #[test]
    fn change_logs_past_the_backlog_alert_make_the_sync_unhealthy_and_say_what_to_do() {
        let json = r#"{"databases": [{"id": 0, "url": "sqlite:/a"}, {"id": 1, "url": "sqlite:/b"}],
                       "syncs": [{"sources": [0, 1], "tables": "all", "backlog_alert": "1MB"}]}"#;
        let sync = dugong_config::Config::from_str(json, std::path::Path::new("t.json")).unwrap().syncs[0].clone();
        let source = |bytes: i64, waiting: Vec<crate::record::Waiting>| {
            let mut r = read(1_000, Some(500));
            r.commit_timestamps = true;
            r.backlog = Some(crate::record::Backlog { waiting, bytes });
            r
        };
        let w = |target: u32, rows: i64| crate::record::Waiting { target: DbId(target), rows, oldest_age_us: Some(9) };
        let (s, _) = sync_status(
            &sync,
            vec![(DbId(0), Ok(source(4096, vec![w(1, 0)]))), (DbId(1), Ok(source(4096, vec![w(0, 0)])))],
        );
        assert!(s.healthy && s.advice.is_empty(), "{:?}", s.advice);
        assert_eq!((s.databases[0].change_log_bytes, s.databases[0].change_log_rows), (Some(4096), Some(0)));
        let (s, _) = sync_status(
            &sync,
            vec![(DbId(0), Ok(source(3 << 20, vec![w(1, 0)]))), (DbId(1), Ok(source(4096, vec![w(0, 0)])))],
        );
        assert!(s.healthy, "large logs whose changes were all applied await their purge: {:?}", s.advice);

        let (s, _) = sync_status(
            &sync,
            vec![(DbId(0), Ok(source(3 << 20, vec![w(1, 120_000)]))), (DbId(1), Ok(source(4096, vec![w(0, 0)])))],
        );
        assert!(!s.healthy, "over the alert");
        assert_eq!(s.state, "Good", "the runs are good: the state says so, health does not");
        assert_eq!(s.advice.len(), 1);
        assert!(
            s.advice[0].starts_with("db0's change logs hold 3.0 MiB (120000 rows) for db1, over backlog_alert (1.0 MiB): nothing is dropped"),
            "{}",
            s.advice[0]
        );
    }

    #[test]
    fn the_standby_shows_whichever_database_it_left_its_mark_on() {
        let json = r#"{"databases": [{"id": 0, "url": "sqlite:/a"}, {"id": 1, "url": "sqlite:/b"}],
                       "syncs": [{"sources": [0, 1], "tables": "all"}]}"#;
        let sync = dugong_config::Config::from_str(json, std::path::Path::new("t.json")).unwrap().syncs[0].clone();
        let active = |updated_at: i64| {
            let mut r = read(1_000_000, None);
            let state = r.state.as_mut().unwrap();
            (state.pid, state.heartbeat, state.heartbeat_interval_ms, state.updated_at) =
                (Some(10), Some(1_000_000), Some(3_000), updated_at);
            r
        };
        // The standby found the sync claimed on db0; db1 holds the newer state.
        let mut db0 = active(1);
        let state = db0.state.as_mut().unwrap();
        (state.standby_pid, state.standby_host, state.standby_seen) = (Some(20), Some("site1".into()), Some(999_000));
        let (s, _) = sync_status(&sync, vec![(DbId(0), Ok(db0)), (DbId(1), Ok(active(2)))]);
        let r = s.replicator.expect("a replicator");
        assert_eq!(r.pid, Some(10));
        let standby = r.standby.expect("the standby is shown");
        assert_eq!((standby.pid, standby.host.as_deref()), (Some(20), Some("site1")));
    }
}
