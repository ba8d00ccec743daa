//! Syncs: which databases replicate which tables, how they first copy, and how
//! they resolve conflicts.

use std::time::Duration;

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
    /// How long the conflict log keeps a conflict: `conflict_retention`,
    /// [`DEFAULT_CONFLICT_RETENTION`] unless written.
    pub conflict_retention: Duration,
    /// The size, in bytes, past which a source's change logs holding
    /// changes a database has not applied yet make the sync unhealthy:
    /// `backlog_alert`, [`DEFAULT_BACKLOG_ALERT`] unless written. Nothing is
    /// ever dropped: the operator decides (see docs/operations.md).
    pub backlog_alert: u64,
}

/// How long the conflict log keeps a conflict when a sync does not say: 30
/// days, long enough to review a month's conflicts and restore a lost version.
pub const DEFAULT_CONFLICT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The change-log size that makes a sync unhealthy when a sync does not say:
/// 10 GiB, about a day of a thousand changed rows a second.
pub const DEFAULT_BACKLOG_ALERT: u64 = 10 << 30;

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
    spans.note_opt(&field("conflict_retention"), &raw.conflict_retention);
    spans.note_opt(&field("backlog_alert"), &raw.backlog_alert);

    let name = match raw.name {
        Some(name) => SyncName(name.value),
        None => SyncName(format!("sync{index}")),
    };
    let tables = tables::parse(&raw.tables.value).map_err(|reason| Invalid::new(field("tables"), reason))?;
    let conflict_strategy = match raw.conflict_strategy {
        Some(written) => strategy::parse(&field("conflict_strategy"), written.value, spans)?,
        None => ConflictStrategy::Latest,
    };
    let conflict_retention = match raw.conflict_retention {
        Some(written) => {
            retention(&written.value).map_err(|reason| Invalid::new(field("conflict_retention"), reason))?
        }
        None => DEFAULT_CONFLICT_RETENTION,
    };
    let backlog_alert = match raw.backlog_alert {
        Some(written) => size(&written.value).map_err(|reason| Invalid::new(field("backlog_alert"), reason))?,
        None => DEFAULT_BACKLOG_ALERT,
    };
    Ok(Sync {
        name,
        index,
        sources: ids(&field("sources"), raw.sources, spans),
        targets: ids(&field("targets"), raw.targets, spans),
        tables,
        onetimecopy: raw.onetimecopy.value,
        conflict_strategy,
        conflict_retention,
        backlog_alert,
    })
}

/// Reads `conflict_retention`: a duration such as `30d`, `12h` or `90m`.
fn retention(written: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(written.trim())
        .map_err(|e| format!("must be a duration such as \"30d\", \"12h\" or \"90m\", not {written:?} ({e})"))?;
    if d.is_zero() {
        return Err("must be longer than zero: a conflict log that keeps nothing cannot be reviewed".into());
    }
    Ok(d)
}

/// Reads a size such as `10GB`, `512MB` or `4096` (bytes); units are
/// powers of 1024, as PostgreSQL's.
pub fn size(written: &str) -> Result<u64, String> {
    let bad = || format!("must be a size such as \"10GB\", \"512MB\" or \"4096\" (bytes), not {written:?}");
    let text = written.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kb" | "k" => 10,
        "mb" | "m" => 20,
        "gb" | "g" => 30,
        "tb" | "t" => 40,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes == 0 {
        return Err("must be larger than zero".into());
    }
    Ok(bytes)
}

fn ids(field: &str, list: Spanned<Vec<Spanned<DbId>>>, spans: &mut Spans) -> Vec<DbId> {
    spans.note(field, &list);
    for (i, id) in list.value.iter().enumerate() {
        spans.note(&format!("{field}[{i}]"), id);
    }
    list.value.into_iter().map(|id| id.value).collect()
}
