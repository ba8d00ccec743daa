//! Syncs: which databases replicate which tables, how they first copy, and how
//! they resolve conflicts.

use dugong_core::{ConflictStrategy, DbId, SyncName};

use crate::error::Invalid;
use crate::onetimecopy::OneTimeCopy;
use crate::raw::RawSync;
use crate::span::{Spanned, Spans};
use crate::strategy;
use crate::tables::{self, TableSelection};

/// One sync: its sources replicate to each other and to its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    /// Its `name`, or `sync<index>` as Bucardo names it.
    pub name: SyncName,
    /// Its position in `syncs`.
    pub index: usize,
    /// Databases whose changes are captured and that receive the others' changes.
    pub sources: Vec<DbId>,
    /// Databases that only receive.
    pub targets: Vec<DbId>,
    /// The tables replicated.
    pub tables: TableSelection,
    /// The initial copy to make before replicating changes.
    pub onetimecopy: OneTimeCopy,
    /// How a key changed on several sources since the last run is resolved.
    pub conflict_strategy: ConflictStrategy,
}

impl Sync {
    /// Every database of the sync: sources, then targets (a database is never
    /// both, once validated).
    pub fn databases(&self) -> Vec<DbId> {
        let mut ids = Vec::with_capacity(self.sources.len() + self.targets.len());
        for id in self.sources.iter().chain(&self.targets) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids
    }
}

/// Builds sync `index` (at `prefix`, `syncs[<index>]`) from its raw shape.
pub(crate) fn from_raw(prefix: &str, index: usize, raw: Spanned<RawSync>, spans: &mut Spans) -> Result<Sync, Invalid> {
    spans.note(prefix, &raw);
    let raw = raw.value;
    let field = |name: &str| format!("{prefix}.{name}");
    spans.note_opt(&field("name"), &raw.name);
    spans.note(&field("tables"), &raw.tables);
    spans.note(&field("onetimecopy"), &raw.onetimecopy);
    spans.note_opt(&field("conflict_strategy"), &raw.conflict_strategy);

    let name = match raw.name {
        Some(name) => SyncName(name.value),
        None => SyncName(format!("sync{index}")),
    };
    let tables = tables::parse(&raw.tables.value).map_err(|reason| Invalid::new(field("tables"), reason))?;
    let conflict_strategy = match raw.conflict_strategy {
        Some(written) => strategy::parse(&field("conflict_strategy"), written.value, spans)?,
        None => ConflictStrategy::Latest,
    };
    Ok(Sync {
        name,
        index,
        sources: ids(&field("sources"), raw.sources, spans),
        targets: ids(&field("targets"), raw.targets, spans),
        tables,
        onetimecopy: raw.onetimecopy.value,
        conflict_strategy,
    })
}

fn ids(field: &str, list: Spanned<Vec<Spanned<DbId>>>, spans: &mut Spans) -> Vec<DbId> {
    spans.note(field, &list);
    for (i, id) in list.value.iter().enumerate() {
        spans.note(&format!("{field}[{i}]"), id);
    }
    list.value.into_iter().map(|id| id.value).collect()
}
