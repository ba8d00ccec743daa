//! The results as a Markdown table with Dugong's ratios, the targets, and the
//! JSON document written to `bench/results/`.

use super::{Metric, Results, Subject, Target};
use crate::stats::Summary;
use crate::system::System;
use serde::Serialize;
use std::fmt::Write as _;

/// What the run was: sizes, machine, versions, method.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub command: String,
    pub quick: bool,
    pub reps: usize,
    pub started_at: String,
    pub duration_s: f64,
    pub machine: Machine,
    pub versions: Versions,
    pub sizes: Sizes,
    /// `--pg-setting` values added to the baseline's settings (experiments).
    pub extra_pg_settings: Vec<String>,
    /// `--delay-ms`: one-way delay of the link in front of each replicator's remote site.
    pub delay_ms: Option<u64>,
    pub method: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    /// `/proc/loadavg` before and after the run: other work on the machine
    /// shares the CPUs with every figure.
    pub load_before: String,
    pub load_after: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub postgresql: String,
    pub bucardo: Option<String>,
    /// `git describe` of this workspace.
    pub dugong: String,
    /// The dugong binary measured (`--dugong`): may come from another tree.
    pub dugong_bin: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    pub backlog_rows: u64,
    pub burst_rows: u64,
    pub two_way_rows_per_site: u64,
    pub txn_rows: u64,
    pub writers: usize,
    pub lag_tx_per_s: u32,
    pub lag_seconds: u64,
    pub pgbench_seconds: u64,
    pub pgbench_clients: u32,
    pub deadline_s: u64,
}

/// The Markdown table: one row per figure, the systems measured, the
/// reference, and Dugong's ratio to each other system.
pub fn table(results: &Results, systems: &[System]) -> String {
    let others: Vec<System> = systems.iter().copied().filter(|s| *s != System::Dugong).collect();
    let mut header = vec!["measurement".to_string()];
    header.extend(systems.iter().map(|s| s.label().to_string()));
    header.push("reference".into());
    if systems.contains(&System::Dugong) {
        header.extend(others.iter().map(|o| format!("Dugong ÷ {}", o.label())));
    }
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for metric in Metric::ALL {
        let mut cells = vec![format!("{} {}", metric.label(), if metric.higher_is_better() { "↑" } else { "↓" })];
        let mut any = false;
        for subject in systems.iter().map(|s| Subject::System(*s)).chain([Subject::Reference]) {
            let summary = results.summary(metric, subject);
            any |= summary.is_some();
            cells.push(summary.as_ref().map_or("–".into(), cell));
        }
        if !any {
            continue;
        }
        if systems.contains(&System::Dugong) {
            for o in &others {
                cells.push(results.dugong_ratio(metric, *o).map_or("–".into(), |r| format!("{}×", number(r))));
            }
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The targets, one per line.
pub fn targets(targets: &[Target]) -> String {
    let mut out = String::from("Targets of issue 3 (Dugong's medians):\n");
    for t in targets {
        out.push_str(&target_line(t.target, t.value, t.met));
    }
    out
}

/// One target's line: `  [met   ] what: value`, or `[MISSED]`, or `[n/a   ]`
/// when it was not measured.
pub fn target_line(target: &str, value: Option<f64>, met: Option<bool>) -> String {
    let verdict = match met {
        Some(true) => "met   ",
        Some(false) => "MISSED",
        None => "n/a   ",
    };
    let value = value.map_or("not measured".into(), number);
    format!("  [{verdict}] {target}: {value}\n")
}

/// The JSON document.
pub fn json(results: &Results, meta: &Meta) -> serde_json::Value {
    let measurements: Vec<serde_json::Value> = Metric::ALL
        .iter()
        .filter_map(|metric| {
            let mut subjects = serde_json::Map::new();
            for subject in [
                Subject::System(System::Dugong),
                Subject::System(System::Bucardo),
                Subject::System(System::Native),
                Subject::Reference,
            ] {
                if let Some(s) = results.summary(*metric, subject) {
                    subjects.insert(subject.key().into(), serde_json::to_value(s).ok()?);
                }
            }
            if subjects.is_empty() {
                return None;
            }
            let mut ratios = serde_json::Map::new();
            for other in [System::Bucardo, System::Native] {
                if let Some(r) = results.dugong_ratio(*metric, other) {
                    ratios.insert(Subject::System(other).key().into(), r.into());
                }
            }
            Some(serde_json::json!({
                "metric": metric.key(),
                "label": metric.label().trim(),
                "better": if metric.higher_is_better() { "higher" } else { "lower" },
                "values": subjects,
                "dugong_ratio_to": ratios,
            }))
        })
        .collect();
    serde_json::json!({
        "benchmark": "dugong-bench (issue 3)",
        "meta": meta,
        "measurements": measurements,
        "targets": results.targets(),
        "errors": results.errors,
    })
}

/// `median [min–max]`, with `*` when some run hit its deadline.
pub fn cell(s: &Summary) -> String {
    let mut text = number(s.median);
    if s.runs.len() > 1 {
        text.push_str(&format!(" [{}–{}]", number(s.min), number(s.max)));
    }
    if s.incomplete > 0 {
        text.push('*');
    }
    text
}

/// Thousands separated above 1,000; two significant decimals below 10.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let digits = format!("{:.0}", a);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{}{grouped}", if v < 0.0 { "-" } else { "" })
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(119_242.4), "119,242");
        assert_eq!(number(1_000.0), "1,000");
        assert_eq!(number(734.2), "734");
        assert_eq!(number(13.04), "13.0");
        assert_eq!(number(0.333), "0.33");
        assert_eq!(number(f64::NAN), "–");
    }
}
