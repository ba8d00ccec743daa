//! Rendering checked against Bucardo's captured outputs (reference
//! bucardo-baseline.md) byte for byte, trailing spaces included.

use super::render::{detail, pretty_number, pretty_time, summary, table};
use super::{DatabaseStatus, ReplicatorStatus, RunTimes, StatusReport, SyncStatus};
use chrono::{DateTime, FixedOffset, Utc};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test time").with_timezone(&Utc)
}

fn run(started: &str, ended: &str, now: &str) -> RunTimes {
    let (s, e, n) = (utc(started), utc(ended), utc(now));
    RunTimes {
        started: Some(s),
        ended: e,
        seconds_ago: (n - e).num_milliseconds() as f64 / 1000.0,
        duration_seconds: Some((e - s).num_milliseconds() as f64 / 1000.0),
    }
}

fn db(id: u32, role: &'static str) -> DatabaseStatus {
    DatabaseStatus {
        name: format!("db{id}"),
        id,
        role,
        reachable: true,
        error: None,
        installed: true,
        pending: Some(0),
        lag_seconds: Some(0.0),
        unknown: None,
        commit_timestamps: Some(true),
        change_log_rows: (role == "source").then_some(0),
        change_log_bytes: (role == "source").then_some(16384),
        change_log_for: vec![],
    }
}

/// The idle sync of the first baseline capture.
fn idle_sync(now: &str) -> SyncStatus {
    SyncStatus {
        name: "sync0".into(),
        state: "Good".into(),
        stored_state: Some("Good".into()),
        healthy: true,
        last_good: Some(run("2026-11-27T11:33:36Z", "2026-11-27T11:33:37Z", now)),
        last_rows: None,
        last_bad: None,
        last_deletes: 0,
        last_inserts: 0,
        last_truncates: 0,
        last_conflicts: 0,
        last_error: None,
        tables: 2,
        excluded: vec![],
        rows_total: 0,
        conflicts_total: 0,
        conflict_strategy: "latest".into(),
        onetimecopy: 0,
        source_database: "db1".into(),
        pending: Some(0),
        lag_seconds: Some(0.0),
        commit_timestamps: Some(true),
        replicator: Some(ReplicatorStatus {
            pid: Some(13321),
            host: Some("site0".into()),
            heartbeat: Some(utc("2026-11-27T11:33:48Z")),
            heartbeat_seconds_ago: Some(1.0),
            heartbeat_interval_seconds: Some(3.0),
            running: true,
            standby: None,
        }),
        databases: vec![db(0, "source"), db(1, "source")],
        advice: vec![],
        backlog_alert_bytes: dugong_config::DEFAULT_BACKLOG_ALERT,
        differing: vec![],
    }
}

fn report(now: &str, syncs: Vec<SyncStatus>) -> StatusReport {
    StatusReport { replicator_pid: Some(13321), checked_at: utc(now), healthy: true, syncs }
}

#[test]
fn summary_matches_bucardos_idle_capture() {
    let now = "2026-11-27T11:33:49Z";
    let out = summary(&report(now, vec![idle_sync(now)]), &Utc);
    let expected = "PID of Dugong replicator: 13321
 Name    State    Last good    Time    Last I/D    Last bad    Time  
=======+========+============+=======+===========+===========+=======
 sync0 | Good   | 11:33:37   | 12s   | 0/0       | none      |       
";
    assert!(out.starts_with(expected), "got:\n{out}");
    let extra = &out[expected.len()..];
    assert_eq!(
        extra,
        "
sync0: databases: db0 reachable, db1 reachable
sync0: lag 0s, pending changes 0 (db0 0, db1 0), conflicts 0
sync0: change logs: db0 16.0 KiB (0 rows), db1 16.0 KiB (0 rows) (alert at 10.0 GiB)
sync0: excluded tables: none
"
    );
}

#[test]
fn wide_counts_widen_their_column_like_the_backlog_capture() {
    let now = "2026-11-27T11:41:14Z";
    let mut s = idle_sync(now);
    s.state = "delta_check on db db0".into();
    s.last_good = Some(run("2026-11-27T11:40:28Z", "2026-11-27T11:40:37Z", now));
    (s.last_deletes, s.last_inserts) = (9891, 158159);
    let out = table(&report(now, vec![s]), &Utc);
    assert_eq!(
        out,
        " Name    State                   Last good    Time    Last I/D      Last bad    Time  
=======+=======================+============+=======+=============+===========+=======
 sync0 | delta_check on db db0 | 11:40:37   | 37s   | 9891/158159 | none      |       
"
    );
}

