//! The records the server keeps, and how each maps to its table.
//!
//! The four mutable kinds (apps, flows, settings, contexts) share one shape —
//! a key, some fields, a `version` and an `updated_at` — so the engines handle
//! them with one generic implementation driven by [`Table`] descriptors, and
//! [`Record`] gives callers the typed view.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::StoreError;

/// Microseconds since the Unix epoch: how the store passes times around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub i64);

impl Micros {
    /// The current time.
    pub fn now() -> Micros {
        Micros::from(SystemTime::now())
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    /// RFC 3339 in UTC: `2024-05-01T12:00:00Z`, with microseconds when
    /// there are any (`2024-05-01T12:00:00.000001Z`).
    pub fn to_rfc3339(self) -> String {
        if self.0 % 1_000_000 == 0 {
            humantime::format_rfc3339_seconds(self.to_system_time()).to_string()
        } else {
            humantime::format_rfc3339_micros(self.to_system_time()).to_string()
        }
    }
}

impl From<SystemTime> for Micros {
    fn from(t: SystemTime) -> Micros {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Micros(d.as_micros().min(i64::MAX as u128) as i64),
            Err(e) => Micros(-(e.duration().as_micros().min(i64::MAX as u128) as i64)),
        }
    }
}

/// The kinds of mutable record, which Watch reports changes of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    App,
    Flow,
    Setting,
    Context,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::App, Kind::Flow, Kind::Setting, Kind::Context];

    /// The plural name used in URLs, the change feed and messages: `apps`, ….
    pub fn as_str(self) -> &'static str {
        self.table().name
    }

    /// The kind named by [`Kind::as_str`].
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether every change of a record of this kind is kept in the history
    /// (`dugong_app.history`). Contexts are not: clients rewrite them all the
    /// time, and their values (the patient on screen) are no configuration.
    pub fn keeps_history(self) -> bool {
        matches!(self, Kind::App | Kind::Flow | Kind::Setting)
    }

    /// The name people know a record by, when it is not the key: apps and
    /// flows have one, unique among apps and among the flows of one app.
    pub fn title_field(self) -> Option<&'static str> {
        self.table().title
    }

    /// `app`, `flow`, …: the kind in a sentence.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Flow => "flow",
            Kind::Setting => "setting",
            Kind::Context => "context",
        }
    }

    /// How the kind is stored.
    pub(crate) fn table(self) -> &'static Table {
        match self {
            Kind::App => &APPS,
            Kind::Flow => &FLOWS,
            Kind::Setting => &SETTINGS,
            Kind::Context => &CONTEXTS,
        }
    }
}

/// How a column's text is typed in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    /// `uuid` on PostgreSQL, canonical lowercase text on SQLite.
    Uuid,
    /// `jsonb` on PostgreSQL, JSON text on SQLite.
    Json,
}

#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// A mutable kind's table: its key, its fields (all `NOT NULL`, passed as
/// text), then `version bigint` and `updated_at`.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub key: Column,
    pub fields: &'static [Column],
    /// The field people name records by (searched, sorted, unique), when it
    /// is not the key.
    pub title: Option<&'static str>,
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

static APPS: Table = Table {
    name: "apps",
    key: col("id", ColumnType::Uuid),
    fields: &[col("name", ColumnType::Text), col("description", ColumnType::Text)],
    title: Some("name"),
};
static FLOWS: Table = Table {
    name: "flows",
    key: col("id", ColumnType::Uuid),
    fields: &[col("app_id", ColumnType::Uuid), col("name", ColumnType::Text), col("script", ColumnType::Text)],
    title: Some("name"),
};
static SETTINGS: Table = Table {
    name: "settings",
    key: col("key", ColumnType::Text),
    fields: &[col("value", ColumnType::Json)],
    title: None,
};
static CONTEXTS: Table = Table {
    name: "contexts",
    key: col("user_id", ColumnType::Text),
    fields: &[col("entries", ColumnType::Json)],
    title: None,
};

/// An application that clients automate.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: i64,
    pub updated_at: Micros,
}

/// An automation script of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub script: String,
    pub version: i64,
    pub updated_at: Micros,
}

/// A key and a JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    pub value: serde_json::Value,
    pub version: i64,
    pub updated_at: Micros,
}

/// A user's shared desktop context.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub user: String,
    pub values: BTreeMap<String, String>,
    pub version: i64,
    pub updated_at: Micros,
}

