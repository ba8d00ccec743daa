//! Store records ⇄ protobuf messages.

use dugong_proto::v1 as pb;
use dugong_store::{App, Context, Event, Flow, Kind, Micros, Record, Setting, StoreError};

use crate::error::ApiError;

pub fn timestamp(m: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: m.0.div_euclid(1_000_000), nanos: (m.0.rem_euclid(1_000_000) * 1_000) as i32 }
}

/// A client's timestamp; out-of-range nanos are refused.
pub fn micros(field: &str, t: &prost_types::Timestamp) -> Result<Micros, ApiError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(StoreError::invalid(field, "nanos must be within 0..1e9").into());
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(i64::from(t.nanos) / 1_000))
        .map(Micros)
        .ok_or_else(|| StoreError::invalid(field, "out of range").into())
}

pub fn app(a: App) -> pb::App {
    pb::App {
        id: a.id,
        name: a.name,
        description: a.description,
        version: a.version,
        updated_at: Some(timestamp(a.updated_at)),
    }
}

pub fn flow(f: Flow) -> pb::Flow {
    pb::Flow {
        id: f.id,
        app_id: f.app_id,
        name: f.name,
        script: f.script,
        version: f.version,
        updated_at: Some(timestamp(f.updated_at)),
    }
}

pub fn setting(s: Setting) -> pb::Setting {
    pb::Setting {
        key: s.key,
        value_json: s.value.to_string(),
        version: s.version,
        updated_at: Some(timestamp(s.updated_at)),
    }
}

pub fn context(c: Context) -> pb::Context {
    pb::Context {
        user: c.user,
        values: c.values.into_iter().collect(),
        version: c.version,
        updated_at: Some(timestamp(c.updated_at)),
    }
}

pub fn event(e: Event) -> pb::Event {
    pb::Event {
        id: e.id,
        kind: e.kind,
        user: e.user.unwrap_or_default(),
        app_id: e.app_id.unwrap_or_default(),
        occurred_at: e.occurred_at.map(timestamp),
        payload_json: e.payload.to_string(),
        site: e.site,
        received_at: Some(timestamp(e.received_at)),
    }
}

/// A record as the `record` of a watch change.
pub fn change_record(r: Record) -> pb::change::Record {
    match r {
        Record::App(a) => pb::change::Record::App(app(a)),
        Record::Flow(f) => pb::change::Record::Flow(flow(f)),
        Record::Setting(s) => pb::change::Record::Setting(setting(s)),
        Record::Context(c) => pb::change::Record::Context(context(c)),
    }
}

pub fn resource(kind: Kind) -> pb::Resource {
    match kind {
        Kind::App => pb::Resource::Apps,
        Kind::Flow => pb::Resource::Flows,
        Kind::Setting => pb::Resource::Settings,
        Kind::Context => pb::Resource::Contexts,
    }
}

/// The kind a `Resource` value names; unspecified and unknown values are refused.
pub fn kind(value: i32) -> Result<Kind, ApiError> {
    match pb::Resource::try_from(value) {
        Ok(pb::Resource::Apps) => Ok(Kind::App),
        Ok(pb::Resource::Flows) => Ok(Kind::Flow),
        Ok(pb::Resource::Settings) => Ok(Kind::Setting),
        Ok(pb::Resource::Contexts) => Ok(Kind::Context),
        _ => Err(StoreError::invalid("resources", format!("{value} is not a resource (1 apps … 4 contexts)")).into()),
    }
}

/// JSON text from a client: empty is `null`.
pub fn json(field: &str, text: &str) -> Result<serde_json::Value, ApiError> {
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(dugong_store::validate::json_text(field, text)?)
}

/// The record a get returned, as the kind the service serves.
pub fn expect_kind<T>(record: Record, pick: impl FnOnce(Record) -> Option<T>) -> Result<T, ApiError> {
    pick(record)
        .ok_or_else(|| StoreError::Database { context: "reading".into(), message: "wrong record kind".into() }.into())
}