#[test]
fn truncates_and_conflicts_extend_the_title_and_show_only_when_not_zero() {
    let now = "2026-11-27T21:57:58Z";
    let mut a = idle_sync(now);
    a.name = "mongotest".into();
    a.last_good = Some(run("2026-11-27T21:57:40Z", "2026-11-27T21:57:47Z", now));
    (a.last_deletes, a.last_inserts, a.last_conflicts) = (6, 36234, 898);
    let out = table(&report(now, vec![a.clone()]), &Utc);
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            " Name        State    Last good    Time    Last I/D/C    Last bad    Time",
            "===========+========+============+=======+=============+===========+=======",
            " mongotest | Good   | 21:57:47   | 11s   | 6/36234/898 | none      |",
        ]
    );
    let mut b = idle_sync(now);
    b.last_good = a.last_good.clone();
    b.last_truncates = 1;
    let out = table(&report(now, vec![a, b]), &Utc);
    assert!(out.starts_with(" Name        State    Last good    Time    Last I/D/T/C "), "{out}");
    assert!(out.contains("| 6/36234/898   |"), "{out}");
    assert!(out.contains("| 0/0/1         |"), "{out}");
}

#[test]
fn other_days_get_the_long_form_and_bad_runs_their_elapsed_time() {
    let now = "2026-11-27T11:00:00Z";
    let mut s = idle_sync(now);
    s.state = "Bad".into();
    s.last_bad = Some(run("2026-11-26T07:57:58Z", "2026-11-26T07:57:59Z", now));
    s.last_good = Some(run("2026-11-27T10:57:47Z", "2026-11-27T10:57:47Z", now));
    let out = table(&report(now, vec![s]), &Utc);
    assert!(
        out.ends_with(" sync0 | Bad    | 10:57:47   | 2m 13s | 0/0       | Nov 26, 2026 07:57:59 | 27h 2m 1s \n"),
        "{out}"
    );
    assert!(out.lines().nth(1).unwrap().ends_with("+=======================+==========="));
    // widths follow values
}

#[test]
fn today_is_decided_in_the_given_time_zone() {
    // 23:30 UTC on the 26th is 01:30 on the 27th at +02:00, the same day as now there.
    let now = "2026-11-27T08:00:00Z";
    let mut s = idle_sync(now);
    s.last_good = Some(run("2026-11-26T23:30:00Z", "2026-11-26T23:30:00Z", now));
    let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
    assert!(table(&report(now, vec![s.clone()]), &plus2).contains("| 01:30:00   |"));
    assert!(table(&report(now, vec![s]), &Utc).contains("| Nov 26, 2026 23:30:00 |"));
}

#[test]
fn no_replicator_prints_a_blank_first_line_and_says_why() {
    let now = "2026-11-27T11:33:49Z";
    let mut s = idle_sync(now);
    s.replicator = Some(ReplicatorStatus {
        pid: None,
        host: Some("site0".into()),
        heartbeat: Some(utc("2026-11-27T11:30:00Z")),
        heartbeat_seconds_ago: Some(229.0),
        heartbeat_interval_seconds: Some(3.0),
        running: false,
        standby: None,
    });
    let mut r = report(now, vec![s]);
    r.replicator_pid = None;
    let out = summary(&r, &Utc);
    assert!(out.starts_with("\n Name "), "{out:?}");
    assert!(out.contains("sync0: replicator not running (stopped; last heartbeat 3m 49s ago)\n"), "{out}");
}

#[test]
fn unreachable_databases_and_unknown_lag_are_spelled_out() {
    let now = "2026-11-27T11:33:49Z";
    let mut s = idle_sync(now);
    s.state = "Bad".into();
    s.databases[1].reachable = false;
    s.databases[1].error = Some("127.0.0.1:1/x user=postgres: error connecting to server".into());
    // What waits for db0 comes from db1, which cannot say; what waits for db1
    // is known from db0.
    s.databases[0].pending = None;
    s.databases[0].lag_seconds = None;
    s.databases[0].unknown = Some("db1 unreachable".into());
    s.pending = Some(0);
    s.lag_seconds = Some(0.0);
    let out = summary(&report(now, vec![s]), &Utc);
    assert!(out.contains(" sync0 | Bad    | 11:33:37 "), "{out}");
    assert!(
        out.contains("sync0: databases: db0 reachable, db1 unreachable (127.0.0.1:1/x user=postgres: error connecting to server)\n"),
        "{out}"
    );
    assert!(
        out.contains("sync0: lag 0s (db0: db1 unreachable), pending changes 0 (db0 unknown, db1 0), conflicts 0\n"),
        "{out}"
    );
}

/// Dugong's own labels, which Bucardo's block does not have.
const DUGONG_LABELS: &[&str] = &[
    "Conflict strategy",
    "Conflicts total",
    "Databases",
    "Lag ",
    "Pending changes",
    "Excluded tables",
    "Change logs",
    "Commit timestamps",
    "Replicator",
];

