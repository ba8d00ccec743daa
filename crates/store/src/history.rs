//! The history of apps, flows and settings: every version written through
//! the server, with when, where (the site) and by whom, kept with the
//! application's data (`dugong_app.history`) so it replicates like the
//! records themselves. Each write records its version in the same statement
//! (PostgreSQL) or transaction (SQLite) as the change and its audit entry.
//!
//! A version the log has never seen — a record made before history began,
//! changed now for the first time — is recorded as it was (`recorded`) just
//! before the change, so the first change after an upgrade can be undone
//! too. A deletion is a row without content; restoring a version is an
//! ordinary new write of that content (a new version, with its own audit
//! entry and history row, which replicates).
//!
//! Unlike the audit log, the history holds values — the point of it — so a
//! setting's old values are kept there as long as the setting's row is
//! readable; contexts (each user's desktop context) are not kept.

use crate::error::StoreError;
use crate::model::{ColumnType, Kind, Micros, Record};

/// The action of a version recorded as it was when history began for it.
pub const RECORDED: &str = "recorded";

/// Newest first, one record's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub kind: Kind,
    pub key: String,
    pub after: Option<crate::audit::AuditCursor>,
    pub limit: u32,
}

/// One version of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: String,
    pub kind: Kind,
    pub key: String,
    pub version: i64,
    /// `create`, `update`, `delete` (as in the audit log) or [`RECORDED`].
    pub action: String,
    pub at: Micros,
    /// The site whose server wrote it; empty for [`RECORDED`] versions.
    pub site: String,
    pub actor: String,
    pub actor_kind: String,
    /// A note such as "restored version 3".
    pub detail: String,
    /// The record as this version held it; `None` for a deletion.
    pub record: Option<Record>,
}

impl HistoryEntry {
    /// An entry from its stored columns; `content` is the JSON object of the
    /// record's fields, or none.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        id: String,
        resource: String,
        key: String,
        version: i64,
        action: String,
        at: Micros,
        [site, actor, actor_kind, detail]: [String; 4],
        content: Option<&str>,
    ) -> Result<HistoryEntry, StoreError> {
        let kind = Kind::parse(&resource).ok_or_else(|| StoreError::Corrupt {
            kind: "history",
            key: id.clone(),
            reason: format!("{resource:?} is not a kind of record"),
        })?;
        let record = match content {
            None => None,
            Some(text) => Some(record_from_content(kind, &key, version, at, text)?),
        };
        Ok(HistoryEntry { id, kind, key, version, action, at, site, actor, actor_kind, detail, record })
    }

    pub fn is_deletion(&self) -> bool {
        self.record.is_none()
    }
}

/// A record's fields as the JSON object the history keeps (JSON fields
/// nested as JSON), as PostgreSQL's `jsonb_build_object` makes it there.
pub fn content(record: &Record) -> String {
    let object = match record {
        Record::App(a) => serde_json::json!({"name": a.name, "description": a.description}),
        Record::Flow(f) => serde_json::json!({"app_id": f.app_id, "name": f.name, "script": f.script}),
        Record::Setting(s) => serde_json::json!({"value": s.value}),
        Record::Context(c) => serde_json::json!({"entries": c.values}),
    };
    object.to_string()
}

/// A record from a JSON object of its fields (JSON fields nested as JSON).
fn record_from_content(kind: Kind, key: &str, version: i64, at: Micros, text: &str) -> Result<Record, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { kind: kind.as_str(), key: key.to_string(), reason };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| corrupt(format!("a version in the history: {e}")))?;
    let fields = kind
        .table()
        .fields
        .iter()
        .map(|c| match (c.ty, object.get(c.name)) {
            (ColumnType::Json, Some(v)) => Ok(v.to_string()),
            (_, Some(serde_json::Value::String(s))) => Ok(s.clone()),
            _ => Err(corrupt(format!("a version in the history lacks {}", c.name))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Record::from_row(kind, key.to_string(), fields, version, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r_flow() -> Record {
        Record::Flow(crate::model::Flow {
            id: "f".into(),
            app_id: "0b3e5a04-7c51-4e1c-9f6a-2d1f0c8b9e77".into(),
            name: "n".into(),
            script: "line\n".into(),
            version: 1,
            updated_at: Micros(1),
        })
    }

    #[test]
    fn versions_read_back_as_records() {
        let r = record_from_content(Kind::Setting, "k", 3, Micros(1), r#"{"value": {"a": [1, "x"]}}"#).unwrap();
        match r {
            Record::Setting(s) => assert_eq!((s.value, s.version), (serde_json::json!({"a": [1, "x"]}), 3)),
            other => panic!("{other:?}"),
        }
        let text = r#"{"app_id": "0b3e5a04-7c51-4e1c-9f6a-2d1f0c8b9e77", "name": "n", "script": "s"}"#;
        assert!(matches!(record_from_content(Kind::Flow, "f", 1, Micros(1), text), Ok(Record::Flow(_))));
        assert_eq!(record_from_content(Kind::Flow, "f", 1, Micros(1), &content(&r_flow())).unwrap(), r_flow());
        let err = record_from_content(Kind::App, "a", 1, Micros(1), r#"{"name": "n"}"#).unwrap_err();
        assert!(err.to_string().contains("lacks description"), "{err}");
    }
}
