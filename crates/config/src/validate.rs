//! The rules that tie fields together: ids defined once and referenced only
//! when defined, sync names unique, each database in one role per sync.
//! They hold for any [`Config`], read from a file or built in code.

use std::collections::HashMap;

use dugong_core::{ConflictStrategy, DbId};

use crate::error::{ConfigError, Invalid};
use crate::onetimecopy::OneTimeCopy;
use crate::sync::Sync;
use crate::tables::TableSelection;
use crate::Config;

impl Config {
    /// Checks the rules no single field can: at least one database and one
    /// sync, unique database ids and sync names, defined ids in every sync,
    /// no database both source and target of a sync. [`Config::load`] calls it;
    /// call it on a config built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|invalid| ConfigError::unlocated(&self.path, invalid))
    }

    /// [`Config::validate`], before the file's path is attached.
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.databases.is_empty() {
            return Err(Invalid::new(
                "databases",
                "no databases; list each as {\"id\": 0, \"dbname\": …, \"host\": …, \"user\": …, \"pass\": …}",
            ));
        }
        if self.syncs.is_empty() {
            return Err(Invalid::new(
                "syncs",
                "no syncs; add one such as {\"sources\": [0, 1], \"targets\": [], \"tables\": \"all\"}",
            ));
        }
        let mut ids: HashMap<DbId, usize> = HashMap::new();
        for (i, database) in self.databases.iter().enumerate() {
            if let Some(first) = ids.insert(database.id, i) {
                return Err(Invalid::new(
                    format!("databases[{i}].id"),
                    format!("database id {} is already used by databases[{first}]", database.id.0),
                ));
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, sync) in self.syncs.iter().enumerate() {
            let prefix = format!("syncs[{i}]");
            check_name(&prefix, sync.name.as_str())?;
            if let Some(first) = names.insert(sync.name.as_str(), i) {
                return Err(Invalid::new(
                    format!("{prefix}.name"),
                    format!(
                        "\"{}\" is already the name of syncs[{first}] (a sync without a name is called sync<index>)",
                        sync.name
                    ),
                ));
            }
            check_sync(&prefix, sync, &ids)?;
        }
        Ok(())
    }
}

fn check_name(prefix: &str, name: &str) -> Result<(), Invalid> {
    let rule = "a sync name is letters (A-Z, a-z), digits, _ and -";
    if name.is_empty() {
        return Err(Invalid::new(format!("{prefix}.name"), format!("empty; {rule}")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(Invalid::new(format!("{prefix}.name"), format!("\"{name}\" contains {c:?}; {rule}")));
    }
    Ok(())
}

fn check_sync(prefix: &str, sync: &Sync, defined: &HashMap<DbId, usize>) -> Result<(), Invalid> {
    if sync.sources.is_empty() {
        return Err(Invalid::new(format!("{prefix}.sources"), "a sync needs at least one source"));
    }
    check_ids(&format!("{prefix}.sources"), &sync.sources, defined)?;
    check_ids(&format!("{prefix}.targets"), &sync.targets, defined)?;
    if let Some(i) = sync.targets.iter().position(|id| sync.sources.contains(id)) {
        return Err(Invalid::new(
            format!("{prefix}.targets[{i}]"),
            format!(
                "database id {} is also a source of this sync; a source already receives the other \
                 sources' changes, so list it only in sources",
                sync.targets[i].0
            ),
        ));
    }
    if sync.sources.len() + sync.targets.len() < 2 {
        return Err(Invalid::new(
            format!("{prefix}.targets"),
            "the sync has one source and no target, so nothing to replicate to; add a target or a second source",
        ));
    }
    if let TableSelection::List(tables) = &sync.tables {
        if tables.is_empty() {
            return Err(Invalid::new(format!("{prefix}.tables"), "no tables; write \"all\" or name the tables"));
        }
    }
    if sync.onetimecopy == OneTimeCopy::Full && sync.targets.is_empty() {
        return Err(Invalid::new(
            format!("{prefix}.onetimecopy"),
            "1 (empty each target table and copy it) needs targets, and this sync has only sources: \
             emptying a source would lose its rows. Use 2 to fill each empty table from the source \
             that has rows, or 0",
        ));
    }
    if let ConflictStrategy::Priority(order) = &sync.conflict_strategy {
        check_priority(&format!("{prefix}.conflict_strategy"), order, &sync.sources)?;
    }
    Ok(())
}

fn check_ids(field: &str, ids: &[DbId], defined: &HashMap<DbId, usize>) -> Result<(), Invalid> {
    for (i, id) in ids.iter().enumerate() {
        if !defined.contains_key(id) {
            return Err(Invalid::new(
                format!("{field}[{i}]"),
                format!("database id {} is not defined in \"databases\"", id.0),
            ));
        }
        if let Some(first) = ids[..i].iter().position(|other| other == id) {
            return Err(Invalid::new(
                format!("{field}[{i}]"),
                format!("database id {} is already listed at [{first}]", id.0),
            ));
        }
    }
    Ok(())
}

fn check_priority(field: &str, order: &[DbId], sources: &[DbId]) -> Result<(), Invalid> {
    if order.is_empty() {
        return Err(Invalid::new(field, "an empty priority list; list the sources in priority order, e.g. [1, 0]"));
    }
    for (i, id) in order.iter().enumerate() {
        if !sources.contains(id) {
            let names: Vec<String> = sources.iter().map(ToString::to_string).collect();
            return Err(Invalid::new(
                format!("{field}[{i}]"),
                format!(
                    "{id} (database id {}) is not a source of this sync, whose sources are {}; \
                     a priority list orders the sources",
                    id.0,
                    names.join(", ")
                ),
            ));
        }
        if order[..i].contains(id) {
            return Err(Invalid::new(format!("{field}[{i}]"), format!("{id} is listed twice")));
        }
    }
    Ok(())
}
