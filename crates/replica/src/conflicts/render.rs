//! The conflicts as people read them: a table, newest first, with both
//! versions of each row under it. Times in the time zone given (the
//! operator's local zone in the CLI).

use super::{ConflictList, Restored};
use crate::record::conflict::{LoggedConflict, RestoreWrite, Side};
use chrono::{DateTime, Local, TimeZone, Utc};

/// A version longer than this is cut in the table (`--json` shows it whole).
const VERSION_CHARS: usize = 2000;

/// The readable listing in the operator's local time zone.
pub fn render_local(list: &ConflictList) -> String {
    render_text(list, &Local)
}

/// The readable listing.
pub fn render_text<Tz: TimeZone>(list: &ConflictList, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut out = String::new();
    if list.conflicts.is_empty() {
        out.push_str("no conflicts match\n");
    } else {
        let titles = ["ID", "Logged", "Sync", "Table", "Key", "Kind", "Won", "Lost", "Why"];
        let rows: Vec<[String; 9]> = list.conflicts.iter().map(|c| row(c, tz)).collect();
        let widths: Vec<usize> = (0..titles.len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(titles[i].len()))
            .collect();
        out.push_str(&line(&titles.map(String::from), &widths));
        for (c, r) in list.conflicts.iter().zip(&rows) {
            out.push_str(&line(r, &widths));
            out.push_str(&version_line("won ", &c.winner, c.versions_recorded, tz));
            out.push_str(&version_line("lost", &c.loser, c.versions_recorded, tz));
            if let Some(at) = c.restored_at {
                out.push_str(&format!(
                    "  restored {}: the losing version was written back on {}\n",
                    time(at, tz),
                    c.loser.database
                ));
            }
        }
    }
    if list.more {
        out.push_str(&format!(
            "(more conflicts match: these are the newest {}; raise --limit or narrow with --since or --table)\n",
            list.conflicts.len()
        ));
    }
    for why in &list.unreadable {
        out.push_str(&format!("cannot read the conflict log of {why}\n"));
    }
    out
}

fn row<Tz: TimeZone>(c: &LoggedConflict, tz: &Tz) -> [String; 9]
where
    Tz::Offset: std::fmt::Display,
{
    [
        c.id.clone().unwrap_or_else(|| "-".into()),
        time(c.at, tz),
        c.sync.clone(),
        c.table.clone(),
        c.key.join(", "),
        c.kind.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
        c.winner.database.clone(),
        c.loser.database.clone(),
        c.reason.clone(),
    ]
}

/// Cells padded to their column's width, two spaces apart, without trailing blanks.
fn line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> =
        cells.iter().zip(widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
    format!("{}\n", padded.join("  ").trim_end())
}

fn version_line<Tz: TimeZone>(label: &str, side: &Side, recorded: bool, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let committed = match side.committed {
        Some(t) => format!("committed {}", precise(t, tz)),
        None => "commit time unknown".into(),
    };
    let version = match side.row.get() {
        _ if !recorded => "(not recorded)".to_string(),
        "null" => "(deleted)".to_string(),
        json => cut(json),
    };
    format!("  {label} {} {committed}: {version}\n", side.database)
}

fn cut(json: &str) -> String {
    if json.chars().count() <= VERSION_CHARS {
        return json.to_string();
    }
    let kept: String = json.chars().take(VERSION_CHARS).collect();
    format!("{kept}… ({} more characters; --json shows all)", json.chars().count() - VERSION_CHARS)
}

fn time<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn precise<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// What a restore did, in one paragraph.
pub fn render_restored(r: &Restored) -> String {
    let c = &r.conflict;
    let what = match r.write {
        RestoreWrite::Inserted => "inserted the losing version",
        RestoreWrite::Updated => "replaced the row with the losing version",
        RestoreWrite::Deleted => "deleted the row again, as the losing side had",
    };
    let mut out = format!(
        "conflict {}: {what} of {} ({}) on {}, as a new change; the replicator ships it to the other databases of {}\n",
        c.id.as_deref().unwrap_or("-"),
        c.table,
        c.key.join(", "),
        r.database,
        c.sync
    );
    for why in &r.unmarked {
        out.push_str(&format!("note: could not mark it restored in the log of {why}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::conflict::{json_null, ConflictKind};
    use dugong_core::TableName;
    use serde_json::value::RawValue;

    fn conflict() -> LoggedConflict {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        LoggedConflict {
            id: Some("0123456789abcdef".into()),
            at,
            sync: "sync0".into(),
            table: "public.t".into(),
            table_name: TableName::new("public", "t"),
            key: vec!["1".into()],
            kind: Some(ConflictKind::UpdateDelete),
            winner: Side { database: "db1".into(), committed: Some(at), row: json_null() },
            loser: Side {
                database: "db0".into(),
                committed: None,
                row: RawValue::from_string(r#"{"id": 1, "v": "kept"}"#.into()).unwrap(),
            },
            versions_recorded: true,
            reason: "later commit".into(),
            restored_at: None,
        }
    }

    #[test]
    fn the_table_shows_both_versions_under_each_conflict() {
        let list = ConflictList { conflicts: vec![conflict()], more: true, unreadable: vec![], unreachable: false };
        let text = render_text(&list, &Utc);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID                Logged               Sync   Table     Key  Kind           Won  Lost  Why"
        );
        assert_eq!(
            lines[1],
            "0123456789abcdef  2023-11-14 22:13:20  sync0  public.t  1    update/delete  db1  db0   later commit"
        );
        assert_eq!(lines[2], "  won  db1 committed 2023-11-14 22:13:20.000000: (deleted)");
        assert_eq!(lines[3], r#"  lost db0 commit time unknown: {"id": 1, "v": "kept"}"#);
        assert!(lines[4].starts_with("(more conflicts match: these are the newest 1;"), "{text}");
    }

    #[test]
    fn long_versions_are_cut_and_empty_lists_say_so() {
        let long = format!("\"{}\"", "x".repeat(VERSION_CHARS + 10));
        assert!(cut(&long).ends_with("… (12 more characters; --json shows all)"));
        let empty = ConflictList {
            conflicts: vec![],
            more: false,
            unreadable: vec!["sync1: db2 down".into()],
            unreachable: true,
        };
        assert_eq!(render_text(&empty, &Utc), "no conflicts match\ncannot read the conflict log of sync1: db2 down\n");
    }
}