/// A record of any mutable kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    App(App),
    Flow(Flow),
    Setting(Setting),
    Context(Context),
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::App(_) => Kind::App,
            Record::Flow(_) => Kind::Flow,
            Record::Setting(_) => Kind::Setting,
            Record::Context(_) => Kind::Context,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Record::App(a) => &a.id,
            Record::Flow(f) => &f.id,
            Record::Setting(s) => &s.key,
            Record::Context(c) => &c.user,
        }
    }

    pub fn version(&self) -> i64 {
        match self {
            Record::App(a) => a.version,
            Record::Flow(f) => f.version,
            Record::Setting(s) => s.version,
            Record::Context(c) => c.version,
        }
    }

    pub fn updated_at(&self) -> Micros {
        match self {
            Record::App(a) => a.updated_at,
            Record::Flow(f) => f.updated_at,
            Record::Setting(s) => s.updated_at,
            Record::Context(c) => c.updated_at,
        }
    }

    /// What people call the record: an app's or flow's name, else its key.
    pub fn title(&self) -> &str {
        match self {
            Record::App(a) => &a.name,
            Record::Flow(f) => &f.name,
            Record::Setting(s) => &s.key,
            Record::Context(c) => &c.user,
        }
    }

    /// The write that puts this record's content back (checked like any
    /// other write).
    pub fn to_input(&self) -> Result<Input, StoreError> {
        match self {
            Record::App(a) => Input::app(&a.id, &a.name, &a.description),
            Record::Flow(f) => Input::flow(&f.id, &f.app_id, &f.name, &f.script),
            Record::Setting(s) => Input::setting(&s.key, &s.value),
            Record::Context(c) => Input::context(&c.user, &c.values),
        }
    }

    /// Builds a record from a row: key, fields in [`Table`] order, version and
    /// time. Fields that fail to parse mean a damaged row.
    pub(crate) fn from_row(
        kind: Kind,
        key: String,
        fields: Vec<String>,
        version: i64,
        updated_at: Micros,
    ) -> Result<Record, StoreError> {
        let expected = kind.table().fields.len();
        if fields.len() != expected {
            return Err(corrupt(kind, &key, format!("{} fields instead of {expected}", fields.len())));
        }
        let mut fields = fields.into_iter();
        // The count was checked above, so every `take` has a field.
        let mut take = || fields.next().unwrap_or_default();
        Ok(match kind {
            Kind::App => Record::App(App { id: key, name: take(), description: take(), version, updated_at }),
            Kind::Flow => {
                Record::Flow(Flow { id: key, app_id: take(), name: take(), script: take(), version, updated_at })
            }
            Kind::Setting => {
                let value = serde_json::from_str(&take()).map_err(|e| corrupt(kind, &key, e.to_string()))?;
                Record::Setting(Setting { key, value, version, updated_at })
            }
            Kind::Context => {
                let values = serde_json::from_str(&take()).map_err(|e| corrupt(kind, &key, e.to_string()))?;
                Record::Context(Context { user: key, values, version, updated_at })
            }
        })
    }
}

fn corrupt(kind: Kind, key: &str, reason: String) -> StoreError {
    StoreError::Corrupt { kind: kind.as_str(), key: key.to_string(), reason }
}

/// A validated write of one record: build it with [`Input::app`] and its
/// siblings (in `validate.rs`), which check and normalize every field, so an
/// `Input` that exists is one the database accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub(crate) kind: Kind,
    pub(crate) key: String,
    /// Field texts in [`Table`] order.
    pub(crate) fields: Vec<String>,
}

impl Input {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The record's key, normalized (UUIDs lowercase with hyphens).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value of field `name` (of the kind's [`Table`]), as written.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        let at = self.kind.table().fields.iter().position(|c| c.name == name)?;
        self.fields.get(at).map(String::as_str)
    }

    /// The record's name when its kind has one that must be unique (apps,
    /// flows), with the scope it is unique in (a flow's app).
    pub(crate) fn unique_title(&self) -> Option<(&str, Option<&str>)> {
        let title = self.field(self.kind.title_field()?)?;
        Some((title, self.field("app_id")))
    }
}

/// What a write expects the record's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there (create or overwrite).
    Any,
    /// The record must not exist (`expected_version` 0).
    Absent,
    /// The record must be at this version.
    Version(i64),
}

impl Expect {
    /// From an optional `expected_version`: none is [`Expect::Any`], 0 is
    /// [`Expect::Absent`], and a negative one is invalid.
    pub fn from_option(expected: Option<i64>) -> Result<Expect, StoreError> {
        match expected {
            None => Ok(Expect::Any),
            Some(0) => Ok(Expect::Absent),
            Some(v) if v > 0 => Ok(Expect::Version(v)),
            Some(_) => Err(StoreError::invalid("expected_version", "must be 0 (create) or a positive version")),
        }
    }

    /// The number to report in a conflict.
    pub(crate) fn number(self) -> i64 {
        match self {
            Expect::Any | Expect::Absent => 0,
            Expect::Version(v) => v,
        }
    }
}

/// One page of a list, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Which records a list returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    /// Only keys after this one (the previous page's `next`).
    pub after: Option<String>,
    /// At most this many; see `validate::page_size`.
    pub limit: u32,
    /// Flows only: those of this app.
    pub app_id: Option<String>,
}
