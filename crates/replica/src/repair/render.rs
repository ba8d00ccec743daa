//! The text report of `dugong repair`: per table what differed and what each
//! database took, then the first keys settled, in `compare`'s notation.

use super::report::{RepairReport, TableRepair};

/// The whole report.
pub fn render_text(report: &RepairReport) -> String {
    let mut out = String::new();
    let verb = if report.dry_run { "would take" } else { "took" };
    for sync in &report.syncs {
        if let Some(error) = &sync.error {
            out.push_str(&format!("{}: cannot repair: {error}\n", sync.name));
            continue;
        }
        if sync.tables.is_empty() {
            out.push_str(&format!("{}: no tables to repair\n", sync.name));
        }
        for t in &sync.tables {
            out.push_str(&table_text(t, verb));
        }
    }
    let settled: u64 = report.syncs.iter().flat_map(|s| &s.tables).map(|t| t.settled).sum();
    let changing = report.changing();
    if report.dry_run {
        out.push_str(&format!("dry run: {settled} keys would be repaired; nothing was written\n"));
    } else {
        out.push_str(&format!(
            "repaired {settled} keys; every change is in the conflict log (dugong conflicts), where restore undoes one\n"
        ));
    }
    if changing > 0 {
        out.push_str(&format!(
            "{changing} differing keys have changes waiting in a change log: the replicator ships them; run repair again if they still differ afterwards\n"
        ));
    }
    out
}

fn table_text(t: &TableRepair, verb: &str) -> String {
    if let Some(problem) = &t.problem {
        return format!("{}: not repaired: {problem}\n", t.table);
    }
    if t.differing == 0 {
        return format!("{}: identical\n", t.table);
    }
    let mut what = Vec::new();
    for w in &t.writes {
        let mut parts = Vec::new();
        if w.inserted > 0 {
            parts.push(format!("{} missing rows", w.inserted));
        }
        if w.updated > 0 {
            parts.push(format!("{} newer versions", w.updated));
        }
        if w.deleted > 0 {
            parts.push(format!("{} deletions", w.deleted));
        }
        if !parts.is_empty() {
            what.push(format!("{} {verb} {}", w.database, parts.join(", ")));
        }
    }
    if t.changing > 0 {
        what.push(format!("{} changing (left to the replicator)", t.changing));
    }
    let mut out = format!("{}: {} keys differed; {}\n", t.table, t.differing, what.join("; "));
    for k in &t.keys {
        let losers: Vec<String> = k.losers.iter().map(|(db, why)| format!("{db} ({why})")).collect();
        out.push_str(&format!(
            "  ({})=({}): {}'s version to {}\n",
            t.key_columns.join(", "),
            k.key.join(", "),
            k.winner,
            losers.join(", ")
        ));
    }
    let hidden = t.settled.saturating_sub(t.keys.len() as u64);
    if hidden > 0 {
        out.push_str(&format!("  … and {hidden} more\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repair::report::{DatabaseWrites, KeyRepair, SyncRepair};

    #[test]
    fn tables_list_what_each_database_took_and_the_keys() {
        let t = TableRepair {
            table: "public.t".into(),
            key_columns: vec!["id".into()],
            differing: 3,
            settled: 3,
            changing: 0,
            writes: vec![
                DatabaseWrites { database: "db0".into(), inserted: 1, ..Default::default() },
                DatabaseWrites { database: "db1".into(), updated: 2, ..Default::default() },
            ],
            keys: vec![KeyRepair {
                key: vec!["7".into()],
                winner: "db0".into(),
                losers: vec![("db1".into(), "dugong repair: later commit".into())],
            }],
            problem: None,
        };
        let report = RepairReport {
            dry_run: true,
            syncs: vec![SyncRepair {
                name: "sync0".into(),
                databases: vec!["db0".into(), "db1".into()],
                error: None,
                unreachable: false,
                tables: vec![t],
            }],
        };
        assert_eq!(
            render_text(&report),
            "public.t: 3 keys differed; db0 would take 1 missing rows; db1 would take 2 newer versions
  (id)=(7): db0's version to db1 (dugong repair: later commit)
  … and 2 more
dry run: 3 keys would be repaired; nothing was written
"
        );
    }
}
