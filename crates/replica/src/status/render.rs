//! Pure rendering of a [`StatusReport`] in Bucardo's layouts (reference
//! bucardo.md §3), followed by Dugong's extra lines. Times are shown in the
//! time zone given (the operator's local zone in the CLI), `HH:MM:SS` when
//! the day is the day the status was read, else `Mon DD, YYYY HH:MM:SS`.

use super::{DatabaseStatus, StatusReport, SyncStatus};
use chrono::{DateTime, Local, TimeZone, Utc};

/// The summary table in the operator's local time zone.
pub fn summary_local(report: &StatusReport) -> String {
    summary(report, &Local)
}

/// The detail blocks in the operator's local time zone.
pub fn detail_local(report: &StatusReport) -> String {
    detail(report, &Local)
}

/// Bucardo's summary: the replicator pid line, one table row per sync, then
/// Dugong's lines per sync (databases, lag, pending, conflicts, excluded tables).
pub fn summary<Tz: TimeZone>(report: &StatusReport, tz: &Tz) -> String {
    let mut out = match report.replicator_pid {
        Some(pid) => format!("PID of Dugong replicator: {pid}\n"),
        None => "\n".to_string(),
    };
    if report.syncs.is_empty() {
        out.push_str("No syncs have been created yet.\n");
        return out;
    }
    out.push_str(&table(report, tz));
    out.push('\n');
    for sync in &report.syncs {
        out.push_str(&extra_lines(sync, tz));
    }
    out
}

/// The table alone. Each column is as wide as its longest cell (titles carry
/// a leading space, values get one) plus two; titles are joined by spaces,
/// values by `|`, and the divider is `=` joined by `+`.
pub fn table<Tz: TimeZone>(report: &StatusReport, tz: &Tz) -> String {
    let truncates = report.syncs.iter().any(|s| s.last_truncates != 0);
    let conflicts = report.syncs.iter().any(|s| s.last_conflicts != 0);
    let id_title = format!(" Last I/D{}{}", if truncates { "/T" } else { "" }, if conflicts { "/C" } else { "" });
    let titles = [" Name", " State", " Last good", " Time", id_title.as_str(), " Last bad", " Time"];
    let rows: Vec<[String; 7]> = report.syncs.iter().map(|s| row(s, report.checked_at, tz)).collect();
    let widths: Vec<usize> = (0..titles.len())
        .map(|i| {
            let longest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
            titles[i].chars().count().max(longest) + 2
        })
        .collect();
    let header: Vec<String> = titles.iter().zip(&widths).map(|(t, w)| pad(t, *w)).collect();
    let divider: Vec<String> = widths.iter().map(|w| "=".repeat(*w)).collect();
    let mut out = format!("{}\n{}\n", header.join(" "), divider.join("+"));
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(v, w)| pad(&format!(" {v}"), *w)).collect();
        out.push_str(&cells.join("|"));
        out.push('\n');
    }
    out
}

fn row<Tz: TimeZone>(s: &SyncStatus, now: DateTime<Utc>, tz: &Tz) -> [String; 7] {
    let (good, good_ago) = match &s.last_good {
        Some(t) => (short_time(t.ended, now, tz), pretty_time(t.seconds_ago)),
        None => ("none".into(), String::new()),
    };
    let (bad, bad_ago) = match &s.last_bad {
        Some(t) => (short_time(t.ended, now, tz), pretty_time(t.seconds_ago)),
        None => ("none".into(), String::new()),
    };
    let counts = if s.stored_state.is_some() { last_counts(s, "/") } else { String::new() };
    [s.name.clone(), s.state.clone(), good, good_ago, counts, bad, bad_ago]
}

/// `deletes/inserts`, then `/truncates` and `/conflicts` only when not zero
/// (Bucardo's order: D before I).
fn last_counts(s: &SyncStatus, sep: &str) -> String {
    let number = |n: i64| if sep == "/" { n.to_string() } else { pretty_number(n) };
    let mut text = format!("{}{sep}{}", number(s.last_deletes), number(s.last_inserts));
    for extra in [s.last_truncates, s.last_conflicts] {
        if extra != 0 {
            text.push_str(&format!("{sep}{}", number(extra)));
        }
    }
    text
}

/// Dugong's lines under the table for one sync.
fn extra_lines<Tz: TimeZone>(s: &SyncStatus, tz: &Tz) -> String {
    let name = &s.name;
    let mut out = format!("{name}: databases: {}\n", databases_line(&s.databases));
    out.push_str(&format!(
        "{name}: lag {}, pending changes {}, conflicts {}\n",
        lag_text(s),
        pending_text(s),
        s.conflicts_total
    ));
    out.push_str(&format!("{name}: change logs: {}\n", change_logs_text(s)));
    out.push_str(&format!("{name}: excluded tables: {}\n", excluded_text(s)));
    if !s.differing.is_empty() {
        out.push_str(&format!("{name}: rows differing: {}\n", differing_text(s, tz)));
    }
    let standby = s.replicator.as_ref().is_some_and(|r| r.standby.is_some());
    if !s.replicator.as_ref().is_some_and(|r| r.running) || standby {
        out.push_str(&format!("{name}: replicator {}\n", replicator_text(s)));
    }
    for advice in &s.advice {
        out.push_str(&format!("{name}: {advice}\n"));
    }
    out
}

