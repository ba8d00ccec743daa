//! The file's shape, as serde reads it: Bucardo's fields, Dugong's optional
//! ones, and Bucardo's own options (accepted, listed as ignored). Only types are
//! checked here; `database.rs` and `sync.rs` turn these into the typed config.

use std::fmt;

use dugong_core::DbId;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::onetimecopy::OneTimeCopy;
use crate::secret::Secret;
use crate::span::Spanned;
use crate::sslmode::SslMode;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) databases: Spanned<Vec<Spanned<RawDatabase>>>,
    #[serde(default)]
    pub(crate) syncs: Spanned<Vec<Spanned<RawSync>>>,
}

/// One entry of `databases`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub(crate) id: Spanned<DbId>,
    pub(crate) dbname: Option<Spanned<String>>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<Port>>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) pass: Option<Spanned<Secret>>,
    // Dugong's own.
    pub(crate) url: Option<Spanned<Secret>>,
    pub(crate) sslmode: Option<Spanned<SslMode>>,
    pub(crate) sslrootcert: Option<Spanned<String>>,
    // Bucardo's own options: accepted and ignored.
    dbservice: Option<IgnoredAny>,
    makedelta: Option<IgnoredAny>,
    server_side_prepares: Option<IgnoredAny>,
    dbconn: Option<IgnoredAny>,
    status: Option<IgnoredAny>,
    group: Option<IgnoredAny>,
    dbgroup: Option<IgnoredAny>,
}

impl RawDatabase {
    /// The Bucardo options written for this database, which Dugong ignores.
    pub(crate) fn ignored(&self) -> Vec<&'static str> {
        present(&[
            ("dbservice", self.dbservice.is_some()),
            ("makedelta", self.makedelta.is_some()),
            ("server_side_prepares", self.server_side_prepares.is_some()),
            ("dbconn", self.dbconn.is_some()),
            ("status", self.status.is_some()),
            ("group", self.group.is_some()),
            ("dbgroup", self.dbgroup.is_some()),
        ])
    }
}

/// One entry of `syncs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSync {
    pub(crate) sources: Spanned<Vec<Spanned<DbId>>>,
    #[serde(default)]
    pub(crate) targets: Spanned<Vec<Spanned<DbId>>>,
    pub(crate) tables: Spanned<String>,
    #[serde(default)]
    pub(crate) onetimecopy: Spanned<OneTimeCopy>,
    // Dugong's own.
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) conflict_strategy: Option<Spanned<RawStrategy>>,
    pub(crate) conflict_retention: Option<Spanned<String>>,
    pub(crate) backlog_alert: Option<Spanned<String>>,
    // Bucardo's own options: accepted and ignored.
    autokick: Option<IgnoredAny>,
    checktime: Option<IgnoredAny>,
    stayalive: Option<IgnoredAny>,
    kidsalive: Option<IgnoredAny>,
    lifetime: Option<IgnoredAny>,
    maxkicks: Option<IgnoredAny>,
    overdue: Option<IgnoredAny>,
    expired: Option<IgnoredAny>,
    rebuild_index: Option<IgnoredAny>,
    analyze_after_copy: Option<IgnoredAny>,
    vacuum_after_copy: Option<IgnoredAny>,
    deletemethod: Option<IgnoredAny>,
    strict_checking: Option<IgnoredAny>,
    isolation_level: Option<IgnoredAny>,
    status: Option<IgnoredAny>,
    makedelta: Option<IgnoredAny>,
    priority: Option<IgnoredAny>,
    track_rates: Option<IgnoredAny>,
    copyextra: Option<IgnoredAny>,
}

impl RawSync {
    /// The Bucardo options written for this sync, which Dugong ignores.
    pub(crate) fn ignored(&self) -> Vec<&'static str> {
        present(&[
            ("autokick", self.autokick.is_some()),
            ("checktime", self.checktime.is_some()),
            ("stayalive", self.stayalive.is_some()),
            ("kidsalive", self.kidsalive.is_some()),
            ("lifetime", self.lifetime.is_some()),
            ("maxkicks", self.maxkicks.is_some()),
            ("overdue", self.overdue.is_some()),
            ("expired", self.expired.is_some()),
            ("rebuild_index", self.rebuild_index.is_some()),
            ("analyze_after_copy", self.analyze_after_copy.is_some()),
            ("vacuum_after_copy", self.vacuum_after_copy.is_some()),
            ("deletemethod", self.deletemethod.is_some()),
            ("strict_checking", self.strict_checking.is_some()),
            ("isolation_level", self.isolation_level.is_some()),
            ("status", self.status.is_some()),
            ("makedelta", self.makedelta.is_some()),
            ("priority", self.priority.is_some()),
            ("track_rates", self.track_rates.is_some()),
            ("copyextra", self.copyextra.is_some()),
        ])
    }
}

fn present(options: &[(&'static str, bool)]) -> Vec<&'static str> {
    options.iter().filter(|(_, given)| *given).map(|(name, _)| *name).collect()
}

/// A TCP port, written as a number or a string of digits.
pub(crate) struct Port(pub(crate) u16);

impl Port {
    /// Parses the digits of a port, as in `port=5444`.
    pub(crate) fn parse(text: &str) -> Result<u16, String> {
        match text.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("`{text}` is not a port; a port is a number from 1 to 65535")),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (1 to 65535)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                Port::parse(&v.to_string()).map(Port).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                Port::parse(&v.to_string()).map(Port).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::parse(v).map(Port).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// `conflict_strategy` as written: a word or list of databases in a string, or
/// a JSON array of database ids.
pub(crate) enum RawStrategy {
    Text(String),
    List(Vec<Spanned<DbId>>),
}

impl<'de> Deserialize<'de> for RawStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrategyVisitor;
        impl<'de> Visitor<'de> for StrategyVisitor {
            type Value = RawStrategy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"latest\", \"abort\", or a list of database ids such as [1, 0]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStrategy, E> {
                Ok(RawStrategy::Text(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawStrategy, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element()? {
                    ids.push(id);
                }
                Ok(RawStrategy::List(ids))
            }
        }
        deserializer.deserialize_any(StrategyVisitor)
    }
}
