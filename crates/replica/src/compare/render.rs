//! The text report of `dugong compare`: one line per table, then the first
//! differing keys, in PostgreSQL's `(col)=(value)` notation.

use super::{CompareReport, KeyDifference, TableComparison};

/// The whole report. A header line per sync appears only when several syncs
/// are shown.
pub fn render_text(report: &CompareReport) -> String {
    let mut out = String::new();
    let headers = report.syncs.len() > 1;
    for sync in &report.syncs {
        if headers {
            out.push_str(&format!("{} ({}):\n", sync.name, sync.databases.join(", ")));
        }
        if let Some(error) = &sync.error {
            out.push_str(&format!("{}: cannot compare: {error}\n", sync.name));
            continue;
        }
        if sync.tables.is_empty() {
            out.push_str(&format!("{}: no tables to compare\n", sync.name));
        }
        for table in &sync.tables {
            out.push_str(&table_text(table));
        }
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `public.t: identical (N rows)`, or `public.t: DIFFERENT — …` and the keys.
pub fn table_text(t: &TableComparison) -> String {
    if t.identical {
        let rows = t.rows.first().map_or(0, |r| r.rows);
        return format!("{}: identical ({})\n", t.table, plural(rows as u64, "row", "rows"));
    }
    let counts: Vec<String> =
        t.rows.iter().map(|r| format!("{} {}", r.database, plural(r.rows as u64, "row", "rows"))).collect();
    let mut what: Vec<String> =
        t.missing.iter().map(|m| format!("{} missing on {}", plural(m.keys, "key", "keys"), m.database)).collect();
    if t.differing > 0 {
        what.push(plural(t.differing, "key differs", "keys differ"));
    }
    if let Some(problem) = &t.problem {
        what.push(problem.clone());
    }
    let mut line = format!("{}: DIFFERENT —", t.table);
    if !counts.is_empty() {
        line.push(' ');
        line.push_str(&counts.join(", "));
        line.push(';');
    }
    line.push(' ');
    line.push_str(&what.join(", "));
    let mut out = format!("{line}\n");
    for k in &t.keys {
        out.push_str(&format!("  {}: {}\n", key_text(&t.key_columns, &k.key), difference(k)));
    }
    let hidden = t.different_keys.saturating_sub(t.keys.len() as u64);
    if hidden > 0 {
        out.push_str(&format!("  … and {hidden} more {}\n", if hidden == 1 { "key" } else { "keys" }));
    }
    out
}

/// `(region, seq)=(eu, 1)`.
fn key_text(columns: &[String], values: &[String]) -> String {
    format!("({})=({})", columns.join(", "), values.join(", "))
}

fn difference(k: &KeyDifference) -> String {
    let mut parts = Vec::new();
    if !k.missing_on.is_empty() {
        parts.push(format!("missing on {}", k.missing_on.join(", ")));
    }
    if !k.differs.is_empty() {
        let groups: Vec<String> = k.differs.iter().map(|g| g.join(", ")).collect();
        parts.push(format!("values differ ({})", groups.join(" ≠ ")));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{MissingCount, RowCount, SyncComparison};

    fn table(identical: bool) -> TableComparison {
        TableComparison {
            table: "public.t".into(),
            identical,
            key_columns: vec!["id".into()],
            rows: vec![RowCount { database: "db0".into(), rows: 1000 }, RowCount { database: "db1".into(), rows: 998 }],
            missing: vec![],
            differing: 0,
            different_keys: 0,
            keys: vec![],
            problem: None,
        }
    }

    #[test]
    fn identical_tables_take_one_line() {
        assert_eq!(table_text(&table(true)), "public.t: identical (1000 rows)\n");
    }

    #[test]
    fn differences_list_totals_then_the_first_keys() {
        let mut t = table(false);
        t.missing = vec![MissingCount { database: "db1".into(), keys: 2 }];
        t.differing = 1;
        t.different_keys = 3;
        t.keys = vec![
            KeyDifference { key: vec!["42".into()], missing_on: vec!["db1".into()], differs: vec![] },
            KeyDifference {
                key: vec!["7".into()],
                missing_on: vec![],
                differs: vec![vec!["db0".into()], vec!["db1".into()]],
            },
        ];
        assert_eq!(
            table_text(&t),
            "public.t: DIFFERENT — db0 1000 rows, db1 998 rows; 2 keys missing on db1, 1 key differs
  (id)=(42): missing on db1
  (id)=(7): values differ (db0 ≠ db1)
  … and 1 more key
"
        );
    }

    #[test]
    fn sync_errors_and_headers() {
        let report = CompareReport {
            identical: false,
            errors: true,
            syncs: vec![
                SyncComparison {
                    name: "sync0".into(),
                    databases: vec!["db0".into(), "db1".into()],
                    error: Some("db1 is unreachable".into()),
                    unreachable: true,
                    tables: vec![],
                },
                SyncComparison {
                    name: "sync1".into(),
                    databases: vec!["db0".into()],
                    error: None,
                    unreachable: false,
                    tables: vec![table(true)],
                },
            ],
        };
        assert_eq!(
            render_text(&report),
            "sync0 (db0, db1):\nsync0: cannot compare: db1 is unreachable\nsync1 (db0):\npublic.t: identical (1000 rows)\n"
        );
    }
}
