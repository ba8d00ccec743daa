//! The metric names a PromQL expression reads, for checking dashboards and
//! alert rules against what the binaries export. A small scanner, not a
//! parser: it drops strings, label matchers and ranges, skips functions,
//! keywords and the label lists of `by`, `without`, `on`, `ignoring`,
//! `group_left` and `group_right`, and keeps the identifiers left.

use std::collections::BTreeSet;

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
    // Aggregations, which may be followed by `by (…)` before their parenthesis.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names `expr` selects.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let bare = strip(expr);
    let chars: Vec<char> = bare.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (1e3, 0.99, 86400): its letters are not names.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            // A Grafana variable.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let opens = chars.get(next) == Some(&'(');
        if LABEL_LISTS.contains(&word.as_str()) {
            if opens {
                // Skip the label list.
                i = next + chars[next..].iter().position(|c| *c == ')').unwrap_or(chars.len() - next) + 1;
            }
            continue;
        }
        if opens || KEYWORDS.contains(&word.as_str()) {
            continue;
        }
        names.insert(word);
    }
    names
}

/// `expr` without strings, label matchers and ranges.
fn strip(expr: &str) -> String {
    let mut out = String::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if !escaped && d == c {
                        break;
                    }
                    escaped = !escaped && d == '\\';
                }
                out.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn names_in_expressions() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"max by (sync, db) (dugong_replica_lag_seconds and on (instance, sync) (dugong_replica_active == 1)) > 120"#
        ),
        ["dugong_replica_active", "dugong_replica_lag_seconds"]
    );
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (route, le) (rate(dugong_api_request_duration_seconds_bucket{site=~"$site", status=~"5.."}[$__rate_interval])))"#
        ),
        ["dugong_api_request_duration_seconds_bucket"]
    );
    assert_eq!(names("time() - process_start_time_seconds{job=~\"dugong-.*\"}"), ["process_start_time_seconds"]);
    assert_eq!(names("absent(up{job=\"dugong-replicate\"} == 1)"), ["up"]);
    assert_eq!(names("x / ignoring(a) group_left (b) y offset 5m > 1e3"), ["x", "y"]);
    assert_eq!(names("count by (sync) (a == 1) unless on (sync) count without (x) (b)"), ["a", "b"]);
    assert_eq!(
        names("dugong_tls_certificate_expiry_timestamp_seconds - time() < 14 * 86400"),
        ["dugong_tls_certificate_expiry_timestamp_seconds"]
    );
}
