//! Versioned schema migrations, the same numbered steps for both engines.
//!
//! Each server applies the missing steps at start, in one transaction, under a
//! lock so servers starting together don't race. The record of applied steps
//! lives with the site-local state (`dugong_local.schema_migrations` on
//! PostgreSQL) so the replicator never copies it between sites: each site
//! migrates its own database. A database migrated by a newer dugong is refused,
//! never written with an old idea of its schema.

use crate::error::StoreError;

/// One step of the schema.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub(crate) postgres: &'static str,
    pub(crate) sqlite: &'static str,
}

/// Every step, in order; versions count up from 1 without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "apps, flows, settings, contexts, events and the change feed",
        postgres: include_str!("postgres/v1.sql"),
        sqlite: include_str!("sqlite/v1.sql"),
    },
    Migration {
        version: 2,
        name: "console users (replicated) and sessions (site-local)",
        postgres: include_str!("postgres/v2.sql"),
        sqlite: include_str!("sqlite/v2.sql"),
    },
    Migration {
        version: 3,
        name: "audit log; console users that can be disabled and whose sessions end on every site",
        postgres: include_str!("postgres/v3.sql"),
        sqlite: include_str!("sqlite/v3.sql"),
    },
    Migration {
        version: 4,
        name: "lists by name and by last change; the history of apps, flows and settings",
        postgres: include_str!("postgres/v4.sql"),
        sqlite: include_str!("sqlite/v4.sql"),
    },
];

/// The schema version this build creates.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The steps a database at `current` still needs.
pub(crate) fn pending(current: i64) -> Result<&'static [Migration], StoreError> {
    if current > latest() {
        return Err(StoreError::TooNew { found: current, known: latest() });
    }
    let done = MIGRATIONS.iter().take_while(|m| m.version <= current).count();
    Ok(&MIGRATIONS[done..])
}

/// Who applied a step, as recorded with it.
pub(crate) fn applied_by() -> String {
    format!("dugong {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
        assert_eq!(pending(0).unwrap().len(), MIGRATIONS.len());
        assert!(pending(latest()).unwrap().is_empty());
        let err = pending(latest() + 1).unwrap_err().to_string();
        assert!(err.contains("newer than this dugong knows"), "{err}");
    }
}
