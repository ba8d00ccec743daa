//! How one table differs across the databases of a sync: row counts, keys
//! missing somewhere, keys whose rows differ. The engines read their
//! databases (`engine::postgres::compare`, `engine::sqlite::compare`) and
//! `merge` joins what they stream, in constant memory, into a
//! [`TableComparison`]; `dugong compare` reports it.

pub(crate) mod merge;

use crate::plan::{Held, TableInfo};
use serde::Serialize;

/// Why a sync's tables could not be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncompared {
    pub why: String,
    /// A database could not be reached (or a SQLite file opened).
    pub unreachable: bool,
}

impl From<String> for Uncompared {
    fn from(why: String) -> Uncompared {
        Uncompared { why, unreachable: false }
    }
}

impl Uncompared {
    /// The databases that could not be opened, each with why.
    pub fn unreachable(failures: &[crate::ReplicaError]) -> Uncompared {
        let why: Vec<String> = failures.iter().map(ToString::to_string).collect();
        Uncompared { why: why.join("; "), unreachable: failures.iter().any(|e| e.is_unreachable()) }
    }
}

/// One table across the databases of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    /// `schema.name`.
    pub table: String,
    pub identical: bool,
    pub key_columns: Vec<String>,
    /// Row count per database.
    pub rows: Vec<RowCount>,
    /// Keys missing per database (only databases missing some).
    pub missing: Vec<MissingCount>,
    /// Keys present on several databases with different values.
    pub differing: u64,
    /// Keys with any difference (missing somewhere, or differing).
    pub different_keys: u64,
    /// The first differing keys, at most the limit.
    pub keys: Vec<KeyDifference>,
    /// A schema difference (the table is then not compared row by row), or a
    /// note when checksums differed but no key did.
    pub problem: Option<String>,
}

/// Rows of a table on one database.
#[derive(Debug, Clone, Serialize)]
pub struct RowCount {
    pub database: String,
    pub rows: i64,
}

/// How many keys one database lacks.
#[derive(Debug, Clone, Serialize)]
pub struct MissingCount {
    pub database: String,
    pub keys: u64,
}

/// One differing key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyDifference {
    /// The key's columns as text, in key order.
    pub key: Vec<String>,
    /// Databases that do not have the key.
    pub missing_on: Vec<String>,
    /// When the databases that have it disagree: groups of databases holding
    /// the same values. Empty when they agree.
    pub differs: Vec<Vec<String>>,
}

/// A table held because it is not alike everywhere: not compared row by row.
pub(crate) fn held(h: &Held) -> TableComparison {
    let table = &h.on[0].1;
    TableComparison { problem: Some(format!("schema differs: {}", h.reason)), ..empty(table, false) }
}

pub(crate) fn empty(table: &TableInfo, identical: bool) -> TableComparison {
    TableComparison {
        table: table.name.display_name(),
        identical,
        key_columns: table.key.iter().map(|c| c.name.clone()).collect(),
        rows: Vec::new(),
        missing: Vec::new(),
        differing: 0,
        different_keys: 0,
        keys: Vec::new(),
        problem: None,
    }
}

/// Puts what the merge found into a table's comparison; `names` are the
/// databases in stream order.
pub(crate) fn fill_differences(out: &mut TableComparison, diff: merge::Diff, names: &[String]) {
    let name = |i: usize| names[i].clone();
    out.missing = diff
        .missing
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| MissingCount { database: name(i), keys: *n })
        .collect();
    out.differing = diff.differing;
    out.different_keys = diff.total;
    out.keys = diff
        .found
        .into_iter()
        .map(|f| KeyDifference {
            key: f.key,
            missing_on: f.missing_on.into_iter().map(name).collect(),
            differs: f.groups.into_iter().map(|g| g.into_iter().map(name).collect()).collect(),
        })
        .collect();
    if diff.total == 0 {
        out.problem =
            Some("checksums differ but no differing key was found (rows changed while comparing?); run again".into());
    }
}