/// Bucardo's detail block for each sync, with Dugong's lines before
/// `Last error:`; advice follows the block.
pub fn detail<Tz: TimeZone>(report: &StatusReport, tz: &Tz) -> String {
    let mut out = String::new();
    for s in &report.syncs {
        out.push_str(&detail_block(s, tz));
        for advice in &s.advice {
            out.push_str(&format!("Advice: {advice}\n"));
        }
    }
    out
}

fn detail_block<Tz: TimeZone>(s: &SyncStatus, tz: &Tz) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |label: &str, value: String| lines.push((label.to_string(), value));
    if let Some(t) = &s.last_good {
        let dur = t.duration_seconds.map(pretty_time).unwrap_or_else(|| "?".into());
        add("Last good", format!("{} (time to run: {dur})", long_time(t.started.unwrap_or(t.ended), tz)));
        let mut label = String::from("Rows deleted/inserted");
        if s.last_truncates != 0 {
            label.push_str("/truncates");
        }
        if s.last_conflicts != 0 {
            label.push_str("/conflicts");
        }
        add(&label, last_counts(s, " / "));
    }
    if let Some(t) = &s.last_bad {
        let dur = t.duration_seconds.map(pretty_time).unwrap_or_else(|| "?".into());
        add("Last bad", format!("{} (time until fail: {dur})", long_time(t.started.unwrap_or(t.ended), tz)));
    }
    add("Sync name", s.name.clone());
    add("Current state", s.state.clone());
    add("Source relgroup/database", format!("{} / {}", s.name, s.source_database));
    add("Tables in sync", s.tables.to_string());
    add("Status", "Active".into());
    add("Check time", "None".into());
    add("Overdue time", "00:00:00".into());
    add("Expired time", "00:00:00".into());
    add("Stayalive/Kidsalive", "Yes / Yes".into());
    add("Rebuild index", "No".into());
    add("Autokick", "Yes".into());
    add("Onetimecopy", if s.onetimecopy == 0 { "No" } else { "Yes" }.into());
    add("Post-copy analyze", "Yes".into());
    add("Conflict strategy", s.conflict_strategy.clone());
    add("Conflicts total", pretty_number(s.conflicts_total));
    add("Databases", databases_line(&s.databases));
    add("Lag", lag_text(s));
    add("Pending changes", pending_text(s));
    add("Change logs", change_logs_text(s));
    add("Excluded tables", excluded_text(s));
    add(
        "Commit timestamps",
        match s.commit_timestamps {
            Some(true) => "on".into(),
            Some(false) => {
                let off: Vec<&str> =
                    sources(s).filter(|d| d.commit_timestamps == Some(false)).map(|d| d.name.as_str()).collect();
                format!("off on {}", off.join(", "))
            }
            None => "unknown".into(),
        },
    );
    add("Replicator", replicator_text(s));
    if !s.differing.is_empty() {
        add("Rows differing", differing_text(s, tz));
    }
    add("Last error:", s.last_error.clone().unwrap_or_default());
    let width = lines.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    let rule = "=".repeat(70);
    let mut out = format!("{rule}\n");
    for (label, value) in &lines {
        out.push_str(&format!("{} : {value}\n", pad(label, width)));
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

fn sources(s: &SyncStatus) -> impl Iterator<Item = &DatabaseStatus> {
    s.databases.iter().filter(|d| d.role == "source")
}

/// `db0 reachable, db1 unreachable (why)`.
fn databases_line(dbs: &[DatabaseStatus]) -> String {
    let parts: Vec<String> = dbs
        .iter()
        .map(|d| match (&d.error, d.reachable) {
            (None, _) => format!("{} reachable", d.name),
            (Some(why), true) => format!("{} reachable, but {why}", d.name),
            (Some(why), false) => format!("{} unreachable ({why})", d.name),
        })
        .collect();
    parts.join(", ")
}

/// The oldest change waiting anywhere, and which databases cannot tell.
fn lag_text(s: &SyncStatus) -> String {
    let unknown: Vec<String> = s
        .databases
        .iter()
        .filter(|d| d.lag_seconds.is_none())
        .map(|d| format!("{}: {}", d.name, d.unknown.as_deref().unwrap_or("unknown")))
        .collect();
    match (s.lag_seconds, unknown.is_empty()) {
        (Some(lag), true) => pretty_time(lag),
        (Some(lag), false) => format!("{} ({})", pretty_time(lag), unknown.join("; ")),
        (None, false) => format!("unknown ({})", unknown.join("; ")),
        (None, true) => "unknown".into(),
    }
}

/// The total, and per database: the changes not yet applied there.
fn pending_text(s: &SyncStatus) -> String {
    let total = s.pending.map(pretty_number).unwrap_or_else(|| "unknown".into());
    if s.databases.len() < 2 {
        return total;
    }
    let each: Vec<String> = s
        .databases
        .iter()
        .map(|d| format!("{} {}", d.name, d.pending.map(pretty_number).unwrap_or_else(|| "unknown".into())))
        .collect();
    format!("{total} ({})", each.join(", "))
}

/// Per source, what its change logs keep and for whom:
/// `db0 1.2 MiB (3,400 rows kept for db1)`.
fn change_logs_text(s: &SyncStatus) -> String {
    let each: Vec<String> = sources(s)
        .map(|d| match (d.change_log_bytes, d.change_log_rows) {
            (Some(bytes), Some(rows)) => {
                let kept = if d.change_log_for.is_empty() {
                    String::new()
                } else {
                    format!(" kept for {}", d.change_log_for.join(", "))
                };
                format!("{} {} ({} rows{kept})", d.name, super::merge::pretty_bytes(bytes), pretty_number(rows))
            }
            _ => format!("{} unknown", d.name),
        })
        .collect();
    format!(
        "{} (alert at {})",
        each.join(", "),
        super::merge::pretty_bytes(s.backlog_alert_bytes.min(i64::MAX as u64) as i64)
    )
}

/// `public.items 12 (since 10:02:03)`, per table the consistency check
/// found rows different in.
fn differing_text<Tz: TimeZone>(s: &SyncStatus, tz: &Tz) -> String {
    let each: Vec<String> = s
        .differing
        .iter()
        .map(|d| format!("{} {} (since {})", d.table, pretty_number(d.rows), long_time(d.found_at, tz)))
        .collect();
    each.join(", ")
}

fn excluded_text(s: &SyncStatus) -> String {
    if s.excluded.is_empty() {
        "none".into()
    } else {
        s.excluded.join(", ")
    }
}

/// `4242@host running (heartbeat 1s ago)`, or why it is not running.
fn replicator_text(s: &SyncStatus) -> String {
    let Some(r) = &s.replicator else {
        return "never ran".into();
    };
    let who = match (r.pid, &r.host) {
        (Some(pid), Some(host)) if !host.is_empty() => format!("{pid}@{host} "),
        (Some(pid), _) => format!("{pid} "),
        _ => String::new(),
    };
    let ago = r.heartbeat_seconds_ago.map(|a| format!("last heartbeat {} ago", pretty_time(a)));
    let active = match (r.running, ago) {
        (true, Some(ago)) => format!("{who}running ({ago})"),
        (true, None) => format!("{who}running"),
        (false, Some(ago)) if r.pid.is_none() => format!("not running (stopped; {ago})"),
        (false, Some(ago)) => format!("{who}not running ({ago})"),
        (false, None) => "not running".into(),
    };
    match &r.standby {
        None => active,
        Some(standby) => {
            let who = match (standby.pid, &standby.host) {
                (Some(pid), Some(host)) if !host.is_empty() => format!("{pid}@{host}"),
                (Some(pid), _) => pid.to_string(),
                _ => "a replicator".into(),
            };
            format!("{active}; standby {who} (seen {} ago)", pretty_time(standby.seen_seconds_ago))
        }
    }
}

fn pad(text: &str, width: usize) -> String {
    format!("{text:<width$}")
}

/// `HH:MM:SS` when `t` falls on the same local day as `now`, else the long form.
pub fn short_time<Tz: TimeZone>(t: DateTime<Utc>, now: DateTime<Utc>, tz: &Tz) -> String {
    let local = t.with_timezone(tz);
    if local.date_naive() == now.with_timezone(tz).date_naive() {
        local.naive_local().format("%H:%M:%S").to_string()
    } else {
        long_time(t, tz)
    }
}

/// `Mon DD, YYYY HH:MM:SS`, as Bucardo's `BUCARDO_DATEFORMAT` default.
pub fn long_time<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> String {
    t.with_timezone(tz).naive_local().format("%b %d, %Y %H:%M:%S").to_string()
}

/// Elapsed time as Bucardo prints it: `Xh Xm Xs`, leading zero units left out
/// (hours are not folded into days).
pub fn pretty_time(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 { seconds as u64 } else { 0 };
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `158159` → `158,159`.
pub fn pretty_number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    // ASCII digits, so every chunk is valid UTF-8.
    let groups: Vec<&str> = digits.as_bytes().rchunks(3).rev().map(|g| std::str::from_utf8(g).unwrap_or("")).collect();
    let mut out = groups.join(",");
    if n < 0 {
        out.insert(0, '-');
    }
    out
}
