//! The API's records as JSON, as `dugong client` prints them, and the JSON values users give on
//! the command line as the API's messages. Field names follow the REST API.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use dugong_proto::v1 as pb;
use prost_types::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::new_id;

/// A timestamp as RFC 3339 in UTC (microseconds), `null` when absent.
pub fn time(t: Option<&Timestamp>) -> Value {
    let Some(t) = t else { return Value::Null };
    let Ok(seconds) = u64::try_from(t.seconds) else { return Value::Null };
    let at = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(t.nanos.clamp(0, 999_999_999) as u64);
    Value::String(humantime::format_rfc3339_micros(at).to_string())
}

fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: since.as_secs() as i64, nanos: since.subsec_nanos() as i32 }
}

/// JSON text from the server as a value (a string when it is not JSON, which a server never sends).
fn parsed(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub fn app(a: &pb::App) -> Value {
    json!({
        "id": a.id, "name": a.name, "description": a.description,
        "version": a.version, "updated_at": time(a.updated_at.as_ref()),
    })
}

pub fn flow(f: &pb::Flow) -> Value {
    json!({
        "id": f.id, "app_id": f.app_id, "name": f.name, "script": f.script,
        "version": f.version, "updated_at": time(f.updated_at.as_ref()),
    })
}

pub fn setting(s: &pb::Setting) -> Value {
    json!({
        "key": s.key, "value": parsed(&s.value_json),
        "version": s.version, "updated_at": time(s.updated_at.as_ref()),
    })
}

pub fn context(c: &pb::Context) -> Value {
    let values: std::collections::BTreeMap<_, _> = c.values.iter().collect();
    json!({
        "user": c.user, "values": values,
        "version": c.version, "updated_at": time(c.updated_at.as_ref()),
    })
}

pub fn event(e: &pb::Event) -> Value {
    json!({
        "id": e.id, "kind": e.kind, "user": e.user, "app_id": e.app_id,
        "occurred_at": time(e.occurred_at.as_ref()), "payload": parsed(&e.payload_json),
        "site": e.site, "received_at": time(e.received_at.as_ref()),
    })
}

/// The record a watch change carries, `null` for a deletion.
pub fn record(r: Option<&pb::change::Record>) -> Value {
    match r {
        None => Value::Null,
        Some(pb::change::Record::App(a)) => app(a),
        Some(pb::change::Record::Flow(f)) => flow(f),
        Some(pb::change::Record::Setting(s)) => setting(s),
        Some(pb::change::Record::Context(c)) => context(c),
    }
}

/// A resource as users name it: `apps`, `flows`, `settings`, `contexts`.
pub fn resource_name(r: pb::Resource) -> &'static str {
    match r {
        pb::Resource::Apps => "apps",
        pb::Resource::Flows => "flows",
        pb::Resource::Settings => "settings",
        pb::Resource::Contexts => "contexts",
        pb::Resource::Unspecified => "unknown",
    }
}

fn from_json<'a, T: Deserialize<'a>>(what: &str, text: &'a str) -> anyhow::Result<T> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON of the expected shape"))
}

/// `{"name": …, "description": …}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppValue {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

pub fn app_value(text: &str) -> anyhow::Result<AppValue> {
    from_json(r#"the app (e.g. {"name": "Journal", "description": "EHR"})"#, text)
}

/// `{"app_id": …, "name": …, "script": …}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowValue {
    pub app_id: String,
    pub name: String,
    #[serde(default)]
    pub script: String,
}

pub fn flow_value(text: &str) -> anyhow::Result<FlowValue> {
    from_json(r#"the flow (e.g. {"app_id": "UUID", "name": "login", "script": "…"})"#, text)
}

/// Any JSON value, checked here and sent as JSON text.
pub fn setting_value(text: &str) -> anyhow::Result<String> {
    let value: Value = from_json(r#"the setting's value (e.g. {"a": 1} or "text")"#, text)?;
    Ok(value.to_string())
}

/// A map of strings: `{"patient": "0101-1234"}`.
pub fn context_values(text: &str) -> anyhow::Result<HashMap<String, String>> {
    from_json(r#"the context (e.g. {"patient": "0101-1234"}, string values)"#, text)
}

/// One event as users write it; `id` and `occurred_at` default to a new UUID and now.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventValue {
    #[serde(default)]
    id: Option<String>,
    kind: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    occurred_at: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
}

/// One event object or an array of them, as the API's events: ids made here where missing, so
/// that posting the batch again (a retry after a failover) stores nothing twice.
pub fn events(text: &str) -> anyhow::Result<Vec<pb::Event>> {
    let value: Value = from_json("the events", text)?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            let wanted = r#"the events must be an object or an array of objects, e.g. [{"kind": "flow.started"}]"#;
            return Err(super::BadInput(wanted.into()).into());
        }
    };
    let now = SystemTime::now();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let e: EventValue = serde_json::from_value(item).with_context(|| format!("events[{i}]"))?;
            let occurred_at = match e.occurred_at {
                None => now,
                Some(text) => humantime::parse_rfc3339_weak(&text).map_err(|err| {
                    let reason = format!("events[{i}].occurred_at: {err} (write UTC, e.g. 2024-05-01T12:00:00Z)");
                    anyhow!(super::BadInput(reason))
                })?,
            };
            Ok(pb::Event {
                id: e.id.unwrap_or_else(new_id),
                kind: e.kind,
                user: e.user,
                app_id: e.app_id,
                occurred_at: Some(timestamp(occurred_at)),
                payload_json: e.payload.map(|p| p.to_string()).unwrap_or_default(),
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_ids_and_times_when_missing() {
        let given = events(r#"[{"kind": "a", "payload": {"x": 1}}, {"id": "x-1", "kind": "b", "occurred_at": "2024-05-01T12:00:00.000005Z"}]"#)
            .unwrap();
        assert_eq!(given.len(), 2);
        assert_eq!(given[0].id.len(), 36);
        assert_eq!(given[0].payload_json, r#"{"x":1}"#);
        assert!(given[0].occurred_at.is_some());
        assert_eq!(given[1].id, "x-1");
        assert_eq!(given[1].occurred_at, Some(Timestamp { seconds: 1_714_564_800, nanos: 5_000 }));
        assert_eq!(time(given[1].occurred_at.as_ref()), json!("2024-05-01T12:00:00.000005Z"));
        assert_eq!(events(r#"{"kind": "one"}"#).unwrap().len(), 1);
        assert!(events(r#"{"kind": "k", "colour": 1}"#).unwrap_err().to_string().contains("events[0]"));
        assert!(events("3").is_err());
    }

    #[test]
    fn values_are_checked_before_sending() {
        assert_eq!(setting_value(r#"{ "a": 1 }"#).unwrap(), r#"{"a":1}"#);
        assert!(setting_value("{not json").is_err());
        assert_eq!(context_values(r#"{"patient": "p"}"#).unwrap()["patient"], "p");
        assert!(context_values(r#"{"patient": 1}"#).is_err());
        assert!(app_value(r#"{"name": "n", "extra": 1}"#).is_err());
        assert_eq!(flow_value(r#"{"app_id": "a", "name": "n"}"#).unwrap().script, "");
    }
}