#[test]
fn detail_matches_bucardos_capture_plus_dugong_lines() {
    let now = "2026-11-27T11:41:00Z";
    let mut s = idle_sync(now);
    s.last_good = Some(run("2026-11-27T11:40:28Z", "2026-11-27T11:40:38Z", now));
    (s.last_deletes, s.last_inserts) = (9891, 158159);
    let out = detail(&report(now, vec![s]), &Utc);
    let bucardo: Vec<&str> = out.lines().filter(|l| !DUGONG_LABELS.iter().any(|d| l.starts_with(d))).collect();
    let expected = "======================================================================
Last good                : Nov 27, 2026 11:40:28 (time to run: 10s)
Rows deleted/inserted    : 9,891 / 158,159
Sync name                : sync0
Current state            : Good
Source relgroup/database : sync0 / db1
Tables in sync           : 2
Status                   : Active
Check time               : None
Overdue time             : 00:00:00
Expired time             : 00:00:00
Stayalive/Kidsalive      : Yes / Yes
Rebuild index            : No
Autokick                 : Yes
Onetimecopy              : No
Post-copy analyze        : Yes
Last error:              : 
======================================================================";
    assert_eq!(bucardo.join("\n"), expected);
    for line in [
        "Conflict strategy        : latest",
        "Conflicts total          : 0",
        "Databases                : db0 reachable, db1 reachable",
        "Lag                      : 0s",
        "Pending changes          : 0 (db0 0, db1 0)",
        "Excluded tables          : none",
        "Change logs              : db0 16.0 KiB (0 rows), db1 16.0 KiB (0 rows) (alert at 10.0 GiB)",
        "Commit timestamps        : on",
        "Replicator               : 13321@site0 running (last heartbeat 1s ago)",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn detail_shows_the_last_bad_run_and_widens_labels_for_conflicts() {
    let now = "2026-11-27T11:41:00Z";
    let mut s = idle_sync(now);
    s.state = "Bad".into();
    s.last_conflicts = 4785;
    s.last_bad = Some(run("2026-11-27T11:40:02Z", "2026-11-27T11:40:03Z", now));
    s.last_error = Some("db1 is unreachable".into());
    s.commit_timestamps = Some(false);
    s.databases[1].commit_timestamps = Some(false);
    s.advice = vec!["db1: turn it on".into()];
    let out = detail(&report(now, vec![s]), &Utc);
    assert!(out.contains("\nRows deleted/inserted/conflicts : 0 / 0 / 4,785\n"), "{out}");
    assert!(out.contains("\nLast bad                        : Nov 27, 2026 11:40:02 (time until fail: 1s)\n"), "{out}");
    assert!(out.contains("\nLast error:                     : db1 is unreachable\n"), "{out}");
    assert!(out.contains("\nCommit timestamps               : off on db1\n"), "{out}");
    assert!(out.ends_with("=\nAdvice: db1: turn it on\n"), "{out}");
}

#[test]
fn elapsed_times_and_numbers_read_like_bucardos() {
    assert_eq!(pretty_time(0.4), "0s");
    assert_eq!(pretty_time(12.9), "12s");
    assert_eq!(pretty_time(69.0), "1m 9s");
    assert_eq!(pretty_time(3600.0), "1h 0m 0s");
    assert_eq!(pretty_time(10921.0), "3h 2m 1s");
    assert_eq!(pretty_time(-3.0), "0s");
    assert_eq!(pretty_number(0), "0");
    assert_eq!(pretty_number(999), "999");
    assert_eq!(pretty_number(9891), "9,891");
    assert_eq!(pretty_number(158159), "158,159");
    assert_eq!(pretty_number(-1234567), "-1,234,567");
}

#[test]
fn json_field_names_are_stable() {
    let now = "2026-11-27T11:33:49Z";
    let v = serde_json::to_value(report(now, vec![idle_sync(now)])).unwrap();
    assert_eq!(v["replicator_pid"], 13321);
    let s = &v["syncs"][0];
    assert_eq!(s["name"], "sync0");
    assert_eq!(s["state"], "Good");
    assert_eq!(s["last_good"]["ended"], "2026-11-27T11:33:37Z");
    assert_eq!(s["last_good"]["seconds_ago"], 12.0);
    assert_eq!(s["last_bad"], serde_json::Value::Null);
    assert_eq!(s["databases"][1]["name"], "db1");
    assert_eq!(s["databases"][1]["reachable"], true);
    assert_eq!(s["databases"][1]["error"], serde_json::Value::Null);
    assert_eq!(s["databases"][1]["lag_seconds"], 0.0);
    assert_eq!(s["excluded"], serde_json::json!([]));
}

#[test]
fn change_logs_name_the_database_they_keep_changes_for() {
    let now = "2026-11-27T11:33:49Z";
    let mut s = idle_sync(now);
    s.databases[0].change_log_rows = Some(3_400_000);
    s.databases[0].change_log_bytes = Some(1_288_490_189);
    s.databases[0].change_log_for = vec!["db1".into()];
    let out = summary(&report(now, vec![s]), &Utc);
    assert!(
        out.contains("sync0: change logs: db0 1.2 GiB (3,400,000 rows kept for db1), db1 16.0 KiB (0 rows) (alert at 10.0 GiB)\n"),
        "got:\n{out}"
    );
}
