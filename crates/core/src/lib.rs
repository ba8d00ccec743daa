//! The vocabulary every Dugong crate shares. Nothing here does I/O.
//!
//! - [`DbId`], [`SyncName`]: how configuration names databases and syncs
//!   (`db<id>` and `sync<index>` in status, as Bucardo names them).
//! - [`TableName`]: a schema-qualified table, quoted correctly for SQL.
//! - [`ConflictStrategy`]: how a sync decides which change of a key wins.

mod ident;

pub use ident::{quote_ident, quote_literal, TableName};

use std::fmt;

/// The `id` of a database in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DbId(pub u32);

impl fmt::Display for DbId {
    /// Databases are named `db<id>`, as Bucardo names them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "db{}", self.0)
    }
}

impl std::str::FromStr for DbId {
    type Err = ParseDbIdError;

    /// Reads a database's name, `db<id>`, back.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = s.strip_prefix("db").and_then(|n| n.parse().ok()).ok_or_else(|| ParseDbIdError(s.to_string()))?;
        Ok(DbId(id))
    }
}

/// A text that is not a database's name (`db<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDbIdError(pub String);

impl fmt::Display for ParseDbIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a database name (db<id>)", self.0)
    }
}

impl std::error::Error for ParseDbIdError {}

/// The name of a sync: its `name` field, or `sync<index>` as Bucardo names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SyncName(pub String);

impl SyncName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SyncName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a sync resolves a conflict: the same key changed on two or more sources
/// since the last run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStrategy {
    /// The change that committed last wins; ties go to the database listed first.
    Latest,
    /// The first database of this list that changed the key wins; when none of
    /// them did, `Latest` decides.
    Priority(Vec<DbId>),
    /// Any conflict stops the sync: nothing is applied, the changes are kept and
    /// the sync is reported Bad until an operator acts.
    Abort,
}

impl fmt::Display for ConflictStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictStrategy::Latest => f.write_str("latest"),
            ConflictStrategy::Abort => f.write_str("abort"),
            ConflictStrategy::Priority(ids) => {
                let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
                write!(f, "priority {}", names.join(","))
            }
        }
    }
}
